"""Samplers for continuous-time Gaussian diffusion: ancestral, DDIM and predictor-corrector.

Paper sec. 2. Every sampler walks a uniform grid in t from 1 to 0 on the cosine log-SNR schedule
(`schedule.logsnr_schedule_cosine`, clipped to [LOGSNR_MIN, LOGSNR_MAX]), starting from the caller's
z_1 ~ N(0, I). Step i goes from t = 1 - i/N to s = 1 - (i+1)/N; the last step (s = 0) returns the
denoised estimate x_hat directly (the convention of the authors' JAX code, paper notes sec. 2).

A denoiser is a callable `denoise(z, logsnr) -> x_hat` with z (B, C, T, H, W) and logsnr (B,).
A strategy (see `guidance.py`) hooks into every sampler: `strategy.x_hat(denoise, z, logsnr)` gives
the (possibly guided) estimate used by a step, and `strategy.replace(z_s, logsnr_s, generator)` is
applied to every new latent (after each sampler step and after each corrector step).

With `clip_x=True` the estimate x_hat is clipped to the data range [-1, 1] before it is used (the
usual "static thresholding"; the step then uses the clipped x_hat and, for DDIM and the corrector,
the eps implied by it). It is off by default because it biases samples of data that is not bounded
(e.g. the Gaussian oracle) and the paper does not mention it.
"""

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from vdm_core.schedule import (
    LOGSNR_MAX,
    LOGSNR_MIN,
    alpha_sigma,
    eps_from_x,
    logsnr_schedule_cosine,
)

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class StepInfo:
    """What a sampler reports after step i of num_steps (for progress bars and live previews).

    z: the new latent z_s after the step (at the last step: the returned sample), (B, C, T, H, W).
    x_hat: the denoised estimate the step used, (B, C, T, H, W).
    logsnr: the log-SNR of the step's input z_t, at which x_hat was evaluated.
    """

    i: int
    num_steps: int
    z: torch.Tensor
    x_hat: torch.Tensor
    logsnr: float


