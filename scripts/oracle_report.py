"""Regenerate docs/oracle.md: samplers and conditioning strategies vs a closed-form Gaussian oracle.

Run from the repository root (about a minute on 2 CPU cores):

    PYTHONPATH=. nice -n 10 .venv/bin/python scripts/oracle_report.py

Every number is seeded, so reruns reproduce the file exactly (on the same torch build).
"""

import argparse
import time
from pathlib import Path

import torch

from vdm_core.guidance import Observation, make_strategy
from vdm_core.oracle import (
    MOVING_MEAN_VIDEO,
    SIX_FRAME_VIDEO,
    GaussianVideo,
    frame_moments,
    unknown_indices,
)
from vdm_core.samplers import sample
from vdm_core.schedule import alpha_sigma

COMMAND = "PYTHONPATH=. nice -n 10 .venv/bin/python scripts/oracle_report.py"
HIRES = GaussianVideo(num_frames=4, rho=0.9, std=1.0, mean=0.0, channels=1, height=4, width=4)
TASKS = {"extension": [0, 1, 2], "interpolation": [0, 5]}
SAMPLER_CONFIGS = [
    ("ancestral", {}),
    ("ancestral", {"gamma": 0.3}),
    ("ddim", {}),
    ("pc", {"delta": 0.1}),
]
GUIDANCE_WEIGHTS = [1.0, 2.0, 5.0, 10.0]
FINDINGS = """## Findings (for the default parameters)

- **Samplers.** Ancestral, DDIM and predictor-corrector samples match the oracle up to Monte
  Carlo error once each sampler's own discretization bias is accounted for (section 1). That bias
  is real and decays like 1/steps: the ancestral step uses E[x | z_t] and drops Var[x | z_t], so
  samples are too narrow, most in the low-variance (innovation) modes of Sigma.
- **Replacement is incoherent** (section 2): its x^b misses a large part of the dependence on
  x^a, whatever the step count, and its conditional variance is too large (ratios > 1): the unknown
  frames behave partly like unconditional samples, the paper's sec. 3.1 diagnosis.
- **Reconstruction guidance** (eq. 7) fixes much of this. At w_r = 1 it is exact only at low noise
  (section 3): it assumes Cov[x^a | z_t] = sigma^2 / alpha^2 I, far too large at high noise, so
  the guidance is too weak there and w_r > 1 helps, as the paper reports. Too large a w_r
  over-guides: the mean error grows again and the variance collapses (ratios < 1). The corrector
  (pc) adds most when combined with guidance, as the paper found.
- **Low resolution** (section 4): low-pass replacement is exact for this oracle (its low and high
  frequencies are independent). Eq. 8 needs w_r ~ f^2 for average pooling because D shrinks the
  noise by 1/f^2."""


