"""`VideoDiffusionPipeline`: load a trained model with its text encoder and sample videos.

    pipe = VideoDiffusionPipeline.from_pretrained("assets/model")          # or device="cuda"
    video = pipe("a red circle moving right", num_inference_steps=32, guidance_weight=2.0,
                 generator=torch.Generator().manual_seed(0))
    video.frames  # uint8 (T, H, W, 3)

The model runs under autocast on its device: bf16 on CPU (about 2.5x faster than fp32 here),
bf16 (or fp16 where bf16 is unsupported) on CUDA. Noise is drawn from the caller's CPU generator
and moved to the device, so a seed gives the same video on any device up to the precision.
"""

from dataclasses import replace
from pathlib import Path

import torch

from vdm_core import conditional
from vdm_core.compare import Comparison, compare_strategies
from vdm_core.defaults import default_config
from vdm_core.diffusion import model_denoiser
from vdm_core.guidance import cfg_denoiser
from vdm_core.outputs import (
    PipelineStep,
    SamplingConfig,
    VideoOutput,
    check_sampling_args,
)
from vdm_core.samplers import StepInfo, Strategy, sample
from vdm_core.unet3d import UNet3D
from vdm_core.video_io import tensor_to_frames

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "assets" / "model"
DEFAULT_KEYFRAME_MODEL = DEFAULT_MODEL.parent / "keyframe_model"  # frameskip-4 keyframes


def default_keyframe_model(model_path: str | Path) -> Path | None:
    """The cascade's keyframe model for the model in `model_path`: the shipped keyframe model
    when `model_path` is the shipped model and that folder holds weights, else None (the model
    then draws the keyframes itself)."""
    if Path(model_path).resolve() != DEFAULT_MODEL.resolve():
        return None
    return DEFAULT_KEYFRAME_MODEL if (DEFAULT_KEYFRAME_MODEL / "model.safetensors").is_file() \
        else None
_KEYWORDS = {"num_inference_steps": "steps", "guidance_weight": "w", "sampler": "sampler",
             "w_r": "w_r", "k": "k", "window": "window", "generator": "generator",
             "callback": "callback"}


def autocast_dtype(device: torch.device, dtype: torch.dtype | None) -> torch.dtype | None:
    """The autocast dtype for a device: `dtype` if given (torch.float32 turns autocast off),
    else bf16 on CPU and on CUDA where supported, fp16 on other CUDA devices."""
    if dtype is not None:
        return None if dtype == torch.float32 else dtype
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def sampling_config(task: str, config: SamplingConfig | None = None,
                    **kwargs) -> SamplingConfig:
    """A SamplingConfig from diffusers-style keywords (num_inference_steps, guidance_weight,
    sampler, w_r, k, window, generator, callback; others are sampler options such as gamma) on
    top of `config`, or of the task's defaults."""
    fields = {_KEYWORDS[key]: kwargs.pop(key) for key in list(kwargs) if key in _KEYWORDS}
    base = config or default_config(task)
    if kwargs:
        fields["sampler_options"] = {**base.sampler_options, **kwargs}
    return replace(base, **fields)


def check_method(method: str) -> None:
    """Raise a ValueError unless `method` names a way to make long videos."""
    if method not in conditional.METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {list(conditional.METHODS)}")


def method_task(method: str, task: str) -> str:
    """The defaults-table row of a call: "cascade" for the cascade, else `task`."""
    return "cascade" if method == "cascade" else task


