"""A Gaussian "video" distribution whose ideal denoiser and conditionals are closed form.

Used to test samplers and conditioning strategies against exact answers (paper secs. 2 and 4).
Every pixel (c, h, w) is an independent AR(1) process over the T frames:
x[:, c, :, h, w] = mu[c, :, h, w] + L n with n ~ N(0, I_T), L L^T = Sigma, Sigma_ij = s^2 rho^|i-j|.
So the covariance of the whole video is Sigma (frames) times the identity (pixels).
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vdm_core.samplers import logsnr_grid
from vdm_core.schedule import alpha_sigma


def ar1_covariance(num_frames: int, rho: float, std: float) -> torch.Tensor:
    """Sigma_ij = std^2 rho^|i - j|, the stationary AR(1) covariance, (T, T) float64."""
    idx = torch.arange(num_frames, dtype=torch.float64)
    return std**2 * rho ** (idx[:, None] - idx[None, :]).abs()


def _over_frames(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply a (T', T) or per-sample (B, T', T) matrix along the frame axis of x (B, C, T, H, W)."""
    if m.ndim == 2:
        return torch.einsum("ij,bcjhw->bcihw", m, x)
    return torch.einsum("bij,bcjhw->bcihw", m, x)


@dataclass(frozen=True)
class GaussianVideo:
    """x ~ N(mean, Sigma (frames) x I (pixels)) with the AR(1) frame covariance `ar1_covariance`.

    mean is a float or a tensor broadcastable to (C, T, H, W).
    """

    num_frames: int
    rho: float
    std: float
    mean: float | torch.Tensor = 0.0
    channels: int = 1
    height: int = 2
    width: int = 2

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(C, T, H, W) of one video."""
        return (self.channels, self.num_frames, self.height, self.width)

    @property
    def chains(self) -> int:
        """Independent AR(1) chains in one video (one per channel and pixel): C * H * W."""
        return self.channels * self.height * self.width

    @property
    def mu(self) -> torch.Tensor:
        """The mean video, (C, T, H, W) float64."""
        return torch.as_tensor(self.mean, dtype=torch.float64).expand(self.shape).clone()

    @property
    def cov(self) -> torch.Tensor:
        """The frame covariance Sigma, (T, T) float64."""
        return ar1_covariance(self.num_frames, self.rho, self.std)

    def sample(
        self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """n draws x = mu + L noise, (n, C, T, H, W)."""
        noise = torch.randn((n, *self.shape), generator=generator, dtype=torch.float64)
        x = self.mu + _over_frames(torch.linalg.cholesky(self.cov), noise)
        return x.to(dtype)

    def _posterior(self, logsnr: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """Gain K and posterior covariance P = Cov[x | z_t], both (B, T, T), for logsnr (B,).

        K = alpha Sigma (alpha^2 Sigma + sigma^2 I)^-1 and P = (Sigma^-1 + (alpha / sigma)^2 I)^-1 =
        (sigma^2 / alpha) K, computed in the eigenbasis Sigma = Q diag(lam) Q^T.
        """
        lam, q = torch.linalg.eigh(self.cov.to(dtype))  # (T,), (T, T)
        alpha, sigma = alpha_sigma(logsnr.to(dtype)[:, None])  # (B, 1)
        denom = alpha**2 * lam + sigma**2  # (B, T)
        gain = (q * (alpha * lam / denom)[:, None, :]) @ q.T
        post_cov = (q * (sigma**2 * lam / denom)[:, None, :]) @ q.T
        return gain, post_cov

    def denoise(self, z: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        """Exact E[x | z_t] for z_t = alpha x + sigma eps (sec. 1), per pixel over the frame axis.

        E[x | z] = mu + Sigma alpha (alpha^2 Sigma + sigma^2 I)^-1 (z - alpha mu).
        Differentiable w.r.t. z; z (B, C, T, H, W), logsnr (B,).
        """
        gain, _ = self._posterior(logsnr, z.dtype)  # (B, T, T)
        alpha, _ = alpha_sigma(logsnr.to(z.dtype))
        mu = self.mu.to(z.dtype)  # (C, T, H, W)
        return mu + _over_frames(gain, z - alpha[:, None, None, None, None] * mu)

    def denoise_given_frames(
        self, z: torch.Tensor, logsnr: torch.Tensor, known_indices: list[int], x_a: torch.Tensor
    ) -> torch.Tensor:
        """Exact E[x | z_t, x^a], what reconstruction guidance approximates (sec. 3.1).

        E[x | z_t, x^a] = x_hat + P_{:,a} P_aa^-1 (x^a - x_hat^a) with x_hat = E[x | z_t] and
        P = Cov[x | z_t]. Eq. 7 with w_r = 1 is this with P_aa^-1 replaced by alpha^2 / sigma^2 I,
        since its gradient term is w_r (alpha^2 / sigma^2) P_{b,a} (x^a - x_hat^a) here.
        z (B, C, T, H, W), logsnr (B,), x_a (B, C, K, H, W) -> (B, C, T, H, W).
        """
        a = list(known_indices)
        x_hat = self.denoise(z, logsnr)  # (B, C, T, H, W)
        _, post_cov = self._posterior(logsnr, z.dtype)  # (B, T, T)
        gain = torch.linalg.solve(post_cov[:, a][:, :, a], post_cov[:, a]).transpose(1, 2)
        return x_hat + _over_frames(gain, x_a.to(z) - x_hat[:, :, a])  # gain (B, T, K)

    def sampler_covariance(
        self, sampler: str, num_steps: int, gamma: float = 0.0, delta: float = 0.1
    ) -> torch.Tensor:
        """The exact covariance over frames (T, T) of `sampler`'s output with this denoiser.

        Every step is linear (sec. 2), so in the eigenbasis of Sigma each mode of the centred latent
        z - alpha mu evolves as v <- c^2 v + n from v = 1 (z_1 ~ N(0, I)), with k_t = alpha_t lam /
        (alpha_t^2 lam + sigma_t^2) and r = e^(l_t - l_s):
        ancestral c = r alpha_s / alpha_t + (1 - r) alpha_s k_t,
        n = (1 - r) sigma_s^(2 (1 - gamma)) sigma_t^(2 gamma); DDIM c = alpha_s k_t + (sigma_s /
        sigma_t)(1 - alpha_t k_t), n = 0; the corrector c = 1 - delta (1 - alpha_s k_s) / 2,
        n = delta sigma_s^2; the last step gives x - mu = k_t (z_t - alpha_t mu). The output mean is
        mu up to a relative alpha_1 ~ 5e-5. The gap to Sigma is the sampler's discretization bias.
        """
        lam, q = torch.linalg.eigh(self.cov)  # (T,), (T, T)
        logsnr = logsnr_grid(num_steps)
        alpha, sigma = alpha_sigma(logsnr)
        k = alpha[:, None] * lam / (alpha[:, None] ** 2 * lam + sigma[:, None] ** 2)  # (N+1, T)
        v = torch.ones_like(lam)
        for i in range(num_steps - 1):
            t, s = i, i + 1
            if sampler == "ddim":
                c, n = alpha[s] * k[t] + sigma[s] / sigma[t] * (1 - alpha[t] * k[t]), 0.0
            else:
                r = torch.exp(logsnr[t] - logsnr[s])
                c = r * alpha[s] / alpha[t] + (1 - r) * alpha[s] * k[t]
                n = (1 - r) * sigma[s] ** (2 * (1 - gamma)) * sigma[t] ** (2 * gamma)
            v = c**2 * v + n
            if sampler == "pc":
                v = (1 - 0.5 * delta * (1 - alpha[s] * k[s])) ** 2 * v + delta * sigma[s] ** 2
        v = k[num_steps - 1] ** 2 * v
        return (q * v) @ q.T

    def conditional(
        self, known_indices: list[int], x_a: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """p(x^b | x^a) of the unknown frames b given known frames a (Gaussian conditioning).

        mean = mu_b + Sigma_ba Sigma_aa^-1 (x^a - mu_a),
        cov = Sigma_bb - Sigma_ba Sigma_aa^-1 Sigma_ab;
        x_a (B, C, K, H, W) -> mean (B, C, T - K, H, W), cov (T - K, T - K) (shared by all pixels).
        """
        a = list(known_indices)
        b = unknown_indices(self.num_frames, a)
        cov = self.cov
        gain = torch.linalg.solve(cov[a][:, a], cov[a][:, b]).T  # (T-K, K) = Sigma_ba Sigma_aa^-1
        mu = self.mu
        mean = mu[:, b] + _over_frames(gain, x_a.to(torch.float64) - mu[:, a])
        return mean.to(x_a.dtype), cov[b][:, b] - gain @ cov[a][:, b]

    def lowres_conditional(
        self, lowres: torch.Tensor, factor: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """p(x | D x = lowres) for D = average pooling by `factor` over (H, W).

        With Cov[x] = Sigma x I and D D^T = I / f^2, Sigma D^T (D Sigma D^T)^-1 = I x f^2 D^T = U
        (nearest upsampling), so mean = mu + U(lowres - D mu) and Cov = Sigma x (I - U D): every
        pixel keeps a fraction (1 - 1/f^2) of its prior variance. Returns mean (B, C, T, H, W) and
        the per-frame marginal variance diag(Sigma) (1 - 1/f^2), (T,).
        """
        mu = self.mu[None]  # (1, C, T, H, W)
        residual = lowres.to(torch.float64) - F.avg_pool3d(mu, (1, factor, factor))
        up = residual.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)
        return (mu + up).to(lowres.dtype), torch.diagonal(self.cov) * (1.0 - 1.0 / factor**2)

    def conditional_errors(
        self, known_indices: list[int], x_a: torch.Tensor, x_b: torch.Tensor
    ) -> "ConditionalErrors":
        """How far samples x^b (B, C, T-K, H, W) given x^a (B, C, K, H, W) are from p(x^b | x^a).

        With this exact (linear) denoiser every sampler and strategy is linear-Gaussian in x^a, so
        e = x^b - E[x^b | x^a] = G (x^a - mu_a) + g + noise. Regressing e on [x^a - mu_a, 1] (rows:
        every sample, channel and pixel, each with its own x^a) separates the two errors:
        mean error = RMS over x^a ~ p and frames of the fitted G (x^a - mu_a) + g, i.e. of the
        sampler's conditional mean minus the true one; variance ratio = Var[residual] /
        Var[x^b | x^a] per unknown frame.
        """
        mean, cov = self.conditional(known_indices, x_a)
        mu_a = self.mu[:, list(known_indices)]
        feats = (x_a.to(torch.float64) - mu_a).permute(0, 1, 3, 4, 2).reshape(-1, x_a.shape[2])
        design = torch.cat([feats, torch.ones(feats.shape[0], 1, dtype=torch.float64)], dim=1)
        e = (x_b.to(torch.float64) - mean).permute(0, 1, 3, 4, 2).reshape(-1, x_b.shape[2])
        coef = torch.linalg.lstsq(design, e).solution  # (K + 1, T - K)
        fitted = design @ coef  # (rows, T - K)
        resid_var = (e - fitted).square().sum(0) / (e.shape[0] - design.shape[1])
        return ConditionalErrors(
            fitted.square().mean().sqrt().item(), resid_var / torch.diagonal(cov)
        )


@dataclass(frozen=True)
class ConditionalErrors:
    """Errors of conditional samples (`GaussianVideo.conditional_errors`).

    mean_error: RMS of (sampler's E[x^b | x^a] - analytic E[x^b | x^a]) over x^a ~ p and frames.
    var_ratio: (T - K,) sampler's Var[x^b | x^a] / analytic Var[x^b | x^a] per unknown frame.
    """

    mean_error: float
    var_ratio: torch.Tensor

    @property
    def var_error(self) -> float:
        """mean over unknown frames of |var_ratio - 1|."""
        return (self.var_ratio - 1.0).abs().mean().item()



# The two reference oracles of the tests and of docs/oracle.md (scripts/oracle_report.py).
# Strongly correlated AR(1) frames with a per-frame mean; 2 channels x 4 x 4 pixels are 32
# independent draws of the frame vector per video.
MOVING_MEAN_VIDEO = GaussianVideo(num_frames=6, rho=0.9, std=1.0,
                                  mean=torch.linspace(-0.5, 0.5, 6)[:, None, None],
                                  channels=2, height=4, width=4)
# Six strongly correlated frames of 2 x 2 pixels: conditioning on some frames fixes the others.
SIX_FRAME_VIDEO = GaussianVideo(num_frames=6, rho=0.9, std=1.0, mean=0.0, channels=1,
                                height=2, width=2)


def unknown_indices(num_frames: int, known_indices: list[int]) -> list[int]:
    """The frame indices b not in a, in increasing order."""
    known = set(known_indices)
    return [i for i in range(num_frames) if i not in known]


def guidable_denoiser(
    cond: GaussianVideo, uncond: GaussianVideo
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """denoise(z, logsnr, uncond_mask): rows with uncond_mask True use `uncond`, others `cond`.

    A stand-in for a jointly trained conditional / unconditional model (sec. 2, eq. 6).
    """

    def denoise(z: torch.Tensor, logsnr: torch.Tensor, uncond_mask: torch.Tensor) -> torch.Tensor:
        mask = uncond_mask.reshape(-1, 1, 1, 1, 1)
        return torch.where(mask, uncond.denoise(z, logsnr), cond.denoise(z, logsnr))

    return denoise


def frame_moments(x: torch.Tensor, mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance over frames of x - mean, pooled over batch, channels and pixels.

    x (B, C, T, H, W), mean broadcastable to x -> (residual mean (T,), covariance (T, T)), float64.
    """
    r = (x.to(torch.float64) - mean.to(torch.float64)).transpose(1, 2).flatten(2)  # (B, T, CHW)
    r = r.transpose(0, 1).flatten(1)  # (T, B*CHW)
    m = r.mean(dim=1)
    c = r - m[:, None]
    return m, c @ c.T / (r.shape[1] - 1)
