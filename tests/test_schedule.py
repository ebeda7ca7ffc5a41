"""Noise schedule and parameterization conversions (paper sec. 2)."""

import math

import torch

from vdm_core.diffusion import diffusion_loss, loss_weight, x_hat_from_output
from vdm_core.schedule import (
    alpha_sigma,
    eps_from_x,
    logsnr_schedule_cosine,
    q_sample,
    t_from_logsnr,
    v_from_x_eps,
    x_from_eps,
    x_from_v,
)


def test_cosine_schedule_endpoints_and_values():
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    logsnr = logsnr_schedule_cosine(t)
    torch.testing.assert_close(logsnr[[0, 2, 3]], torch.tensor([20.0, 0.0, -20.0],
                                                                dtype=torch.float64))
    # alpha ~ cos(pi t / 2) away from the truncated ends: logsnr(0.25) = -2 log tan(pi / 8)
    assert abs(logsnr[1].item() + 2 * math.log(math.tan(math.pi / 8))) < 1e-3
    assert torch.all(logsnr.diff() < 0)
    torch.testing.assert_close(t_from_logsnr(logsnr), t)


def test_variance_preserving():
    logsnr = torch.linspace(-20, 20, 41, dtype=torch.float64)
    alpha, sigma = alpha_sigma(logsnr)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(logsnr))
    torch.testing.assert_close(torch.log(alpha**2 / sigma**2), logsnr)


def test_conversions_roundtrip():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 2, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(x.shape, generator=g, dtype=torch.float64)
    logsnr = torch.tensor([-5.0, 0.0, 3.0, 10.0], dtype=torch.float64)
    z = q_sample(x, logsnr, eps)
    torch.testing.assert_close(x_from_eps(z, eps, logsnr), x)
    torch.testing.assert_close(eps_from_x(z, x, logsnr), eps)
    v = v_from_x_eps(x, eps, logsnr)
    torch.testing.assert_close(x_from_v(z, v, logsnr), x)
    torch.testing.assert_close(x_hat_from_output(v, z, logsnr, "v"), x)


def test_loss_weights_match_their_parameterizations():
    logsnr = torch.tensor([-4.0, 0.0, 4.0])
    snr = logsnr.exp()
    torch.testing.assert_close(loss_weight(logsnr, "eps_mse"), snr)
    torch.testing.assert_close(loss_weight(logsnr, "v_mse"), 1 + snr)
    torch.testing.assert_close(loss_weight(logsnr, "min_snr"), snr.clamp(max=5.0))


class Oracle(torch.nn.Module):
    """A 'network' that knows x: outputs the exact target, so the loss must be exactly zero."""

    def __init__(self, parameterization, x, gen_state):
        super().__init__()
        self.config = type("C", (), {"parameterization": parameterization})
        self.x, self.gen_state = x, gen_state

    def forward(self, z, logsnr, *args):
        alpha, sigma = alpha_sigma(logsnr.view(-1, 1, 1, 1, 1))
        eps = (z - alpha * self.x) / sigma
        if self.config.parameterization == "eps":
            return eps
        return alpha * eps - sigma * self.x


def test_loss_is_zero_for_the_true_target_and_positive_otherwise():
    x = torch.rand(3, 3, 2, 4, 4) * 2 - 1
    for param in ("eps", "v"):
        model = Oracle(param, x, None)
        loss = diffusion_loss(model, x, generator=torch.Generator().manual_seed(0))
        assert loss.shape == (3,) and loss.max() < 1e-6
        wrong = Oracle(param, x + 0.1, None)
        assert diffusion_loss(wrong, x, generator=torch.Generator().manual_seed(0)).min() > 0


def test_heavy_share_draws_the_heavy_band_that_much_more_often_with_the_same_generator_use():
    from vdm_core.diffusion import HEAVY_LOGSNR, sample_logsnr

    n, share = 200_000, 0.25
    plain_gen, heavy_gen = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    plain = sample_logsnr(n, plain_gen)
    heavy = sample_logsnr(n, heavy_gen, heavy_share=share)
    # one uniform per sample either way: the draws after it (noise, dropout) stay paired
    assert torch.equal(torch.rand(4, generator=plain_gen), torch.rand(4, generator=heavy_gen))
    assert torch.equal(plain, sample_logsnr(n, torch.Generator().manual_seed(3), 0.0))
    band = 1.0 - float(t_from_logsnr(torch.tensor(HEAVY_LOGSNR)))  # U[0, 1]'s share of the band
    for draws, expected in ((plain, band), (heavy, share + (1 - share) * band)):
        frac = float((draws < HEAVY_LOGSNR).float().mean())
        assert abs(frac - expected) < 4 * math.sqrt(expected * (1 - expected) / n), (frac, expected)
    # outside the band the mixture keeps U[0, 1]'s shape: equal shares above and below logsnr 0
    above = heavy[heavy >= HEAVY_LOGSNR]
    t_above = t_from_logsnr(above)
    below_half = float((t_above < 0.5).float().mean())
    expected = 0.5 / (1.0 - band)
    assert abs(below_half - expected) < 0.01, (below_half, expected)
    assert heavy.min() >= -20.0 - 1e-4 and heavy.max() <= 20.0 + 1e-4
