"""The one table of default sampling settings, per task: the library, the app and the CLI read it.

A task called without a `SamplingConfig` samples with its row here. The rows were chosen from
docs/tuning.md (`python -m report.tuning`): on held-out clips,
- classifier-free guidance (w > 0) fights reconstruction guidance wherever frames are given:
  eq. 8 super-resolution fell from 46 dB at w = 0 to 18-26 dB at w = 2, interpolation from
  32-39 dB to 16-23 dB, prediction's trajectory error rose from 5.1 to 8.3 px. Conditional
  tasks therefore sample at w = 0 (the caption still conditions the model; it is not amplified).
  Text-to-video keeps w = 2 (caption match, docs/results.md Table 5).
- super-resolution wants w_r = 4 f^2, not the oracle's f^2: 46.4 dB vs 30.7 dB at 16 steps (2x),
  45.2 vs 22.8 dB (4x); the trained model's x_hat is less sensitive to z than the oracle's.
  It needs 32 steps: at 16, 3 of the 8 clips of docs/results.md fell to 17-28 dB (mean 36.4
  [24.9, 47.9]); at 32 and 48 steps every clip reached 42 dB (48.1 [44.6, 51.6], 47.8 dB).
- interpolation needs 48 steps (38.6 dB, 0.20 px) where 16 give 31.7 dB with a wide interval.
Those numbers are the 15,868-step model's. Rerun for the shipped 17,618-step model (2026-12-06),
every default row is still the best row or inside the best row's interval: super-resolution
47.4 dB (4 f^2; f^2: 43.4 at 32 steps, 32.7 at 16), interpolation 38.9 dB and 0.20 px,
prediction 5.26 px (replacement 5.43), extension seam jump 0.91 (replacement 1.90).
"""

from dataclasses import replace

from vdm_core.outputs import SamplingConfig

DEFAULT_W_R = 20.0  # reconstruction-guidance weight for known frames (eq. 7)
DEFAULT_K = 4  # frames of context per extension block
LOWRES_W_R_SCALE = 4.0  # eq. 8's w_r = LOWRES_W_R_SCALE f^2 for super-resolution by f

_FRAMES = SamplingConfig(steps=24, sampler="ancestral", w=0.0, w_r=DEFAULT_W_R, k=DEFAULT_K)
TASK_DEFAULTS: dict[str, SamplingConfig] = {
    "generate": replace(_FRAMES, steps=32, w=2.0),
    "cascade": _FRAMES,
    "extend": _FRAMES,
    "predict": _FRAMES,
    "interpolate": replace(_FRAMES, steps=48),
    "super_resolve": replace(_FRAMES, steps=32, w_r=None),
}

# The app's Generate controls start here: a guided 16-frame clip in under 5 s on 2 CPU cores
# (docs/performance.md); its Extend & compare modes start at their task's row above.
APP_DEFAULTS = replace(TASK_DEFAULTS["generate"], steps=24)


def lowres_w_r(factor: int) -> float:
    """The default eq. 8 weight for super-resolution by `factor`: LOWRES_W_R_SCALE f^2."""
    return LOWRES_W_R_SCALE * float(factor) ** 2


def default_config(task: str, **overrides) -> SamplingConfig:
    """The task's row of TASK_DEFAULTS with `overrides` (SamplingConfig fields) applied."""
    if task not in TASK_DEFAULTS:
        raise ValueError(f"unknown task {task!r}; choose from {sorted(TASK_DEFAULTS)}")
    return replace(TASK_DEFAULTS[task], **overrides)
