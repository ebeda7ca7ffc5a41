"""Where a model loses a clip's colour at heavy noise: linear probes on its features.

    nice -n 5 .venv/bin/python scripts/colour_probe.py --model assets/model \
        [--model M2] [--train-clips 512] [--test-clips 96] [--out docs/recipe.md]

Unconditional samples switch colour because the denoiser, at log-SNR -6..-4, reads an object's
colour from far less of the clip than the clip holds (docs/recipe.md, "Where unconditional
samples lose identity"). This script asks where along the U-Net that evidence is lost. One-object
clips are noised at fixed levels (eq. 1, fixed noise, empty prompt, bf16) and every stage's output
(B T, C, H, W) is recorded: the noisy input z_t, each ResBlock(+attention) stage of the down
path, the middle block, each stage of the up path, and x_hat. Each is pooled to one vector per
clip in two ways:
- "clip": the mean over all frames and positions (what a clip-level summary holds);
- "object": the mean over the object's positions in every frame, weighted by its coverage of
  each cell (what sits at the object, with its geometry given).
A multinomial logistic regression (a linear probe) is fitted on training-seed clips and scored on
held-out clips. A stage whose object probe reads the colour where x_hat's does not has the
evidence and loses it later; a stage that reads less than z_t's has not gathered it. The probe on
z_t's object mean is a linear reading of the pixels themselves.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from report.common import (
    add_section_args,
    command_line,
    display_path,
    one_object_clips,
    write_section,
)
from report.linear_probe import probe_accuracy
from vdm_core.data import BACKGROUND, PALETTE, TRAIN_SEED_LIMIT, Clip
from vdm_core.diffusion import x_hat_from_output
from vdm_core.schedule import q_sample
from vdm_core.unet3d import UNet3D
from vdm_core.video_io import frames_to_tensor

LOGSNRS = (-6.0, -5.0, -4.0)
COLOURS = tuple(PALETTE)
SECTION = "colour-probe"
TITLE = "Where the colour is lost: linear probes at heavy noise"


def coverage(frames: np.ndarray) -> torch.Tensor:
    """Where a clip's object is: 1 where a pixel differs from the background by more than 30 in
    any channel, frames (T, H, W, 3) uint8.  # (T, H, W) float"""
    diff = np.abs(frames.astype(np.int16) - np.asarray(BACKGROUND, dtype=np.int16)).max(-1)
    return torch.as_tensor(diff > 30, dtype=torch.float32)


def pool(h: torch.Tensor, t: int, cover: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A stage's output h (B T, C, H', W') pooled per clip: over every frame and position, and
    over the object's positions weighted by cover (B, T, H, W) area-averaged to H' x W'.
    # -> (B, C), (B, C)"""
    h = h.float().unflatten(0, (-1, t))  # (B, T, C, H', W')
    w = F.adaptive_avg_pool2d(cover.flatten(0, 1)[:, None], h.shape[-2:])  # (B T, 1, H', W')
    w = w.unflatten(0, (-1, t))  # (B, T, 1, H', W')
    whole = h.mean(dim=(1, 3, 4))
    on_object = (h * w).sum(dim=(1, 3, 4)) / w.sum(dim=(1, 3, 4)).clamp(min=1e-6)
    return whole, on_object


def probe_points(model: UNet3D) -> list[tuple[str, nn.Module]]:
    """(label, module whose output is the stage's output) for every ResBlock(+attention) stage of
    the down path, the middle block and every ResBlock stage of the up path."""
    points = []
    for path, stages in (("down", model.down), ("up", model.up)):
        for i, stage in enumerate(stages):
            if isinstance(stage, nn.ModuleList):
                points.append((f"{path}.{i}", stage[-1]))
        if path == "down":
            points.append(("mid", model.mid[2]))
    return points


@torch.no_grad()
def features(model: UNet3D, clips: list[Clip], logsnr: float, seed: int,
             batch: int = 32) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict]:
    """{label: (clip-pooled, object-pooled) features (N, C)} of z_t, every probe point and x_hat
    for the clips noised at `logsnr` (noise drawn from `seed`), as unconditional videos, and
    {label: (grid size, width)}."""
    points = probe_points(model)
    grid = {}
    captured: dict[str, torch.Tensor] = {}
    hooks = [module.register_forward_hook(
        lambda _m, _i, out, label=label: captured.__setitem__(label, out))
        for label, module in points]
    out: dict[str, list] = {}
    generator = torch.Generator().manual_seed(seed)
    try:
        for start in range(0, len(clips), batch):
            part = clips[start:start + batch]
            x = torch.stack([frames_to_tensor(c.frames) for c in part])  # (B, C, T, H, W)
            cover = torch.stack([coverage(c.frames) for c in part])  # (B, T, H, W)
            b, _, t = x.shape[:3]
            level = torch.full((b,), logsnr)
            z = q_sample(x, level, torch.randn(x.shape, generator=generator))
            with torch.autocast("cpu", dtype=torch.bfloat16):
                output = model(z, level)
            x_hat = x_hat_from_output(output.float(), z, level, model.config.parameterization)
            frame_major = {"z_t": z, **captured, "x_hat": x_hat}
            for label, h in frame_major.items():
                if h.shape[0] == b:  # (B, C, T, H, W) -> (B T, C, H, W)
                    h = h.transpose(1, 2).flatten(0, 1)
                grid[label] = (h.shape[-1], h.shape[1])
                out.setdefault(label, []).append(pool(h, t, cover))
    finally:
        for hook in hooks:
            hook.remove()
    return {label: tuple(torch.cat(p) for p in zip(*parts, strict=True))
            for label, parts in out.items()}, grid