class VideoDiffusionPipeline:
    """A trained U-Net + the MiniLM text encoder + the samplers, with diffusers-like calls."""

    def __init__(self, model: UNet3D, text_encoder=None, bf16: bool = True,
                 dtype: torch.dtype | None = None):
        self.model = model.eval().requires_grad_(False)
        self._text_encoder = text_encoder
        self.dtype = dtype if bf16 else torch.float32
        self.keyframe_pipe: VideoDiffusionPipeline | None = None  # the cascade's keyframe model

    @classmethod
    def from_pretrained(cls, path: str | Path = DEFAULT_MODEL, text_encoder=None,
                        bf16: bool = True, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None) -> "VideoDiffusionPipeline":
        """Load `config.json` + `model.safetensors` from `path` (default: the shipped model)
        onto `device`; `dtype` is the autocast dtype (None: the device's default)."""
        pipe = cls(UNet3D.from_pretrained(path), text_encoder, bf16, dtype)
        return pipe.to(device)

    def with_keyframe_model(self, path: str | Path) -> "VideoDiffusionPipeline":
        """Use the model in `path` for the cascade's keyframes (the paper's frameskip-4 model;
        this pipeline's model then only fills the frames between them); returns self."""
        keyframe = VideoDiffusionPipeline(UNet3D.from_pretrained(path), self._text_encoder)
        keyframe.dtype = self.dtype
        self.keyframe_pipe = keyframe.to(self.device)
        return self

    def to(self, device: str | torch.device) -> "VideoDiffusionPipeline":
        """Move the U-Net(s) to `device` (the text encoder stays on the CPU); returns self."""
        self.model.to(torch.device(device))
        if self.keyframe_pipe is not None:
            self.keyframe_pipe.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def config(self):
        return self.model.config

    @property
    def text_encoder(self):
        if self._text_encoder is None:
            from vdm_core.text import get_text_encoder

            self._text_encoder = get_text_encoder()
        return self._text_encoder

    def denoiser(self, prompts: list[str], guidance_weight: float = 0.0,
                 num_video_frames: torch.Tensor | None = None, frameskip: int = 1):
        """The classifier-free-guided denoiser x_hat(z, logsnr) for a batch of prompts, for
        frames `frameskip` apart (an input only of frameskip-conditioned models).

        Empty prompts are unconditional (their guidance is then a no-op: x_c = x_u).
        """
        device = self.device
        states, mask = self.text_encoder.encode(list(prompts))
        guidable = model_denoiser(self.model, states.to(device), mask.to(device),
                                  num_video_frames, frameskip)
        dtype = autocast_dtype(device, self.dtype)
        autocast = torch.autocast(device.type, dtype=dtype or torch.bfloat16,
                                  enabled=dtype is not None)

        def denoise(z, logsnr, uncond=None):
            with autocast:
                return guidable(z, logsnr, uncond).float()

        return cfg_denoiser(denoise, float(guidance_weight))

    def initial_noise(self, batch: int, num_frames: int,
                      generator: torch.Generator | None) -> torch.Tensor:
        """z_1 ~ N(0, I) for `batch` videos, drawn from `generator` and moved to the model's
        device.  # (B, C, T, H, W)"""
        cfg = self.config
        shape = (batch, cfg.channels, num_frames, cfg.image_size, cfg.image_size)
        draw_on = generator.device if generator is not None else torch.device("cpu")
        return torch.randn(shape, generator=generator, device=draw_on).to(self.device)

    def sample(self, prompts: list[str], z: torch.Tensor, config: SamplingConfig,
               strategy: Strategy | None = None, block: int = 0,
               num_blocks: int = 1) -> torch.Tensor:
        """Run config's sampler over z (B, C, T, H, W) with guidance and an optional strategy."""
        denoise = self.denoiser(prompts, config.w, frameskip=config.frameskip)
        callback = config.callback

        def on_step(info: StepInfo) -> None:
            if callback is not None:
                callback(PipelineStep(info.i, info.num_steps, block, num_blocks, info.x_hat))

        return sample(config.sampler, denoise, z, int(config.steps), generator=config.generator,
                      callback=on_step, strategy=strategy,
                      **config.sampler_options).clamp(-1, 1)

    def __call__(self, prompt: str | list[str] = "", num_frames: int | None = None,
                 config: SamplingConfig | None = None, method: str = "autoregressive",
                 **kwargs) -> VideoOutput:
        """Sample one video per prompt (text-to-video; "" is unconditional).

        Settings come from `config` and the keywords num_inference_steps, guidance_weight
        (the paper's w, eq. 6: eps~ = (1 + w) eps(z, c) - w eps(z), so 0 is off), sampler,
        generator, callback and sampler options. `num_frames` defaults to the model's training
        window; a longer video is sampled window by window with reconstruction guidance:
        `method` "autoregressive" (`conditional.generate`) or "cascade" (keyframes, then the
        frames between them: `conditional.cascade`); info["block_starts"] marks the blocks.
        """
        check_method(method)
        config = sampling_config(method_task(method, "generate"), config, **kwargs)
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        num_frames = self.config.num_frames if num_frames is None else int(num_frames)
        check_sampling_args(num_frames, config.steps, config.w, config.sampler)
        if method == "cascade":
            return conditional.cascade(self, prompts, num_frames, config=config)
        if num_frames > self.config.num_frames:
            return conditional.generate(self, prompts, num_frames, config=config)
        z = self.initial_noise(len(prompts), num_frames, config.generator)
        x = self.sample(prompts, z, config).cpu()
        return VideoOutput([tensor_to_frames(v) for v in x], x,
                           {"prompts": prompts, "sampler": config.sampler, "steps": config.steps,
                            "guidance_weight": config.w})

    def extend(self, video, num_frames: int, prompt="", strategy: str = "reconstruction",
               config: SamplingConfig | None = None, method: str = "autoregressive",
               **kwargs) -> VideoOutput:
        """Extend a clip to num_frames frames block-autoregressively (`conditional.extend`) or,
        with method="cascade", by keyframes and the frames between (`conditional.cascade`)."""
        check_method(method)
        config = sampling_config(method_task(method, "extend"), config, **kwargs)
        if method == "cascade":
            return conditional.cascade(self, prompt, num_frames, video, strategy, config)
        return conditional.extend(self, video, num_frames, prompt, strategy, config)

    def predict(self, video, k: int, num_frames: int = 16, prompt="",
                strategy: str = "reconstruction", config: SamplingConfig | None = None,
                **kwargs) -> VideoOutput:
        """Predict the rest of a clip from its first k frames; see `conditional.predict`."""
        return conditional.predict(self, video, k, num_frames, prompt, strategy,
                                   sampling_config("predict", config, **kwargs))

    def interpolate(self, video_sparse, every: int, num_frames: int | None = None, prompt="",
                    strategy: str = "reconstruction", config: SamplingConfig | None = None,
                    **kwargs) -> VideoOutput:
        """Fill the frames between frames given every `every` frames; see
        `conditional.interpolate`."""
        return conditional.interpolate(self, video_sparse, every, num_frames, prompt, strategy,
                                       sampling_config("interpolate", config, **kwargs))

    def super_resolve(self, lowres, strategy: str = "reconstruction", mode: str = "area",
                      prompt="", config: SamplingConfig | None = None,
                      **kwargs) -> VideoOutput:
        """Super-resolve a low-res clip to the model's frame size; see
        `conditional.super_resolve`."""
        return conditional.super_resolve(self, lowres, strategy, mode, prompt,
                                         sampling_config("super_resolve", config, **kwargs))

    def compare(self, video, num_frames: int, seed: int = 0, prompt: str = "", truth=None,
                config: SamplingConfig | None = None, **kwargs) -> Comparison:
        """Extend one clip with the replacement method and with reconstruction guidance (eq. 7)
        from one seed; see `compare.compare_strategies`."""
        return compare_strategies(self, "extend", {"video": video, "num_frames": num_frames},
                                  truth=truth, prompt=prompt, seed=seed,
                                  config=sampling_config("extend", config, **kwargs))
