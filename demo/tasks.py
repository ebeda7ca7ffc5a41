"""The app's tasks. The Extend & compare tab's four, each two methods from one seed:
extension (replacement vs reconstruction guidance, eq. 7), super-resolution (low-pass
replacement vs eq. 8), interpolation (replacement vs eq. 7) and a long video
(block-autoregressive extension vs the keyframe cascade, Fig. 2); the guidance field of one
window (`guidance_field_task`); and the Generate tab's guidance sweep (`guidance_sweep_task`).

Each comparison turns a source clip into the inputs of `vdm_core.compare.compare_strategies`
(or `compare_long_video`), which samples and scores; the result comes back with what the model
was given, as frames to play. No Gradio here.
"""

import time
from dataclasses import dataclass, replace
from itertools import accumulate

import numpy as np

from demo.sources import SourceClip
from demo.validation import InputError
from vdm_core.compare import Comparison, compare_long_video, compare_strategies
from vdm_core.conditional import (
    KEYFRAME_SKIP,
    as_video,
    keyframe_plan,
    plan_blocks,
    shift_progress,
)
from vdm_core.data import Clip
from vdm_core.detect import caption_match, caption_objects
from vdm_core.guidance import Observation
from vdm_core.guidance_field import GuidanceField, guidance_field
from vdm_core.metrics import downsample
from vdm_core.outputs import PipelineStep, ProgressCallback, SamplingConfig

SWEEP_WEIGHTS = (0.0, 1.0, 2.0, 4.0)
FIELD_TASKS = ("extend", "super_resolve")


@dataclass
class TaskResult:
    """A comparison and what the model was given, as frames to play."""

    comparison: Comparison
    given_preview: np.ndarray  # (T, H, W, 3) uint8


def _truth(source: SourceClip, num_frames: int) -> Clip | np.ndarray | None:
    """The ground truth of the first num_frames frames, where the source holds it."""
    if source.clip is not None:
        return source.clip
    return source.frames[:num_frames] if source.num_frames >= num_frames else None


def _first_k(source: SourceClip, k: int) -> np.ndarray:
    """The first k frames of the source, or an InputError when it is shorter."""
    if source.num_frames < k:
        raise InputError(f"{source.label} has {source.num_frames} frames, fewer than the "
                         f"k = {k} conditioning frames")
    return source.frames[:k]


def extend_task(pipe, source: SourceClip, num_frames: int, prompt: str, config: SamplingConfig,
                seed: int) -> TaskResult:
    """Extend the first config.k frames of the source to num_frames frames."""
    given = _first_k(source, config.k)
    comparison = compare_strategies(pipe, "extend", {"video": given, "num_frames": num_frames},
                                    truth=_truth(source, num_frames), prompt=prompt,
                                    config=config, seed=seed)
    return TaskResult(comparison, given)


