"""Conditional sampling from one unconditional model (paper sec. 3.1): long videos, prediction,
interpolation and super-resolution.

The model makes a fixed window of frames. Everything longer or finer is "sample x^b given x^a"
with x^a an `Observation` and a conditioning strategy from `guidance.py`: "replacement" or
"reconstruction" (eq. 7) for known frames, "lowpass" or "reconstruction" (eq. 8) for a
low-resolution view. Every task takes a `SamplingConfig`; None means the task's row of
`defaults.TASK_DEFAULTS`. Evidence for the defaults lives in docs/results.md.

The tasks need of the pipeline only its `Sampler` protocol: the model config, initial noise and
one sampler call; they never import the pipeline.
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import torch

from vdm_core.defaults import default_config, lowres_w_r
from vdm_core.guidance import Observation, make_strategy
from vdm_core.outputs import (
    MAX_FRAMES,
    PipelineStep,
    ProgressCallback,
    SamplingConfig,
    VideoOutput,
    check_sampling_args,
)
from vdm_core.samplers import Strategy, Unguided
from vdm_core.video_io import frames_to_tensor, tensor_to_frames

FRAME_STRATEGIES = ("replacement", "reconstruction")
LOWRES_STRATEGIES = ("reconstruction", "lowpass")

Video = np.ndarray | torch.Tensor
StrategyFactory = Callable[[Observation], Strategy]


class Sampler(Protocol):
    """What the tasks use of `VideoDiffusionPipeline`."""

    @property
    def config(self): ...  # the U-Net's config: num_frames, channels, image_size

    def initial_noise(self, batch: int, num_frames: int,
                      generator: torch.Generator | None) -> torch.Tensor: ...

    def sample(self, prompts: list[str], z: torch.Tensor, config: SamplingConfig,
               strategy: Strategy | None = None, block: int = 0,
               num_blocks: int = 1) -> torch.Tensor: ...


@dataclass(frozen=True)
class Block:
    """One sampler call: the window of output frames [start, stop); frames before `first_new`
    in it are already made (they condition the block), and so may be some after it."""

    start: int
    stop: int
    first_new: int


def check_k(k: int, window: int) -> int:
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
    k = check_k(k, window)
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


def as_video(video: Video, channels: int, name: str = "video") -> torch.Tensor:
    """uint8 frames (T, H, W, 3), or float videos (C, T, H, W) / (B, C, T, H, W) in [-1, 1],
    as a float CPU batch (B, C, T, H, W)."""
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


def _window(pipe: Sampler, config: SamplingConfig) -> int:
    """The frames per sampler call: the model's training window unless the config sets one."""
    window = int(pipe.config.num_frames if config.window is None else config.window)
    if not 2 <= window <= MAX_FRAMES:
        raise ValueError(f"window must be between 2 and {MAX_FRAMES}, got {window}")
    return window


def frame_strategy(name: str, w_r: float) -> StrategyFactory:
    """A factory Observation -> Strategy for known frames: "replacement" or "reconstruction"."""
    if name not in FRAME_STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose from {list(FRAME_STRATEGIES)}")
    return lambda obs: make_strategy(name, obs, w_r)


