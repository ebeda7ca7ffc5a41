"""A training term that pays for which colour goes with which shape (not in the paper).

Two-object samples fail their captions mostly by swapping the colours between the shapes, and
the denoising loss pays almost nothing for the pairing: with the colours swapped in the caption,
the shipped model's error ||x_hat - x||^2 rises by 0.0017 per pixel at log-SNR -6 and by nothing
above -3 (docs/recipe.md, "How much the loss rewards binding"). This term asks for that rise
directly. For each training clip of two objects that differ in colour and shape, at one
heavy-noise level and one noise draw shared by both captions, with e the mean per-pixel error
of the video frames:

    L_swap = m softplus((e_true - e_swapped) / m)

a smooth hinge of width m on the rise e_swapped - e_true: about e_true - e_swapped while the
swapped caption denoises as well as the true one, and vanishing once the rise is a few m. Its
gradient lowers the true caption's error and raises the swapped caption's, at the same z_t.
The swapped caption is a real caption of other training clips, where the denoising loss keeps it
accurate, so the model can raise its error here only by reading which colour the caption gives
to which shape and which blob in z_t has that shape.
"""

import torch
import torch.nn.functional as F

from .detect import caption_objects
from .diffusion import frameskip_kwargs, x_hat_from_output
from .metrics import swapped_caption
from .schedule import q_sample

SWAP_LOGSNR_RANGE = (-8.0, -4.0)  # where samplers decide the layout and the caption is worth most


def swap_rows(captions: list[str]) -> tuple[list[int], list[str]]:
    """The rows whose caption names two objects that differ in colour and shape, and each such
    caption with its colours exchanged between the shapes."""
    rows, swapped = [], []
    for i, text in enumerate(captions):
        objects = caption_objects(text)
        if len(objects) == 2 and len(set(objects[0]) & set(objects[1])) == 0:
            rows.append(i)
            swapped.append(swapped_caption(text))
    return rows, swapped


def swap_logsnr(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n log-SNRs uniform in SWAP_LOGSNR_RANGE.  # (n,)"""
    lo, hi = SWAP_LOGSNR_RANGE
    return lo + (hi - lo) * torch.rand(n, generator=generator)


def smooth_hinge(rise: torch.Tensor, margin: float) -> torch.Tensor:
    """m softplus(-rise / m): about -rise for rise << 0, m log 2 at rise = 0, -> 0 for rise >> m."""
    return margin * F.softplus(-rise / margin)


def swap_contrast_loss(model, x: torch.Tensor, states: torch.Tensor, mask: torch.Tensor,
                       swapped_states: torch.Tensor, swapped_mask: torch.Tensor, margin: float,
                       parameterization: str, generator: torch.Generator | None = None,
                       frameskip: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_swap, rise) per clip, both (R,), for R video clips x (R, C, T, H, W) with their true
    captions' token states (R, L, D) / mask (R, L) and the swapped captions' (same L);
    parameterization is the model's ("eps" or "v").

    Both captions see the same z_t = alpha x + sigma eps, at a log-SNR drawn from
    SWAP_LOGSNR_RANGE; the two halves run as one batch of 2R rows.
    """
    r = x.shape[0]
    logsnr = swap_logsnr(r, generator).to(x.device)
    eps = torch.randn(x.shape, generator=generator).to(x.device)
    z = q_sample(x, logsnr, eps)  # (R, C, T, H, W)
    z2, logsnr2 = torch.cat([z, z]), torch.cat([logsnr, logsnr])
    n_video = torch.full((2 * r,), x.shape[2], dtype=torch.long, device=x.device)
    skip = None if frameskip is None else torch.cat([frameskip, frameskip])
    output = model(z2, logsnr2, torch.cat([states, swapped_states]),
                   torch.cat([mask, swapped_mask]), n_video,
                   **frameskip_kwargs(skip, 2 * r)).float()
    x_hat = x_hat_from_output(output, z2.float(), logsnr2.float(), parameterization)
    error = (x_hat - torch.cat([x, x]).float()).pow(2).mean(dim=(1, 2, 3, 4))  # (2R,)
    rise = error[r:] - error[:r]  # (R,)
    return smooth_hinge(rise, margin), rise.detach()
