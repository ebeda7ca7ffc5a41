"""Does each object read its own colour word? Where the per-token cross-attention of a model
(`--cross-attention-resolutions`) looks, on noised held-out clips of two objects.

    python scripts/cross_attention_probe.py --model MODEL [--clips 32] [--logsnr -5,-2,1]

Two-object samples fail their captions mostly by swapping the colours of the two shapes
("Why samples fail their captions", docs/recipe.md). A `TextCrossAttention` layer lets each
pixel read the caption's tokens itself. For held-out world clips of two objects of different
colours, noised to each log-SNR with fixed noise and denoised once with their caption, this
probe takes every cross-attention layer's weights at the pixels that only one object covers
(more than half of the pixel at the layer's grid, the other object under a tenth), averaged
over heads and frames, and reports:

- colour words: the weight on the two objects' colour words together (what the layer reads of
  colour at all);
- own colour: the weight on the pixel's own object's colour word over the weight on both colour
  words. 0.50 is a layer that reads colour without binding it (as the pooled vector reaches
  every pixel alike); 1.00 reads only its own object's colour;
- own words: the same share for each object's colour and shape words together (a pixel may
  read its colour from its shape word, whose encoder state knows the colour next to it).

Mean over clips with a 95% t-interval.
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
from report.stats import t_interval
from vdm_core.cross_attention import TextCrossAttention
from vdm_core.data import positions_at, shape_coverage
from vdm_core.schedule import q_sample
from vdm_core.text import get_text_encoder
from vdm_core.unet3d import UNet3D
from vdm_core.video_io import frames_to_tensor

SECTION = "cross-attention-probe"
TITLE = "Does each object read its own colour word? The cross-attention's weights"
COLUMNS = ("colour words", "own colour", "own words")
OWN, OTHER = 0.5, 0.1  # a pixel belongs to one object: its coverage above OWN, the other's below


def two_object_clips(n: int) -> list:
    """The first n held-out world clips (EVAL_SEEDS order) with two objects of different
    colours."""
    def two_colours(clip) -> bool:
        objects = clip.scene.objects
        return len(objects) == 2 and objects[0].colour != objects[1].colour

    return clips_where(two_colours, n, "two-object clips of two colours")


def object_words(encoder, caption: str, n_objects: int) -> list[dict[str, list[int]]]:
    """The token positions of each object's colour and shape words: [{"colour": [...], "shape":
    [...]}, ...]. A world caption joins "a {colour} {shape} moving {direction}" parts with
    "and"; directions have one or three words."""
    words = caption.split()
    positions = encoder.word_positions(caption)
    starts = [i for i, word in enumerate(words)
              if word == "a" and (i == 0 or words[i - 1] == "and")]
    if len(starts) != n_objects:
        raise ValueError(f"cannot find {n_objects} objects in the caption {caption!r}")
    return [{"colour": positions[i + 1], "shape": positions[i + 2]} for i in starts]


def object_masks(clip, size: int) -> np.ndarray:
    """Per object, the pixels of a size x size grid that only it covers, in every frame (coverage
    averaged over the blocks of the full frame).  # (n_objects, T, size, size) bool"""
    scene = clip.scene
    times = np.arange(len(clip.frames), dtype=np.float64)
    centres = positions_at(scene, times)  # (T, n, 2)
    cover = np.stack([shape_coverage(o.shape, o.radius, centres[:, i, 0], centres[:, i, 1],
                                     scene.size, scene.size)
                      for i, o in enumerate(scene.objects)])  # (n, T, H, W)
    block = scene.size // size
    cover = cover.reshape(len(cover), -1, size, block, size, block).mean(axis=(3, 5))
    return np.stack([(cover[i] > OWN) & (np.delete(cover, i, axis=0) < OTHER).all(axis=0)
                     for i in range(len(cover))])


class WeightRecorder:
    """Records each TextCrossAttention's weights (B, heads, T HW, L + 1) and grid size on every
    forward call of a model, by a forward pre-hook."""

    def __init__(self, model: UNet3D):
        self.weights: dict[str, tuple[torch.Tensor, int]] = {}
        self.layers = {name: m for name, m in model.named_modules()
                       if isinstance(m, TextCrossAttention)}
        if not self.layers:
            raise SystemExit("the model has no TextCrossAttention layer "
                             "(vdm-train --cross-attention-resolutions)")
        for name, layer in self.layers.items():
            layer.register_forward_pre_hook(self._hook(name))

    def _hook(self, name: str):
        def record(layer: TextCrossAttention, args) -> None:
            x, states, mask, t = args
            self.weights[name] = (layer.attention(x, states, mask, t)[0], x.shape[-1])
        return record


