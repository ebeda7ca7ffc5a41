"""Samplers (paper sec. 2) checked against the closed-form Gaussian video oracle."""

import math

import pytest
import torch

from vdm_core.oracle import MOVING_MEAN_VIDEO, GaussianVideo, frame_moments
from vdm_core.samplers import (
    SAMPLERS,
    StepInfo,
    ancestral_step,
    logsnr_grid,
    sample,
    sample_ancestral,
    sample_ddim,
    sample_pc,
)
from vdm_core.schedule import LOGSNR_MAX, LOGSNR_MIN

ORACLE_SMALL = GaussianVideo(num_frames=3, rho=0.5, std=0.5, mean=0.2)


def _noise(shape, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=dtype), gen


def test_logsnr_grid_is_uniform_in_t_and_clipped():
    grid = logsnr_grid(8)
    assert grid.shape == (9,)
    assert grid[0].item() == pytest.approx(LOGSNR_MIN, abs=1e-6)
    assert grid[-1].item() == pytest.approx(LOGSNR_MAX, abs=1e-6)
    assert torch.all(grid[1:] > grid[:-1])
    with pytest.raises(ValueError):
        logsnr_grid(0)


@pytest.mark.parametrize("gamma", [0.0, 0.3, 1.0])
def test_ancestral_step_variance_interpolates_the_two_bounds(gamma):
    """z_t = x_hat = 0 leaves only the noise: std^2 = (1-r) sigma_s^(2(1-g)) sigma_t^(2g)."""
    logsnr_t, logsnr_s = -1.0, 2.0
    z = torch.zeros(1, 1, 1, 1, 1000, dtype=torch.float64)
    out = ancestral_step(z, z, logsnr_t, logsnr_s, torch.Generator().manual_seed(3), gamma)
    eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    one_minus_r = 1.0 - math.exp(logsnr_t - logsnr_s)
    var_lower = one_minus_r / (1.0 + math.exp(logsnr_s))  # sigma~^2_{s|t}
    var_upper = one_minus_r / (1.0 + math.exp(logsnr_t))  # sigma^2_{t|s}
    std = math.sqrt(var_lower ** (1.0 - gamma) * var_upper**gamma)
    torch.testing.assert_close(out, std * eps)


def test_ancestral_step_mean_is_the_posterior_mean():
    """Without noise (gamma irrelevant), the mean is mu~_{s|t}(z_t, x) of sec. 2."""
    logsnr_t, logsnr_s = 0.5, 3.0
    z_t, _ = _noise((2, 1, 3, 2, 2), seed=1, dtype=torch.float64)
    x, _ = _noise((2, 1, 3, 2, 2), seed=2, dtype=torch.float64)
    gen_a, gen_b = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    out = ancestral_step(z_t, x, logsnr_t, logsnr_s, gen_a)
    noise_only = ancestral_step(
        torch.zeros_like(z_t), torch.zeros_like(x), logsnr_t, logsnr_s, gen_b
    )
    r = math.exp(logsnr_t - logsnr_s)
    alpha_t = math.sqrt(1.0 / (1.0 + math.exp(-logsnr_t)))
    alpha_s = math.sqrt(1.0 / (1.0 + math.exp(-logsnr_s)))
    mu = r * alpha_s / alpha_t * z_t + (1.0 - r) * alpha_s * x
    torch.testing.assert_close(out - noise_only, mu)


# Tolerance: the per-frame sample mean of n = 2000 videos x 32 pixels = 64000 draws has standard
# error SE = sqrt(C_ii / n); a covariance entry has SE = sqrt((C_ii C_jj + C_ij^2) / n). We require
# every standardized error below 5 (P(|N(0,1)| > 5) ~ 6e-7 per entry), against the *exact*
# covariance of the sampler's output (`sampler_covariance`, same steps). Separately, the
# discretization bias of that exact covariance relative to the oracle's Sigma must be below 0.05
# (max entry, Sigma_ii = 1) at 128 steps and shrink ~1/N (x 3 less at 512 steps).
@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("ancestral", {}), ("ancestral", {"gamma": 0.3}), ("ddim", {}), ("pc", {"delta": 0.1})],
)
def test_sampler_matches_oracle_mean_and_covariance(name, kwargs):
    num_steps, n = 128, 2000
    z, gen = _noise((n, *MOVING_MEAN_VIDEO.shape), seed=10)
    x = sample(name, MOVING_MEAN_VIDEO.denoise, z, num_steps, generator=gen, **kwargs)
    mean_err, cov_hat = frame_moments(x, MOVING_MEAN_VIDEO.mu)
    expected = MOVING_MEAN_VIDEO.sampler_covariance(name, num_steps, **kwargs)
    draws = n * MOVING_MEAN_VIDEO.chains
    var = torch.diagonal(expected)
    assert (mean_err.abs() / (var / draws).sqrt()).max() < 5.0
    se_cov = ((var[:, None] * var[None, :] + expected**2) / draws).sqrt()
    assert ((cov_hat - expected).abs() / se_cov).max() < 5.0
    bias = (expected - MOVING_MEAN_VIDEO.cov).abs().max()
    assert bias < 0.05
    fine = MOVING_MEAN_VIDEO.sampler_covariance(name, 512, **kwargs)
    assert (fine - MOVING_MEAN_VIDEO.cov).abs().max() < bias / 3


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_one_step_returns_x_hat_at_logsnr_min(name):
    z, gen = _noise((2, 1, 3, 2, 2))
    x = sample(name, ORACLE_SMALL.denoise, z, 1, generator=gen)
    logsnr = torch.full((2,), LOGSNR_MIN)
    torch.testing.assert_close(x, ORACLE_SMALL.denoise(z, logsnr))


