"""Wall time of long-video extension: 16 -> 64 frames with both strategies, side by side.

    python bench/bench_extend.py [--model assets/model] [--steps 24] [--frames 64]
                                 [--threads N] [--write-docs]

Runs `pipe.compare` (replacement, then reconstruction guidance, back to back from one seed) on
the first 16 frames of a held-out world clip at the app's defaults (`defaults.APP_DEFAULTS`:
24 ancestral steps, w = 2, k = 4, w_r = 20) and prints the seconds of each strategy and the
total (target: <= 60 s for both on 2 cores).
`--write-docs` replaces the section between the extend markers of docs/performance.md.
"""

import argparse
import datetime
import os
import platform
import sys
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perf_docs import DOCS, write_section  # noqa: E402

from vdm_core.data import EVAL_SEEDS, world_clip  # noqa: E402
from vdm_core.defaults import APP_DEFAULTS  # noqa: E402
from vdm_core.memory import retain_freed_memory  # noqa: E402
from vdm_core.pipeline import DEFAULT_MODEL, VideoDiffusionPipeline  # noqa: E402

TARGET_S = 60.0
START, END = "<!-- extend:start -->", "<!-- extend:end -->"


def markdown(args, result, config) -> str:
    """The docs section for this run."""
    rep = result.outputs["replacement"].info["seconds"]
    rec = result.outputs["reconstruction"].info["seconds"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        START,
        "## Long-video extension",
        "",
        f"`python bench/bench_extend.py{f' --threads {args.threads}' if args.threads else ''}` "
        f"({datetime.date.today()}, {platform.machine()}, {torch.get_num_threads()} torch "
        f"threads, 1-minute load average {load:.1f} at the end; above 2 means other processes "
        f"shared the 2 cores). 16 -> {args.frames} frames of a held-out world clip, "
        f"{config.steps} {config.sampler} steps, w = {config.w:g}, k = {config.k} "
        f"({len(result.block_starts)} blocks), w_r = {config.w_r:g}, bf16 autocast, model "
        f"`{_relative(args.model)}`.",
        "",
        "| strategy | seconds |",
        "|---|---|",
        f"| replacement | {rep:.1f} |",
        f"| reconstruction guidance (eq. 7) | {rec:.1f} |",
        f"| both, back to back (`compare`) | {result.seconds:.1f} |",
    ]
    verdict = "meets" if result.seconds <= TARGET_S else "misses"
    lines += ["", f"Target <= {TARGET_S:.0f} s for both: the default {verdict} it "
              f"({result.seconds:.0f} s); reconstruction guidance costs {rec / rep:.1f}x "
              "replacement (a backward pass through the U-Net per step)."]
    return "\n".join(lines + ["", END])


def _relative(path: Path) -> str:
    """path relative to the repository root where it lies inside it."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--steps", type=int, default=APP_DEFAULTS.steps)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--guidance", type=float, default=APP_DEFAULTS.w)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    retain_freed_memory()  # as the app does
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = VideoDiffusionPipeline.from_pretrained(args.model)
    clip = world_clip(EVAL_SEEDS[0], args.frames)
    pipe.text_encoder.encode([clip.caption])  # load the text encoder outside the timings
    config = replace(APP_DEFAULTS, steps=args.steps, w=args.guidance)
    result = pipe.compare(clip.frames[:16], args.frames, seed=0, prompt=clip.caption,
                          truth=clip, config=config)
    for name, out in result.outputs.items():
        print(f"{name:<16}{out.info['seconds']:6.1f} s")
    print(f"total           {result.seconds:6.1f} s (target <= {TARGET_S:.0f} s)")
    if args.write_docs:
        write_section(markdown(args, result, config), START, END)
        print(f"updated {DOCS}")


if __name__ == "__main__":
    main()