def weight_on(per_pixel: torch.Tensor, groups: list[list[int]]) -> torch.Tensor:
    """Each pixel's weight (per_pixel (N, L + 1), column 0 the null token) summed over each
    group of token positions.  # (groups, N)"""
    return torch.stack([per_pixel[:, [p + 1 for p in group]].sum(1) for group in groups])


@torch.no_grad()
def clip_shares(model: UNet3D, recorder: WeightRecorder, clip, logsnr: float,
                seed: int) -> dict[str, dict[str, float]]:
    """Per layer, at the single-object pixels of one clip noised to logsnr (noise from `seed`),
    averaged over objects, heads and frames: "colour words" (the weight on both objects' colour
    words), "own colour" (the own object's share of it) and "own words" (the own object's share
    of the weight on both objects' colour and shape words)."""
    encoder = get_text_encoder()
    states, mask = encoder.encode([clip.caption])  # (1, L, D), (1, L)
    x = frames_to_tensor(clip.frames)[None]  # (1, C, T, H, W)
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    level = torch.full((1,), float(logsnr))
    model(q_sample(x, level, eps), level, states, mask)
    objects = object_words(encoder, clip.caption, len(clip.scene.objects))
    out = {}
    for name, (weights, size) in recorder.weights.items():
        per_pixel = weights[0].mean(0)  # (T HW, L + 1), token i at column i + 1
        colour = weight_on(per_pixel, [o["colour"] for o in objects])  # (n_objects, T HW)
        both = weight_on(per_pixel, [o["colour"] + o["shape"] for o in objects])
        masks = torch.from_numpy(object_masks(clip, size)).reshape(len(objects), -1)
        cells: dict[str, list[float]] = {"colour words": [], "own colour": [], "own words": []}
        for i in range(len(objects)):
            if masks[i].any():
                mine, theirs = colour[i, masks[i]], colour[1 - i, masks[i]]
                cells["colour words"].append(float((mine + theirs).mean()))
                cells["own colour"].append(float((mine / (mine + theirs)).mean()))
                mine, theirs = both[i, masks[i]], both[1 - i, masks[i]]
                cells["own words"].append(float((mine / (mine + theirs)).mean()))
        if cells["own colour"]:
            out[name] = {k: float(np.mean(v)) for k, v in cells.items()}
    return out


def probe(model: UNet3D, clips, logsnrs: list[float]) -> dict[tuple[int, float], dict]:
    """{(grid size, logsnr): {column: Cell}} for the COLUMNS of `clip_shares`, each over clips
    (a clip's value: the mean over the layers at that grid)."""
    recorder = WeightRecorder(model)
    rows: dict[tuple[int, float], dict[str, list[float]]] = {}
    for k, clip in enumerate(clips):
        for logsnr in logsnrs:
            shares = clip_shares(model, recorder, clip, logsnr, seed=k)
            sizes = {name: recorder.weights[name][1] for name in shares}
            for size in set(sizes.values()):
                at = [shares[name] for name in shares if sizes[name] == size]
                row = rows.setdefault((size, logsnr), {key: [] for key in COLUMNS})
                for key in COLUMNS:
                    row[key].append(float(np.mean([layer[key] for layer in at])))
    return {key: {k: t_interval(v) for k, v in row.items()} for key, row in sorted(rows.items())}


def report(title: str, model_path: str, table: dict, n_clips: int, minutes: float,
           command: str) -> str:
    lines = [f"## {title}", "",
             f"`{command}`: {n_clips} held-out clips of two objects of different colours, noised "
             "with fixed noise and denoised once with their caption. Cells: mean over clips "
             "[95%] of each grid's cross-attention layers, at the pixels only one object "
             f"covers. Model: {model_path}.", "",
             "| grid | log-SNR | weight on the colour words | own colour's share | "
             "own colour and shape words' share |", "|---|---|---|---|---|"]
    for (size, logsnr), cells in sorted(table.items(), key=lambda kv: (-kv[0][0], kv[0][1])):
        lines.append(f"| {size}x{size} | {logsnr:+g} | {cells['colour words'].text(3)} | "
                     f"{cells['own colour'].text(2)} | {cells['own words'].text(2)} |")
    lines += ["", f"Generated in {minutes:.0f} min."]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--logsnr", default="-5,-2,1", help="comma-separated log-SNR levels")
    parser.add_argument("--threads", type=int, default=2)
    add_section_args(parser, SECTION, TITLE)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logsnrs = [float(v) for v in args.logsnr.split(",") if v.strip()]
    start = time.time()
    model = UNet3D.from_pretrained(args.model)
    table = probe(model, two_object_clips(args.clips), logsnrs)
    section = report(args.title, display_path(Path(args.model)), table, args.clips,
                     (time.time() - start) / 60, command_line(
                         "scripts/cross_attention_probe.py", argv))
    print(section)
    write_section(Path(args.out), section, args.section)


if __name__ == "__main__":
    main()
