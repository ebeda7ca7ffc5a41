"""Where a model's joint space-time attention looks: does it find the object across the clip?

    python scripts/spacetime_probe.py MODEL [--clips 16] [--out docs/recipe.md]

Held-out one-object clips are noised at fixed log-SNR levels (fixed noise, empty prompt, fp32)
and run through MODEL, whose `SpaceTimeAttention` layers (docs/recipe.md, "A clip-wide identity
path") are recorded. For the queries at the object's positions in each layer's grid, the table
gives the attention mass on the object's positions in the *other* frames (what pooling its
colour over the clip needs) against that share of the clip's positions (what uniform attention
gives), the attention's entropy as a share of uniform's, and the size of the layer's output
against its input. A layer that has learned to gather the object puts far more than the
uniform share there. A layer on a grid finer than `KV_SIZE` attends to keys pooled to that grid,
so there the object's key positions are those of the pooled grid.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from report.common import ROOT, command_line, display_path, one_object_clips, write_section
from vdm_core.schedule import q_sample
from vdm_core.spacetime_attention import KV_SIZE, SpaceTimeAttention, pooled_keys, pools_keys
from vdm_core.unet3d import UNet3D
from vdm_core.video_io import frames_to_tensor

LOGSNRS = (-6.0, -5.0, -4.0, -2.0, 2.0)
BACKGROUND = 12  # the world's background level (uint8, every channel)
SECTION = "spacetime-probe"


def object_cells(frames: np.ndarray, grid: int, min_share: float = 0.25) -> torch.Tensor:
    """The cells of a grid x grid layout that the clip's objects cover (at least `min_share` of
    their pixels differ from the background), frames (T, H, W, 3) uint8.  # (T, grid^2) bool"""
    covered = torch.as_tensor((np.abs(frames.astype(np.int16) - BACKGROUND) > 30).any(-1))
    share = F.adaptive_avg_pool2d(covered.float()[:, None], grid)[:, 0]  # (T, grid, grid)
    return (share >= min_share).flatten(1)


def key_grid(grid: int) -> int:
    """The grid of a layer's keys: its own, or KV_SIZE where the layer pools them."""
    return KV_SIZE if pools_keys(grid, grid) else grid


def attention_probabilities(layer: SpaceTimeAttention, x: torch.Tensor, t: int) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) of the layer on its input x (B T, C, H, W), every frame one
    video, keys pooled as the layer pools them.  # (B, heads, T HW, T HW_k)"""
    qkv = layer.packed_qkv(x, t)  # (B, T HW, 3, heads, d)
    q, k = qkv[:, :, 0], qkv[:, :, 1]  # each (B, T HW, heads, d)
    h, w = x.shape[-2:]
    if key_grid(h) != h:
        k = pooled_keys(qkv[:, :, 1:2], t, h, w, KV_SIZE)[:, :, 0]  # (B, T KV^2, heads, d)
    scores = torch.einsum("bnhd,bmhd->bhnm", q, k) / q.shape[-1] ** 0.5
    return scores.softmax(-1)


def object_mass(p: torch.Tensor, cells: torch.Tensor,
                key_cells: torch.Tensor | None = None) -> tuple[float, float]:
    """For attention p (heads, N, N_k) from the N = T P positions of one clip to its N_k = T P_k
    keys, its object cells (T, P) and the keys' object cells (T, P_k; default: cells): the mean
    attention mass that a query on the object puts on the object's positions in the other
    frames, and the share of the keys that those are (uniform attention's mass), averaged over
    the object's queries and the heads."""
    key_cells = cells if key_cells is None else key_cells
    t, pixels = cells.shape
    on, on_key = cells.flatten(), key_cells.flatten()  # (N,), (N_k,)
    frame = torch.arange(t).repeat_interleave(pixels)  # (N,)
    key_frame = torch.arange(t).repeat_interleave(key_cells.shape[1])  # (N_k,)
    target = on_key[None, :] & (key_frame[None, :] != frame[:, None])  # (N, N_k)
    queries = on.nonzero()[:, 0]
    mass = (p[:, queries] * target[queries]).sum(-1).mean().item()
    share = target[queries].float().sum(-1).mean().item() / on_key.numel()
    return mass, share


def probe(model: UNet3D, clips: list, seed: int = 0) -> list[dict]:
    """One row per (log-SNR, layer): mean over clips of object mass, uniform share, normalized
    entropy and the output-to-input RMS ratio."""
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, SpaceTimeAttention)]
    if not layers:
        raise SystemExit("the model has no SpaceTimeAttention layer (spacetime_resolutions)")
    inputs: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, args, out, name=name:
                                     inputs.__setitem__(name, (args[0], out)))
             for name, m in layers]
    x = torch.stack([frames_to_tensor(c.frames) for c in clips])  # (B, C, T, H, W)
    t = x.shape[2]
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(x.shape, generator=g)
    rows, cells = [], {}  # cells: each clip's object cells per grid size, computed once
    try:
        for logsnr in LOGSNRS:
            level = torch.full((len(clips),), logsnr)
            with torch.no_grad():
                model(q_sample(x, level, eps), level)
                for name, layer in layers:
                    inp, out = inputs[name]
                    p = attention_probabilities(layer, inp, t)  # (B, heads, N, N_k)
                    grid = inp.shape[-1]
                    for g in (grid, key_grid(grid)):
                        if g not in cells:
                            cells[g] = [object_cells(c.frames, g) for c in clips]
                    masses = [object_mass(p[i], cells[grid][i], cells[key_grid(grid)][i])
                              for i in range(len(clips))]
                    entropy = -(p * p.clamp_min(1e-12).log()).sum(-1).mean()
                    rows.append({
                        "logsnr": logsnr, "layer": name,
                        "mass": float(np.mean([m for m, _ in masses])),
                        "share": float(np.mean([s for _, s in masses])),
                        "entropy": (entropy / np.log(p.shape[-1])).item(),
                        "out_ratio": ((out - inp).pow(2).mean() / inp.pow(2).mean()).sqrt().item(),
                    })
    finally:
        for hook in hooks:
            hook.remove()
    return rows


def markdown(model_dir: str, rows: list[dict], n: int, command: str, minutes: float) -> str:
    lines = [f"`{command}`: {n} held-out one-object clips, fixed noise, empty prompt, fp32, "
             f"model `{model_dir}`. Mass: the attention that a query on the object puts on the "
             "object's positions in the other frames (mean over queries, heads and clips); "
             "uniform: the share of the clip's positions those are. Entropy as a share of "
             "uniform attention's; output / input: RMS of the layer's residual branch against "
             "its input.", "",
             "| log-SNR | layer | mass on the object in other frames | uniform | ratio | "
             "entropy / uniform | output / input |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["mass"] / r["share"] if r["share"] else float("nan")
        lines.append(f"| {r['logsnr']:+.0f} | `{r['layer']}` | {r['mass']:.3f} | "
                     f"{r['share']:.3f} | {ratio:.1f} | {r['entropy']:.2f} | "
                     f"{r['out_ratio']:.3f} |")
    lines += ["", f"Generated in {minutes:.0f} min."]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "docs" / "recipe.md"))
    parser.add_argument("--section", default=SECTION)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.time()
    model = UNet3D.from_pretrained(args.model)
    rows = probe(model, one_object_clips(args.clips))
    text = markdown(display_path(Path(args.model)), rows, args.clips,
                    command_line("scripts/spacetime_probe.py", argv), (time.time() - start) / 60)
    write_section(Path(args.out), text, args.section)
    print(text)


if __name__ == "__main__":
    main()