def _noise(shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Generator]:
    """Seeded z_1 ~ N(0, I) (float64) and the generator to continue with."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=torch.float64), gen


def _label(name: str, kwargs: dict) -> str:
    """A sampler name with its non-default options, e.g. ancestral (gamma=0.3)."""
    opts = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    return f"{name} ({opts})" if opts else name


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def unconditional_section(n: int) -> str:
    """Mean / covariance of each sampler's samples vs the oracle (sec. 2 samplers)."""
    rows = []
    draws = n * MOVING_MEAN_VIDEO.chains
    lam = torch.linalg.eigvalsh(MOVING_MEAN_VIDEO.cov)
    for name, kwargs in SAMPLER_CONFIGS:
        for num_steps in (32, 128, 512):
            z, gen = _noise((n, *MOVING_MEAN_VIDEO.shape), seed=1)
            x = sample(name, MOVING_MEAN_VIDEO.denoise, z, num_steps, generator=gen, **kwargs)
            mean_err, cov = frame_moments(x, MOVING_MEAN_VIDEO.mu)
            exact = MOVING_MEAN_VIDEO.sampler_covariance(name, num_steps, **kwargs)
            q = torch.linalg.eigh(MOVING_MEAN_VIDEO.cov).eigenvectors
            mode_ratio = torch.diagonal(q.T @ exact @ q) / lam  # per eigenmode of Sigma
            se_mean = (torch.diagonal(exact) / draws).sqrt()
            rows.append(
                [
                    _label(name, kwargs),
                    str(num_steps),
                    f"{(mean_err.abs() / se_mean).max():.2f}",
                    f"{(cov - MOVING_MEAN_VIDEO.cov).abs().max():.4f}",
                    f"{(cov - exact).abs().max():.4f}",
                    f"{(exact - MOVING_MEAN_VIDEO.cov).abs().max():.4f}",
                    f"{mode_ratio.min():.3f}",
                ]
            )
    header = [
        "sampler",
        "steps",
        "max abs mean err / SE",
        "max abs (sample cov - Sigma)",
        "max abs (sample cov - exact sampler cov)",
        "max abs (exact sampler cov - Sigma) = bias",
        "min eigenmode variance ratio",
    ]
    se_cov = (2 / draws) ** 0.5
    return "\n\n".join(
        [
            "## 1. Unconditional samplers",
            f"{n} videos of shape (C, T, H, W) = {MOVING_MEAN_VIDEO.shape}: {draws} draws of "
            "the frame vector. "
            f"Mean `linspace(-0.5, 0.5)` over frames, rho = {MOVING_MEAN_VIDEO.rho}, "
            f"std = {MOVING_MEAN_VIDEO.std}; "
            f"eigenvalues of Sigma {[round(v, 3) for v in lam.tolist()]}. "
            f"SE of a variance entry ~ sqrt(2 / {draws}) = {se_cov:.4f}. "
            "'exact sampler cov' is `GaussianVideo.sampler_covariance`: the covariance the sampler "
            "produces with infinitely many samples (every step is linear for this oracle), so "
            "'sample cov - exact' is pure Monte Carlo error and 'bias' is the discretization error "
            "of the sampler itself. The last column is min over eigenmodes of Sigma of "
            "(sampler variance / true variance): the ancestral sampler drops the posterior "
            "variance of x at every step, which costs most in the low-variance (innovation) modes.",
            _table(header, rows),
        ]
    )


def guidance_accuracy_section(n: int) -> str:
    """One-step error of eq. 7 vs the exact E[x^b | z_t, x^a], as a function of log-SNR."""
    known = TASKS["extension"]
    b = unknown_indices(SIX_FRAME_VIDEO.num_frames, known)
    x = SIX_FRAME_VIDEO.sample(n, torch.Generator().manual_seed(2), dtype=torch.float64)
    eps, _ = _noise(x.shape, seed=3)
    obs = Observation.known_frames(known, x[:, :, known])
    rows = []
    for logsnr_value in (-10.0, -5.0, -2.0, 0.0, 2.0, 5.0, 10.0):
        logsnr = torch.full((n,), logsnr_value, dtype=torch.float64)
        alpha, sigma = alpha_sigma(torch.tensor(logsnr_value, dtype=torch.float64))
        z = alpha * x + sigma * eps
        exact = SIX_FRAME_VIDEO.denoise_given_frames(z, logsnr, known, obs.frames)[:, :, b]
        plain = SIX_FRAME_VIDEO.denoise(z, logsnr)[:, :, b]
        scale = (plain - exact).norm()
        errors = []
        for w_r in GUIDANCE_WEIGHTS:
            strategy = make_strategy("reconstruction", obs, w_r)
            guided = strategy.x_hat(SIX_FRAME_VIDEO.denoise, z, logsnr)[:, :, b]
            errors.append(f"{((guided - exact).norm() / scale):.3f}")
        unit = make_strategy("reconstruction", obs, 1.0).x_hat(SIX_FRAME_VIDEO.denoise, z,
                                                               logsnr)[:, :, b]
        step = unit - plain  # the guidance term at w_r = 1
        best = ((exact - plain) * step).sum() / step.square().sum()
        best_err = (plain + best * step - exact).norm() / scale
        rows.append([f"{logsnr_value:g}", *errors, f"{best:.2f}", f"{best_err:.3f}"])
    header = ["logsnr", *[f"w_r = {w:g}" for w in GUIDANCE_WEIGHTS], "best w_r", "its error"]
    return "\n\n".join(
        [
            "## 3. Reconstruction guidance, one step (eq. 7 vs the exact conditional)",
            f"Task 'extension' (known frames {known}). For {n} videos, z_t = alpha x + sigma eps; "
            "entries are |x~^b - E[x^b | z_t, x^a]| / |x_hat^b - E[x^b | z_t, x^a]| (0 = exact, "
            "1 = no better than ignoring x^a, which is what replacement uses for x^b). "
            "E[x | z_t, x^a] = x_hat + P_{:,a} P_aa^-1 (x^a - x_hat^a) with P = Cov[x | z_t] "
            "(`GaussianVideo.denoise_given_frames`); eq. 7 at w_r = 1 replaces P_aa by "
            "sigma^2 / alpha^2 I, which is right as logsnr -> inf but far too large when the noise "
            "is high (P_aa -> Sigma_aa), so the guidance is too weak there. 'best w_r' is the "
            "least-squares optimal single weight at that log-SNR.",
            _table(header, rows),
        ]
    )