def test_ddim_recovers_a_point_mass_exactly():
    """With x_hat = x0 everywhere, DDIM keeps z_s = alpha_s x0 + sigma_s eps_1 and returns x0."""
    x0 = torch.linspace(-1, 1, 12).reshape(1, 1, 3, 2, 2)

    def denoise(z, logsnr):
        return x0.expand_as(z)

    z, _ = _noise((2, 1, 3, 2, 2))
    torch.testing.assert_close(sample_ddim(denoise, z, 7), x0.expand_as(z))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_callback_reports_every_step(name):
    infos: list[StepInfo] = []
    z, gen = _noise((2, 1, 3, 2, 2))
    x = sample(name, ORACLE_SMALL.denoise, z, 5, generator=gen, callback=infos.append)
    assert [info.i for info in infos] == list(range(5))
    assert all(info.num_steps == 5 for info in infos)
    assert infos[0].logsnr == pytest.approx(LOGSNR_MIN, abs=1e-6)
    assert all(a.logsnr < b.logsnr for a, b in zip(infos, infos[1:], strict=False))
    assert torch.equal(infos[-1].z, x)
    assert infos[-1].x_hat.shape == x.shape


def test_pc_calls_denoiser_twice_per_step_but_the_last():
    calls = []

    def denoise(z, logsnr):
        calls.append(logsnr[0].item())
        return ORACLE_SMALL.denoise(z, logsnr)

    z, gen = _noise((2, 1, 3, 2, 2))
    sample_pc(denoise, z, 6, generator=gen)
    assert len(calls) == 2 * 6 - 1
    grid = logsnr_grid(6)
    # predictor at t_i, corrector at s = t_{i+1} (the same log-SNR as the next predictor)
    assert calls[1] == pytest.approx(grid[1].item(), rel=1e-5)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_same_seed_same_samples_and_any_shape(name):
    for shape in [(1, 1, 4, 2, 2), (3, 3, 8, 3, 3), (2, 2, 5, 4, 2)]:
        oracle = GaussianVideo(
            num_frames=shape[2],
            rho=0.8,
            std=0.7,
            channels=shape[1],
            height=shape[3],
            width=shape[4],
        )
        runs = []
        for seed in (0, 0, 1):
            z, gen = _noise(shape, seed=seed)
            runs.append(sample(name, oracle.denoise, z, 4, generator=gen))
        assert runs[0].shape == shape
        assert torch.equal(runs[0], runs[1])
        assert not torch.equal(runs[0], runs[2])


def test_clip_x_bounds_the_estimate():
    def denoise(z, logsnr):
        return torch.full_like(z, 3.0)

    z, gen = _noise((2, 1, 3, 2, 2))
    assert torch.all(sample_ancestral(denoise, z, 3, generator=gen) == 3.0)
    clipped = sample_ancestral(denoise, z, 3, generator=gen, clip_x=True)
    assert torch.all(clipped == 1.0)


def test_dispatch():
    assert SAMPLERS == {"ancestral": sample_ancestral, "ddim": sample_ddim, "pc": sample_pc}
    z, _ = _noise((2, 1, 3, 2, 2))
    torch.testing.assert_close(
        sample("ddim", ORACLE_SMALL.denoise, z, 5), sample_ddim(ORACLE_SMALL.denoise, z, 5)
    )
    with pytest.raises(ValueError):
        sample("euler", ORACLE_SMALL.denoise, z, 5)