class Strategy(Protocol):
    """A conditioning strategy: how the estimate is formed and how new latents are corrected."""

    def x_hat(self, denoise: Denoiser, z: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        """The estimate of x used by a sampler step, (B, C, T, H, W)."""
        ...

    def replace(
        self, z_s: torch.Tensor, logsnr_s: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """The corrected new latent z_s, (B, C, T, H, W)."""
        ...


@dataclass(frozen=True)
class Unguided:
    """The identity strategy: x_hat = denoise(z, logsnr), no replacement."""

    def x_hat(self, denoise: Denoiser, z: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        """x_hat_theta(z_t) (sec. 2)."""
        return denoise(z, logsnr)

    def replace(
        self, z_s: torch.Tensor, logsnr_s: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """z_s unchanged."""
        return z_s


StepFn = Callable[[torch.Tensor, torch.Tensor, float, float, torch.Generator | None], torch.Tensor]


def logsnr_grid(num_steps: int) -> torch.Tensor:
    """logsnr at t_i = 1 - i/N, i = 0..N, clipped to [LOGSNR_MIN, LOGSNR_MAX] (float64, (N+1,))."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    t = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)
    return logsnr_schedule_cosine(t).clamp(LOGSNR_MIN, LOGSNR_MAX)


def _alpha_sigma(logsnr: float) -> tuple[float, float]:
    """(alpha, sigma) of a scalar log-SNR, in float64."""
    alpha, sigma = alpha_sigma(torch.tensor(logsnr, dtype=torch.float64))
    return alpha.item(), sigma.item()


def noise(shape: tuple[int, ...], generator: torch.Generator | None,
          like: torch.Tensor) -> torch.Tensor:
    """eps ~ N(0, I) of `shape`, drawn from `generator` on its own device (a CPU generator keeps
    seeds portable) and moved to the device and dtype of `like`."""
    draw_on = generator.device if generator is not None else like.device
    eps = torch.randn(shape, generator=generator, dtype=like.dtype, device=draw_on)
    return eps.to(like.device)


def ancestral_step(
    z_t: torch.Tensor,
    x_hat: torch.Tensor,
    logsnr_t: float,
    logsnr_s: float,
    generator: torch.Generator | None,
    gamma: float = 0.0,
) -> torch.Tensor:
    """z_s = mu~_{s|t}(z_t, x_hat) + sqrt((sigma~^2_{s|t})^(1-gamma) (sigma^2_{t|s})^gamma) eps.

    Paper sec. 2, with r = e^(l_t - l_s): mu~_{s|t} = r (alpha_s / alpha_t) z_t + (1 - r) alpha_s x,
    sigma~^2_{s|t} = (1 - r) sigma_s^2 and sigma^2_{t|s} = (1 - r) sigma_t^2.
    """
    alpha_t, sigma_t = _alpha_sigma(logsnr_t)
    alpha_s, sigma_s = _alpha_sigma(logsnr_s)
    r = math.exp(logsnr_t - logsnr_s)
    one_minus_r = -math.expm1(logsnr_t - logsnr_s)
    mu = (r * alpha_s / alpha_t) * z_t + (one_minus_r * alpha_s) * x_hat  # (B, C, T, H, W)
    # log of (sigma~^2_{s|t})^(1-gamma) (sigma^2_{t|s})^gamma; the (1 - r) factor is shared.
    log_var = math.log(one_minus_r) + 2.0 * (
        (1.0 - gamma) * math.log(sigma_s) + gamma * math.log(sigma_t)
    )
    return mu + math.exp(0.5 * log_var) * noise(z_t.shape, generator, z_t)


def ddim_step(
    z_t: torch.Tensor,
    x_hat: torch.Tensor,
    logsnr_t: float,
    logsnr_s: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Deterministic DDIM (eta = 0): z_s = alpha_s x_hat + sigma_s eps_hat(z_t).

    eps_hat = (z_t - alpha_t x_hat) / sigma_t (sec. 1, eps-parameterization). `generator` is unused.
    """
    alpha_t, sigma_t = _alpha_sigma(logsnr_t)
    alpha_s, sigma_s = _alpha_sigma(logsnr_s)
    eps_hat = (z_t - alpha_t * x_hat) / sigma_t  # (B, C, T, H, W)
    return alpha_s * x_hat + sigma_s * eps_hat


def langevin_step(
    z_s: torch.Tensor,
    x_hat: torch.Tensor,
    logsnr_s: float,
    generator: torch.Generator | None,
    delta: float = 0.1,
) -> torch.Tensor:
    """Langevin corrector z_s <- z_s - 0.5 delta sigma_s eps_hat(z_s) + sqrt(delta) sigma_s eps'.

    Paper sec. 2 (predictor-corrector); eps_hat is implied by the estimate x_hat at z_s.
    """
    _, sigma_s = _alpha_sigma(logsnr_s)
    logsnr = torch.full((z_s.shape[0],), logsnr_s, dtype=z_s.dtype, device=z_s.device)
    eps_hat = eps_from_x(z_s, x_hat, logsnr)  # (B, C, T, H, W)
    eps = noise(z_s.shape, generator, z_s)
    return z_s - 0.5 * delta * sigma_s * eps_hat + math.sqrt(delta) * sigma_s * eps


def _estimate(
    strategy: Strategy, denoise: Denoiser, z: torch.Tensor, logsnr: float, clip_x: bool
) -> torch.Tensor:
    """The strategy's x_hat at a scalar log-SNR, optionally clipped to [-1, 1]."""
    logsnr_b = torch.full((z.shape[0],), logsnr, dtype=z.dtype, device=z.device)  # (B,)
    x_hat = strategy.x_hat(denoise, z, logsnr_b)
    return x_hat.clamp(-1.0, 1.0) if clip_x else x_hat


def _replace(
    strategy: Strategy, z: torch.Tensor, logsnr: float, generator: torch.Generator | None
) -> torch.Tensor:
    """The strategy's replacement at a scalar log-SNR."""
    logsnr_b = torch.full((z.shape[0],), logsnr, dtype=z.dtype, device=z.device)  # (B,)
    return strategy.replace(z, logsnr_b, generator)


@torch.no_grad()
def _sample_loop(
    step: StepFn,
    denoise: Denoiser,
    z: torch.Tensor,
    num_steps: int,
    generator: torch.Generator | None,
    callback: Callable[[StepInfo], None] | None,
    strategy: Strategy | None,
    clip_x: bool,
    delta: float | None = None,
) -> torch.Tensor:
    """Run `step` over the grid; with `delta`, follow every step with one Langevin correction."""
    strategy = Unguided() if strategy is None else strategy
    grid = logsnr_grid(num_steps).tolist()
    for i in range(num_steps):
        logsnr_t, logsnr_s = grid[i], grid[i + 1]
        x_hat = _estimate(strategy, denoise, z, logsnr_t, clip_x)  # (B, C, T, H, W)
        if i == num_steps - 1:
            z = x_hat
        else:
            z = step(z, x_hat, logsnr_t, logsnr_s, generator)
            z = _replace(strategy, z, logsnr_s, generator)
            if delta is not None:
                x_hat_s = _estimate(strategy, denoise, z, logsnr_s, clip_x)
                z = langevin_step(z, x_hat_s, logsnr_s, generator, delta)
                z = _replace(strategy, z, logsnr_s, generator)
        if callback is not None:
            callback(StepInfo(i, num_steps, z, x_hat, logsnr_t))
    return z


def sample_ancestral(
    denoise: Denoiser,
    z: torch.Tensor,
    num_steps: int,
    *,
    gamma: float = 0.0,
    generator: torch.Generator | None = None,
    callback: Callable[[StepInfo], None] | None = None,
    strategy: Strategy | None = None,
    clip_x: bool = False,
) -> torch.Tensor:
    """Ancestral sampling from z_1 = z (B, C, T, H, W) with `ancestral_step` (sec. 2)."""
    step = functools.partial(ancestral_step, gamma=gamma)
    return _sample_loop(step, denoise, z, num_steps, generator, callback, strategy, clip_x)


def sample_ddim(
    denoise: Denoiser,
    z: torch.Tensor,
    num_steps: int,
    *,
    generator: torch.Generator | None = None,
    callback: Callable[[StepInfo], None] | None = None,
    strategy: Strategy | None = None,
    clip_x: bool = False,
) -> torch.Tensor:
    """Deterministic DDIM sampling (eta = 0) from z_1 = z (B, C, T, H, W) with `ddim_step`.

    The generator is only used by strategies that draw noise (e.g. replacement).
    """
    return _sample_loop(ddim_step, denoise, z, num_steps, generator, callback, strategy, clip_x)


def sample_pc(
    denoise: Denoiser,
    z: torch.Tensor,
    num_steps: int,
    *,
    delta: float = 0.1,
    gamma: float = 0.0,
    generator: torch.Generator | None = None,
    callback: Callable[[StepInfo], None] | None = None,
    strategy: Strategy | None = None,
    clip_x: bool = False,
) -> torch.Tensor:
    """Predictor-corrector sampling (sec. 2): an ancestral step, then one Langevin correction.

    The corrector uses the strategy's (guided) estimate at z_s and is followed by the strategy's
    replacement; the paper does not say whether it uses the guided eps. The last step has no
    correction, so num_steps steps cost 2 num_steps - 1 denoiser calls.
    """
    step = functools.partial(ancestral_step, gamma=gamma)
    return _sample_loop(step, denoise, z, num_steps, generator, callback, strategy, clip_x, delta)


SAMPLERS = {"ancestral": sample_ancestral, "ddim": sample_ddim, "pc": sample_pc}


def sample(name: str, denoise: Denoiser, z: torch.Tensor, num_steps: int, **kwargs) -> torch.Tensor:
    """Dispatch to SAMPLERS[name](denoise, z, num_steps, **kwargs)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose from {sorted(SAMPLERS)}")
    return SAMPLERS[name](denoise, z, num_steps, **kwargs)
