"""The training objective and the bridge from the U-Net's output to the denoiser x_hat (sec. 2).

The network is given logsnr, not t. It predicts either eps (the paper's default, x_hat =
(z - sigma eps_hat) / alpha) or v (v = alpha eps - sigma x, x_hat = alpha z - sigma v_hat; the
paper's BAIR and Kinetics models). We default to v: x_hat stays well conditioned at every noise
level (eps-prediction divides by alpha -> 0 near t = 1), which matters for a small model sampled
with few steps and for reconstruction guidance, which differentiates x_hat.
"""

import torch

from .schedule import (
    logsnr_schedule_cosine,
    q_sample,
    t_from_logsnr,
    v_from_x_eps,
    x_from_eps,
    x_from_v,
)

PARAMETERIZATIONS = ("eps", "v")
WEIGHTINGS = ("min_snr", "v_mse", "eps_mse")
HEAVY_LOGSNR = -4.5  # the heavy-noise band: where a caption's direction word is worth most
_HEAVY_T = float(t_from_logsnr(torch.tensor(HEAVY_LOGSNR)))  # the band is t in [_HEAVY_T, 1]


def x_hat_from_output(output: torch.Tensor, z: torch.Tensor, logsnr: torch.Tensor,
                      parameterization: str) -> torch.Tensor:
    """Turn the network output (eps_hat or v_hat) into x_hat."""
    if parameterization == "eps":
        return x_from_eps(z, output, logsnr)
    if parameterization == "v":
        return x_from_v(z, output, logsnr)
    raise ValueError(
        f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}")


def model_denoiser(model, text_states: torch.Tensor | None = None,
                   text_mask: torch.Tensor | None = None,
                   num_video_frames: torch.Tensor | None = None,
                   frameskip: torch.Tensor | int | None = None):
    """Wrap the U-Net as a guidable denoiser `denoise(z, logsnr, uncond=None) -> x_hat`.

    text_states (B, L, D) / text_mask (B, L) give each sample's caption. When `uncond` (bool, of
    length z's batch) is given, the batch may be a multiple of B (classifier-free guidance stacks
    the conditional and unconditional halves): text rows are tiled and True rows are dropped.
    frameskip (B,) or int is the stride between frames for a frameskip-conditioned model (None:
    the model's default, 1); (B,) rows are tiled like the text rows.
    """
    parameterization = model.config.parameterization

    def denoise(z: torch.Tensor, logsnr: torch.Tensor, uncond: torch.Tensor | None = None):
        b = z.shape[0]
        states, mask = text_states, text_mask
        if states is not None:
            reps = b // states.shape[0]
            states, mask = states.repeat(reps, 1, 1), mask.repeat(reps, 1)
            if uncond is not None:
                mask = mask & ~uncond.to(mask.device)[:, None]
        n = None
        if num_video_frames is not None:
            n = num_video_frames.repeat(b // num_video_frames.shape[0])
        logsnr = torch.as_tensor(logsnr, dtype=z.dtype, device=z.device).expand(b)
        output = model(z, logsnr, states, mask, n, **frameskip_kwargs(frameskip, b))
        return x_hat_from_output(output.to(z.dtype), z, logsnr, parameterization)

    return denoise


def frameskip_kwargs(frameskip: torch.Tensor | int | None, batch: int) -> dict:
    """The U-Net's `frameskip` keyword for a batch of `batch` rows: {} for None (so any model,
    with or without the input, is called as before), a (B,) tensor tiled to `batch` rows."""
    if frameskip is None:
        return {}
    if isinstance(frameskip, torch.Tensor) and frameskip.ndim:
        frameskip = frameskip.repeat(batch // frameskip.shape[0])
    return {"frameskip": frameskip}


def loss_weight(logsnr: torch.Tensor, weighting: str, snr_gamma: float = 5.0) -> torch.Tensor:
    """Weight w(logsnr) of the x-space loss w ||x_hat - x||^2.

    eps_mse: w = SNR (the paper's eps-MSE); v_mse: w = 1 + SNR; min_snr: w = min(SNR, gamma),
    "Min-SNR" weighting (Hang et al. 2023), which caps the weight of nearly clean inputs.
    """
    snr = torch.exp(logsnr)
    if weighting == "eps_mse":
        return snr
    if weighting == "v_mse":
        return 1.0 + snr
    if weighting == "min_snr":
        return snr.clamp(max=snr_gamma)
    raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")


def sample_logsnr(batch: int, generator: torch.Generator | None = None,
                  heavy_share: float = 0.0) -> torch.Tensor:
    """logsnr(t) on the cosine schedule, one per sample.  # (B,)

    With heavy_share = 0, t ~ U[0, 1] (the paper's continuous-time training). Otherwise t is drawn
    from the mixture heavy_share * U[t_h, 1] + (1 - heavy_share) * U[0, 1], where t_h (_HEAVY_T)
    is the time of logsnr = HEAVY_LOGSNR: the heavy-noise band, which U[0, 1] draws for only 7%
    of examples, gets heavy_share more (docs/recipe.md, "What a direction word is worth"). One
    uniform draw per sample either way, so the generator's later draws (noise, dropout) are the
    same as without it.
    """
    u = torch.rand(batch, generator=generator)
    if heavy_share <= 0.0:
        return logsnr_schedule_cosine(u)
    heavy = u < heavy_share
    t = torch.where(heavy, _HEAVY_T + (1.0 - _HEAVY_T) * u / heavy_share,
                    (u - heavy_share) / (1.0 - heavy_share))
    return logsnr_schedule_cosine(t)


def diffusion_loss(model, x: torch.Tensor, text_states=None, text_mask=None,
                   num_video_frames: torch.Tensor | None = None, weighting: str = "min_snr",
                   generator: torch.Generator | None = None,
                   parameterization: str | None = None,
                   frameskip: torch.Tensor | None = None,
                   heavy_share: float = 0.0) -> torch.Tensor:
    """Per-sample loss E_eps[w(logsnr) ||x_hat(z_t) - x||^2] expressed in the network's target.

    x (B, C, T, H, W) in [-1, 1]. Every frame of a sample (video frames and appended image frames)
    shares one noise level. The loss is computed as a weighted MSE on the parameterization's own
    target (eps or v; `parameterization` defaults to model.config's), which is the same
    objective: ||eps_hat - eps||^2 = SNR ||x_hat - x||^2
    and ||v_hat - v||^2 = (1 + SNR) ||x_hat - x||^2. frameskip (B,), when given, is passed to a
    frameskip-conditioned model. heavy_share draws more noise levels from the heavy-noise band
    (`sample_logsnr`).  # -> (B,)
    """
    b = x.shape[0]
    logsnr = sample_logsnr(b, generator, heavy_share).to(x.device)
    eps = torch.randn(x.shape, generator=generator).to(x.device)
    z = q_sample(x, logsnr, eps)
    output = model(z, logsnr, text_states, text_mask, num_video_frames,
                   **frameskip_kwargs(frameskip, b)).float()
    parameterization = parameterization or model.config.parameterization
    snr = torch.exp(logsnr)
    if parameterization == "eps":
        target, native = eps, snr
    elif parameterization == "v":
        target, native = v_from_x_eps(x, eps, logsnr), 1.0 + snr
    else:
        raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}")
    w = loss_weight(logsnr, weighting) / native
    mse = (output - target).pow(2).mean(dim=tuple(range(1, x.ndim)))
    return w * mse

