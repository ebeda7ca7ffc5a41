"""Long videos, prediction, interpolation and super-resolution as conditional sampling (sec. 3.1).

The model generates a fixed window of frames (config.num_frames = 16). Everything longer or finer
is "sample x^b given x^a" from that one model, with x^a an `Observation` and a conditioning
strategy (`guidance.py`):

- `extend`: block-autoregressive extension. Each block is a window whose first k frames are the
  last k frames already made (x^a) and whose other frames (x^b) are new; repeat until done.
- `predict`: the same, from the first k frames of a clip (the paper's BAIR / Kinetics tasks).
- `interpolate`: x^a = every m-th frame, x^b = the frames between (block-wise beyond a window).
- `super_resolve`: x^a = D(x), a low-resolution view, with eq. 8 or its low-pass replacement.
- `compare`: replacement vs reconstruction guidance from one seed, with the `metrics` scores.

Strategies for known frames: "replacement" (z^a_s ~ q(z^a_s | x^a) after each step) and
"reconstruction" (eq. 7: x~^b = x_hat^b - (w_r alpha_t / 2) grad_{z^b} ||x^a - x_hat^a(z_t)||^2,
plus the same replacement). For a low-resolution view: "reconstruction" (eq. 8) or "lowpass".

Defaults: DEFAULT_K = 4 conditioning frames per block and DEFAULT_W_R = 20 for extension,
w_r = f^2 for super-resolution by a factor f (exact in the low-noise limit, see `guidance.py`),
the ancestral sampler. Evidence (`python -m vdm_core.evaluate --sections extension --frames 40
--samples 4 --steps 16`, and an 8-clip w_r sweep at k = 4; 16 -> 40 frames of held-out world
clips, prompt = caption, w = 2, with the early checkpoints at training steps 253 and 312, which
draw blobs that the detector finds in only ~30-50% of the frames):

- k: k = 4 and k = 8 scored the same within noise (trajectory error 9.3 [7.9, 10.7] vs
  11.4 [7.2, 15.6] px, seam jump 1.57 vs 1.60) and k = 4 costs 2/3 of the blocks (16 -> 64:
  4 blocks instead of 6). The world moves at constant velocity, which 2 frames determine.
- w_r: larger was better in both runs but never significantly: paired against replacement (same
  clips and noise, n = 8), trajectory error -1.2 [-3.2, 0.7] px at w_r = 5, -2.5 [-6.6, 1.6] at
  20, -1.7 [-7.6, 4.2] at 50; seam jump -0.00, -0.06, -0.08. 20 was best on trajectory error in
  both runs; the paper used 9 (Kinetics) and 50 (BAIR).
- sampler: predictor-corrector at equal network evaluations (8 steps + 8 corrections) was no
  better than 16 ancestral steps (trajectory error 11.4 vs 11.4 px, objects missed 0.82 vs
  0.71), so the paper's PC gain did not show at this checkpoint; `sampler="pc"` is available.

These checkpoints are too weak to separate the methods; `python -m vdm_core.evaluate` (full run)
repeats the k and PC comparison with the shipped model in docs/results.md (Table 6 rows).
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from vdm_core.data import Clip
from vdm_core.guidance import Observation, Replacement, make_strategy, residual_gradient
from vdm_core.metrics import persistence, psnr, seam_jump, trajectory_error
from vdm_core.pipeline import (
    MAX_FRAMES,
    PipelineStep,
    ProgressCallback,
    VideoDiffusionPipeline,
    VideoOutput,
    check_sampling_args,
)
from vdm_core.samplers import Denoiser, Strategy, Unguided
from vdm_core.schedule import alpha_sigma, broadcast_to
from vdm_core.video_io import frames_to_tensor, tensor_to_frames

DEFAULT_K = 4
DEFAULT_W_R = 20.0
DEFAULT_GUIDANCE_WEIGHT = 2.0
FRAME_STRATEGIES = ("replacement", "reconstruction")
LOWRES_STRATEGIES = ("reconstruction", "lowpass")

Video = np.ndarray | torch.Tensor
StrategyFactory = Callable[[Observation], Strategy]


@dataclass(frozen=True)
class Block:
    """One sampler call: the window of output frames [start, stop); frames before `first_new`
    in it are already made (they condition the block), and so may be some after it."""

    start: int
    stop: int
    first_new: int


def _check_k(k: int, window: int) -> int:
    """k as an int, or a ValueError unless 1 <= k < window."""
    if not 1 <= k < window:
        raise ValueError(
            f"k (conditioning frames) must be between 1 and window - 1 = {window - 1}, got {k}"
        )
    return int(k)


def plan_blocks(known: Sequence[bool], window: int, k: int) -> list[Block]:
    """Windows that fill every unknown frame, left to right (block-autoregressive, sec. 3.1).

    Each block starts k frames before the first frame not yet made (its context x^a) and spans
    `window` frames. When a known frame lies beyond the window (interpolation), the window is cut
    to end on the last known frame inside it, so new frames are always bracketed by known ones.
    Where the window then ends early (the last block, or a cut), it reaches further back for more
    context so that it keeps `window` frames when the video allows.
    """
    if window < 2:
        raise ValueError(f"the window must hold at least 2 frames, got {window}")
    k = _check_k(k, window)
    made = [bool(m) for m in known]
    n = len(made)
    blocks = []
    while not all(made):
        first = made.index(False)
        start = max(0, first - k)
        stop = min(start + window, n)
        if any(made[stop:]):
            anchors = [i for i in range(first + 1, stop) if made[i]]
            stop = anchors[-1] + 1 if anchors else stop
        start = max(0, min(start, stop - window))
        blocks.append(Block(start, stop, first))
        made[start:stop] = [True] * (stop - start)
    return blocks


def _as_video(video: Video, channels: int, name: str = "video") -> torch.Tensor:
    """uint8 frames (T, H, W, 3), or float videos (C, T, H, W) / (B, C, T, H, W) in [-1, 1],
    as a float batch (B, C, T, H, W)."""
    if isinstance(video, np.ndarray):
        if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
            raise ValueError(
                f"{name} must be uint8 frames (T, H, W, 3), got {video.dtype} {video.shape}"
            )
        return frames_to_tensor(video)[None]  # (1, 3, T, H, W)
    if not isinstance(video, torch.Tensor):
        raise ValueError(f"{name} must be a numpy array or a torch tensor, got {type(video)}")
    x = video.detach().float().cpu()
    x = x[None] if x.ndim == 4 else x
    if x.ndim != 5 or x.shape[1] != channels:
        raise ValueError(
            f"{name} must be a float tensor (C, T, H, W) or (B, C, T, H, W) with C = {channels}, "
            f"got shape {tuple(video.shape)}"
        )
    if x.numel() and (not torch.isfinite(x).all() or x.abs().max() > 1.0 + 1e-3):
        raise ValueError(f"{name} must hold finite values in [-1, 1] (uint8 / 127.5 - 1)")
    return x  # (B, C, T, H, W)


def _check_size(x: torch.Tensor, size: int, name: str = "video") -> None:
    """Raise a ValueError unless the frames of x (B, C, T, H, W) are size x size."""
    if x.shape[-2:] != (size, size):
        raise ValueError(
            f"{name} frames are {x.shape[-2]}x{x.shape[-1]} but the model makes {size}x{size} "
            f"frames; resize it first (e.g. read_video(path, size={size}))"
        )
    if x.shape[2] < 1:
        raise ValueError(f"{name} has no frames")


def _prompts(prompt: str | Sequence[str], batch: int) -> list[str]:
    """One prompt per sample: a string is repeated, a list must have one per sample."""
    prompts = [prompt] * batch if isinstance(prompt, str) else list(prompt)
    if len(prompts) != batch:
        raise ValueError(f"got {len(prompts)} prompts for {batch} videos")
    return prompts


def _window(pipe: VideoDiffusionPipeline, window: int | None) -> int:
    """The frames per sampler call: the model's training window unless given."""
    window = int(pipe.config.num_frames if window is None else window)
    if not 2 <= window <= MAX_FRAMES:
        raise ValueError(f"window must be between 2 and {MAX_FRAMES}, got {window}")
    return window


