"""VideoDiffusionPipeline: text-to-video sampling, determinism, progress and argument checks."""

import numpy as np
import pytest
import torch

from vdm_core.pipeline import VideoDiffusionPipeline
from vdm_core.unet3d import UNetConfig

TINY = UNetConfig(base_channels=16, channel_mults=(1, 2), attn_resolutions=(8,), head_dim=8,
                  image_size=16, num_frames=8, text_heads=2)


@pytest.fixture(scope="module")
def pipe(randomized_unet):
    return VideoDiffusionPipeline(randomized_unet(TINY))


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_frames_are_uint8_video_of_the_window(pipe):
    out = pipe("a red circle moving up", num_inference_steps=2, generator=seeded(0))
    assert out.frames.shape == (8, 16, 16, 3) and out.frames.dtype == np.uint8
    assert out.x.shape == (1, 3, 8, 16, 16)


def test_same_seed_same_video_and_different_seed_differs(pipe):
    a = pipe("a blue square moving left", num_inference_steps=3, generator=seeded(7)).frames
    b = pipe("a blue square moving left", num_inference_steps=3, generator=seeded(7)).frames
    c = pipe("a blue square moving left", num_inference_steps=3, generator=seeded(8)).frames
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("sampler", ["ancestral", "ddim", "pc"])
def test_every_sampler_reports_progress(pipe, sampler):
    seen = []
    pipe(["a green triangle moving down", ""], num_frames=4, num_inference_steps=3,
         sampler=sampler, generator=seeded(1), callback=seen.append)
    assert [s.step for s in seen] == [0, 1, 2]
    assert seen[-1].fraction == 1.0
    assert seen[0].x_hat.shape == (2, 3, 4, 16, 16)


def test_guidance_changes_the_sample(pipe):
    a = pipe("a red circle moving up", num_inference_steps=2, guidance_weight=0.0,
             generator=seeded(3)).x
    b = pipe("a red circle moving up", num_inference_steps=2, guidance_weight=4.0,
             generator=seeded(3)).x
    assert (a - b).abs().max() > 1e-4


@pytest.mark.parametrize("kwargs, message", [
    ({"num_frames": 0}, "num_frames must be between 1 and"),
    ({"num_inference_steps": 0}, "num_inference_steps must be between"),
    ({"guidance_weight": float("nan")}, "guidance_weight must be a finite number"),
    ({"guidance_weight": -1.0}, "guidance_weight must be a finite number"),
    ({"sampler": "euler"}, "unknown sampler 'euler'"),
])
def test_bad_arguments_raise_clear_errors(pipe, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pipe("a red circle moving up", **kwargs)


def test_from_pretrained_roundtrip(tmp_path, pipe):
    pipe.model.save_pretrained(tmp_path)
    loaded = VideoDiffusionPipeline.from_pretrained(tmp_path, text_encoder=pipe.text_encoder)
    a = pipe("a cyan circle moving right", num_inference_steps=2, generator=seeded(4)).frames
    b = loaded("a cyan circle moving right", num_inference_steps=2, generator=seeded(4)).frames
    assert np.array_equal(a, b)
