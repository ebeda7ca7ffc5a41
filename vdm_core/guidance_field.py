"""The guidance field: where reconstruction guidance pushes the estimate, and how hard.

Reconstruction guidance (paper sec. 3.1) adds to the model's estimate x_hat(z_t) a correction

    eq. 7 (known frames):  x~^b = x_hat^b - (w_r alpha_t / 2) grad_{z^b} ||x^a - x_hat^a(z_t)||^2
    eq. 8 (low-res view):  x~   = x_hat   - (w_r alpha_t / 2) grad_z     ||x^a - D(x_hat(z_t))||^2

`RecordingGuidance` wraps `guidance.ReconstructionGuidance` and records, at every sampler step,
(log-SNR, x_hat, correction) while returning exactly the guided estimate the plain strategy
returns, so a recorded run samples the same video bit for bit. `guidance_field` samples one
window with it and keeps a few snapshots spread over the sampling (by default steps at 10%, 35%,
60% and 85% of the run): what the model believes the clean video is at that noise level, and the
per-pixel size of the push toward agreement with the known frames or the low-res clip.
"""

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from vdm_core.defaults import default_config, lowres_w_r
from vdm_core.guidance import Observation, ReconstructionGuidance
from vdm_core.outputs import PipelineStep, SamplingConfig
from vdm_core.samplers import Denoiser
from vdm_core.schedule import alpha_sigma

Keep = Callable[[int, float], bool]


@dataclass(frozen=True)
class FieldRecord:
    """One call of the guided estimate: its index in the run, the log-SNR of z_t, the model's
    estimate x_hat(z_t) and the correction -(w_r alpha_t / 2) grad_z ||x^a - x_hat^a||^2 over
    all of z (eqs. 7, 8), both (B, C, T, H, W) on the CPU."""

    call: int
    logsnr: float
    x_hat: torch.Tensor
    correction: torch.Tensor


