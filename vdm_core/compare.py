"""Two (or more) conditioning strategies from one seed, scored once: the paper's Table 6 / Fig. 4
as a library call. The app and the report only format what `compare_strategies` returns.

Every score of a video is computed in `score_video`: seam jump over the block starts, PSNR and
per-frame error against a truth (trajectory error in px for a world `Clip`, pixel RMSE for plain
frames), objects missed, colour/shape persistence of a caption's objects, and the error of the
downsampled result against a low-res input.
"""

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from vdm_core.conditional import TASKS, Sampler, shift_progress
from vdm_core.data import Clip
from vdm_core.defaults import default_config
from vdm_core.metrics import (
    frame_change,
    ghost_rate,
    lowres_mse,
    persistence,
    psnr,
    seam_jump,
    trajectory_error,
)
from vdm_core.outputs import SamplingConfig, VideoOutput

STRATEGIES = {"generate": ("replacement", "reconstruction"),
              "cascade": ("replacement", "reconstruction"),
              "extend": ("replacement", "reconstruction"),
              "predict": ("replacement", "reconstruction"),
              "interpolate": ("replacement", "reconstruction"),
              "super_resolve": ("lowpass", "reconstruction")}
TRAJECTORY_LABEL = "trajectory error (px)"
PIXEL_LABEL = "pixel RMSE vs truth"


@dataclass
class VideoScores:
    """The scores of one video and its per-frame curves."""

    scores: dict[str, float]
    frame_change: np.ndarray  # (T - 1,) change into each frame from the previous one
    error: np.ndarray | None = None  # (T,) per-frame error against the truth, where known
    error_label: str = TRAJECTORY_LABEL


