"""The app's tasks. The Extend & compare tab's three, each two conditioning strategies from one
seed: extension (replacement vs reconstruction guidance, eq. 7), super-resolution (low-pass
replacement vs eq. 8) and interpolation (replacement vs eq. 7); the guidance field of one
window (`guidance_field_task`); and the Generate tab's guidance sweep (`guidance_sweep_task`).

Each comparison turns a source clip into the inputs of `vdm_core.compare.compare_strategies`,
which samples and scores; the result comes back with what the model was given, as frames to
play. No Gradio here.
"""

import time
from dataclasses import dataclass, replace

import numpy as np

from demo.sources import SourceClip
from demo.validation import InputError
from vdm_core.compare import Comparison, compare_strategies
from vdm_core.conditional import as_video, shift_progress
from vdm_core.data import Clip
from vdm_core.detect import caption_match, caption_objects
from vdm_core.guidance import Observation
from vdm_core.guidance_field import GuidanceField, guidance_field
from vdm_core.metrics import downsample
from vdm_core.outputs import SamplingConfig

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


def extend_task(pipe, source: SourceClip, num_frames: int, prompt: str, config: SamplingConfig,
                seed: int) -> TaskResult:
    """Extend the first config.k frames of the source to num_frames frames."""
    k = config.k
    if source.num_frames < k:
        raise InputError(f"{source.label} has {source.num_frames} frames, fewer than the "
                         f"k = {k} conditioning frames")
    given = source.frames[:k]
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
        if source.num_frames < k:
            raise InputError(f"{source.label} has {source.num_frames} frames, fewer than the "
                             f"k = {k} conditioning frames")
        given = source.frames[:k]
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
