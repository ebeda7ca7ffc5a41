"""How much do a model's denoising errors depend on which colour goes with which shape?

    python scripts/binding_loss.py --model assets/model [--model M2] [--clips 48]

Two-object samples fail their captions mostly by swapping the colours of their two shapes
("Why samples fail their captions", docs/recipe.md). A model learns a binding only as far as
the denoising loss rewards it. On held-out world clips of two objects of different colours and
shapes, with fixed noise at each log-SNR (`report.denoising.denoised`), this compares the error
||x_hat - x||^2 per pixel with the true caption against:

- colours swapped: the same caption with the two colours exchanged between the shapes ("a red
  circle ... and a blue square" -> "a blue circle ... and a red square"): the same words, only
  the pairing wrong. The rise is what the model's use of the binding is worth to its loss;
- empty prompt: what the whole caption is worth, for scale.

Paired by clip and noise; mean over clips with a 95% t-interval.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from report.common import (
    add_section_args,
    clips_where,
    command_line,
    display_path,
    write_section,
)
from report.denoising import LOGSNRS, denoised
from report.stats import num, t_interval
from vdm_core.metrics import swapped_caption
from vdm_core.text import get_text_encoder
from vdm_core.unet3d import UNet3D
from vdm_core.video_io import frames_to_tensor

SECTION = "binding-loss"
TITLE = "How much the loss rewards binding: colours swapped between the shapes"


def binding_clips(n: int) -> list:
    """The first n held-out world clips (EVAL_SEEDS order) of two objects that differ in both
    colour and shape."""
    def differ(clip) -> bool:
        objects = clip.scene.objects
        return (len(objects) == 2 and objects[0].colour != objects[1].colour
                and objects[0].shape != objects[1].shape)

    return clips_where(differ, n, "clips of two objects differing in colour and shape")


def error_rises(model: UNet3D, clips: list) -> dict[str, np.ndarray]:
    """{"own error": the error with the true caption, "colours swapped" and "empty prompt": the
    error with that prompt minus it}, each (len(LOGSNRS), clips)."""
    encoder = get_text_encoder()
    x = torch.stack([frames_to_tensor(c.frames) for c in clips])  # (B, C, T, H, W)

    def errors(texts: list[str]) -> np.ndarray:
        x_hat = denoised(model, x, *encoder.encode(texts))  # (levels, B, C, T, H, W)
        return (x_hat - x[None]).pow(2).mean(dim=(2, 3, 4, 5)).numpy()

    own = errors([c.caption for c in clips])
    return {"own error": own,
            "colours swapped": errors([swapped_caption(c.caption) for c in clips]) - own,
            "empty prompt": errors([""] * len(clips)) - own}


def report(title: str, tables: dict[str, dict[str, np.ndarray]], n: int, minutes: float,
           command: str) -> str:
    levels = " | ".join(f"logsnr {v:+g}" for v in LOGSNRS)
    lines = [f"## {title}", "",
             f"`{command}`: {n} held-out clips of two objects that differ in colour and shape, "
             "fixed noise per level; ||x_hat - x||^2 per pixel. Rise: the error with that "
             "prompt minus with the true caption, paired by clip (mean over levels: mean over "
             "clips [95%]).", "",
             f"| model | measure | mean over levels | {levels} |",
             "|---|---|---|" + "---|" * len(LOGSNRS)]
    for name, cells in tables.items():
        for measure, v in cells.items():
            mean = t_interval(v.mean(axis=0))
            label = measure if measure == "own error" else f"rise, {measure}"
            lines.append(f"| {name} | {label} | {num(mean.mean)} [{num(mean.lo)}, "
                         f"{num(mean.hi)}] | " + " | ".join(num(m) for m in v.mean(axis=1))
                         + " |")
    lines += ["", f"Generated in {minutes:.0f} min."]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True,
                        help="a model folder; repeat to compare several on the same noise")
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    add_section_args(parser, SECTION, TITLE)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    clips = binding_clips(args.clips)
    tables = {display_path(Path(m)): error_rises(UNet3D.from_pretrained(m), clips)
              for m in args.model}
    section = report(args.title, tables, len(clips), (time.time() - start) / 60,
                     command_line("scripts/binding_loss.py", argv))
    print(section)
    write_section(Path(args.out), section, args.section)


if __name__ == "__main__":
    main()