class RecordingGuidance:
    """`ReconstructionGuidance` that records (log-SNR, x_hat, correction) of every call.

    `x_hat` returns exactly `guidance.x_hat` (the same `estimate` then `guided`), and `replace`
    is the guidance's own, so sampling with the recorder gives the same video bit for bit.
    `keep(call, logsnr)` selects the calls to record (None: all; each record holds two videos,
    so a long run should keep only what it needs). A predictor-corrector sampler calls the
    estimate twice per step (predictor, then corrector at the next log-SNR).
    """

    def __init__(self, guidance: ReconstructionGuidance, keep: Keep | None = None):
        self.guidance = guidance
        self.keep = keep
        self.records: list[FieldRecord] = []
        self.calls = 0

    def x_hat(self, denoise: Denoiser, z: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        """The guided estimate x~ (eq. 7 or 8), (B, C, T, H, W); records the call if kept."""
        x_hat, correction = self.guidance.estimate(denoise, z, logsnr)
        call, value = self.calls, float(logsnr.reshape(-1)[0])
        self.calls += 1
        if self.keep is None or self.keep(call, value):
            self.records.append(FieldRecord(call, value, x_hat.detach().cpu().clone(),
                                            correction.detach().cpu().clone()))
        return self.guidance.guided(x_hat, correction)

    def replace(
        self, z_s: torch.Tensor, logsnr_s: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """The guidance's replacement of z_s^a (known frames) or the identity (eq. 8)."""
        return self.guidance.replace(z_s, logsnr_s, generator)


@dataclass(frozen=True)
class FieldSnapshot:
    """The guided estimate at sampling step `step` (0-based) of `num_steps`.

    x_hat: the model's estimate x_hat(z_t) before guidance, (B, C, T, H, W) in about [-1, 1].
    correction: -(w_r alpha_t / 2) grad_z ||x^a - x_hat^a(z_t)||^2 over all of z (eqs. 7, 8).
    known: the known frames (eq. 7), whose estimate is x^a itself; () for a low-res view (eq. 8).
    """

    step: int
    num_steps: int
    logsnr: float
    x_hat: torch.Tensor
    correction: torch.Tensor
    known: tuple[int, ...] = ()

    @property
    def t(self) -> float:
        """The time t = 1 - step / num_steps of z_t on the sampler's grid (1 = pure noise)."""
        return 1.0 - self.step / self.num_steps

    @property
    def alpha(self) -> float:
        """alpha_t = sqrt(sigmoid(logsnr)), the signal scale of z_t."""
        return alpha_sigma(torch.tensor(self.logsnr, dtype=torch.float64))[0].item()

    def applied(self) -> torch.Tensor:
        """The correction the guided estimate adds, (B, C, T, H, W): zero at known frames
        (eq. 7 corrects x^b only; x~^a = x^a), all of it for a low-res view (eq. 8)."""
        if not self.known:
            return self.correction
        applied = self.correction.clone()
        applied[:, :, list(self.known)] = 0.0
        return applied

    def magnitude(self) -> torch.Tensor:
        """Per-pixel size of the applied correction: L2 norm over the colour channels, (B, T, H, W),
        in the units of x (pixel values scaled to [-1, 1])."""
        return self.applied().norm(dim=1)


@dataclass
class GuidanceField:
    """Snapshots of one window sampled with reconstruction guidance, and the final sample.

    snapshots are in sampling order: t decreasing, log-SNR increasing (noise to clean).
    sample: (B, C, T, H, W) in [-1, 1]. known: the known frame indices (eq. 7); () for a
    low-res view (eq. 8). w_r: the reconstruction weight used.
    """

    snapshots: list[FieldSnapshot]
    sample: torch.Tensor
    known: tuple[int, ...]
    w_r: float
    num_steps: int
    info: dict = field(default_factory=dict)


def snapshot_steps(num_steps: int, levels: int = 4) -> list[int]:
    """Steps spread over a run of num_steps: step floor(N (j + 0.4) / levels) for j < levels
    (10%, 35%, 60%, 85% for 4 levels), without repeats (fewer when num_steps < levels)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    picks = (min(num_steps - 1, int(num_steps * (j + 0.4) / levels)) for j in range(levels))
    return sorted(set(picks))


def _on_device(obs: Observation, device: torch.device) -> Observation:
    """obs with its pixels on `device`."""
    if obs.is_lowres:
        return replace(obs, lowres=obs.lowres.to(device))
    return replace(obs, frames=obs.frames.to(device))


def _resolve_w_r(pipe, obs: Observation, config: SamplingConfig) -> float:
    """config.w_r, or the task default: `lowres_w_r(f)` for a low-res view by f, else the
    extension's."""
    if config.w_r is not None:
        return float(config.w_r)
    if obs.is_lowres:
        return lowres_w_r(pipe.config.image_size // obs.lowres.shape[-1])
    return float(default_config("extend").w_r)


def _window_frames(pipe, obs: Observation, config: SamplingConfig,
                   num_frames: int | None) -> int:
    """Frames of the window: the low-res clip's length, else num_frames or the model's window."""
    if obs.is_lowres:
        frames = obs.lowres.shape[2]
        if num_frames is not None and num_frames != frames:
            raise ValueError(f"a low-res view of {frames} frames fixes the window; "
                             f"got num_frames = {num_frames}")
        return frames
    frames = int(num_frames or config.window or pipe.config.num_frames)
    if max(obs.frame_indices) >= frames:
        raise ValueError(f"known frame {max(obs.frame_indices)} lies outside a window of "
                         f"{frames} frames")
    if len(set(obs.frame_indices)) >= frames:
        raise ValueError(f"every one of the {frames} frames is known: nothing to sample")
    return frames


def guidance_field(pipe, obs: Observation, prompt: str = "",
                   config: SamplingConfig | None = None, levels: int = 4,
                   num_frames: int | None = None) -> GuidanceField:
    """Sample ONE window with reconstruction guidance and keep `levels` snapshots of it.

    pipe: a `VideoDiffusionPipeline` (or any `conditional.Sampler`). obs: known frames at
    indices of the window (eq. 7; the window has num_frames frames, default config.window or
    the model's) or a low-res view of the whole window (eq. 8). config: steps, sampler, w (eq. 6
    on `prompt`), w_r (None: `lowres_w_r(f)` for a low-res view by f, else the extension's),
    generator and callback; None means the task's defaults. The sample is the one
    `pipe.sample(..., ReconstructionGuidance(obs, w_r))` draws from the same generator.
    Snapshots are taken at `snapshot_steps(config.steps, levels)`, at the predictor's call of
    each step, in sampling order.
    """
    config = config or default_config("super_resolve" if obs.is_lowres else "extend")
    frames = _window_frames(pipe, obs, config, num_frames)
    w_r = _resolve_w_r(pipe, obs, config)
    obs = _on_device(obs, pipe.device)
    wanted = snapshot_steps(int(config.steps), levels)
    state = {"step": 0}
    kept_steps: list[int] = []

    def keep(call: int, logsnr: float) -> bool:
        step = state["step"]
        if step in wanted and step not in kept_steps:
            kept_steps.append(step)
            return True
        return False

    user_callback = config.callback

    def on_step(step: PipelineStep) -> None:
        state["step"] = step.step + 1
        if user_callback is not None:
            user_callback(step)

    recorder = RecordingGuidance(ReconstructionGuidance(obs, w_r), keep)
    batch = obs.target.shape[0]
    z = pipe.initial_noise(batch, frames, config.generator)  # (B, C, T, H, W)
    sample = pipe.sample([prompt] * batch, z, replace(config, w_r=w_r, callback=on_step),
                         recorder).cpu()
    known = () if obs.is_lowres else tuple(sorted(set(obs.frame_indices)))
    snapshots = [FieldSnapshot(step, int(config.steps), rec.logsnr, rec.x_hat, rec.correction,
                               known) for step, rec in zip(kept_steps, recorder.records,
                                                           strict=True)]
    return GuidanceField(snapshots, sample, known, w_r, int(config.steps),
                         {"prompt": prompt, "sampler": config.sampler, "w": config.w,
                          "frames": frames})