def _fill(pipe: Sampler, x: torch.Tensor, known: Sequence[bool], prompts: list[str],
          strategy: StrategyFactory, config: SamplingConfig,
          window: int) -> tuple[torch.Tensor, list[Block]]:
    """Sample every frame of x (B, C, N, H, W) not marked `known`, block by block.

    Within a block, the frames already made (given or sampled by an earlier block) are the
    observation x^a, Observation.known_frames(indices relative to the window, their pixels), and
    the strategy built from it conditions the sampler; a block with nothing known is sampled
    without it. With config.prompt_windows = "first", blocks after the first ignore the prompt.
    Made frames are never changed.
    """
    blocks = plan_blocks(known, window, config.k)
    made = [bool(m) for m in known]
    x = x.clone()
    for j, block in enumerate(blocks):
        frames = range(block.start, block.stop)
        given = [i for i in frames if made[i]]
        new = [i for i in frames if not made[i]]
        cond: Strategy = Unguided()
        if given:
            rel = [i - block.start for i in given]
            cond = strategy(Observation.known_frames(rel, x[:, :, given].to(pipe.device)))
        z = pipe.initial_noise(x.shape[0], len(frames), config.generator)  # (B, C, L, H, W)
        texts, block_config = prompts, config
        if j > 0 and config.prompt_windows == "first":
            texts, block_config = [""] * len(prompts), replace(config, w=0.0)
        sample = pipe.sample(texts, z, block_config, cond, j, len(blocks))  # (B, C, L, H, W)
        x[:, :, new] = sample[:, :, [i - block.start for i in new]].cpu()
        for i in new:
            made[i] = True
    return x, blocks


def _output(x: torch.Tensor, blocks: list[Block], seconds: float, config: SamplingConfig,
            **info) -> VideoOutput:
    """A VideoOutput of x (B, C, T, H, W) with the plan, the settings and timing in its info."""
    info.update(block_starts=[b.first_new for b in blocks],
                blocks=[(b.start, b.stop) for b in blocks], seconds=seconds,
                sampler=config.sampler, steps=config.steps, guidance_weight=config.w)
    return VideoOutput([tensor_to_frames(v) for v in x], x, info)


def _frames_config(task: str, config: SamplingConfig | None, window: int) -> SamplingConfig:
    """The task's config with w_r and k resolved and checked for known-frame conditioning."""
    config = default_config(task) if config is None else config
    w_r = default_config(task).w_r if config.w_r is None else config.w_r
    return replace(config, w_r=w_r, k=check_k(config.k, window))


def extend(pipe: Sampler, video: Video, num_frames: int, prompt: str | Sequence[str] = "",
           strategy: str = "reconstruction", config: SamplingConfig | None = None) -> VideoOutput:
    """Extend a clip to `num_frames` frames, block-autoregressively (sec. 3.1, eq. 7).

    video: uint8 frames (T, H, W, 3) or a float video (C, T, H, W) / batch (B, C, T, H, W) in
    [-1, 1], at the model's frame size. Each block conditions on the last config.k frames already
    made (x^a) and generates the rest of the window (x^b); the output's first T frames are the
    input, unchanged. `strategy` is "reconstruction" (eq. 7 with weight config.w_r, plus
    replacement of z^a) or "replacement". info["block_starts"] holds the first new frame of each
    block, info["given"] the input frames.
    """
    x0 = as_video(video, pipe.config.channels)  # (B, C, T, H, W)
    _check_size(x0, pipe.config.image_size)
    config = config or default_config("extend")
    window = _window(pipe, config)
    check_sampling_args(num_frames, config.steps, config.w, config.sampler)
    t0 = x0.shape[2]
    if num_frames < t0:
        raise ValueError(f"num_frames ({num_frames}) is shorter than the input video ({t0} frames)")
    config = _frames_config("extend", config, window)
    factory = frame_strategy(strategy, config.w_r)
    prompts = _prompts(prompt, x0.shape[0])
    x = torch.zeros(*x0.shape[:2], num_frames, *x0.shape[3:])  # (B, C, N, H, W)
    x[:, :, :t0] = x0
    start = time.perf_counter()
    x, blocks = _fill(pipe, x, [i < t0 for i in range(num_frames)], prompts, factory, config,
                      window)
    return _output(x, blocks, time.perf_counter() - start, config, task="extend",
                   prompts=prompts, strategy=strategy, w_r=config.w_r, k=config.k,
                   window=window, input_frames=t0, given=list(range(t0)))