def probe_table(model: UNet3D, train: list[Clip], test: list[Clip],
                logsnrs=LOGSNRS) -> list[dict]:
    """One row per recorded stage: its grid and width, and per level the held-out accuracy of
    the clip-pooled and the object-pooled probe."""
    y_train, y_test = (torch.tensor([COLOURS.index(c.scene.objects[0].colour) for c in clips])
                       for clips in (train, test))
    rows: dict[str, dict] = {}
    for i, logsnr in enumerate(tqdm(logsnrs, desc="levels")):
        f_train, grid = features(model, train, logsnr, seed=2 * i)
        f_test, _ = features(model, test, logsnr, seed=2 * i + 1)
        for label in f_train:
            row = rows.setdefault(label, {"label": label, "grid": grid[label]})
            for k, kind in enumerate(("clip", "object")):
                row[(logsnr, kind)] = probe_accuracy(f_train[label][k], y_train,
                                                     f_test[label][k], y_test, len(COLOURS))
    return list(rows.values())


def markdown(tables: dict[str, list[dict]], logsnrs, n_train: int, n_test: int, command: str,
             minutes: float) -> str:
    lines = [f"`{command}`: a linear probe (logistic regression) per stage, fitted on {n_train} "
             f"training-seed one-object clips and scored on {n_test} held-out ones; chance is "
             f"{1 / len(COLOURS):.2f}. Clips noised with fixed noise, empty prompt, bf16. "
             "clip: the stage's output averaged over the whole clip; object: averaged over the "
             "object's positions (coverage-weighted) in every frame."]
    head = "| stage | grid x width | " + " | ".join(
        f"{lv:+.0f} clip | {lv:+.0f} object" for lv in logsnrs) + " |"
    for name, rows in tables.items():
        lines += ["", f"{name}:", "", head, "|" + "---|" * (2 + 2 * len(logsnrs))]
        for r in rows:
            size, width = r["grid"]
            cells = [r["label"], f"{size}x{size} x {width}"]
            cells += [f"{r[(lv, kind)]:.2f}" for lv in logsnrs for kind in ("clip", "object")]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Generated in {minutes:.0f} min."]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", required=True,
                        help="a model folder; repeat to probe several on the same clips")
    parser.add_argument("--train-clips", type=int, default=512)
    parser.add_argument("--test-clips", type=int, default=96)
    parser.add_argument("--logsnrs", default=",".join(f"{v:g}" for v in LOGSNRS))
    parser.add_argument("--threads", type=int, default=1)
    add_section_args(parser, SECTION, TITLE)
    args = parser.parse_args(argv)
    try:
        logsnrs = tuple(float(v) for v in args.logsnrs.split(","))
    except ValueError:
        raise SystemExit(f"--logsnrs must be numbers like -6,-5,-4, got {args.logsnrs!r}") from None
    if args.train_clips < len(COLOURS) or args.test_clips < 1:
        raise SystemExit(f"--train-clips must be at least {len(COLOURS)} and --test-clips at "
                         "least 1")
    torch.set_num_threads(args.threads)
    t0 = time.time()
    models = {display_path(Path(m)): UNet3D.from_pretrained(m).eval() for m in args.model}
    size = {m.config.image_size for m in models.values()}
    if len(size) != 1:
        raise SystemExit(f"--model: the models differ in frame size ({sorted(size)})")
    size = size.pop()
    train = one_object_clips(args.train_clips, 16, size, seeds=range(TRAIN_SEED_LIMIT))
    test = one_object_clips(args.test_clips, 16, size)
    tables = {name: probe_table(model, train, test, logsnrs) for name, model in models.items()}
    section = f"## {args.title}\n\n" + markdown(
        tables, logsnrs, len(train), len(test),
        command_line("scripts/colour_probe.py", argv), (time.time() - t0) / 60)
    write_section(Path(args.out), section, args.section)
    print(section)


if __name__ == "__main__":
    main()
