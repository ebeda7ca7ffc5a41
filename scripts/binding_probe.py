"""Does the text path know which colour goes with which shape? A linear probe on the caption's
representations of two-object scenes.

    python scripts/binding_probe.py --model assets/model [--model M2] [--train 2000]

Two-object samples fail their captions mostly by putting a captioned colour on the wrong shape
("Why samples fail their captions", docs/recipe.md). This probe asks where that binding is lost.
For world captions of two objects of different shapes, the label is the colour of the object
whose shape comes first in `data.SHAPES` (the caption names the two objects in either order).
The set of colours named does not give it: an encoding of the colours and shapes without their
pairing scores 0.50 at best. Probed: the encoder's token states averaged over the caption (what
any pooling can start from) and each model's attention-pooled text vector (`TextPooling`, all
the U-Net gets of the caption). Fitted on captions of training seeds, scored on the held-out
seeds' (EVAL_SEEDS) two-object captions, with a Wilson 95% interval.
"""

import argparse
import time
from pathlib import Path

import torch

from report.common import add_section_args, command_line, display_path, write_section
from report.linear_probe import probe_hits
from report.stats import wilson
from vdm_core.data import EVAL_SEEDS, PALETTE, SHAPES, TRAIN_SEED_LIMIT, world_clip
from vdm_core.text import TextEncoder, get_text_encoder
from vdm_core.unet3d import UNet3D

SECTION = "binding-probe"
TITLE = "Which colour goes with which shape: a linear probe on the text path"
COLOURS = tuple(PALETTE)
BATCH = 256


def binding_captions(seeds, limit: int | None = None) -> tuple[list[str], torch.Tensor]:
    """The captions of the world scenes of `seeds` with two objects of different shapes (at most
    `limit`), and each one's label: the index in COLOURS of the colour of the object whose shape
    comes first in SHAPES."""
    captions, labels = [], []
    for seed in seeds:
        clip = world_clip(int(seed), 1)
        objects = clip.scene.objects
        if len(objects) != 2 or objects[0].shape == objects[1].shape:
            continue
        first = min(objects, key=lambda o: SHAPES.index(o.shape))
        captions.append(clip.caption)
        labels.append(COLOURS.index(first.colour))
        if limit is not None and len(captions) == limit:
            break
    return captions, torch.tensor(labels)


@torch.no_grad()
def representations(encoder: TextEncoder, models: dict[str, UNet3D],
                    captions: list[str]) -> dict[str, torch.Tensor]:
    """{"token mean": the masked mean of the encoder's token states, and per model its pooled
    text vector}.  # each (N, D)"""
    parts: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(captions), BATCH):
        states, mask = encoder.encode(captions[i:i + BATCH])  # (B, L, 384), (B, L)
        mean = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # (B, 384)
        parts.setdefault("token mean", []).append(mean)
        for name, model in models.items():
            parts.setdefault(name, []).append(model.text_pool(states, mask))  # (B, E)
    return {name: torch.cat(p) for name, p in parts.items()}


def markdown(rows: list[tuple[str, object]], n_train: int, n_test: int, command: str,
             minutes: float) -> str:
    lines = [f"`{command}`: world captions of two objects of different shapes; label: the colour "
             "of the object whose shape comes first in circle, square, triangle (named first or "
             f"second). Probe fitted on {n_train} training-seed captions, scored on the {n_test} "
             "held-out ones. Knowing which two colours and shapes the caption names, without "
             "their pairing, scores 0.50.", "",
             "| representation | accuracy [95%] |", "|---|---|"]
    lines += [f"| {name} | {cell.mean:.2f} [{cell.lo:.2f}, {cell.hi:.2f}] |" for name, cell in rows]
    lines += ["", f"Generated in {minutes:.0f} min."]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", required=True,
                        help="a model folder; repeat to probe several on the same captions")
    parser.add_argument("--train", type=int, default=2000, help="training-seed captions")
    parser.add_argument("--threads", type=int, default=1)
    add_section_args(parser, SECTION, TITLE)
    args = parser.parse_args(argv)
    if args.train < 2 * len(COLOURS):
        raise SystemExit(f"--train must be at least {2 * len(COLOURS)}, got {args.train}")
    torch.set_num_threads(args.threads)
    t0 = time.time()
    models = {display_path(Path(m)): UNet3D.from_pretrained(m).float().eval() for m in args.model}
    train, y_train = binding_captions(range(TRAIN_SEED_LIMIT), args.train)
    test, y_test = binding_captions(EVAL_SEEDS)
    encoder = get_text_encoder()
    f_train = representations(encoder, models, train)
    f_test = representations(encoder, models, test)
    rows = []
    for name in f_train:
        hits = probe_hits(f_train[name], y_train, f_test[name], y_test, len(COLOURS))
        rows.append((name if name == "token mean" else f"{name}: pooled text vector",
                     wilson(hits.tolist())))
    section = f"## {args.title}\n\n" + markdown(
        rows, len(train), len(test), command_line("scripts/binding_probe.py", argv),
        (time.time() - t0) / 60)
    write_section(Path(args.out), section, args.section)
    print(section)


if __name__ == "__main__":
    main()