def _conditional_samples(
    method: str, w_r: float, sampler: str, num_steps: int, obs: Observation
) -> torch.Tensor:
    """Samples given obs's known frames: a strategy by name, or "exact" E[x | z_t, x^a]."""
    z, gen = _noise((obs.frames.shape[0], *SIX_FRAME_VIDEO.shape), seed=5)
    if method != "exact":
        strategy = make_strategy(method, obs, w_r)
        return sample(sampler, SIX_FRAME_VIDEO.denoise, z, num_steps, generator=gen,
                      strategy=strategy)

    def denoise(z: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
        return SIX_FRAME_VIDEO.denoise_given_frames(z, logsnr, obs.frame_indices, obs.frames)

    return sample(sampler, denoise, z, num_steps, generator=gen)


def conditional_section(n: int) -> str:
    """x^b | x^a sampling: replacement vs reconstruction guidance vs the exact conditional."""
    parts = ["## 2. Conditional sampling of unknown frames"]
    x = SIX_FRAME_VIDEO.sample(n, torch.Generator().manual_seed(4), dtype=torch.float64)
    methods = [("replacement", "replacement", 0.0)]
    methods += [(f"reconstruction w_r={w:g}", "reconstruction", w) for w in GUIDANCE_WEIGHTS]
    methods += [("exact E[x | z_t, x^a] (reference)", "exact", 0.0)]
    header = ["method", "sampler", "steps", "mean error", "variance error", "variance ratios"]
    for task, known in TASKS.items():
        b = unknown_indices(SIX_FRAME_VIDEO.num_frames, known)
        obs = Observation.known_frames(known, x[:, :, known])
        cond_mean, cond_cov = SIX_FRAME_VIDEO.conditional(known, obs.frames)
        signal = (cond_mean - SIX_FRAME_VIDEO.mu[:, b]).square().mean().sqrt()
        rows = []
        for label, method, w_r in methods:
            for sampler in ("ancestral", "pc"):
                for num_steps in (32, 128):
                    out = _conditional_samples(method, w_r, sampler, num_steps, obs)
                    errors = SIX_FRAME_VIDEO.conditional_errors(known, obs.frames, out[:, :, b])
                    ratios = " ".join(f"{r:.2f}" for r in errors.var_ratio.tolist())
                    row = [label, sampler, str(num_steps), f"{errors.mean_error:.3f}"]
                    rows.append([*row, f"{errors.var_error:.3f}", ratios])
        variances = [round(v, 3) for v in cond_cov.diagonal().tolist()]
        parts += [
            f"### Task '{task}': known frames {known}, unknown frames {b}",
            f"Analytic p(x^b | x^a): variances {variances}; RMS of E[x^b | x^a] - mu^b over the "
            f"data = {signal:.3f} (the mean error of a sampler that ignored x^a entirely).",
            _table(header, rows),
        ]
    return "\n\n".join(parts)


def lowres_section(n: int) -> str:
    """Low-res conditioning: eq. 8 vs low-pass replacement."""
    x = HIRES.sample(n, torch.Generator().manual_seed(6), dtype=torch.float64)
    rows = []
    for mode in ("area", "bilinear"):
        size = (HIRES.height // 2, HIRES.width // 2)
        y = Observation.low_resolution(torch.zeros(1, 1, 1, *size), mode=mode).down(x)
        obs = Observation.low_resolution(y, mode=mode)
        _, cond_var = HIRES.lowres_conditional(y, 2)
        methods = [("lowpass replacement", "lowpass", 0.0)]
        methods += [(f"eq. 8 w_r={w:g}", "reconstruction", w) for w in (1.0, 2.0, 4.0, 8.0, 10.0)]
        for label, name, w_r in methods:
            for sampler in ("ancestral", "pc"):
                for num_steps in (32, 128):
                    z, gen = _noise(x.shape, seed=7)
                    strategy = make_strategy(name, obs, w_r)
                    out = sample(
                        sampler, HIRES.denoise, z, num_steps, generator=gen, strategy=strategy
                    )
                    low_err = (obs.down(out) - y).square().mean().sqrt() / y.std()
                    high = out - obs.up(obs.down(out), (HIRES.height, HIRES.width))
                    _, cov = frame_moments(high, torch.zeros(()))
                    var_ratio = (torch.diagonal(cov) / cond_var).mean()
                    rows.append(
                        [
                            mode,
                            label,
                            sampler,
                            str(num_steps),
                            f"{low_err:.4f}",
                            f"{var_ratio:.3f}" if mode == "area" else "-",
                        ]
                    )
    header = [
        "D",
        "method",
        "sampler",
        "steps",
        "RMS(D(x) - x^a) / std(x^a)",
        "high-freq var ratio",
    ]
    return "\n\n".join(
        [
            "## 4. Low-resolution conditioning (eq. 8 and low-pass replacement)",
            f"{n} videos of shape (C, T, H, W) = {HIRES.shape}, rho = {HIRES.rho}, observed "
            "through D = 2 x 2 average pooling ('area') or antialiased bilinear downsampling to "
            "2 x 2. For 'area', p(x | D x = x^a) is closed form "
            "(`GaussianVideo.lowres_conditional`): the high-frequency part (I - U D) x keeps a "
            "fraction 1 - 1/f^2 of the prior variance; the last column is its sample variance over "
            "that analytic value (the oracle denoiser commutes with U D, so here both methods "
            "leave it to the unconditional sampler and its discretization bias, see section 1). "
            "Eq. 8 at w_r = 1 models the noise of D(z_t) as sigma^2 / alpha^2 I, but average "
            "pooling shrinks it to sigma^2 / (alpha^2 f^2): the low-noise-exact weight is "
            "w_r = f^2 = 4, and w_r > 2 f^2 = 8 overshoots. For the bilinear D, D D^T is not a "
            "multiple of I (its eigenvalues give per-mode ideal weights of about 4 to 14), so no "
            "single w_r is exact.",
            _table(header, rows),
        ]
    )


def render(n: int) -> str:
    """The whole report."""
    sections = [
        unconditional_section(n),
        conditional_section(n),
        guidance_accuracy_section(n),
        lowres_section(n // 2),
    ]
    draws = n * SIX_FRAME_VIDEO.chains
    intro = "\n\n".join(
        [
            "# Samplers and conditioning vs a closed-form Gaussian oracle",
            "Generated by `scripts/oracle_report.py`; do not edit by hand. Command (repo root):",
            f"```\n{COMMAND}\n```",
            "The oracle (`vdm_core/oracle.py`, `GaussianVideo`) is a video whose pixels are "
            "independent AR(1) processes over frames: Sigma_ij = std^2 rho^|i-j|. Its denoiser "
            "E[x | z_t] is exact, so every error below comes from the sampler or the conditioning "
            "method, not from a model. Samplers use the cosine log-SNR schedule on a uniform "
            "t grid, logsnr in [-20, 20], float64, fixed seeds.",
            f"Conditional tasks use (C, T, H, W) = {SIX_FRAME_VIDEO.shape}, "
            f"rho = {SIX_FRAME_VIDEO.rho}, std = {SIX_FRAME_VIDEO.std}, mean 0 and {n} videos "
            f"({draws} independent draws of x^a, one per pixel). 'mean error' = RMS over "
            "x^a ~ p and unknown frames of (sampler's "
            "E[x^b | x^a] - analytic E[x^b | x^a]); 'variance ratios' = sampler Var[x^b | x^a] / "
            "analytic, per unknown frame; 'variance error' = their mean |ratio - 1|. Both are "
            "estimated by regressing the samples on x^a (`GaussianVideo.conditional_errors`; "
            "regression noise ~0.01 for the mean error and ~0.02 for the variance error). The pc "
            "sampler is one ancestral step + one Langevin correction (delta = 0.1) per step; the "
            "corrector uses the guided estimate.",
            FINDINGS,
        ]
    )
    return "\n\n".join([intro, *sections]) + "\n"


def main() -> None:
    """Write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/oracle.md"))
    parser.add_argument("--n", type=int, default=2000, help="videos per configuration")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.time()
    args.out.write_text(render(args.n))
    print(f"wrote {args.out} in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