def _check_w_r(w_r: float) -> float:
    """w_r as a float, or a ValueError unless it is a finite number >= 0."""
    if not np.isfinite(w_r) or w_r < 0:
        raise ValueError(f"w_r must be a finite number >= 0, got {w_r}")
    return float(w_r)


def frame_strategy(name: str, w_r: float = DEFAULT_W_R) -> StrategyFactory:
    """A factory Observation -> Strategy for known frames: "replacement" or "reconstruction"."""
    if name not in FRAME_STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose from {list(FRAME_STRATEGIES)}")
    w_r = _check_w_r(w_r)
    return lambda obs: make_strategy(name, obs, w_r)


@dataclass(frozen=True)
class PerSampleGuidance:
    """Eq. 7 with one w_r per sample, w_r (B,); w_r = 0 is exactly the replacement method.

    x~ = [x^a, x_hat^b - (w_r alpha_t / 2) grad_{z^b} ||x^a - x_hat^a(z_t)||^2]: the squared error
    is a sum over samples and the network treats samples independently, so the gradient of the
    batch sum gives each sample its own gradient. Lets `compare` run both strategies in one batch.
    """

    obs: Observation
    w_r: torch.Tensor  # (B,)

    def x_hat(self, denoise: Denoiser, z: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        """The guided estimate (B, C, T, H, W): one forward and one backward pass."""
        x_hat, grad = residual_gradient(self.obs, denoise, z, logsnr)
        alpha, _ = alpha_sigma(broadcast_to(logsnr, z))
        w_r = broadcast_to(self.w_r, z)
        return self.obs.with_known(x_hat - 0.5 * w_r * alpha * grad, self.obs.frames)

    def replace(
        self, z_s: torch.Tensor, logsnr_s: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """z_s^a <- alpha_s x^a + sigma_s eps, as in the replacement method."""
        return Replacement(self.obs).replace(z_s, logsnr_s, generator)


def _fill(
    pipe: VideoDiffusionPipeline,
    x: torch.Tensor,
    known: Sequence[bool],
    prompts: list[str],
    strategy: StrategyFactory,
    k: int,
    window: int,
    num_inference_steps: int,
    guidance_weight: float,
    sampler: str,
    generator: torch.Generator | None,
    callback: ProgressCallback | None,
    **sampler_kwargs,
) -> tuple[torch.Tensor, list[Block]]:
    """Sample every frame of x (B, C, N, H, W) not marked `known`, block by block.

    Within a block, the frames already made (given or sampled by an earlier block) are the
    observation x^a, Observation.known_frames(indices relative to the window, their pixels), and
    the strategy built from it conditions the sampler; a block with nothing known is sampled
    unconditionally. Made frames are never changed.
    """
    blocks = plan_blocks(known, window, k)
    made = [bool(m) for m in known]
    x = x.clone()
    for j, block in enumerate(blocks):
        frames = range(block.start, block.stop)
        given = [i for i in frames if made[i]]
        new = [i for i in frames if not made[i]]
        rel = [i - block.start for i in given]
        cond: Strategy = Unguided()
        if given:
            cond = strategy(Observation.known_frames(rel, x[:, :, given]))
        z = pipe.initial_noise(x.shape[0], len(frames), generator)  # (B, C, L, H, W)
        sample = pipe.sample(prompts, z, num_inference_steps, guidance_weight, sampler, generator,
                             strategy=cond, callback=callback, block=j, num_blocks=len(blocks),
                             **sampler_kwargs)  # (B, C, L, H, W)
        x[:, :, new] = sample[:, :, [i - block.start for i in new]]
        for i in new:
            made[i] = True
    return x, blocks


def _output(x: torch.Tensor, blocks: list[Block], seconds: float, **info) -> VideoOutput:
    """A VideoOutput of x (B, C, T, H, W) with the block plan and timing in its info."""
    info.update(
        block_starts=[b.first_new for b in blocks],
        blocks=[(b.start, b.stop) for b in blocks],
        seconds=seconds,
    )
    return VideoOutput([tensor_to_frames(v) for v in x], x, info)


def extend(
    pipe: VideoDiffusionPipeline,
    video: Video,
    num_frames: int,
    prompt: str | Sequence[str] = "",
    strategy: str = "reconstruction",
    w_r: float = DEFAULT_W_R,
    k: int = DEFAULT_K,
    num_inference_steps: int = 32,
    guidance_weight: float = DEFAULT_GUIDANCE_WEIGHT,
    sampler: str = "ancestral",
    generator: torch.Generator | None = None,
    callback: ProgressCallback | None = None,
    window: int | None = None,
    **sampler_kwargs,
) -> VideoOutput:
    """Extend a clip to `num_frames` frames, block-autoregressively (sec. 3.1, eq. 7).

    video: uint8 frames (T, H, W, 3) or a float video (C, T, H, W) / batch (B, C, T, H, W) in
    [-1, 1], at the model's frame size. Each block conditions on the last k frames already made
    (x^a) and generates the rest of the window (x^b); the output's first T frames are the input,
    unchanged. `strategy` is "reconstruction" (eq. 7 with weight w_r, plus replacement of z^a)
    or "replacement". info["block_starts"] holds the index of the first new frame of each block.
    Works with every sampler, text prompts and classifier-free guidance (w = guidance_weight).
    """
    x0 = _as_video(video, pipe.config.channels)  # (B, C, T, H, W)
    _check_size(x0, pipe.config.image_size)
    window = _window(pipe, window)
    check_sampling_args(num_frames, num_inference_steps, guidance_weight, sampler)
    t0 = x0.shape[2]
    if num_frames < t0:
        raise ValueError(f"num_frames ({num_frames}) is shorter than the input video ({t0} frames)")
    k = _check_k(k, window)
    factory = frame_strategy(strategy, w_r)
    prompts = _prompts(prompt, x0.shape[0])
    x = torch.zeros(*x0.shape[:2], num_frames, *x0.shape[3:])  # (B, C, N, H, W)
    x[:, :, :t0] = x0
    start = time.perf_counter()
    x, blocks = _fill(pipe, x, [i < t0 for i in range(num_frames)], prompts, factory, k, window,
                      num_inference_steps, guidance_weight, sampler, generator, callback,
                      **sampler_kwargs)
    return _output(x, blocks, time.perf_counter() - start, task="extend", prompts=prompts,
                   strategy=strategy, w_r=w_r, k=k, window=window, sampler=sampler,
                   steps=num_inference_steps, guidance_weight=guidance_weight,
                   input_frames=t0)


def generate(
    pipe: VideoDiffusionPipeline,
    prompt: str | Sequence[str],
    num_frames: int,
    strategy: str = "reconstruction",
    w_r: float = DEFAULT_W_R,
    k: int = DEFAULT_K,
    num_inference_steps: int = 32,
    guidance_weight: float = DEFAULT_GUIDANCE_WEIGHT,
    sampler: str = "ancestral",
    generator: torch.Generator | None = None,
    callback: ProgressCallback | None = None,
    window: int | None = None,
    **sampler_kwargs,
) -> VideoOutput:
    """Text-to-video of any length: sample the first window, then `extend` it (Table 6 setup)."""
    window = _window(pipe, window)
    check_sampling_args(num_frames, num_inference_steps, guidance_weight, sampler)
    k = _check_k(k, window)
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    cfg = pipe.config
    x = torch.zeros(len(prompts), cfg.channels, num_frames, cfg.image_size, cfg.image_size)
    start = time.perf_counter()
    x, blocks = _fill(pipe, x, [False] * num_frames, prompts, frame_strategy(strategy, w_r), k,
                      window, num_inference_steps, guidance_weight, sampler, generator, callback,
                      **sampler_kwargs)
    return _output(x, blocks, time.perf_counter() - start, task="generate", prompts=prompts,
                   strategy=strategy, w_r=w_r, k=k, window=window, sampler=sampler,
                   steps=num_inference_steps, guidance_weight=guidance_weight)


def predict(
    pipe: VideoDiffusionPipeline,
    video: Video,
    k: int,
    num_frames: int = 16,
    prompt: str | Sequence[str] = "",
    strategy: str = "reconstruction",
    w_r: float = DEFAULT_W_R,
    context: int | None = None,
    num_inference_steps: int = 32,
    guidance_weight: float = DEFAULT_GUIDANCE_WEIGHT,
    sampler: str = "ancestral",
    generator: torch.Generator | None = None,
    callback: ProgressCallback | None = None,
    window: int | None = None,
    **sampler_kwargs,
) -> VideoOutput:
    """Video prediction: keep the first k frames of `video` and generate up to `num_frames`.

    The paper's BAIR (1 frame -> 16) and Kinetics (5 -> 16) tasks with reconstruction guidance.
    `video` is a world clip, a generated clip or a decoded upload (see `extend` for the formats).
    Blocks after the first condition on the last `context` frames (default max(k, DEFAULT_K)).
    """
    x = _as_video(video, pipe.config.channels)  # (B, C, T, H, W)
    window = _window(pipe, window)
    k = _check_k(k, window)
    if x.shape[2] < k:
        raise ValueError(f"the video has {x.shape[2]} frames, fewer than k = {k}")
    context = min(max(k, DEFAULT_K), window - 1) if context is None else context
    out = extend(pipe, x[:, :, :k], num_frames, prompt, strategy, w_r, context,
                 num_inference_steps, guidance_weight, sampler, generator, callback, window,
                 **sampler_kwargs)
    out.info.update(task="predict", observed_frames=k)
    return out


def interpolate(
    pipe: VideoDiffusionPipeline,
    video_sparse: Video,
    every: int,
    num_frames: int | None = None,
    prompt: str | Sequence[str] = "",
    strategy: str = "reconstruction",
    w_r: float = DEFAULT_W_R,
    k: int = DEFAULT_K,
    num_inference_steps: int = 32,
    guidance_weight: float = DEFAULT_GUIDANCE_WEIGHT,
    sampler: str = "ancestral",
    generator: torch.Generator | None = None,
    callback: ProgressCallback | None = None,
    window: int | None = None,
    **sampler_kwargs,
) -> VideoOutput:
    """Temporal interpolation: S given frames at 0, m, 2m, ... (m = `every`) -> all frames.

    x^a = the sparse frames, x^b = the frames between (sec. 3.1). Output length defaults to
    (S - 1) m + 1; a longer `num_frames` also extends past the last given frame. Windows end on a
    given frame, so the frames between two given frames are made in one block with both of them
    and up to k earlier frames as context. The given frames are kept exactly.
    """
    sparse = _as_video(video_sparse, pipe.config.channels, "video_sparse")  # (B, C, S, H, W)
    _check_size(sparse, pipe.config.image_size, "video_sparse")
    window = _window(pipe, window)
    if not 2 <= every <= window - 1:
        raise ValueError(
            f"every must be between 2 and window - 1 = {window - 1} so that two given frames fit "
            f"in one window, got {every}"
        )
    s = sparse.shape[2]
    span = (s - 1) * every + 1
    num_frames = span if num_frames is None else int(num_frames)
    if num_frames < span:
        raise ValueError(
            f"num_frames ({num_frames}) is shorter than the {span} frames spanned by {s} frames "
            f"given every {every}"
        )
    check_sampling_args(num_frames, num_inference_steps, guidance_weight, sampler)
    k = _check_k(k, window)
    indices = [i * every for i in range(s)]
    x = torch.zeros(*sparse.shape[:2], num_frames, *sparse.shape[3:])  # (B, C, N, H, W)
    x[:, :, indices] = sparse
    known = [i % every == 0 and i < span for i in range(num_frames)]
    start = time.perf_counter()
    x, blocks = _fill(pipe, x, known, _prompts(prompt, x.shape[0]), frame_strategy(strategy, w_r),
                      k, window, num_inference_steps, guidance_weight, sampler, generator,
                      callback, **sampler_kwargs)
    return _output(x, blocks, time.perf_counter() - start, task="interpolate",
                   strategy=strategy, w_r=w_r, k=k, every=every, known_indices=indices,
                   window=window, sampler=sampler, steps=num_inference_steps,
                   guidance_weight=guidance_weight)


def super_resolve(
    pipe: VideoDiffusionPipeline,
    lowres: Video,
    strategy: str = "reconstruction",
    w_r: float | None = None,
    mode: str = "area",
    prompt: str | Sequence[str] = "",
    num_inference_steps: int = 32,
    guidance_weight: float = DEFAULT_GUIDANCE_WEIGHT,
    sampler: str = "ancestral",
    generator: torch.Generator | None = None,
    callback: ProgressCallback | None = None,
    window: int | None = None,
    **sampler_kwargs,
) -> VideoOutput:
    """Spatial super-resolution of a low-res clip (e.g. 16x16 or 8x8) to the model's size.

    x^a = D(x) for the downsampler D of `mode` ("area": f x f block means; "bilinear").
    "reconstruction" is eq. 8: x~ = x_hat - (w_r alpha_t / 2) grad_z ||x^a - D(x_hat(z_t))||^2,
    with w_r defaulting to f^2 (exact in the low-noise limit for area D, see `guidance.py`);
    "lowpass" replaces the D-content of z_s and x_hat (exact: D(output) = x^a before clipping).
    Clips longer than the window are split into near-equal windows, each sampled on its own
    (info["block_starts"] marks where each begins).
    """
    y = _as_video(lowres, pipe.config.channels, "lowres")  # (B, C, T, h, w)
    size = pipe.config.image_size
    h, w = y.shape[-2:]
    if h != w or h >= size or size % h:
        raise ValueError(
            f"lowres frames must be square and divide the model's {size}x{size} frames by an "
            f"integer factor >= 2 (e.g. {size // 2}x{size // 2}), got {h}x{w}"
        )
    if strategy not in LOWRES_STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {list(LOWRES_STRATEGIES)}")
    window = _window(pipe, window)
    num_frames = y.shape[2]
    check_sampling_args(num_frames, num_inference_steps, guidance_weight, sampler)
    factor = size // h
    w_r = _check_w_r(float(factor**2) if w_r is None else w_r)
    prompts = _prompts(prompt, y.shape[0])
    chunks = np.array_split(np.arange(num_frames), -(-num_frames // window))
    x = torch.zeros(*y.shape[:3], size, size)  # (B, C, T, H, W)
    start = time.perf_counter()
    for j, idx in enumerate(chunks):
        part = y[:, :, idx[0] : idx[-1] + 1]  # (B, C, t, h, w)
        obs = Observation.low_resolution(part, mode=mode)
        z = pipe.initial_noise(y.shape[0], len(idx), generator)  # (B, C, t, H, W)
        x[:, :, idx[0] : idx[-1] + 1] = pipe.sample(
            prompts, z, num_inference_steps, guidance_weight, sampler, generator,
            strategy=make_strategy(strategy, obs, w_r), callback=callback, block=j,
            num_blocks=len(chunks), **sampler_kwargs)
    blocks = [Block(int(c[0]), int(c[-1]) + 1, int(c[0])) for c in chunks]
    return _output(x, blocks, time.perf_counter() - start, task="super_resolve",
                   strategy=strategy, w_r=w_r, mode=mode, factor=factor, window=window,
                   sampler=sampler, steps=num_inference_steps, guidance_weight=guidance_weight)


@dataclass
class Comparison:
    """Replacement vs reconstruction guidance from one seed (the paper's Table 6 / Fig. 4)."""

    replacement: VideoOutput
    reconstruction: VideoOutput
    truth: np.ndarray | None  # (T, H, W, 3) uint8, the true continuation where known
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    batched: bool = False
    seconds: float = 0.0

    @property
    def videos(self) -> dict[str, np.ndarray]:
        """{strategy: frames (T, H, W, 3)} of the first sample of each strategy."""
        return {name: getattr(self, name).frames for name in FRAME_STRATEGIES}


def video_metrics(
    frames: np.ndarray,
    block_starts: Sequence[int],
    input_frames: int,
    truth: Clip | np.ndarray | None = None,
    caption: str = "",
) -> dict[str, float]:
    """The scores `compare` reports for one extended video (T, H, W, 3).

    seam_jump over the block starts; with a truth clip / frames: PSNR of the generated frames
    against the true continuation and (for a Clip) the mean trajectory error (px) and the fraction
    of object-frames missed, over the generated frames; with a caption (or a Clip's): colour and
    shape persistence over the generated frames.
    """
    out = {"seam_jump": seam_jump(frames, block_starts)}
    gen = slice(input_frames, len(frames))
    if truth is not None:
        true_frames = truth.frames if isinstance(truth, Clip) else truth
        if true_frames.shape != frames.shape:
            raise ValueError(f"truth {true_frames.shape} does not match the video {frames.shape}")
        out["psnr_vs_truth"] = psnr(frames[gen], true_frames[gen])
    if isinstance(truth, Clip):
        err = trajectory_error(frames[gen], truth.positions[gen], truth.scene)
        out["trajectory_error_px"] = float(np.nanmean(err)) if np.isfinite(err).any() else np.nan
        out["missing_frames"] = float(np.isnan(err).mean())
        caption = caption or truth.caption
    if caption:
        kept = persistence(frames, caption, start=input_frames)
        out["colour_persistence"], out["shape_persistence"] = kept["colour"], kept["shape"]
    return out


def compare(
    pipe: VideoDiffusionPipeline,
    video: Video,
    num_frames: int,
    seed: int = 0,
    prompt: str = "",
    w_r: float = DEFAULT_W_R,
    k: int = DEFAULT_K,
    num_inference_steps: int = 32,
    guidance_weight: float = DEFAULT_GUIDANCE_WEIGHT,
    sampler: str = "ancestral",
    callback: ProgressCallback | None = None,
    window: int | None = None,
    truth: Clip | np.ndarray | None = None,
    batched: bool = False,
    **sampler_kwargs,
) -> Comparison:
    """Extend one clip with the replacement method and with reconstruction guidance (eq. 7).

    Back to back (the default): each run gets torch.Generator().manual_seed(seed), so both see
    the same noise and differ only by the guidance term. With batched=True both run as one batch
    of 2 through `PerSampleGuidance` (w_r = 0 and w_r): one sampler call per block, but the
    replacement sample then also pays the backward pass and gets different noise; on 2 CPU cores
    it was slower (bench/bench_extend.py, docs/performance.md). `truth` (a world Clip or true
    frames, at least num_frames of them; the first num_frames are used) adds the scores against
    the true continuation.
    """
    x0 = _as_video(video, pipe.config.channels)  # (1, C, T, H, W)
    if x0.shape[0] != 1:
        raise ValueError(f"compare takes one video, got a batch of {x0.shape[0]}")
    window = _window(pipe, window)
    k = _check_k(k, window)
    truth = _first_frames(truth, num_frames)
    args = dict(num_inference_steps=num_inference_steps, guidance_weight=guidance_weight,
                sampler=sampler, window=window, **sampler_kwargs)
    start = time.perf_counter()
    if batched:
        outputs = _compare_batched(pipe, x0, num_frames, seed, prompt, w_r, k, callback, **args)
    else:
        n = len(plan_blocks([i < x0.shape[2] for i in range(num_frames)], window, k))
        outputs = {}
        for i, name in enumerate(FRAME_STRATEGIES):
            shifted = _shift_progress(callback, i * n, 2 * n)
            outputs[name] = extend(pipe, x0, num_frames, prompt, name, w_r, k,
                                   generator=torch.Generator().manual_seed(seed),
                                   callback=shifted, **args)
    seconds = time.perf_counter() - start
    true_frames = truth.frames if isinstance(truth, Clip) else truth
    metrics = {
        name: video_metrics(out.frames, out.info["block_starts"], x0.shape[2], truth, prompt)
        for name, out in outputs.items()
    }
    return Comparison(outputs["replacement"], outputs["reconstruction"], true_frames, metrics,
                      batched, seconds)


def _first_frames(truth: Clip | np.ndarray | None, n: int) -> Clip | np.ndarray | None:
    """The first n frames of a truth clip / frames (T, H, W, 3), or a ValueError if T < n."""
    if truth is None:
        return None
    frames = truth.frames if isinstance(truth, Clip) else np.asarray(truth)
    if len(frames) < n:
        raise ValueError(f"the true video has {len(frames)} frames, fewer than num_frames = {n}")
    if isinstance(truth, Clip):
        return Clip(truth.frames[:n], truth.caption, truth.positions[:n], truth.scene)
    return frames[:n]


def _shift_progress(callback: ProgressCallback | None, offset: int,
                    total: int) -> ProgressCallback | None:
    """A callback that reports block + offset of `total` blocks (two runs on one bar)."""
    if callback is None:
        return None

    def shifted(step: PipelineStep) -> None:
        callback(replace(step, block=step.block + offset, num_blocks=total))

    return shifted


def _compare_batched(
    pipe: VideoDiffusionPipeline,
    x0: torch.Tensor,
    num_frames: int,
    seed: int,
    prompt: str,
    w_r: float,
    k: int,
    callback: ProgressCallback | None,
    num_inference_steps: int,
    guidance_weight: float,
    sampler: str,
    window: int,
    **sampler_kwargs,
) -> dict[str, VideoOutput]:
    """Both strategies as one batch of 2 (replacement = w_r 0) through `PerSampleGuidance`."""
    check_sampling_args(num_frames, num_inference_steps, guidance_weight, sampler)
    t0 = x0.shape[2]
    if num_frames < t0:
        raise ValueError(f"num_frames ({num_frames}) is shorter than the input video ({t0} frames)")
    weights = torch.tensor([0.0, _check_w_r(w_r)])  # (2,)
    x = torch.zeros(2, *x0.shape[1:2], num_frames, *x0.shape[3:])  # (2, C, N, H, W)
    x[:, :, :t0] = x0
    start = time.perf_counter()
    x, blocks = _fill(pipe, x, [i < t0 for i in range(num_frames)], [prompt, prompt],
                      lambda obs: PerSampleGuidance(obs, weights), k, window, num_inference_steps,
                      guidance_weight, sampler, torch.Generator().manual_seed(seed), callback,
                      **sampler_kwargs)
    seconds = time.perf_counter() - start
    common = dict(prompts=[prompt], w_r=w_r, k=k, window=window, sampler=sampler,
                  steps=num_inference_steps, guidance_weight=guidance_weight, input_frames=t0,
                  batched=True)
    return {
        name: _output(x[i : i + 1], blocks, seconds, task="extend", strategy=name, **common)
        for i, name in enumerate(FRAME_STRATEGIES)
    }