def generate(pipe: Sampler, prompt: str | Sequence[str], num_frames: int,
             strategy: str = "reconstruction", config: SamplingConfig | None = None) -> VideoOutput:
    """Text-to-video of any length: sample the first window, then extend it (Table 6 setup)."""
    config = config or default_config("generate")
    window = _window(pipe, config)
    check_sampling_args(num_frames, config.steps, config.w, config.sampler)
    config = _frames_config("generate", config, window)
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    size = pipe.config.image_size
    x = torch.zeros(len(prompts), pipe.config.channels, num_frames, size, size)  # (B, C, N, H, W)
    start = time.perf_counter()
    x, blocks = _fill(pipe, x, [False] * num_frames, prompts,
                      frame_strategy(strategy, config.w_r), config, window)
    return _output(x, blocks, time.perf_counter() - start, config, task="generate",
                   prompts=prompts, strategy=strategy, w_r=config.w_r, k=config.k,
                   window=window, given=[])


def predict(pipe: Sampler, video: Video, k: int, num_frames: int = 16,
            prompt: str | Sequence[str] = "", strategy: str = "reconstruction",
            config: SamplingConfig | None = None) -> VideoOutput:
    """Video prediction: keep the first k frames of `video` and generate up to `num_frames`.

    The paper's BAIR (1 frame -> 16) and Kinetics (5 -> 16) tasks with reconstruction guidance.
    Blocks after the first condition on the last max(k, config.k) frames.
    """
    x = as_video(video, pipe.config.channels)  # (B, C, T, H, W)
    config = config or default_config("predict")
    window = _window(pipe, config)
    k = check_k(k, window)
    if x.shape[2] < k:
        raise ValueError(f"the video has {x.shape[2]} frames, fewer than k = {k}")
    context = replace(config, k=min(max(k, config.k), window - 1))
    out = extend(pipe, x[:, :, :k], num_frames, prompt, strategy, context)
    out.info.update(task="predict", observed_frames=k)
    return out


def interpolate(pipe: Sampler, video_sparse: Video, every: int, num_frames: int | None = None,
                prompt: str | Sequence[str] = "", strategy: str = "reconstruction",
                config: SamplingConfig | None = None) -> VideoOutput:
    """Temporal interpolation: S given frames at 0, m, 2m, ... (m = `every`) -> all frames.

    x^a = the sparse frames, x^b = the frames between (sec. 3.1). Output length defaults to
    (S - 1) m + 1; a longer `num_frames` also extends past the last given frame. Windows end on a
    given frame, so the frames between two given frames are made in one block with both of them
    and up to config.k earlier frames as context. The given frames are kept exactly.
    """
    sparse = as_video(video_sparse, pipe.config.channels, "video_sparse")  # (B, C, S, H, W)
    _check_size(sparse, pipe.config.image_size, "video_sparse")
    config = config or default_config("interpolate")
    window = _window(pipe, config)
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
    check_sampling_args(num_frames, config.steps, config.w, config.sampler)
    config = _frames_config("interpolate", config, window)
    indices = [i * every for i in range(s)]
    x = torch.zeros(*sparse.shape[:2], num_frames, *sparse.shape[3:])  # (B, C, N, H, W)
    x[:, :, indices] = sparse
    known = [i % every == 0 and i < span for i in range(num_frames)]
    start = time.perf_counter()
    x, blocks = _fill(pipe, x, known, _prompts(prompt, x.shape[0]),
                      frame_strategy(strategy, config.w_r), config, window)
    return _output(x, blocks, time.perf_counter() - start, config, task="interpolate",
                   strategy=strategy, w_r=config.w_r, k=config.k, every=every,
                   known_indices=indices, given=indices, window=window)


