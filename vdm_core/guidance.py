"""Conditional sampling: classifier-free guidance, conditioning on known frames or a low-res view.

Paper sec. 2 (classifier-free guidance, eq. 6) and sec. 3.1 (our notes sec. 4: the replacement
method, reconstruction guidance eqs. 7 and 8). A strategy plugs into every sampler of `samplers.py`:
`x_hat(denoise, z, logsnr)` is the (guided) estimate a step uses and `replace(z_s, logsnr_s, gen)`
corrects each new latent. `LowPassReplacement` is not in the paper: it is the replacement method for
a low-resolution observation.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vdm_core.samplers import Denoiser, Strategy, Unguided, noise
from vdm_core.schedule import alpha_sigma, broadcast_to
from vdm_core.unet3d import backprop_frames

GuidableDenoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
Down = Callable[[torch.Tensor], torch.Tensor]
Up = Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]


def cfg_denoiser(denoise_guidable: GuidableDenoiser, w: float) -> Denoiser:
    """Classifier-free guidance, eq. 6: eps~ = (1 + w) eps(z, c) - w eps(z).

    eps = (z - alpha x_hat) / sigma is affine in x_hat at fixed z, so eq. 6 is equivalent to
    x~ = (1 + w) x_c - w x_u. Both branches run in one batched call on [z, z] with
    uncond = [False] * B + [True] * B; w = 0 is a single conditional call.
    """

    def denoise(z: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        b = z.shape[0]
        if w == 0:
            return denoise_guidable(z, logsnr, torch.zeros(b, dtype=torch.bool, device=z.device))
        uncond = torch.arange(2 * b, device=z.device) >= b  # (2B,)
        x = denoise_guidable(torch.cat([z, z]), torch.cat([logsnr, logsnr]), uncond)
        x_c, x_u = x[:b], x[b:]  # (B, C, T, H, W) each
        return (1.0 + w) * x_c - w * x_u

    return denoise


def _frames_last(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B * T, C, H, W), for per-frame 2D resampling."""
    return x.transpose(1, 2).flatten(0, 1)


def _frames_back(y: torch.Tensor, b: int) -> torch.Tensor:
    """(B * T, C, H, W) -> (B, C, T, H, W)."""
    return y.unflatten(0, (b, -1)).transpose(1, 2)


