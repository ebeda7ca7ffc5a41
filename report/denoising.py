"""Held-out denoising error per log-SNR band: the one score every model can be compared on."""

import numpy as np
import torch

from vdm_core.data import EVAL_SEEDS, world_window
from vdm_core.diffusion import model_denoiser
from vdm_core.schedule import q_sample
from vdm_core.text import get_text_encoder
from vdm_core.unet3d import UNet3D
from vdm_core.video_io import frames_to_tensor

LOGSNRS = (-6.0, -3.0, 0.0, 3.0, 6.0)
CHUNK = 8  # clips per forward pass


@torch.no_grad()
def denoised(model: UNet3D, x: torch.Tensor, states: torch.Tensor, mask: torch.Tensor,
             frameskip: int | None = None, reverse: bool = False) -> torch.Tensor:
    """x_hat(z_t) of each clip at each of LOGSNRS, (len(LOGSNRS), B, C, T, H, W).

    z_t = alpha_t x + sigma_t eps (eq. 1) with fixed noise (seeded by the level's index), so two
    models see the same z_t and their results are paired clip by clip. x (B, C, T, H, W) in
    [-1, 1]; states/mask: the text encoder's output for the clips' prompts; frameskip: the
    stride of the clips' frames, for a frameskip-conditioned model (None: its default, 1). With
    reverse=True the model denoises the time-reversed z_t and its output is reversed back.
    """
    chunks = [(slice(j, j + CHUNK), model_denoiser(model, states[j:j + CHUNK],
                                                    mask[j:j + CHUNK], frameskip=frameskip))
              for j in range(0, len(x), CHUNK)]
    out = []
    for i, logsnr in enumerate(LOGSNRS):
        eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(i))
        level = torch.full((x.shape[0],), logsnr)
        z = q_sample(x, level, eps)  # (B, C, T, H, W)
        if reverse:
            z = z.flip(2)
        x_hat = torch.cat([denoise(z[part], level[part]) for part, denoise in chunks]).float()
        out.append(x_hat.flip(2) if reverse else x_hat)
    return torch.stack(out)


def denoising_errors(model: UNet3D, x: torch.Tensor, states: torch.Tensor,
                     mask: torch.Tensor, frameskip: int | None = None) -> np.ndarray:
    """||x_hat(z_t) - x||^2 per pixel of each clip at each of LOGSNRS, (len(LOGSNRS), B), with
    `denoised`'s fixed noise."""
    return (denoised(model, x, states, mask, frameskip) - x).pow(2).mean(dim=(2, 3, 4, 5)).numpy()


HELD_OUT = EVAL_SEEDS[:64]  # the recipe probe's held-out clips (docs/recipe.md) and more
KINDS = {  # name: (start of each held-out window, frameskip)
    "world clips (start 0, frameskip 1)": (lambda i: 0, 1),
    "later windows (start 4..44, frameskip 1)": (lambda i: 4 + (i * 8) % 44, 1),
    "frameskip-4 windows (start 0)": (lambda i: 0, 4),
}


def window_errors(models: dict[str, UNet3D], kind: str, prompts: str, n: int,
                  told_frameskip: int | None = None) -> dict[str, np.ndarray]:
    """{name: (len(LOGSNRS), clips) denoising errors} of each model on the same n held-out
    windows of one of KINDS, with their captions (prompts == "caption") or the empty prompt:
    paired clip by clip and noise draw across the models. A frameskip-conditioned model is told
    the windows' frameskip, or `told_frameskip` when given (to test whether it uses it)."""
    start, frameskip = KINDS[kind]
    cfg = next(iter(models.values())).config
    clips = [world_window(s, cfg.num_frames, cfg.image_size, start(i), frameskip)
             for i, s in enumerate(HELD_OUT[:n])]
    x = torch.stack([frames_to_tensor(c.frames) for c in clips])  # (B, C, T, H, W)
    text = [c.caption if prompts == "caption" else "" for c in clips]
    states, mask = get_text_encoder().encode(text)
    errors = {}
    for name, model in models.items():
        frameskip_arg = None
        if model.config.frameskip_conditioning:
            frameskip_arg = frameskip if told_frameskip is None else told_frameskip
        with torch.autocast("cpu", dtype=torch.bfloat16):
            errors[name] = denoising_errors(model.eval(), x, states, mask,
                                            frameskip=frameskip_arg)
    return errors
