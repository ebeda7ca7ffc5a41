"""What every sampling call takes and returns: `SamplingConfig`, `VideoOutput`, progress, limits.

A leaf: the pipeline, the conditional tasks, the comparison, the app and the CLI import from
here, and this module imports only the samplers' names.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from vdm_core.samplers import SAMPLERS

MAX_FRAMES = 128  # longest video a sampling call makes
MAX_STEPS = 1000
PROMPT_WINDOWS = ("all", "first")


@dataclass(frozen=True)
class PipelineStep:
    """Progress of a sampling call: denoising step `step` of `num_steps` within block `block` of
    `num_blocks` (one block for plain generation), with the model's current x_hat."""

    step: int
    num_steps: int
    block: int
    num_blocks: int
    x_hat: torch.Tensor  # (B, C, T, H, W)
    stage: str = ""  # e.g. "keyframes" or "interpolation" in the keyframe cascade

    @property
    def fraction(self) -> float:
        return (self.block + (self.step + 1) / self.num_steps) / self.num_blocks


ProgressCallback = Callable[[PipelineStep], None]


@dataclass
class VideoOutput:
    """A sampled video: `frames` uint8 (T, H, W, 3) of the first sample; `videos` holds all."""

    videos: list[np.ndarray]
    x: torch.Tensor  # (B, C, T, H, W) float in [-1, 1]
    info: dict = field(default_factory=dict)

    @property
    def frames(self) -> np.ndarray:
        return self.videos[0]


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample, for every task: the one object the app, the CLI and the library build.

    steps: denoising steps per window; sampler: "ancestral", "ddim" or "pc"; w: classifier-free
    guidance weight (eq. 6; 0 is off); w_r: reconstruction-guidance weight (eqs. 7, 8; None: the
    task's default, f^2 for super-resolution by f); k: frames of context per extension block;
    window: frames per sampler call (None: the model's training window); generator: the seed of
    every random draw (a CPU generator keeps seeds portable across devices); callback: progress;
    sampler_options: extra sampler arguments (gamma, delta, clip_x); prompt_windows: "all"
    conditions every window of a long video on the prompt, "first" only the first window (later
    windows are unconditional, w = 0, so a caption of frame 0 cannot fight the context);
    frameskip: the stride between the frames sampled together, given to a frameskip-conditioned
    model (the paper's frameskip-4 keyframe model; 1 for consecutive frames).
    """

    steps: int = 32
    sampler: str = "ancestral"
    w: float = 2.0
    w_r: float | None = None
    k: int = 4
    window: int | None = None
    generator: torch.Generator | None = field(default=None, compare=False)
    callback: ProgressCallback | None = field(default=None, compare=False)
    sampler_options: Mapping[str, Any] = field(default_factory=dict)
    prompt_windows: str = "all"
    frameskip: int = 1

    def __post_init__(self) -> None:
        check_sampling_args(1, self.steps, self.w, self.sampler)
        if self.w_r is not None and (not np.isfinite(self.w_r) or self.w_r < 0):
            raise ValueError(f"w_r must be a finite number >= 0, got {self.w_r}")
        if int(self.k) < 1:
            raise ValueError(f"k (conditioning frames) must be at least 1, got {self.k}")
        if int(self.frameskip) < 1:
            raise ValueError(f"frameskip must be at least 1, got {self.frameskip}")
        if self.prompt_windows not in PROMPT_WINDOWS:
            raise ValueError(f"prompt_windows must be one of {PROMPT_WINDOWS}, got "
                             f"{self.prompt_windows!r}")

    def seeded(self, seed: int) -> "SamplingConfig":
        """This config with a fresh CPU generator seeded with `seed`."""
        return replace(self, generator=torch.Generator().manual_seed(int(seed)))

    def with_callback(self, callback: ProgressCallback | None) -> "SamplingConfig":
        return replace(self, callback=callback)


def check_sampling_args(num_frames: int, num_inference_steps: int, guidance_weight: float,
                        sampler: str) -> None:
    """Raise ValueError with a specific message for arguments no sampler can use."""
    if not 1 <= int(num_frames) <= MAX_FRAMES:
        raise ValueError(f"num_frames must be between 1 and {MAX_FRAMES}, got {num_frames}")
    if not 1 <= int(num_inference_steps) <= MAX_STEPS:
        raise ValueError(f"num_inference_steps must be between 1 and {MAX_STEPS}, got "
                         f"{num_inference_steps}")
    if not np.isfinite(guidance_weight) or guidance_weight < 0:
        raise ValueError(f"guidance_weight must be a finite number >= 0, got {guidance_weight}")
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose from {sorted(SAMPLERS)}")