def area_down(size: tuple[int, int]) -> Down:
    """D = average pooling of every frame to `size` (h, w): f x f block means for factor f."""

    def down(x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool3d(x, (x.shape[2], *size))  # (B, C, T, h, w)

    return down


def nearest_up(y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """U for `area_down`: nearest upsampling to `size` (H, W), so that D(U(y)) = y.

    For average pooling U = f^2 D^T = D^T (D D^T)^-1, the pseudo-inverse of D.
    """
    return F.interpolate(y, size=(y.shape[2], *size), mode="nearest")  # (B, C, T, H, W)


def bilinear_down(size: tuple[int, int]) -> Down:
    """D = antialiased bilinear resizing of every frame to `size` (h, w) (the paper's example)."""

    def down(x: torch.Tensor) -> torch.Tensor:
        y = F.interpolate(_frames_last(x), size=size, mode="bilinear", antialias=True)
        return _frames_back(y, x.shape[0])  # (B, C, T, h, w)

    return down


@functools.lru_cache(maxsize=16)
def _bilinear_pinv(n_in: int, n_out: int) -> torch.Tensor:
    """The pseudo-inverse (n_in, n_out) of the matrix A (n_out, n_in) of antialiased bilinear
    resizing along one axis (A is read off by resizing the basis vectors)."""
    basis = torch.eye(n_in, dtype=torch.float64)[:, None, :, None].repeat(1, 1, 1, 2)
    resized = F.interpolate(basis, size=(n_out, 2), mode="bilinear", antialias=True)
    return torch.linalg.pinv(resized[:, 0, :, 0].T)


def bilinear_up(y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """U for `bilinear_down`: the pseudo-inverse, so that D(U(y)) = y.

    Bilinear resizing is separable, D(x) = A_h x A_w^T per frame, so U(y) = A_h^+ y (A_w^+)^T.
    """
    pinv_h = _bilinear_pinv(size[0], y.shape[-2]).to(y)  # (H, h)
    pinv_w = _bilinear_pinv(size[1], y.shape[-1]).to(y)  # (W, w)
    return torch.einsum("Hh,bcthw,Ww->bctHW", pinv_h, y, pinv_w)


@dataclass(frozen=True)
class Observation:
    """What is known about the video x (B, C, T, H, W): some frames, or a low-resolution view.

    Known frames: `frame_indices` (K indices) and `frames` x^a (B, C, K, H, W).
    Low-res view: `lowres` x^a = D(x) (B, C, T, h, w), a differentiable linear downsampler `down`
    and, for `LowPassReplacement`, its right inverse `up(y, (H, W))` with D(U(y)) = y.
    """

    frame_indices: list[int] | None = None
    frames: torch.Tensor | None = None
    lowres: torch.Tensor | None = None
    down: Down | None = None
    up: Up | None = None

    @classmethod
    def known_frames(cls, indices: list[int], frames: torch.Tensor) -> "Observation":
        """Known frames x^a = x[:, :, indices], frames (B, C, K, H, W)."""
        if frames.shape[2] != len(indices):
            raise ValueError(f"{len(indices)} indices but {frames.shape[2]} frames")
        return cls(frame_indices=list(indices), frames=frames)

    @classmethod
    def low_resolution(
        cls,
        lowres: torch.Tensor,
        down: Down | None = None,
        up: Up | None = None,
        mode: str = "area",
    ) -> "Observation":
        """A low-res view x^a = D(x), lowres (B, C, T, h, w).

        D defaults to `mode`: "area" (average pooling, U = nearest upsampling) or "bilinear"
        (antialiased bilinear, U = its pseudo-inverse). A custom `down` needs its own `up` for
        `LowPassReplacement`.
        """
        if down is None:
            size = tuple(lowres.shape[-2:])
            ops = {"area": (area_down, nearest_up), "bilinear": (bilinear_down, bilinear_up)}
            if mode not in ops:
                raise ValueError(f"unknown mode {mode!r}; choose from {sorted(ops)}")
            down, up = ops[mode][0](size), ops[mode][1]
        return cls(lowres=lowres, down=down, up=up)

    @property
    def is_lowres(self) -> bool:
        """True for a low-res view, False for known frames."""
        return self.lowres is not None

    @property
    def target(self) -> torch.Tensor:
        """x^a: the known frames (B, C, K, H, W) or the low-res view (B, C, T, h, w)."""
        return self.lowres if self.is_lowres else self.frames

    def observed(self, x: torch.Tensor) -> torch.Tensor:
        """The observed part of x (B, C, T, H, W): x[:, :, indices] or D(x), shaped as `target`."""
        return self.down(x) if self.is_lowres else x[:, :, self.frame_indices]

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """x^a - observed(x), the reconstruction error of eqs. 7 and 8."""
        return self.target.to(x) - self.observed(x)

    def with_known(self, x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """x (B, C, T, H, W) with its known frames set to values (B, C, K, H, W)."""
        idx = torch.tensor(self.frame_indices, device=x.device)
        return x.index_copy(2, idx, values.to(x).expand(x.shape[0], *values.shape[1:]))

    def with_lowpass(self, x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """x - U(D(x)) + U(values): the projection of x onto {D(x) = values} along range(U).

        With D(U(y)) = y it is idempotent, gives D(result) = values and leaves the high-frequency
        part (I - U D) x unchanged.
        """
        if self.up is None:
            raise ValueError("this low-res observation has no upsampler `up` (D(U(y)) = y)")
        size = tuple(x.shape[-2:])
        return x - self.up(self.down(x), size) + self.up(values.to(x), size)


def _forward_sample(x_a: torch.Tensor, logsnr: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """alpha_s x^a + sigma_s noise, with the per-sample logsnr (B,) broadcast over x^a."""
    alpha, sigma = alpha_sigma(broadcast_to(logsnr, noise))
    return alpha * x_a.to(noise) + sigma * noise


def _replace_frames(
    obs: Observation, z_s: torch.Tensor, logsnr_s: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """z_s with z_s^a replaced by a fresh draw from q(z_s^a | x^a) = N(alpha_s x^a, sigma_s^2 I)."""
    shape = (z_s.shape[0], *obs.frames.shape[1:])  # (B, C, K, H, W)
    eps = noise(shape, generator, z_s)
    return obs.with_known(z_s, _forward_sample(obs.frames, logsnr_s, eps))


def residual_gradient(
    obs: Observation, denoise: Denoiser, z: torch.Tensor, logsnr: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """x_hat(z_t) and grad_z ||x^a - observed(x_hat(z_t))||^2 (eqs. 7 and 8), both (B, C, T, H, W).

    One forward and one backward pass to z only. For known frames the squared error depends on
    the outputs at those frames only, which lets the U-Net skip part of the backward pass for
    the other frames (`backprop_frames`).
    """
    with torch.enable_grad(), backprop_frames(None if obs.is_lowres else obs.frame_indices):
        z_in = z.detach().requires_grad_(True)
        x_hat = denoise(z_in, logsnr)  # (B, C, T, H, W)
        (grad,) = torch.autograd.grad(obs.residual(x_hat).square().sum(), z_in)
    return x_hat.detach(), grad


@dataclass(frozen=True)
class Replacement:
    """The replacement method (sec. 3.1): after every step, z_s^a ~ q(z_s^a | x^a).

    The estimate of the unknown frames is the model's x_hat^b; for the known frames we use the known
    pixels x^a (E[x^a | z_t, x^a] = x^a exactly), so the final step returns x^a unchanged.
    """

    obs: Observation

    def x_hat(self, denoise: Denoiser, z: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        """[x^a, x_hat^b(z_t)], (B, C, T, H, W)."""
        return self.obs.with_known(denoise(z, logsnr), self.obs.frames)

    def replace(
        self, z_s: torch.Tensor, logsnr_s: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """z_s^a <- alpha_s x^a + sigma_s eps."""
        return _replace_frames(self.obs, z_s, logsnr_s, generator)


@dataclass(frozen=True)
class ReconstructionGuidance:
    """Reconstruction guidance, eq. 7 (known frames) and eq. 8 (low-res view).

    Eq. 7: x~^b = x_hat^b - (w_r alpha_t / 2) grad_{z^b} ||x^a - x_hat^a(z_t)||^2, plus the
    replacement of z_s^a (the paper's "variant of the replacement method"; x~^a = x^a as in
    `Replacement`). Eq. 8: x~ = x_hat - (w_r alpha_t / 2) grad_z ||x^a - D(x_hat(z_t))||^2 over the
    whole z, no replacement. w_r = 1 means q(x^a | z_t) ~ N(x_hat^a, sigma^2 / alpha^2 I).
    For D = f x f average pooling the noise of D(z_t) has variance sigma^2 / f^2, so eq. 8 becomes
    exact in the low-noise limit at w_r = f^2 (and overshoots for w_r > 2 f^2); see docs/oracle.md.
    """

    obs: Observation
    w_r: float = 1.0

    def estimate(
        self, denoise: Denoiser, z: torch.Tensor, logsnr: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_hat(z_t), correction), both (B, C, T, H, W): one forward and one backward pass.

        correction = -(w_r alpha_t / 2) grad_z ||x^a - x_hat^a(z_t)||^2 is what eqs. 7 and 8 add
        to the model's estimate, over all of z. Eq. 7 uses its part at the unknown frames x^b
        (the known frames' estimate is x^a itself, see `guided`); eq. 8 uses all of it.
        """
        x_hat, grad = residual_gradient(self.obs, denoise, z, logsnr)
        alpha, _ = alpha_sigma(broadcast_to(logsnr, z))
        return x_hat, -(0.5 * self.w_r * alpha * grad)

    def guided(self, x_hat: torch.Tensor, correction: torch.Tensor) -> torch.Tensor:
        """The guided estimate x~ = x_hat + correction (eq. 8), with x~^a = x^a for known frames
        (eq. 7), (B, C, T, H, W). x_hat + (-c) equals x_hat - c bit for bit (IEEE 754)."""
        x_tilde = x_hat + correction
        if self.obs.is_lowres:
            return x_tilde
        return self.obs.with_known(x_tilde, self.obs.frames)

    def x_hat(self, denoise: Denoiser, z: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        """The guided estimate x~ (B, C, T, H, W): one forward and one backward pass to z only."""
        return self.guided(*self.estimate(denoise, z, logsnr))

    def replace(
        self, z_s: torch.Tensor, logsnr_s: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Replacement of z_s^a for known frames; identity for a low-res view (eq. 8)."""
        if self.obs.is_lowres:
            return z_s
        return _replace_frames(self.obs, z_s, logsnr_s, generator)


@dataclass(frozen=True)
class LowPassReplacement:
    """Replacement for a low-res view (not in the paper): swap the D-content of z_s each step.

    z_s <- z_s - U(D(z_s)) + U(alpha_s x^a + sigma_s D(eps)), eps ~ N(0, I) at full resolution.
    Under q(z_s | x) = N(alpha_s x, sigma_s^2 I), D(z_s) = alpha_s D(x) + sigma_s D(eps) with
    D(eps) ~ N(0, D D^T). For average pooling over f x f blocks D D^T = I / f^2, so D(eps) has the
    law of eps_lowres / f with eps_lowres ~ N(0, I) at low res: unscaled low-res noise would be f
    times too strong. Drawing D(eps) gives the right covariance for any linear D (e.g. bilinear).
    The estimate is projected the same way, x_hat <- x_hat - U(D(x_hat)) + U(x^a), so the final
    sample has D(x) = x^a exactly.
    """

    obs: Observation

    def x_hat(self, denoise: Denoiser, z: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        """x_hat(z_t) with its D-content set to x^a, (B, C, T, H, W)."""
        return self.obs.with_lowpass(denoise(z, logsnr), self.obs.lowres)

    def replace(
        self, z_s: torch.Tensor, logsnr_s: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """D-content of z_s <- alpha_s x^a + sigma_s D(eps)."""
        eps = noise(z_s.shape, generator, z_s)
        low = _forward_sample(self.obs.lowres, logsnr_s, self.obs.down(eps))  # (B, C, T, h, w)
        return self.obs.with_lowpass(z_s, low)


def make_strategy(name: str, obs: Observation | None = None, w_r: float = 1.0) -> Strategy:
    """A strategy by name: "none", "replacement", "reconstruction" (eqs. 7/8) or "lowpass"."""
    if name == "none":
        return Unguided()
    if obs is None:
        raise ValueError(f"strategy {name!r} needs an Observation")
    if name == "replacement":
        if obs.is_lowres:
            raise ValueError("replacement needs known frames; use 'lowpass' for a low-res view")
        return Replacement(obs)
    if name == "reconstruction":
        return ReconstructionGuidance(obs, w_r)
    if name == "lowpass":
        if not obs.is_lowres:
            raise ValueError("lowpass needs a low-res view; use 'replacement' for known frames")
        return LowPassReplacement(obs)
    raise ValueError(
        f"unknown strategy {name!r}; choose none, replacement, reconstruction, lowpass"
    )
