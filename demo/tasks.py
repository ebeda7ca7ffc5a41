"""The Extend & compare tab's three tasks, each run with two conditioning strategies from one
seed: extension (replacement vs reconstruction guidance, eq. 7), super-resolution (low-pass
replacement vs eq. 8) and interpolation (replacement vs eq. 7).

Each task returns a `TaskResult`: both videos, the ground truth where known, what the model was
given, and per-frame curves and scores from `vdm_core.metrics`. No Gradio here; the sampling
itself is the pipeline's.
"""

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from demo.sources import SourceClip
from demo.validation import InputError, SamplingArgs
from vdm_core.data import Clip
from vdm_core.metrics import downsample, frame_change, lowres_mse, psnr, trajectory_error
from vdm_core.pipeline import PipelineStep, ProgressCallback, VideoDiffusionPipeline

TRAJECTORY_LABEL = "trajectory error (px)"
PIXEL_LABEL = "pixel RMSE vs truth"


@dataclass
class TaskResult:
    """Two strategies' videos (in display order) and everything the tab shows about them."""

    task: str
    videos: dict[str, np.ndarray]  # strategy -> frames (T, H, W, 3) uint8
    given_preview: np.ndarray  # what the model was given, as frames to play
    truth: np.ndarray | None  # (T, H, W, 3) uint8 where known
    given: list[int]  # indices of frames that were given, not generated
    block_starts: list[int]
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    error_label: str = TRAJECTORY_LABEL
    errors: dict[str, np.ndarray] | None = None  # strategy -> (T,) per-frame error
    seconds: float = 0.0

    @property
    def frame_changes(self) -> dict[str, np.ndarray]:
        """Per-frame change (T - 1,) of each video, and of the truth when known."""
        curves = {name: frame_change(frames) for name, frames in self.videos.items()}
        if self.truth is not None:
            curves["truth"] = frame_change(self.truth)
        return curves


def _shifted(callback: ProgressCallback | None, run: int, runs: int) -> ProgressCallback | None:
    """A callback for run `run` of `runs` back-to-back runs sharing one block counter."""
    if callback is None:
        return None

    def report(step: PipelineStep) -> None:
        callback(dataclasses.replace(step, block=run * step.num_blocks + step.block,
                                     num_blocks=runs * step.num_blocks))

    return report


def seeded(seed: int) -> torch.Generator:
    """A fresh CPU generator seeded with seed (every run of a comparison gets its own)."""
    return torch.Generator().manual_seed(int(seed))


def per_frame_errors(videos: dict[str, np.ndarray], truth: np.ndarray,
                     clip: Clip | None) -> tuple[dict[str, np.ndarray], str]:
    """Per-frame error of each video: trajectory error (px) for a world clip, else pixel RMSE."""
    if clip is not None:
        n = len(truth)
        return ({name: trajectory_error(frames, clip.positions[:n], clip.scene)
                 for name, frames in videos.items()}, TRAJECTORY_LABEL)
    target = truth.astype(np.float64) / 255.0
    return ({name: np.sqrt(((frames / 255.0 - target) ** 2).mean(axis=(1, 2, 3)))
             for name, frames in videos.items()}, PIXEL_LABEL)