def _nanmean(values: np.ndarray) -> float:
    """Mean of the finite entries; nan (not a warning) when there are none."""
    values = np.asarray(values, dtype=float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def first_frames(truth: Clip | np.ndarray | None, n: int) -> Clip | np.ndarray | None:
    """The first n frames of a truth clip / frames (T, H, W, 3), or a ValueError if T < n."""
    if truth is None:
        return None
    frames = truth.frames if isinstance(truth, Clip) else np.asarray(truth)
    if len(frames) < n:
        raise ValueError(f"the true video has {len(frames)} frames, fewer than num_frames = {n}")
    if isinstance(truth, Clip):
        return Clip(truth.frames[:n], truth.caption, truth.positions[:n], truth.scene)
    return frames[:n]


def score_video(frames: np.ndarray, generated: Sequence[int], block_starts: Sequence[int] = (),
                truth: Clip | np.ndarray | None = None, caption: str = "",
                lowres: np.ndarray | None = None, mode: str = "area") -> VideoScores:
    """Every score of one video (T, H, W, 3) uint8, over its `generated` frames.

    seam_jump (when a block starts after frame 0); with a truth (a world Clip or frames of the
    same shape): psnr_vs_truth and the mean per-frame error; for a Clip (whose caption is used
    when none is given) trajectory_error_px over the frames where each object is detected
    sharp and in its shape (`metrics.trajectory_error(sharp=True)`: blends and ghosts do not
    count as hits), missing_frames (frames where none is) and ghost_rate (frames with doubled
    objects); pixel_rmse otherwise;
    with a caption: colour_persistence and shape_persistence from the first generated frame on;
    with a low-res input: lowres_mse of the result downsampled by `mode`.
    """
    gen = list(generated)
    scores: dict[str, float] = {}
    if any(s > 0 for s in block_starts):
        scores["seam_jump"] = seam_jump(frames, block_starts)
    error, label = None, TRAJECTORY_LABEL
    if truth is not None:
        true_frames = truth.frames if isinstance(truth, Clip) else np.asarray(truth)
        if true_frames.shape != frames.shape:
            raise ValueError(f"truth {true_frames.shape} does not match the video {frames.shape}")
        scores["psnr_vs_truth"] = psnr(frames[gen], true_frames[gen])
        if isinstance(truth, Clip):
            error = trajectory_error(frames, truth.positions, truth.scene, sharp=True)  # (T,)
            scores["trajectory_error_px"] = _nanmean(error[gen])
            scores["missing_frames"] = float(np.isnan(error[gen]).mean())
            scores["ghost_rate"] = ghost_rate(frames[gen], truth.scene)
            caption = caption or truth.caption
        else:
            diff = frames / 255.0 - true_frames / 255.0
            error, label = np.sqrt((diff**2).mean(axis=(1, 2, 3))), PIXEL_LABEL  # (T,)
            scores["pixel_rmse"] = _nanmean(error[gen])
    if caption and gen:
        kept = persistence(frames, caption, start=gen[0])
        scores["colour_persistence"], scores["shape_persistence"] = kept["colour"], kept["shape"]
    if lowres is not None:
        scores["lowres_mse"] = lowres_mse(frames, lowres, mode)
    return VideoScores(scores, frame_change(frames), error, label)


@dataclass
class Comparison:
    """Strategies run from one seed on one input, with every score computed once."""

    task: str
    outputs: dict[str, VideoOutput]  # strategy -> its output, in the order run
    truth: np.ndarray | None  # (T, H, W, 3) uint8 where known
    given: list[int]  # frames given to the model, not generated
    block_starts: list[int]
    scored: dict[str, VideoScores] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def videos(self) -> dict[str, np.ndarray]:
        """{strategy: frames (T, H, W, 3)} of the first sample of each strategy."""
        return {name: out.frames for name, out in self.outputs.items()}

    @property
    def scores(self) -> dict[str, dict[str, float]]:
        return {name: s.scores for name, s in self.scored.items()}

    @property
    def frame_changes(self) -> dict[str, np.ndarray]:
        """Per-frame change (T - 1,) of each video, and of the truth when known."""
        curves = {name: s.frame_change for name, s in self.scored.items()}
        if self.truth is not None:
            curves["truth"] = frame_change(self.truth)
        return curves

    @property
    def errors(self) -> dict[str, np.ndarray] | None:
        """Per-frame error (T,) of each video against the truth, None without a truth."""
        if self.truth is None:
            return None
        return {name: s.error for name, s in self.scored.items()}

    @property
    def error_label(self) -> str:
        return next(iter(self.scored.values())).error_label


def _compare(pipe: Sampler, task: str, runs: Mapping[str, tuple[str, Mapping, str]],
             truth: Clip | np.ndarray | None, prompt: str, config: SamplingConfig, seed: int,
             lowres: np.ndarray | None) -> Comparison:
    """Run each labelled (task, inputs, strategy) from one seed, then score every result."""
    if sized := next((i for _, i, _ in runs.values() if i.get("num_frames")), None):
        first_frames(truth, sized["num_frames"])  # a too-short truth fails before sampling
    outputs = {}
    start = time.perf_counter()
    for run, (label, (run_task, inputs, strategy)) in enumerate(runs.items()):
        run_config = replace(config.seeded(seed),
                             callback=shift_progress(config.callback, run, len(runs)))
        outputs[label] = TASKS[run_task](pipe, **inputs, prompt=prompt, strategy=strategy,
                                         config=run_config)
    seconds = time.perf_counter() - start
    first = next(iter(outputs.values()))
    n = len(first.frames)
    truth = first_frames(truth, n)
    given = list(first.info["given"])
    generated = [i for i in range(n) if i not in set(given)]
    scored = {name: score_video(out.frames, generated, out.info["block_starts"], truth, prompt,
                                lowres)
              for name, out in outputs.items()}
    true_frames = truth.frames if isinstance(truth, Clip) else truth
    return Comparison(task, outputs, true_frames, given,
                      list(first.info["block_starts"]), scored, seconds)


def compare_strategies(pipe: Sampler, task: str, inputs: Mapping,
                       strategies: Sequence[str] | None = None,
                       truth: Clip | np.ndarray | None = None, *, prompt: str = "",
                       config: SamplingConfig | None = None, seed: int = 0,
                       lowres: np.ndarray | None = None) -> Comparison:
    """Run `task` (a key of conditional.TASKS) on `inputs` (its arguments after the pipeline,
    e.g. {"video": frames, "num_frames": 32}) once per strategy and score every result.

    Each run gets config.seeded(seed): a fresh CPU generator, so all runs see the same noise and
    differ only by the conditioning. Progress reports all runs on one block counter. `truth` (a
    world Clip or true frames, at least as long as the output) adds the scores against the
    truth; `lowres` (the low-res input of super-resolution) adds lowres_mse. The caption scored
    is `prompt`, else the truth clip's caption.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {sorted(TASKS)}")
    runs = {name: (task, inputs, name) for name in strategies or STRATEGIES[task]}
    return _compare(pipe, task, runs, truth, prompt, config or default_config(task), seed,
                    lowres)


def compare_long_video(pipe: Sampler, video, num_frames: int,
                       truth: Clip | np.ndarray | None = None, *, prompt: str = "",
                       config: SamplingConfig | None = None, seed: int = 0,
                       strategy: str = "reconstruction") -> Comparison:
    """Extend `video` (uint8 (T, H, W, 3) or a float batch) to num_frames frames twice from one
    seed: block-autoregressively and by the keyframe cascade (Fig. 2), both with `strategy`.
    The result's block_starts are the autoregressive run's; each output's info has its own."""
    runs = {"autoregressive": ("extend", {"video": video, "num_frames": num_frames}, strategy),
            "cascade": ("cascade", {"video": video, "num_frames": num_frames}, strategy)}
    return _compare(pipe, "long_video", runs, truth, prompt, config or default_config("extend"),
                    seed, None)
