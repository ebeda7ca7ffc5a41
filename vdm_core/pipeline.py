"""`VideoDiffusionPipeline`: load a trained model with its text encoder and sample videos.

    pipe = VideoDiffusionPipeline.from_pretrained("assets/model")
    video = pipe("a red circle moving right", num_inference_steps=32, guidance_weight=2.0,
                 generator=torch.Generator().manual_seed(0))
    video.frames  # uint8 (T, H, W, 3)

The model runs under bf16 autocast on CPU by default (about 2.5x faster than fp32 here).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .diffusion import model_denoiser
from .guidance import cfg_denoiser
from .memory import retain_freed_memory
from .samplers import SAMPLERS, StepInfo, Strategy, sample
from .unet3d import UNet3D
from .video_io import tensor_to_frames

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "assets" / "model"
MAX_FRAMES = 128


@dataclass
class PipelineStep:
    """Progress of a sampling call: denoising step `step` of `num_steps` within block `block` of
    `num_blocks` (one block for plain generation), with the model's current x_hat."""

    step: int
    num_steps: int
    block: int
    num_blocks: int
    x_hat: torch.Tensor  # (B, C, T, H, W)

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


def check_sampling_args(num_frames: int, num_inference_steps: int, guidance_weight: float,
                        sampler: str) -> None:
    """Raise ValueError with a specific message for arguments no sampler can use."""
    if not 1 <= int(num_frames) <= MAX_FRAMES:
        raise ValueError(f"num_frames must be between 1 and {MAX_FRAMES}, got {num_frames}")
    if not 1 <= int(num_inference_steps) <= 1000:
        raise ValueError(f"num_inference_steps must be between 1 and 1000, got "
                         f"{num_inference_steps}")
    if not np.isfinite(guidance_weight) or guidance_weight < 0:
        raise ValueError(f"guidance_weight must be a finite number >= 0, got {guidance_weight}")
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose from {sorted(SAMPLERS)}")


class VideoDiffusionPipeline:
    """A trained U-Net + the MiniLM text encoder + the samplers, with diffusers-like calls."""

    def __init__(self, model: UNet3D, text_encoder=None, bf16: bool = True):
        retain_freed_memory()  # reconstruction-guidance steps reuse their memory (memory.py)
        self.model = model.eval().requires_grad_(False)
        self._text_encoder = text_encoder
        self.bf16 = bf16

    @classmethod
    def from_pretrained(cls, path: str | Path = DEFAULT_MODEL, text_encoder=None,
                        bf16: bool = True) -> "VideoDiffusionPipeline":
        """Load `config.json` + `model.safetensors` from `path` (default: the shipped model)."""
        return cls(UNet3D.from_pretrained(path), text_encoder, bf16)

    @property
    def config(self):
        return self.model.config

    @property
    def text_encoder(self):
        if self._text_encoder is None:
            from .text import get_text_encoder

            self._text_encoder = get_text_encoder()
        return self._text_encoder

    def denoiser(self, prompts: list[str], guidance_weight: float = 0.0,
                 num_video_frames: torch.Tensor | None = None):
        """The classifier-free-guided denoiser x_hat(z, logsnr) for a batch of prompts.

        Empty prompts are unconditional (their guidance is then a no-op: x_c = x_u).
        """
        states, mask = self.text_encoder.encode(list(prompts))
        guidable = model_denoiser(self.model, states, mask, num_video_frames)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16)

        def denoise(z, logsnr, uncond=None):
            with autocast:
                return guidable(z, logsnr, uncond).float()

        return cfg_denoiser(denoise, float(guidance_weight))

    def initial_noise(self, batch: int, num_frames: int,
                      generator: torch.Generator | None) -> torch.Tensor:
        """z_1 ~ N(0, I) for `batch` videos.  # (B, C, T, H, W)"""
        cfg = self.config
        shape = (batch, cfg.channels, num_frames, cfg.image_size, cfg.image_size)
        return torch.randn(shape, generator=generator)

    def sample(self, prompts: list[str], z: torch.Tensor, num_inference_steps: int,
               guidance_weight: float, sampler: str, generator: torch.Generator | None,
               strategy: Strategy | None = None, callback: ProgressCallback | None = None,
               block: int = 0, num_blocks: int = 1, **sampler_kwargs) -> torch.Tensor:
        """Run one sampler over z (B, C, T, H, W) with guidance and an optional strategy."""
        denoise = self.denoiser(prompts, guidance_weight)

        def on_step(info: StepInfo) -> None:
            if callback is not None:
                callback(PipelineStep(info.i, info.num_steps, block, num_blocks, info.x_hat))

        return sample(sampler, denoise, z, int(num_inference_steps), generator=generator,
                      callback=on_step, strategy=strategy, **sampler_kwargs).clamp(-1, 1)

    def __call__(self, prompt: str | list[str] = "", num_frames: int | None = None,
                 num_inference_steps: int = 32, guidance_weight: float = 2.0,
                 generator: torch.Generator | None = None, sampler: str = "ancestral",
                 callback: ProgressCallback | None = None, **sampler_kwargs) -> VideoOutput:
        """Sample one video per prompt (text-to-video; "" is unconditional).

        `guidance_weight` is the paper's w (eq. 6): eps~ = (1 + w) eps(z, c) - w eps(z), so 0 is
        off. `num_frames` defaults to the model's training window; a longer video is made by
        sampling the first window and extending it block by block (`extend.generate`, with
        reconstruction guidance; info["block_starts"] marks the blocks).
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        num_frames = self.config.num_frames if num_frames is None else int(num_frames)
        check_sampling_args(num_frames, num_inference_steps, guidance_weight, sampler)
        if num_frames > self.config.num_frames:
            from .extend import generate

            return generate(self, prompts, num_frames, num_inference_steps=num_inference_steps,
                            guidance_weight=guidance_weight, sampler=sampler,
                            generator=generator, callback=callback, **sampler_kwargs)
        z = self.initial_noise(len(prompts), num_frames, generator)
        x = self.sample(prompts, z, num_inference_steps, guidance_weight, sampler, generator,
                        callback=callback, **sampler_kwargs)
        return VideoOutput([tensor_to_frames(v) for v in x], x,
                           {"prompts": prompts, "sampler": sampler, "steps": num_inference_steps,
                            "guidance_weight": guidance_weight})

    def extend(self, video, num_frames: int, **kwargs) -> VideoOutput:
        """Extend a clip block-autoregressively to num_frames frames; see `extend.extend`."""
        from .extend import extend

        return extend(self, video, num_frames, **kwargs)

    def predict(self, video, k: int, num_frames: int = 16, **kwargs) -> VideoOutput:
        """Predict the rest of a clip from its first k frames; see `extend.predict`."""
        from .extend import predict

        return predict(self, video, k, num_frames, **kwargs)

    def interpolate(self, video_sparse, every: int, **kwargs) -> VideoOutput:
        """Fill the frames between frames given every `every` frames; see `extend.interpolate`."""
        from .extend import interpolate

        return interpolate(self, video_sparse, every, **kwargs)

    def super_resolve(self, lowres, **kwargs) -> VideoOutput:
        """Super-resolve a low-res clip to the model's frame size; see `extend.super_resolve`."""
        from .extend import super_resolve

        return super_resolve(self, lowres, **kwargs)

    def compare(self, video, num_frames: int, seed: int = 0, **kwargs):
        """Replacement vs reconstruction guidance from one seed; see `extend.compare`."""
        from .extend import compare

        return compare(self, video, num_frames, seed, **kwargs)
