"""Wall time of the app's compare requests at the library's defaults, side by side.

    python bench/bench_extend.py [--model assets/model] [--steps N] [--threads N] [--write-docs]

On a held-out world clip, at the library's defaults (`defaults.TASK_DEFAULTS`, the presets the
app's Extend & compare modes start from), times the Extend & compare request 16 -> 32 (target
<= 20 s) and 16 -> 64 (target <= 60 s), super-resolution and interpolation compares (<= 20 s),
and the Long video request 16 -> 64 (the cascade alone <= 60 s). `--write-docs` replaces the
section between the extend markers of docs/performance.md.
"""

import argparse
import datetime
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf_docs import DOCS, write_section  # noqa: E402

from vdm_core.compare import compare_long_video, compare_strategies  # noqa: E402
from vdm_core.data import EVAL_SEEDS, world_clip  # noqa: E402
from vdm_core.defaults import default_config  # noqa: E402
from vdm_core.memory import retain_freed_memory  # noqa: E402
from vdm_core.metrics import downsample  # noqa: E402
from vdm_core.pipeline import (  # noqa: E402
    DEFAULT_MODEL,
    VideoDiffusionPipeline,
    default_keyframe_model,
)

START, END = "<!-- extend:start -->", "<!-- extend:end -->"
# (label, what is timed, frames, target seconds)
CASES = (("Extend & compare 16 -> 32", "extend", 32, 20.0),
         ("Extend & compare 16 -> 64", "extend", 64, 60.0),
         ("Super-resolution & compare 2x, 16 frames", "super_resolve", 16, 20.0),
         ("Interpolation & compare, 17 frames", "interpolate", 17, 20.0),
         ("Long video 16 -> 64", "cascade", 64, 60.0))


def run_cases(pipe: VideoDiffusionPipeline, steps: int | None) -> list[tuple]:
    """(label, timed, frames, target, seconds, {run: seconds}, config) for each of CASES."""
    rows = []
    for label, timed, frames, target in CASES:
        clip = world_clip(EVAL_SEEDS[0], frames)
        config = default_config(timed, **({} if steps is None else {"steps": steps}))
        if timed == "cascade":
            result = compare_long_video(pipe, clip.frames[:16], frames, truth=clip,
                                        prompt=clip.caption, config=config)
        elif timed == "super_resolve":
            low = np.rint(downsample(clip.frames, 16) * 255).astype(np.uint8)
            result = compare_strategies(pipe, timed, {"lowres": low}, truth=clip, config=config,
                                        prompt=clip.caption)
        elif timed == "interpolate":
            result = compare_strategies(pipe, timed, {"video_sparse": clip.frames[::4],
                                                      "every": 4}, truth=clip, config=config,
                                        prompt=clip.caption)
        else:
            result = pipe.compare(clip.frames[:16], frames, seed=0, prompt=clip.caption,
                                  truth=clip, config=config)
        runs = {name: out.info["seconds"] for name, out in result.outputs.items()}
        seconds = runs["cascade"] if timed == "cascade" else result.seconds
        rows.append((label, timed, frames, target, seconds, runs, config))
        per_run = ", ".join(f"{name} {s:.1f} s" for name, s in runs.items())
        print(f"{label:<28}{seconds:6.1f} s (target <= {target:.0f} s; {per_run})", flush=True)
    return rows


def markdown(args, rows) -> str:
    """The docs section for this run."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        START,
        "## Compare requests at the library's defaults",
        "",
        f"`python bench/bench_extend.py{f' --threads {args.threads}' if args.threads else ''}` "
        f"({datetime.date.today()}, {platform.machine()}, {torch.get_num_threads()} torch "
        f"threads, 1-minute load average {load:.1f} at the end; above 2 means other processes "
        f"shared the 2 cores). A held-out world clip (extension: its first 16 frames given; "
        f"super-resolution: all of it at 16x16; interpolation: every 4th frame), prompt = its "
        f"caption, the library's defaults (`defaults.TASK_DEFAULTS`), bf16 autocast, model "
        f"`{_relative(args.model)}`.",
        "",
        "| request | timed | settings | seconds | per run | target | |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, timed, _, target, seconds, runs, c in rows:
        settings = f"{c.steps} {c.sampler} steps, w = {c.w:g}, w_r = {c.w_r or '4 f^2'}"
        per_run = ", ".join(f"{name} {s:.1f}" for name, s in runs.items())
        verdict = "met" if seconds <= target else "missed"
        lines.append(f"| {label} | {'cascade alone' if timed == 'cascade' else 'both'} | "
                     f"{settings} | {seconds:.1f} | {per_run} | "
                     f"<= {target:.0f} | {verdict} |")
    return "\n".join(lines + ["", END])


def _relative(path: Path) -> str:
    """path relative to the repository root where it lies inside it."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--steps", type=int, default=None, help="override the defaults' steps")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    retain_freed_memory()  # as the app does
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = VideoDiffusionPipeline.from_pretrained(args.model)
    keyframe_model = default_keyframe_model(args.model)  # as the app attaches it
    if keyframe_model is not None:
        pipe.with_keyframe_model(keyframe_model)
    pipe.text_encoder.encode(["warm up"])  # load the text encoder outside the timings
    rows = run_cases(pipe, args.steps)
    if args.write_docs:
        write_section(markdown(args, rows), START, END)
        print(f"updated {DOCS}")


if __name__ == "__main__":
    main()
