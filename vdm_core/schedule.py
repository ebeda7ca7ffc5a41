"""Continuous-time Gaussian diffusion: the noise schedule and the x / eps / v conversions.

Paper sec. 2: q(z_t | x) = N(alpha_t x, sigma_t^2 I), logsnr = log(alpha^2 / sigma^2), variance
preserving (alpha^2 = sigmoid(logsnr), sigma^2 = sigmoid(-logsnr)). The schedule is the truncated
cosine log-SNR schedule with logsnr in [-20, 20] (App. A).
"""

import math

import torch

LOGSNR_MIN = -20.0
LOGSNR_MAX = 20.0


def logsnr_schedule_cosine(
    t: torch.Tensor, logsnr_min: float = LOGSNR_MIN, logsnr_max: float = LOGSNR_MAX
) -> torch.Tensor:
    """logsnr(t) = -2 log tan(a t + b), truncated so that logsnr(0) = max and logsnr(1) = min."""
    b = math.atan(math.exp(-0.5 * logsnr_max))
    a = math.atan(math.exp(-0.5 * logsnr_min)) - b
    return -2.0 * torch.log(torch.tan(a * t + b))


def t_from_logsnr(
    logsnr: torch.Tensor, logsnr_min: float = LOGSNR_MIN, logsnr_max: float = LOGSNR_MAX
) -> torch.Tensor:
    """Inverse of `logsnr_schedule_cosine`."""
    b = math.atan(math.exp(-0.5 * logsnr_max))
    a = math.atan(math.exp(-0.5 * logsnr_min)) - b
    return (torch.atan(torch.exp(-0.5 * logsnr)) - b) / a


def alpha_sigma(logsnr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha = sqrt(sigmoid(logsnr)), sigma = sqrt(sigmoid(-logsnr)) (variance preserving)."""
    return torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()


def broadcast_to(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample (B,) or scalar tensor so that it broadcasts against x (B, ...)."""
    v = torch.as_tensor(v, dtype=x.dtype, device=x.device)
    if v.ndim == 0:
        return v
    return v.reshape(v.shape + (1,) * (x.ndim - v.ndim))


def q_sample(x: torch.Tensor, logsnr: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z_t = alpha_t x + sigma_t eps, a draw from q(z_t | x) (sec. 2)."""
    alpha, sigma = alpha_sigma(broadcast_to(logsnr, x))
    return alpha * x + sigma * eps


def x_from_eps(z: torch.Tensor, eps: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
    """x_hat = (z - sigma eps) / alpha (the paper's eps-parameterization)."""
    alpha, sigma = alpha_sigma(broadcast_to(logsnr, z))
    return (z - sigma * eps) / alpha


def eps_from_x(z: torch.Tensor, x: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
    """eps = (z - alpha x) / sigma."""
    alpha, sigma = alpha_sigma(broadcast_to(logsnr, z))
    return (z - alpha * x) / sigma


def x_from_v(z: torch.Tensor, v: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
    """x_hat = alpha z - sigma v (Salimans & Ho 2022 v-parameterization)."""
    alpha, sigma = alpha_sigma(broadcast_to(logsnr, z))
    return alpha * z - sigma * v


def v_from_x_eps(x: torch.Tensor, eps: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
    """v = alpha eps - sigma x."""
    alpha, sigma = alpha_sigma(broadcast_to(logsnr, x))
    return alpha * eps - sigma * x
