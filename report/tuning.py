"""Sweep the sampling settings of each conditional task and write docs/tuning.md.

    python -m report.tuning [--model assets/model] [--samples 6] [--tasks ...] [--quick]

For each task (super-resolution, interpolation, prediction, extension) every candidate
SamplingConfig runs on the same held-out world clips from one seed, batched, and is scored by
`compare.score_video`; the no-model baselines of `vdm_core.baselines` are scored beside them.
Each row is the mean with its 95% interval and the seconds per video. The row that the library
ships as its default (`defaults.TASK_DEFAULTS`) is marked; the defaults table is chosen from
this document.
"""

import argparse
import datetime
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from report.common import DOCS, Table, batch, command_line, summarise
from vdm_core import baselines
from vdm_core.compare import score_video
from vdm_core.conditional import TASKS
from vdm_core.data import EVAL_SEEDS, Clip, world_clip
from vdm_core.defaults import LOWRES_W_R_SCALE, TASK_DEFAULTS
from vdm_core.metrics import downsample
from vdm_core.outputs import SamplingConfig
from vdm_core.pipeline import DEFAULT_MODEL, VideoDiffusionPipeline
from vdm_core.video_io import frames_to_tensor

# EVAL_SEEDS[224:] lie past every block of docs/results.md and before the model card's prediction
# clips (EVAL_SEEDS[-16:]), so no measurement of the defaults runs on the clips that chose them
# (the Table 4 probe reads these captions, but it samples with none of these settings).
FIRST_SEED = 224
FACTOR = 2  # super-resolution: frames reduced by FACTOR, then restored
EVERY = 4  # interpolation: every 4th frame given
CONTEXT = 4  # prediction: frames given; extension: 16 given, CONTEXT per block
TASK_ORDER = ("super_resolve", "interpolate", "predict", "extend")


@dataclass(frozen=True)
class Candidate:
    """One row of a sweep: a strategy and the settings it samples with."""

    strategy: str
    config: SamplingConfig

    def labels(self) -> list[str]:
        c = self.config
        w_r = "-" if self.strategy in ("replacement", "lowpass") else (
            f"{LOWRES_W_R_SCALE:g} f^2" if c.w_r is None else f"{c.w_r:g}")
        return [self.strategy, str(c.steps), c.sampler, f"{c.w:g}", w_r, c.prompt_windows]


def grid(task: str, steps: Sequence[int], quick: bool) -> list[Candidate]:
    """The candidates of a task: each strategy over `steps` and the task's default steps, at
    w in {0, 2}; reconstruction guidance at the default w_r and, for super-resolution, also at
    the oracle's f^2 (defaults.lowres_w_r ships LOWRES_W_R_SCALE f^2); for extension also the
    guided rows with the prompt in the first window only."""
    base = TASK_DEFAULTS[task]
    first, second = ("lowpass", "reconstruction") if task == "super_resolve" else (
        "replacement", "reconstruction")
    w_rs = (base.w_r,) if quick else {"super_resolve": (None, float(FACTOR**2))}.get(
        task, (base.w_r,))
    out = []
    for n in sorted({*steps, base.steps}):
        for w in (0.0, 2.0):
            out.append(Candidate(first, replace(base, steps=n, w=w)))
            out += [Candidate(second, replace(base, steps=n, w=w, w_r=w_r)) for w_r in w_rs]
    if task == "extend":
        out += [Candidate(c.strategy, replace(c.config, prompt_windows="first"))
                for c in out if c.config.w > 0]
    return out


@dataclass
class Workload:
    """A task's held-out inputs, truth and no-model baselines."""

    clips: list[Clip]
    inputs: dict  # the task's arguments after the pipeline (the batch)
    generated: list[int]
    lowres: list[np.ndarray] | None
    baselines: dict[str, list[np.ndarray]]


