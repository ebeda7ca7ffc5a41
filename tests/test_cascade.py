"""The keyframe cascade (paper Fig. 2): keyframes at frameskip 4, then the frames between.

A tiny random U-Net (16x16 frames, window 16) and one sampler step: these tests check the plan,
what each window is given, and that given frames and keyframes are kept exactly.
"""

import copy

import numpy as np
import pytest
import torch
from conftest import tiny_pipeline

from vdm_core.compare import compare_long_video
from vdm_core.conditional import KEYFRAME_SKIP, cascade, keyframe_plan, plan_blocks
from vdm_core.data import world_clip
from vdm_core.defaults import default_config
from vdm_core.pipeline import VideoDiffusionPipeline
from vdm_core.unet3d import UNet3D, UNetConfig

SIZE = 16


class Calls(list):
    keyframes: list


@pytest.fixture(scope="module")
def pipe():
    with tiny_pipeline(frameskip_conditioning=True) as pipe:
        yield pipe


@pytest.fixture()
def spy(pipe, monkeypatch):
    """Records (stage frameskip, window length, known frame indices) of every sampler call,
    and the samples of the keyframe stage in `spy.keyframes`."""
    calls = Calls()
    real = pipe.sample

    def record(prompts, z, config, strategy=None, *args):
        known = getattr(getattr(strategy, "obs", None), "frame_indices", [])
        calls.append((config.frameskip, z.shape[2], list(known)))
        sample = real(prompts, z, config, strategy, *args)
        if config.frameskip == KEYFRAME_SKIP:
            keyframe_samples.append(sample)
        return sample

    keyframe_samples = []

    monkeypatch.setattr(pipe, "sample", record)
    calls.keyframes = keyframe_samples
    return calls


def _config(**kw):
    return default_config("cascade", steps=1, **kw).seeded(0)


def test_keyframe_plan():
    keys, known = keyframe_plan(64, 0)
    assert keys == list(range(0, 64, 4)) and len(keys) == 16 and not any(known)
    keys, known = keyframe_plan(61, 9)
    assert keys[-1] == 60 and known == [True, True, True] + [False] * 13
    with pytest.raises(ValueError, match="skip"):
        keyframe_plan(20, 0, skip=1)


def test_text_to_video_cascade_samples_keyframes_then_fills_between(pipe, spy):
    steps = []
    out = pipe("a red circle", num_frames=61, method="cascade",
               config=_config(callback=steps.append))
    assert out.frames.shape == (61, SIZE, SIZE, 3)
    assert spy[0] == (KEYFRAME_SKIP, 16, [])  # 16 keyframes span 61 frames: one window
    assert all(fs == 1 for fs, _, _ in spy[1:])
    keyframes = set(out.info["keyframes"])
    for _, length, known in spy[1:]:  # every interpolation window ends on a keyframe
        assert known and length - 1 in known
    made = [i in keyframes for i in range(61)]
    blocks = plan_blocks(made, 16, 4)
    expected = []  # each window knows its keyframes and every frame filled before it
    for b in blocks:
        expected.append((b.stop - b.start, [i - b.start for i in range(b.start, b.stop)
                                            if made[i]]))
        made[b.start:b.stop] = [True] * (b.stop - b.start)
    assert expected == [(length, known) for _, length, known in spy[1:]]
    assert [s.stage for s in steps] == ["keyframes"] + ["interpolation"] * len(blocks)


def test_extend_by_cascade_keeps_the_given_frames_and_the_keyframes(pipe, spy):
    clip = world_clip(11, 8, SIZE)
    out = pipe.extend(clip.frames, 72, method="cascade", config=_config())
    np.testing.assert_array_equal(out.frames[:8], clip.frames)
    keys = out.info["keyframes"]
    assert len(keys) == 18  # more than one keyframe window: the keyframes are extended too
    key_calls = [c for c in spy if c[0] == KEYFRAME_SKIP]
    assert len(key_calls) == 2 and key_calls[0][2] == [0, 1]  # given frames 0 and 4 are keys
    assert out.info["keyframe_block_starts"] == [8, 64]
    first, second = spy.keyframes  # (1, C, 16, H, W): keyframes [0, 16) then [2, 18)
    torch.testing.assert_close(out.x[:, :, keys[2:16]], first[:, :, 2:16])
    torch.testing.assert_close(out.x[:, :, keys[16:]], second[:, :, 14:])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"method": "keyframes"}, "unknown method 'keyframes'"),
    ({"method": "cascade", "num_frames": 129}, "between 1 and 128"),
])
def test_method_argument_errors(pipe, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pipe("a red circle", **{"num_frames": 40, **kwargs})


def test_extend_by_cascade_rejects_a_video_as_long_as_the_output(pipe):
    clip = world_clip(11, 20, SIZE)
    with pytest.raises(ValueError, match="longer than the input video"):
        pipe.extend(clip.frames, 20, method="cascade", config=_config())


def test_compare_long_video_scores_both_methods(pipe):
    clip = world_clip(12, 40, SIZE)
    result = compare_long_video(pipe, clip.frames[:8], 40, truth=clip, config=_config())
    assert list(result.videos) == ["autoregressive", "cascade"]
    assert result.task == "long_video"
    for name, frames in result.videos.items():
        np.testing.assert_array_equal(frames[:8], clip.frames[:8])
        assert "trajectory_error_px" in result.scores[name]
    assert result.outputs["cascade"].info["keyframes"][:3] == [0, 4, 8]


def test_a_keyframe_model_draws_the_keyframes_and_the_main_model_fills_between(pipe, tmp_path):
    """The paper's Fig. 2 setup: a frameskip-4 model for the keyframes, a frameskip-1 model for
    the frames between them."""
    other = copy.deepcopy(pipe.model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    other.save_pretrained(tmp_path / "keys")
    clip = world_clip(11, 8, SIZE)
    alone = VideoDiffusionPipeline.from_pretrained(tmp_path / "keys", bf16=False).extend(
        clip.frames, 40, method="cascade", config=_config())
    plain = pipe.extend(clip.frames, 40, method="cascade", config=_config())
    try:
        both = pipe.with_keyframe_model(tmp_path / "keys").extend(
            clip.frames, 40, method="cascade", config=_config())
        direct = cascade(pipe, "", 40, clip.frames, config=_config())  # a caller of the function
    finally:
        pipe.keyframe_pipe = None
    new_keys = [k for k in both.info["keyframes"] if k >= 8]
    between = [i for i in range(8, 40) if i % KEYFRAME_SKIP]
    torch.testing.assert_close(both.x[:, :, new_keys], alone.x[:, :, new_keys])
    torch.testing.assert_close(direct.x, both.x)
    assert not torch.allclose(both.x[:, :, new_keys], plain.x[:, :, new_keys])
    assert not torch.allclose(both.x[:, :, between], alone.x[:, :, between])
    np.testing.assert_array_equal(both.frames[:8], clip.frames)


def test_a_keyframe_model_of_another_size_is_refused(pipe, tmp_path):
    UNet3D(UNetConfig(base_channels=8, channel_mults=(1, 2), attn_resolutions=(16,), head_dim=8,
                      image_size=32)).save_pretrained(tmp_path / "big")
    try:
        with pytest.raises(ValueError, match="keyframe model must make frames of the "
                                             "interpolation model's size"):
            pipe.with_keyframe_model(tmp_path / "big")("a red circle moving right", 24,
                                                       method="cascade", config=_config())
    finally:
        pipe.keyframe_pipe = None
