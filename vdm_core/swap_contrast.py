"""A training term that pays for which colour goes with which shape (not in the paper).

Two-object samples fail their captions mostly by swapping the colours between the shapes, and
the denoising loss pays almost nothing for the pairing: with the colours swapped in the caption,
the shipped model's error ||x_hat - x||^2 rises by 0.0017 per pixel at log-SNR -6 and by nothing
above -3 (docs/recipe.md, "How much the loss rewards binding"). This term asks for that rise
directly, in a paired design in which only the pairing can pay.

For a world clip x of two objects that differ in colour and shape, with caption c, let x' be
the same clip with the two colours exchanged (`swap_colours`, exact for the world's flat-colour
rendering) and s its caption (c with the colours exchanged). At one log-SNR from the band and one
noise draw eps, z = alpha x + sigma eps and z' = alpha x' + sigma eps, and with e(z, c; x) the
mean per-pixel error of the video frames:

    rise  = e(z, s; x) - e(z, c; x)        rise' = e(z', c; x') - e(z', s; x')
    L_swap = m softplus(-rise / m) + m softplus(-rise' / m)

a smooth hinge of width m on each rise. The design is a 2 x 2 of clip and caption: an output
that depends on the caption alone, or on z alone, moves rise and rise' in opposite directions or
not at all, and the hinge is convex, so only an output that depends on both together (which blob
in z_t carries which colour, against which shape the caption gives it) lowers the term. The
first version of this term (without x') was won the cheap way: a larger caption-dependent
difference between the two outputs raises ||x_hat_s - x||^2 whatever its direction, and 250
steps of it made the heavy-noise error worse and the binding weaker (docs/recipe.md). The band
is -4 to 0, where the shapes form: at -8 to -4, z and z' differ by far less than the noise, and
the term taught nothing there (docs/recipe.md, "A loss that pays for the binding").
"""

import math

import torch
import torch.nn.functional as F

from .data import BACKGROUND, PALETTE
from .detect import caption_objects
from .diffusion import frameskip_kwargs, x_hat_from_output
from .metrics import swapped_caption
from .schedule import q_sample

SWAP_LOGSNR_RANGE = (-4.0, 0.0)  # the default band: where the shapes form (docs/recipe.md)


def swap_rows(captions: list[str]) -> tuple[list[int], list[str], list[tuple[str, str]]]:
    """The rows whose caption names two objects that differ in colour and shape, each such
    caption with its colours exchanged between the shapes, and its two colours in caption
    order."""
    rows, swapped, colours = [], [], []
    for i, text in enumerate(captions):
        objects = caption_objects(text)
        if len(objects) == 2 and len(set(objects[0]) & set(objects[1])) == 0:
            rows.append(i)
            swapped.append(swapped_caption(text))
            colours.append((objects[0][0], objects[1][0]))
    return rows, swapped, colours


def parse_logsnr_range(text: str) -> tuple[float, float]:
    """--swap-logsnr "-8,-4" -> (-8.0, -4.0): a band of two finite log-SNRs, low first."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        lo = hi = math.nan
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"--swap-logsnr must be two log-SNRs, low first, like -8,-4; got {text!r}")
    return lo, hi


def swap_logsnr(n: int, generator: torch.Generator | None = None,
                logsnr_range: tuple[float, float] = SWAP_LOGSNR_RANGE) -> torch.Tensor:
    """n log-SNRs uniform in logsnr_range.  # (n,)"""
    lo, hi = logsnr_range
    return lo + (hi - lo) * torch.rand(n, generator=generator)


def smooth_hinge(rise: torch.Tensor, margin: float) -> torch.Tensor:
    """m softplus(-rise / m): about -rise for rise << 0, m log 2 at rise = 0, -> 0 for rise >> m."""
    return margin * F.softplus(-rise / margin)


def swap_colours(x: torch.Tensor, colour_a: str, colour_b: str) -> torch.Tensor:
    """World clips x (..., C, T, H, W) in [-1, 1] showing objects of colours a and b, with the
    two colours exchanged.

    `data.render_at` blends each object over what is below by its coverage, so every pixel is
    BACKGROUND + p (A - BACKGROUND) + q (B - BACKGROUND) for some p, q (overlaps included). The
    swap solves each pixel for (p, q) by least squares and returns BACKGROUND + p (B - BACKGROUND)
    + q (A - BACKGROUND): one 3 x 3 linear map about the background colour (exact up to the
    uint8 rounding of the frames).
    """
    def to_unit(rgb) -> torch.Tensor:
        return torch.tensor(rgb, dtype=torch.float64) / 127.5 - 1.0  # (3,)

    bg = to_unit(BACKGROUND)
    m = torch.stack([to_unit(PALETTE[colour_a]) - bg, to_unit(PALETTE[colour_b]) - bg], dim=1)
    swap = (m.flip(1) @ torch.linalg.pinv(m)).to(x.dtype)  # (3, 3)
    bg = bg.to(x.dtype).view(3, 1, 1, 1)
    return bg + torch.einsum("ij,...jthw->...ithw", swap, x - bg)


def swap_contrast_loss(model, x: torch.Tensor, x_swapped: torch.Tensor, states: torch.Tensor,
                       mask: torch.Tensor, swapped_states: torch.Tensor,
                       swapped_mask: torch.Tensor, margin: float, parameterization: str,
                       generator: torch.Generator | None = None,
                       frameskip: torch.Tensor | None = None,
                       logsnr_range: tuple[float, float] = SWAP_LOGSNR_RANGE,
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_swap, mean of rise and rise') per clip, both (R,), for R video clips x (R, C, T, H,
    W), the same clips with their colours exchanged x_swapped, the true captions' token states
    (R, L, D) / mask (R, L) and the swapped captions' (same L); parameterization is the model's
    ("eps" or "v").

    One log-SNR from logsnr_range and one eps per clip serve all four (clip, caption)
    pairs, which run as one batch of 4R rows: (z, c), (z, s), (z', s), (z', c).
    """
    r = x.shape[0]
    logsnr = swap_logsnr(r, generator, logsnr_range).to(x.device)
    eps = torch.randn(x.shape, generator=generator).to(x.device)
    z, z_swapped = q_sample(x, logsnr, eps), q_sample(x_swapped, logsnr, eps)  # (R, C, T, H, W)
    z4 = torch.cat([z, z, z_swapped, z_swapped])  # (4R, C, T, H, W)
    logsnr4 = logsnr.repeat(4)
    n_video = torch.full((4 * r,), x.shape[2], dtype=torch.long, device=x.device)
    skip = None if frameskip is None else frameskip.repeat(4)
    output = model(z4, logsnr4, torch.cat([states, swapped_states, swapped_states, states]),
                   torch.cat([mask, swapped_mask, swapped_mask, mask]), n_video,
                   **frameskip_kwargs(skip, 4 * r)).float()
    x_hat = x_hat_from_output(output, z4.float(), logsnr4.float(), parameterization)
    target = torch.cat([x, x, x_swapped, x_swapped]).float()
    error = (x_hat - target).pow(2).mean(dim=(1, 2, 3, 4)).view(4, r)  # (4, R)
    rise, rise_swapped = error[1] - error[0], error[3] - error[2]  # (R,), (R,)
    loss = smooth_hinge(rise, margin) + smooth_hinge(rise_swapped, margin)
    return loss, (0.5 * (rise + rise_swapped)).detach()
