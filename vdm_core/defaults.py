"""The one table of default sampling settings, per task: the library, the app and the CLI read it.

A task called without a `SamplingConfig` samples with its row here. w_r = None for
super-resolution means f^2 for a factor f (exact in the low-noise limit, see `guidance.py`).
"""

from dataclasses import replace

from vdm_core.outputs import SamplingConfig

DEFAULT_W_R = 20.0  # reconstruction-guidance weight for known frames (eq. 7)
DEFAULT_K = 4  # frames of context per extension block

_FRAMES = SamplingConfig(steps=32, sampler="ancestral", w=2.0, w_r=DEFAULT_W_R, k=DEFAULT_K)
TASK_DEFAULTS: dict[str, SamplingConfig] = {
    "generate": _FRAMES,
    "cascade": _FRAMES,
    "extend": _FRAMES,
    "predict": _FRAMES,
    "interpolate": _FRAMES,
    "super_resolve": replace(_FRAMES, w_r=None),
}

# The app's controls start here: a guided 16-frame clip in under 5 s on 2 CPU cores, and
# 16 -> 64 frames with both strategies in under a minute (docs/performance.md).
APP_DEFAULTS = replace(_FRAMES, steps=24)


def default_config(task: str, **overrides) -> SamplingConfig:
    """The task's row of TASK_DEFAULTS with `overrides` (SamplingConfig fields) applied."""
    if task not in TASK_DEFAULTS:
        raise ValueError(f"unknown task {task!r}; choose from {sorted(TASK_DEFAULTS)}")
    return replace(TASK_DEFAULTS[task], **overrides)
