"""The Extend & compare tab's three tasks, each two conditioning strategies from one seed:
extension (replacement vs reconstruction guidance, eq. 7), super-resolution (low-pass
replacement vs eq. 8) and interpolation (replacement vs eq. 7).

Each task turns a source clip into the inputs of `vdm_core.compare.compare_strategies`, which
samples and scores; the result comes back with what the model was given, as frames to play.
No Gradio here.
"""

from dataclasses import dataclass

import numpy as np

from demo.sources import SourceClip
from demo.validation import InputError
from vdm_core.compare import Comparison, compare_strategies
from vdm_core.data import Clip
from vdm_core.metrics import downsample
from vdm_core.outputs import SamplingConfig


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


def super_resolve_task(pipe, source: SourceClip, num_frames: int, factor: int, prompt: str,
                       config: SamplingConfig, seed: int) -> TaskResult:
    """Super-resolve the source, area-downsampled by factor; the source is the ground truth."""
    truth = source.frames[:num_frames]
    size = truth.shape[1]
    if size % factor or size // factor < 2:
        raise InputError(f"cannot downsample {size}x{size} frames by a factor of {factor}")
    low = np.round(downsample(truth, size // factor) * 255.0).astype(np.uint8)  # (T, h, h, 3)
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
