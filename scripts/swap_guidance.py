"""Guidance away from the swapped caption: does amplifying the binding fix two-object samples?

    python scripts/swap_guidance.py --model assets/model [--w 2] [--wb 0,2,4] [--samples 64]

The denoising loss pays little for which colour goes with which shape (docs/recipe.md, "How
much the loss rewards binding"), so the model's conditional estimate x_c differs from its
estimate under the swapped caption x_s ("a blue circle ... and a red square" for "a red circle
... and a blue square") only a little. Classifier-free guidance (eq. 6) amplifies x_c - x_u,
which carries the colours named far more than their pairing. This samples the model card's
two-object held-out captions with

    x~ = (1 + w) x_c - w x_u + w_b (x_c - x_s),

a second guidance term whose direction is the binding alone (w_b = 0 is the card's sampler), and
counts caption matches and their failure reasons (`scripts/caption_failures.py`). Each w_b
starts from the same noise; batches hold the two-object captions only, so the rows compare with
each other, not with the card's.
"""

import argparse
import time
from pathlib import Path

import torch
from caption_failures import failure_cells, failure_counts
from tqdm import tqdm

from report.common import CAPTION_SEEDS, add_section_args, command_line, write_section
from vdm_core.data import world_clip
from vdm_core.defaults import APP_DEFAULTS
from vdm_core.detect import caption_objects
from vdm_core.metrics import swapped_caption
from vdm_core.pipeline import VideoDiffusionPipeline
from vdm_core.samplers import sample
from vdm_core.video_io import tensor_to_frames

SECTION = "swap-guidance"
TITLE = "Guidance away from the swapped caption"


def swap_guided(pipe: VideoDiffusionPipeline, prompts: list[str], w: float, w_b: float):
    """The denoiser x~ = (1 + w) x_c - w x_u + w_b (x_c - x_s) for two-colour prompts."""
    guided = pipe.denoiser(prompts, w)
    if w_b == 0:
        return guided
    conditional = pipe.denoiser(prompts, 0.0)
    swapped = pipe.denoiser([swapped_caption(p) for p in prompts], 0.0)

    def denoise(z: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        return guided(z, logsnr) + w_b * (conditional(z, logsnr) - swapped(z, logsnr))

    return denoise


def two_colour_captions(n: int) -> list[str]:
    """The two-object captions of two different colours among the card's first n held-out
    captions."""
    captions = [world_clip(s, 16).caption for s in CAPTION_SEEDS[:n]]
    return [c for c in captions if len({colour for colour, _ in caption_objects(c)}) == 2
            and len(caption_objects(c)) == 2]


def sampled(pipe, captions: list[str], w: float, w_b: float, steps: int, batch: int) -> list:
    """One 16-frame video per caption at (w, w_b), `batch` at a time, the batch starting at
    caption i seeded with i (the same noise for every w_b)."""
    videos = []
    for i in range(0, len(captions), batch):
        prompts = captions[i:i + batch]
        g = torch.Generator().manual_seed(i)
        z = pipe.initial_noise(len(prompts), 16, g)
        x = sample("ancestral", swap_guided(pipe, prompts, w, w_b), z, steps, generator=g)
        videos += [tensor_to_frames(v) for v in x.clamp(-1, 1).cpu()]
    return videos


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="assets/model")
    parser.add_argument("--w", type=float, default=APP_DEFAULTS.w)
    parser.add_argument("--wb", default="0,2,4", help="comma-separated swap-guidance weights")
    parser.add_argument("--samples", type=int, default=64, help="card captions to draw from")
    parser.add_argument("--steps", type=int, default=APP_DEFAULTS.steps)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    add_section_args(parser, SECTION, TITLE)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    captions = two_colour_captions(args.samples)
    pipe = VideoDiffusionPipeline.from_pretrained(args.model)
    lines = [f"## {args.title}", "",
             f"`{command_line('scripts/swap_guidance.py', argv)}`: the {len(captions)} "
             f"two-colour two-object captions among the model card's first {args.samples} "
             f"held-out captions, {args.steps} ancestral steps, w = {args.w:g}, the same noise "
             "for every w_b; failure reasons as in \"Why samples fail their captions\".", "",
             "| w_b | matched | absent | shape | extra | swapped |", "|---|---|---|---|---|---|"]
    for w_b in tqdm([float(v) for v in args.wb.split(",") if v.strip()], desc="w_b"):
        videos = sampled(pipe, captions, args.w, w_b, args.steps, args.batch)
        row = failure_counts(videos, captions)[2]
        lines.append(f"| {w_b:g} | {failure_cells(row)} |")
    lines += ["", f"Generated in {(time.time() - t0) / 60:.0f} min."]
    section = "\n".join(lines)
    write_section(Path(args.out), section, args.section)
    print(section)


if __name__ == "__main__":
    main()