def _mean(values: np.ndarray) -> float:
    """nan-mean that is nan (not a warning) when nothing is finite."""
    values = np.asarray(values, dtype=float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _truth_scores(frames: np.ndarray, truth: np.ndarray, errors: np.ndarray,
                  generated: Sequence[int], error_label: str) -> dict[str, float]:
    """PSNR against the truth and the mean per-frame error over the generated frames."""
    idx = list(generated)
    key = "trajectory_error_px" if error_label == TRAJECTORY_LABEL else "pixel_rmse"
    return {"psnr_vs_truth": psnr(frames[idx], truth[idx]), key: _mean(errors[idx])}


def extend_task(pipe: VideoDiffusionPipeline, source: SourceClip, num_frames: int, k: int,
                prompt: str, args: SamplingArgs, w_r: float,
                callback: ProgressCallback | None = None) -> TaskResult:
    """Extend the first k frames of the source to num_frames frames with both strategies."""
    if source.num_frames < k:
        raise InputError(f"{source.label} has {source.num_frames} frames, fewer than the "
                         f"k = {k} conditioning frames")
    truth: Clip | np.ndarray | None = None
    if source.clip is not None:
        truth = source.clip
    elif source.num_frames >= num_frames:
        truth = source.frames[:num_frames]
    start = time.perf_counter()
    comparison = pipe.compare(source.frames[:k], num_frames, args.seed, prompt=prompt, w_r=w_r,
                              k=k, num_inference_steps=args.steps,
                              guidance_weight=args.guidance_weight, sampler=args.sampler,
                              callback=callback, truth=truth)
    result = TaskResult("extend", comparison.videos, source.frames[:k], comparison.truth,
                        list(range(k)), list(comparison.replacement.info["block_starts"]),
                        scores=comparison.metrics, seconds=time.perf_counter() - start)
    if result.truth is not None:
        result.errors, result.error_label = per_frame_errors(result.videos, result.truth,
                                                             source.clip)
    return result


def super_resolve_task(pipe: VideoDiffusionPipeline, source: SourceClip, num_frames: int,
                       factor: int, prompt: str, args: SamplingArgs, w_r: float,
                       callback: ProgressCallback | None = None) -> TaskResult:
    """Super-resolve the source, area-downsampled by factor, with low-pass replacement and
    with reconstruction guidance (eq. 8); the source itself is the ground truth."""
    truth = source.frames[:num_frames]
    size = truth.shape[1]
    if size % factor or size // factor < 2:
        raise InputError(f"cannot downsample {size}x{size} frames by a factor of {factor}")
    low = np.round(downsample(truth, size // factor) * 255.0).astype(np.uint8)  # (T, h, h, 3)
    start = time.perf_counter()
    videos, block_starts = {}, [0]
    for run, strategy in enumerate(("lowpass", "reconstruction")):
        out = pipe.super_resolve(low, strategy=strategy, w_r=w_r, mode="area", prompt=prompt,
                                 num_inference_steps=args.steps,
                                 guidance_weight=args.guidance_weight, sampler=args.sampler,
                                 generator=seeded(args.seed),
                                 callback=_shifted(callback, run, 2))
        videos[strategy], block_starts = out.frames, list(out.info["block_starts"])
    errors, label = per_frame_errors(videos, truth, source.clip)
    everything = range(len(truth))
    scores = {name: {**_truth_scores(frames, truth, errors[name], everything, label),
                     "lowres_mse": lowres_mse(frames, low)} for name, frames in videos.items()}
    return TaskResult("super_resolve", videos, low, truth, [], block_starts, scores, label,
                      errors, time.perf_counter() - start)


def _held(sparse: np.ndarray, every: int, span: int) -> np.ndarray:
    """Sparse frames each held for `every` frames, cut to span: what interpolation is given."""
    return np.repeat(sparse, every, axis=0)[:span]


def interpolate_task(pipe: VideoDiffusionPipeline, source: SourceClip, num_frames: int,
                     every: int, k: int, prompt: str, args: SamplingArgs, w_r: float,
                     callback: ProgressCallback | None = None) -> TaskResult:
    """Keep every `every`-th frame of the source and fill the frames between with both
    strategies; the source is the ground truth."""
    available = min(source.num_frames, num_frames)
    count = (available - 1) // every + 1
    if count < 2:
        raise InputError(f"interpolation needs two given frames: {source.label} would need at "
                         f"least {every + 1} frames for every = {every}, it has {available}")
    span = (count - 1) * every + 1
    truth = source.frames[:span]
    sparse = truth[::every]
    start = time.perf_counter()
    videos, block_starts = {}, [0]
    for run, strategy in enumerate(("replacement", "reconstruction")):
        out = pipe.interpolate(sparse, every, num_frames=span, prompt=prompt, strategy=strategy,
                               w_r=w_r, k=k, num_inference_steps=args.steps,
                               guidance_weight=args.guidance_weight, sampler=args.sampler,
                               generator=seeded(args.seed),
                               callback=_shifted(callback, run, 2))
        videos[strategy], block_starts = out.frames, list(out.info["block_starts"])
    given = list(range(0, span, every))
    generated = [i for i in range(span) if i % every]
    errors, label = per_frame_errors(videos, truth, source.clip)
    scores = {name: _truth_scores(frames, truth, errors[name], generated, label)
              for name, frames in videos.items()}
    return TaskResult("interpolate", videos, _held(sparse, every, span), truth, given,
                      block_starts, scores, label, errors, time.perf_counter() - start)