def _downsampled(frames: np.ndarray, factor: int) -> np.ndarray:
    """uint8 frames (T, H, H, 3) area-downsampled by factor: (T, H / f, H / f, 3)."""
    size = frames.shape[1]
    if size % factor or size // factor < 2:
        raise InputError(f"cannot downsample {size}x{size} frames by a factor of {factor}")
    return np.round(downsample(frames, size // factor) * 255.0).astype(np.uint8)


def super_resolve_task(pipe, source: SourceClip, num_frames: int, factor: int, prompt: str,
                       config: SamplingConfig, seed: int) -> TaskResult:
    """Super-resolve the source, area-downsampled by factor; the source is the ground truth."""
    truth = source.frames[:num_frames]
    low = _downsampled(truth, factor)  # (T, h, h, 3)
    comparison = compare_strategies(pipe, "super_resolve", {"lowres": low, "mode": "area"},
                                    truth=source.clip or truth, prompt=prompt, config=config,
                                    seed=seed, lowres=low)
    return TaskResult(comparison, low)


def interpolate_task(pipe, source: SourceClip, num_frames: int, every: int, prompt: str,
                     config: SamplingConfig, seed: int) -> TaskResult:
    """Keep every `every`-th frame of the source and fill the frames between."""
    available = min(source.num_frames, num_frames)
    count = (available - 1) // every + 1
    if count < 2:
        raise InputError(f"interpolation needs two given frames: {source.label} would need at "
                         f"least {every + 1} frames for every = {every}, it has {available}")
    span = (count - 1) * every + 1
    sparse = source.frames[:span:every]
    comparison = compare_strategies(
        pipe, "interpolate", {"video_sparse": sparse, "every": every, "num_frames": span},
        truth=source.clip or source.frames[:span], prompt=prompt, config=config, seed=seed)
    held = np.repeat(sparse, every, axis=0)[:span]  # each given frame held until the next
    return TaskResult(comparison, held)


@dataclass(frozen=True)
class Stage:
    """One sampling stage of the long-video comparison: its method, the cascade's stage name
    ("" for autoregressive extension) and how many windows it samples."""

    method: str
    stage: str
    blocks: int

    @property
    def label(self) -> str:
        """The progress label: autoregressive, cascade · keyframes, cascade · interpolation."""
        return f"{self.method} · {self.stage}" if self.stage else self.method


def long_video_stages(num_frames: int, given: int, window: int, k: int) -> list[Stage]:
    """The stages of `compare_long_video` extending `given` frames to num_frames, in the order
    sampled, with the windows of each (the same plans as `conditional.extend` and `cascade`)."""
    _, known_keys = keyframe_plan(num_frames, given)
    filled = [i < given or i % KEYFRAME_SKIP == 0 for i in range(num_frames)]
    extended = [i < given for i in range(num_frames)]
    return [Stage("autoregressive", "", len(plan_blocks(extended, window, k))),
            Stage("cascade", "keyframes", len(plan_blocks(known_keys, window, k))),
            Stage("cascade", "interpolation", len(plan_blocks(filled, window, k)))]


def long_video_progress(callback: ProgressCallback | None,
                        stages: list[Stage]) -> ProgressCallback | None:
    """callback fed with the steps of `compare_long_video` on one block counter over all
    stages (so the bar only moves forward), each step's stage set to its Stage.label.

    compare_long_video runs autoregressive extension, then the cascade (whose steps carry
    their stage), on a block counter shifted per run (`shift_progress`); this undoes the
    shift and adds the windows of the stages before."""
    if callback is None:
        return None
    total = max(1, sum(s.blocks for s in stages))
    offsets = dict(zip([s.stage for s in stages],
                       accumulate((s.blocks for s in stages), initial=0), strict=False))
    labels = {s.stage: s.label for s in stages}

    def relabel(step: PipelineStep) -> None:
        run = 1 if step.stage else 0  # only the cascade names its stages
        per_run = max(1, step.num_blocks // 2)
        block = step.block - run * per_run
        if step.stage in offsets:
            block, blocks = min(max(offsets[step.stage] + block, 0), total - 1), total
        else:  # a stage not in the plan: its own counter
            blocks = per_run
        label = labels.get(step.stage, f"cascade · {step.stage}")
        callback(replace(step, block=block, num_blocks=blocks, stage=label))

    return relabel


def long_video_task(pipe, source: SourceClip, num_frames: int, prompt: str,
                    config: SamplingConfig, seed: int) -> TaskResult:
    """Extend the first config.k frames of the source to num_frames frames twice from one seed:
    block by block, and by the keyframe cascade; both with reconstruction guidance (eq. 7)."""
    given = _first_k(source, config.k)
    window = config.window or pipe.config.num_frames
    stages = long_video_stages(num_frames, len(given), window, config.k)
    run = replace(config, callback=long_video_progress(config.callback, stages))
    comparison = compare_long_video(pipe, given, num_frames, truth=_truth(source, num_frames),
                                    prompt=prompt, config=run, seed=seed)
    return TaskResult(comparison, given)


@dataclass
class FieldResult:
    """The guidance field of one window, what the model was given (uint8 (n, h, w, 3)) and the
    window positions of those frames."""

    field: GuidanceField
    given: np.ndarray
    given_at: list[int]


def guidance_field_task(pipe, source: SourceClip, task: str, prompt: str, config: SamplingConfig,
                        factor: int = 2) -> FieldResult:
    """One window of reconstruction guidance on the source, with 4 snapshots of its field.

    "extend": the first config.k frames known in a window of the model's length (eq. 7);
    "super_resolve": the first window of the source area-downsampled by factor (eq. 8).
    """
    window = pipe.config.num_frames
    channels = pipe.config.channels
    if task == "extend":
        k = config.k
        given = _first_k(source, k)
        obs = Observation.known_frames(list(range(k)), as_video(given, channels))
        return FieldResult(guidance_field(pipe, obs, prompt, config, num_frames=window), given,
                           list(range(k)))
    if task == "super_resolve":
        given = _downsampled(source.frames[:window], factor)
        obs = Observation.low_resolution(as_video(given, channels), mode="area")
        return FieldResult(guidance_field(pipe, obs, prompt, config), given,
                           list(range(len(given))))
    raise InputError(f"the guidance field is shown for {' and '.join(FIELD_TASKS)}, got {task!r}")


@dataclass
class SweepResult:
    """The same prompt and seed sampled at each guidance weight, with the detector's verdicts
    (None where the prompt names no coloured shape of the world)."""

    weights: tuple[float, ...]
    videos: list[np.ndarray]
    matches: list[bool | None]
    seconds: float


def guidance_sweep_task(pipe, prompt: str, config: SamplingConfig, seed: int,
                        weights: tuple[float, ...] = SWEEP_WEIGHTS) -> SweepResult:
    """Sample one window of `prompt` at every w in weights from the same seed (so the same
    initial noise and the same later draws): the paper's Table 5 / Fig. 3 as something to look
    at. Progress reports run j as block j of len(weights)."""
    start = time.perf_counter()
    checkable = bool(caption_objects(prompt))
    videos, matches = [], []
    for j, w in enumerate(weights):
        run = replace(config, w=float(w),
                      callback=shift_progress(config.callback, j, len(weights))).seeded(seed)
        frames = pipe(prompt, config=run).frames
        videos.append(frames)
        matches.append(caption_match(frames, prompt) if checkable else None)
    return SweepResult(tuple(weights), videos, matches, time.perf_counter() - start)