def workload(task: str, n: int, size: int, window: int) -> Workload:
    """n held-out clips prepared for `task`."""
    seeds = EVAL_SEEDS[FIRST_SEED : FIRST_SEED + n]
    if task == "super_resolve":
        clips = [world_clip(s, window, size) for s in seeds]
        lows = [np.rint(downsample(c.frames, size // FACTOR) * 255).astype(np.uint8) for c in clips]
        return Workload(clips, {"lowres": torch.stack([frames_to_tensor(lo) for lo in lows])},
                        list(range(window)), lows,
                        {"bicubic": [baselines.bicubic(lo, size) for lo in lows],
                         "bicubic projected": [baselines.bicubic_projected(lo, size)
                                               for lo in lows]})
    if task == "interpolate":
        span = (window // EVERY - 1) * EVERY + 1 + EVERY  # two windows' worth of gaps
        clips = [world_clip(s, span, size) for s in seeds]
        idx = list(range(0, span, EVERY))
        return Workload(clips, {"video_sparse": batch(clips, slice(None, None, EVERY)),
                                "every": EVERY}, [i for i in range(span) if i % EVERY], None,
                        {name: [fn(c.frames[idx], idx, span) for c in clips]
                         for name, fn in (("hold nearest", baselines.hold_nearest),
                                          ("linear blend", baselines.linear_blend))})
    t0, num_frames = (CONTEXT, window) if task == "predict" else (window, 2 * window + 8)
    clips = [world_clip(s, num_frames, size) for s in seeds]
    inputs = {"video": batch(clips, slice(0, t0)), "num_frames": num_frames}
    if task == "predict":
        inputs["k"] = t0
    return Workload(clips, inputs, list(range(t0, num_frames)), None,
                    {"hold last frame": [baselines.hold_nearest(c.frames[:t0], range(t0),
                                                                num_frames) for c in clips],
                     "constant velocity": [baselines.constant_velocity(c.frames[:t0],
                                                                       num_frames)
                                           for c in clips]})


def _scores(videos: Sequence[np.ndarray], work: Workload, starts: Sequence[int]) -> list[dict]:
    """score_video of each video against its clip."""
    lows = work.lowres or [None] * len(videos)
    return [score_video(v, work.generated, starts, c, lowres=lo).scores
            for v, c, lo in zip(videos, work.clips, lows, strict=True)]


METRICS = {
    "super_resolve": [("psnr_vs_truth", "PSNR dB", 1), ("lowres_mse", "D-error", 5),
                      ("shape_persistence", "shape kept", 2)],
    "interpolate": [("psnr_vs_truth", "PSNR dB", 1), ("trajectory_error_px", "traj. px", 2),
                    ("shape_persistence", "shape kept", 2)],
    "predict": [("trajectory_error_px", "traj. px", 2), ("psnr_vs_truth", "PSNR dB", 1),
                ("shape_persistence", "shape kept", 2)],
    "extend": [("trajectory_error_px", "traj. px", 2), ("seam_jump", "seam jump", 2),
               ("shape_persistence", "shape kept", 2)],
}
TITLES = {"super_resolve": "Super-resolution {low}x{low} -> {size}x{size}", "interpolate":
          f"Interpolation, every {EVERY}th frame given", "predict":
          f"Prediction from {CONTEXT} frames", "extend": "Extension, block-autoregressive"}


def sweep(pipe: VideoDiffusionPipeline, task: str, n: int, steps: Sequence[int], seed: int,
          quick: bool, progress: Callable[[str], None]) -> str:
    """The markdown table of one task's sweep."""
    size, window = pipe.config.image_size, pipe.config.num_frames
    work = workload(task, n, size, window)
    table = Table(TITLES[task].format(low=size // FACTOR, size=size),
                  ["method", "steps", "sampler", "w", "w_r", "text windows"],
                  [*METRICS[task], ("seconds", "s / video", 1)])
    for name, videos in work.baselines.items():
        table.rows.append(summarise([name, "-", "-", "-", "-", "-"], _scores(videos, work, [])))
    prompts = [c.caption for c in work.clips]
    default = TASK_DEFAULTS[task]
    for cand in grid(task, steps, quick):
        progress(f"{task} {' '.join(cand.labels())}")
        start = time.perf_counter()
        out = TASKS[task](pipe, **work.inputs, prompt=prompts, strategy=cand.strategy,
                          config=cand.config.seeded(seed))
        per_video = (time.perf_counter() - start) / n
        scores = [{**s, "seconds": per_video}
                  for s in _scores(out.videos, work, out.info["block_starts"])]
        labels = cand.labels()
        if cand.config == default and cand.strategy == "reconstruction":
            labels[0] = f"**{labels[0]} (default)**"
        table.rows.append(summarise(labels, scores))
    table.notes = [f"{n} held-out world clips (EVAL_SEEDS[{FIRST_SEED}:{FIRST_SEED + n}]), "
                   "prompt = caption, one seed for every row; baselines use no model."]
    return table.markdown()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--steps", type=int, nargs="+", default=[16, 48],
                        help="steps of super-resolution and interpolation rows")
    parser.add_argument("--long-steps", type=int, nargs="+", default=[24],
                        help="steps of prediction and extension rows (several windows each)")
    parser.add_argument("--tasks", nargs="+", choices=TASK_ORDER, default=list(TASK_ORDER))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="one w_r per strategy")
    parser.add_argument("--out", type=Path, default=DOCS / "tuning.md")
    args = parser.parse_args(argv)
    pipe = VideoDiffusionPipeline.from_pretrained(args.model)
    pipe.text_encoder.encode(["warm up"])  # load the encoder outside the timings
    bar = tqdm(desc="tuning", unit="row")

    def progress(label: str) -> None:
        bar.set_postfix_str(label)
        bar.update(1)

    start = time.perf_counter()
    sections = [sweep(pipe, task, args.samples,
                      args.long_steps if task in ("predict", "extend") else args.steps,
                      args.seed, args.quick, progress)
                for task in args.tasks]
    bar.close()
    header = ["# Tuning the conditional tasks", "",
              f"Generated by `{command_line('python -m report.tuning', argv)}` "
              f"({datetime.date.today()}, "
              f"{platform.machine()}, {torch.get_num_threads()} threads, "
              f"{(time.perf_counter() - start) / 60:.0f} min). Each cell: mean [95% interval]. "
              "The library's default row is in bold. w_r = f^2 is the oracle's rule for "
              f"super-resolution by f (the library ships {LOWRES_W_R_SCALE:g} f^2); text "
              "windows = first: later windows ignore the prompt.",
              ""]
    args.out.write_text("\n".join(header + sections))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