def super_resolve(pipe: Sampler, lowres: Video, strategy: str = "reconstruction",
                  mode: str = "area", prompt: str | Sequence[str] = "",
                  config: SamplingConfig | None = None) -> VideoOutput:
    """Spatial super-resolution of a low-res clip (e.g. 16x16 or 8x8) to the model's size.

    x^a = D(x) for the downsampler D of `mode` ("area": f x f block means; "bilinear").
    "reconstruction" is eq. 8: x~ = x_hat - (w_r alpha_t / 2) grad_z ||x^a - D(x_hat(z_t))||^2,
    with config.w_r = None meaning `defaults.lowres_w_r(f)` = 4 f^2 (the oracle's exact low-noise
    value is f^2, `guidance.py`; the trained model wants more, docs/tuning.md);
    "lowpass" replaces the D-content of z_s and x_hat (exact: D(output) = x^a before clipping).
    Clips longer than the window are split into near-equal windows, each sampled on its own
    (info["block_starts"] marks where each begins).
    """
    y = as_video(lowres, pipe.config.channels, "lowres")  # (B, C, T, h, w)
    size = pipe.config.image_size
    h, w = y.shape[-2:]
    if h != w or h >= size or size % h:
        raise ValueError(
            f"lowres frames must be square and divide the model's {size}x{size} frames by an "
            f"integer factor >= 2 (e.g. {size // 2}x{size // 2}), got {h}x{w}"
        )
    if strategy not in LOWRES_STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {list(LOWRES_STRATEGIES)}")
    config = config or default_config("super_resolve")
    window = _window(pipe, config)
    num_frames = y.shape[2]
    check_sampling_args(num_frames, config.steps, config.w, config.sampler)
    factor = size // h
    config = replace(config, w_r=lowres_w_r(factor) if config.w_r is None else config.w_r)
    prompts = _prompts(prompt, y.shape[0])
    chunks = np.array_split(np.arange(num_frames), -(-num_frames // window))
    x = torch.zeros(*y.shape[:3], size, size)  # (B, C, T, H, W)
    start = time.perf_counter()
    for j, idx in enumerate(chunks):
        part = y[:, :, idx[0] : idx[-1] + 1].to(pipe.device)  # (B, C, t, h, w)
        obs = Observation.low_resolution(part, mode=mode)
        z = pipe.initial_noise(y.shape[0], len(idx), config.generator)  # (B, C, t, H, W)
        x[:, :, idx[0] : idx[-1] + 1] = pipe.sample(
            prompts, z, config, make_strategy(strategy, obs, config.w_r), j, len(chunks)).cpu()
    blocks = [Block(int(c[0]), int(c[-1]) + 1, int(c[0])) for c in chunks]
    return _output(x, blocks, time.perf_counter() - start, config, task="super_resolve",
                   strategy=strategy, w_r=config.w_r, mode=mode, factor=factor, window=window,
                   given=[])


KEYFRAME_SKIP = 4  # the paper's keyframe model samples every 4th frame (Fig. 2)
METHODS = ("autoregressive", "cascade")


def keyframe_plan(num_frames: int, given: int, skip: int = KEYFRAME_SKIP) -> tuple[list[int],
                                                                                    list[bool]]:
    """The keyframes of a cascade over num_frames frames whose first `given` are known: frames
    0, skip, 2 skip, ... (the last one at most num_frames - 1), and which of them are known."""
    if skip < 2:
        raise ValueError(f"the keyframe skip must be at least 2, got {skip}")
    keyframes = list(range(0, num_frames, skip))
    return keyframes, [i < given for i in keyframes]


def staged(config: SamplingConfig, stage: str, frameskip: int) -> SamplingConfig:
    """config for one stage of the cascade: its frameskip, and progress labelled with `stage`."""
    callback = config.callback
    report = None if callback is None else (lambda step: callback(replace(step, stage=stage)))
    return replace(config, frameskip=frameskip, callback=report)


def cascade(pipe: Sampler, prompt: str | Sequence[str], num_frames: int,
            video: Video | None = None, strategy: str = "reconstruction",
            config: SamplingConfig | None = None,
            keyframe_pipe: Sampler | None = None) -> VideoOutput:
    """A long video the paper's way (Fig. 2): keyframes every KEYFRAME_SKIP frames from a
    frameskip-4 model, then the frames between them by conditional sampling at frameskip 1.

    Stage 1 samples the keyframes as one video at frameskip 4 (16 keyframes span 61 frames;
    longer videos extend the keyframe sequence block by block), conditioned on the given
    frames that fall on keyframes. Stage 2 fills every other frame with `strategy` (eq. 7 or
    replacement): each window ends on a keyframe and is conditioned on the keyframes inside it
    and on the frames already filled before it. `video` (optional) fixes the first frames.
    info["keyframes"] lists the keyframe indices; info["block_starts"] the interpolation
    windows' first new frames and the keyframe windows' (these also in
    info["keyframe_block_starts"]).

    `keyframe_pipe` samples the keyframes, as in the paper, where a frameskip-4 model draws
    them and a frameskip-1 model (`pipe`) fills the frames between. It defaults to the model
    attached to `pipe` (`pipe.keyframe_pipe`, see `with_keyframe_model`); when there is none,
    `pipe` does both (it needs the frameskip input for the keyframes to move at the right speed).
    """
    config = config or default_config("cascade")
    keyframe_pipe = keyframe_pipe or getattr(pipe, "keyframe_pipe", None) or pipe
    window = _window(pipe, config)
    if (keyframe_pipe.config.channels, keyframe_pipe.config.image_size) != (
            pipe.config.channels, pipe.config.image_size):
        raise ValueError("the keyframe model must make frames of the interpolation model's size "
                         f"({pipe.config.image_size} px, {pipe.config.channels} channels)")
    check_sampling_args(num_frames, config.steps, config.w, config.sampler)
    config = _frames_config("cascade", config, window)
    factory = frame_strategy(strategy, config.w_r)
    channels, size = pipe.config.channels, pipe.config.image_size
    if video is None:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        x0 = torch.zeros(len(prompts), channels, 0, size, size)  # (B, C, 0, H, W)
    else:
        x0 = as_video(video, channels)  # (B, C, T, H, W)
        _check_size(x0, size)
        prompts = _prompts(prompt, x0.shape[0])
    t0 = x0.shape[2]
    if num_frames <= t0:
        raise ValueError(f"num_frames ({num_frames}) must be longer than the input video "
                         f"({t0} frames)")
    keyframes, known_keys = keyframe_plan(num_frames, t0)
    x = torch.zeros(len(prompts), channels, num_frames, size, size)  # (B, C, N, H, W)
    x[:, :, :t0] = x0
    start = time.perf_counter()
    keys, key_blocks = _fill(keyframe_pipe, x[:, :, keyframes], known_keys, prompts, factory,
                             staged(config, "keyframes", KEYFRAME_SKIP),
                             _window(keyframe_pipe, config))
    x[:, :, keyframes] = keys
    known = [i < t0 or i % KEYFRAME_SKIP == 0 for i in range(num_frames)]
    x, blocks = _fill(pipe, x, known, prompts, factory, staged(config, "interpolation", 1),
                      window)
    key_starts = [keyframes[b.first_new] for b in key_blocks]
    out = _output(x, blocks, time.perf_counter() - start, config, task="cascade",
                  prompts=prompts, strategy=strategy, w_r=config.w_r, k=config.k, window=window,
                  keyframes=keyframes, given=list(range(t0)), keyframe_block_starts=key_starts,
                  input_frames=t0)
    out.info["block_starts"] = sorted({*out.info["block_starts"], *key_starts})
    return out


def shift_progress(callback: ProgressCallback | None, run: int,
                   runs: int) -> ProgressCallback | None:
    """A callback for run `run` of `runs` back-to-back runs that share one block counter."""
    if callback is None:
        return None

    def shifted(step: PipelineStep) -> None:
        callback(replace(step, block=run * step.num_blocks + step.block,
                         num_blocks=runs * step.num_blocks))

    return shifted


TASKS = {"generate": generate, "extend": extend, "predict": predict, "interpolate": interpolate,
         "super_resolve": super_resolve, "cascade": cascade}
