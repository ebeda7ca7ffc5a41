"""Why samples fail their captions: the model card's caption match at one w, split by the number
of captioned objects and by the reason each failing sample fails.

    python scripts/caption_failures.py --model assets/model [--model M2] [--w 2] [--samples 64]

Samples exactly what scripts/model_card.py samples at that w (its held-out captions, seeds and
batches), so the rows continue the card's caption-match column. Reasons
(`detect.caption_mismatches`, not exclusive): a captioned colour absent from half the frames or
more; a captioned colour there but not in its captioned shape; a colour the caption does not name
in half the frames or more; and, for two captioned objects of different shapes, the two colours
swapped between the two shapes (each colour found in the other's shape in half the frames).
"""

import argparse
import time
from pathlib import Path

import torch
from tqdm import tqdm

from report.common import (
    CAPTION_SEEDS,
    add_section_args,
    command_line,
    display_path,
    sample_batches,
    write_section,
)
from vdm_core.data import world_clip
from vdm_core.defaults import APP_DEFAULTS
from vdm_core.detect import caption_mismatches, caption_objects, detect_clip, detected_fraction
from vdm_core.pipeline import VideoDiffusionPipeline

SECTION = "caption-failures"
TITLE = "Why samples fail their captions"
REASONS = ("absent", "shape", "extra", "swapped")


def swapped(detections, caption: str, min_fraction: float = 0.5) -> bool:
    """Whether the colours of a caption's two objects of different shapes each show in the other
    object's shape in at least min_fraction of the frames."""
    wanted = caption_objects(caption)
    if len(wanted) != 2 or wanted[0][1] == wanted[1][1]:
        return False
    (c1, s1), (c2, s2) = wanted
    return (detected_fraction(detections, c1, s2) >= min_fraction
            and detected_fraction(detections, c2, s1) >= min_fraction)


def failure_counts(videos, captions: list[str]) -> dict[int, dict[str, int]]:
    """{number of captioned objects: {"samples", "matched", and each reason's count among the
    failing samples}}."""
    counts: dict[int, dict[str, int]] = {}
    for video, caption in zip(videos, captions, strict=True):
        detections = detect_clip(video)
        mismatches = caption_mismatches(detections, caption)
        failed = any(mismatches.values())
        reasons = {**mismatches, "swapped": swapped(detections, caption)}
        row = counts.setdefault(len(caption_objects(caption)),
                                {"samples": 0, "matched": 0, **dict.fromkeys(REASONS, 0)})
        row["samples"] += 1
        row["matched"] += not failed
        for reason in REASONS:
            row[reason] += failed and reasons[reason]
    return counts


def failure_cells(row: dict[str, int]) -> str:
    """A `failure_counts` row as table cells: "matched/samples | absent | shape | ..."."""
    return f"{row['matched']}/{row['samples']} | " + " | ".join(str(row[r]) for r in REASONS)


def markdown(tables: dict[str, dict[int, dict[str, int]]], w: float, steps: int, command: str,
             minutes: float) -> str:
    lines = [f"`{command}`: the model card's held-out captions and samples at w = {w:g}, "
             f"{steps} ancestral steps. Reasons are counted among the failing samples and can "
             "overlap: absent (a captioned colour in fewer than half the frames), shape (a "
             "captioned colour there, but not in its shape), extra (an uncaptioned colour in half "
             "the frames or more), swapped (two objects' colours each in the other's shape).", "",
             "| model | objects | matched | absent | shape | extra | swapped |",
             "|---|---|---|---|---|---|---|"]
    for name, table in tables.items():
        for n, row in sorted(table.items()):
            lines.append(f"| {name} | {n} | {failure_cells(row)} |")
    lines += ["", f"Generated in {minutes:.0f} min."]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", required=True,
                        help="a model folder; repeat to compare several on the same noise")
    parser.add_argument("--w", type=float, default=APP_DEFAULTS.w)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--steps", type=int, default=APP_DEFAULTS.steps)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    add_section_args(parser, SECTION, TITLE)
    args = parser.parse_args(argv)
    if not 1 <= args.samples <= len(CAPTION_SEEDS):
        raise SystemExit(f"--samples must be 1..{len(CAPTION_SEEDS)}, got {args.samples}")
    torch.set_num_threads(args.threads)
    t0 = time.time()
    captions = [world_clip(s, 16).caption for s in CAPTION_SEEDS[:args.samples]]
    tables = {}
    for model in tqdm(args.model, desc="models"):
        pipe = VideoDiffusionPipeline.from_pretrained(model)
        videos = sample_batches(pipe, captions, args.w, args.steps, args.batch, seed=0)
        tables[display_path(Path(model))] = failure_counts(videos, captions)
    section = f"## {args.title}\n\n" + markdown(
        tables, args.w, args.steps, command_line("scripts/caption_failures.py", argv),
        (time.time() - t0) / 60)
    write_section(Path(args.out), section, args.section)
    print(section)


if __name__ == "__main__":
    main()
