"""Long videos, prediction, interpolation and super-resolution (`vdm_core.conditional`), and
their comparison (`vdm_core.compare`).

A tiny random U-Net (16x16 frames, window 16) and 2-3 sampler steps: these tests check the
bookkeeping and the conditioning, not sample quality. The U-Net's zero-initialised output layers
are re-drawn at random so that its output depends on every input frame (otherwise
reconstruction guidance has a zero gradient and equals replacement).
"""

import numpy as np
import pytest
import torch
from conftest import tiny_pipeline

from vdm_core.compare import compare_strategies, score_video
from vdm_core.conditional import extend, plan_blocks
from vdm_core.data import world_clip
from vdm_core.defaults import TASK_DEFAULTS, default_config
from vdm_core.outputs import SamplingConfig
from vdm_core.pipeline import sampling_config
from vdm_core.samplers import SAMPLERS

SIZE = 16


@pytest.fixture(scope="module")
def pipe():
    with tiny_pipeline() as pipe:
        yield pipe


@pytest.fixture(scope="module")
def clip():
    return world_clip(11, 40, SIZE)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _extension(t0, n):
    return [i < t0 for i in range(n)]


@pytest.mark.parametrize(
    ("t0", "n", "k", "starts", "windows"),
    [
        (16, 64, 4, [16, 28, 40, 52], [(12, 28), (24, 40), (36, 52), (48, 64)]),
        (16, 64, 8, [16, 24, 32, 40, 48, 56], [(s - 8, s + 8) for s in range(16, 64, 8)]),
        (16, 60, 4, [16, 28, 40, 52], [(12, 28), (24, 40), (36, 52), (44, 60)]),
        (1, 16, 4, [1], [(0, 16)]),
        (1, 30, 4, [1, 16, 28], [(0, 16), (12, 28), (14, 30)]),
        (0, 20, 8, [0, 16], [(0, 16), (4, 20)]),
        (16, 16, 4, [], []),
    ],
)
def test_plan_blocks_for_extension(t0, n, k, starts, windows):
    blocks = plan_blocks(_extension(t0, n), 16, k)
    assert [b.first_new for b in blocks] == starts
    assert [(b.start, b.stop) for b in blocks] == windows


@pytest.mark.parametrize(("every", "n", "k"), [(4, 33, 4), (2, 31, 8), (8, 41, 3), (3, 16, 6)])
def test_plan_blocks_for_interpolation_bracket_new_frames(every, n, k):
    known = [i % every == 0 for i in range(n)]
    made = list(known)
    for block in plan_blocks(known, 16, k):
        assert block.stop - block.start <= 16
        assert made[block.start : block.first_new] == [True] * (block.first_new - block.start)
        assert made[block.stop - 1]  # every window ends on a known frame
        made[block.start : block.stop] = [True] * (block.stop - block.start)
    assert all(made)


def test_plan_blocks_rejects_bad_k():
    with pytest.raises(ValueError, match="window - 1 = 15"):
        plan_blocks(_extension(4, 20), 16, 16)
    with pytest.raises(ValueError, match="k"):
        plan_blocks(_extension(4, 20), 16, 0)


@pytest.mark.parametrize("strategy", ["replacement", "reconstruction"])
def test_extend_length_input_frames_and_block_starts(pipe, clip, strategy):
    config = default_config("extend", k=4, steps=2, generator=_gen())
    out = extend(pipe, clip.frames[:6], 30, strategy=strategy, config=config)
    assert out.frames.shape == (30, SIZE, SIZE, 3)
    assert out.x.shape == (1, 3, 30, SIZE, SIZE)
    np.testing.assert_array_equal(out.frames[:6], clip.frames[:6])
    assert out.info["block_starts"] == [6, 18]
    assert out.info["blocks"] == [(2, 18), (14, 30)]


def test_every_block_is_conditioned_on_the_video_made_so_far(pipe, clip, monkeypatch):
    """Record each block's observation: its frames are the output's frames at those positions."""
    seen = []
    real_sample = pipe.sample

    def spy(prompts, z, config, strategy=None, *args):
        seen.append((strategy.obs.frame_indices, strategy.obs.frames.clone(), z.shape[2]))
        return real_sample(prompts, z, config, strategy, *args)

    monkeypatch.setattr(pipe, "sample", spy)
    out = pipe.extend(clip.frames[:16], 40, strategy="replacement", k=4, num_inference_steps=2,
                 generator=_gen())
    assert len(seen) == 2
    for block, (indices, frames, length) in zip(
        plan_blocks(_extension(16, 40), 16, 4), seen, strict=True
    ):
        assert length == block.stop - block.start
        assert indices == list(range(block.first_new - block.start))
        torch.testing.assert_close(frames, out.x[:, :, block.start : block.first_new])


def test_same_seed_same_video_other_seed_other_video(pipe, clip):
    def run(seed):
        return pipe.extend(clip.frames[:8], 24, k=8, num_inference_steps=2,
                      generator=_gen(seed)).frames

    first = run(3)
    np.testing.assert_array_equal(first, run(3))
    assert not np.array_equal(first[8:], run(4)[8:])


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
@pytest.mark.parametrize("strategy", ["replacement", "reconstruction"])
def test_every_sampler_and_strategy_with_text_and_cfg(pipe, clip, sampler, strategy):
    out = pipe.extend(clip.frames[:8], 20, prompt=clip.caption, strategy=strategy, k=8,
                 num_inference_steps=2, guidance_weight=2.0, sampler=sampler, generator=_gen())
    assert out.frames.shape == (20, SIZE, SIZE, 3)
    np.testing.assert_array_equal(out.frames[:8], clip.frames[:8])
    assert out.info["sampler"] == sampler and out.info["strategy"] == strategy


def test_reconstruction_guidance_changes_the_new_frames(pipe, clip):
    def run(strategy, w_r):
        return pipe.extend(clip.frames[:8], 16, strategy=strategy, w_r=w_r, k=8,
                      num_inference_steps=3, generator=_gen()).x

    replaced = run("replacement", 5.0)
    torch.testing.assert_close(run("reconstruction", 0.0), replaced)
    assert (run("reconstruction", 5.0) - replaced)[:, :, 8:].abs().max() > 1e-3


def test_progress_reports_blocks(pipe, clip):
    steps = []
    pipe.extend(clip.frames[:10], 40, k=4, num_inference_steps=2, callback=steps.append)
    assert [(s.block, s.num_blocks, s.step) for s in steps] == [
        (b, 3, i) for b in range(3) for i in range(2)
    ]
    assert steps[-1].fraction == pytest.approx(1.0)


def test_extend_accepts_float_tensors_and_batches(pipe, clip):
    x = torch.from_numpy(clip.frames[:8]).float().permute(3, 0, 1, 2) / 127.5 - 1  # (C, T, H, W)
    out = pipe.extend(torch.stack([x, x.flip(1)]), 20, prompt=["a", "b"], k=8,
                 num_inference_steps=2, generator=_gen())
    assert len(out.videos) == 2
    torch.testing.assert_close(out.x[1, :, :8], x.flip(1))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(num_frames=20, k=16), "window - 1"),
        (dict(num_frames=4), "shorter than the input"),
        (dict(num_frames=129), "between 1 and 128"),
        (dict(num_frames=20, strategy="lowpass"), "unknown strategy"),
        (dict(num_frames=20, w_r=-1.0), "w_r"),
        (dict(num_frames=20, sampler="euler"), "unknown sampler"),
        (dict(num_frames=20, prompt=["a", "b"]), "prompts"),
    ],
)
def test_extend_rejects_bad_arguments(pipe, clip, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pipe.extend(clip.frames[:8], **kwargs)


def test_extend_rejects_wrong_frame_sizes(pipe):
    big = world_clip(1, 8, 32).frames
    with pytest.raises(ValueError, match="32x32 but the model makes 16x16"):
        pipe.extend(big, 20)
    with pytest.raises(ValueError, match="uint8"):
        pipe.extend(big.astype(np.float32), 20)


def test_predict_keeps_the_first_k_frames(pipe, clip):
    out = pipe.predict(clip.frames, 1, num_frames=20, num_inference_steps=2, generator=_gen())
    assert out.frames.shape[0] == 20
    np.testing.assert_array_equal(out.frames[:1], clip.frames[:1])
    assert out.info["block_starts"][0] == 1
    with pytest.raises(ValueError, match="fewer than k"):
        pipe.predict(clip.frames[:2], 4)
    with pytest.raises(ValueError, match="window - 1"):
        pipe.predict(clip.frames, 16)


@pytest.mark.parametrize("strategy", ["replacement", "reconstruction"])
def test_interpolate_keeps_the_given_frames(pipe, clip, strategy):
    sparse = clip.frames[:33:4]  # 9 frames at 0, 4, ..., 32
    out = pipe.interpolate(sparse, 4, strategy=strategy, k=4, num_inference_steps=2,
                      generator=_gen())
    assert out.frames.shape[0] == 33
    np.testing.assert_array_equal(out.frames[::4], sparse)
    assert out.info["known_indices"] == list(range(0, 33, 4))
    assert len(out.info["blocks"]) > 1


def test_interpolate_rejects_bad_arguments(pipe, clip):
    with pytest.raises(ValueError, match="every"):
        pipe.interpolate(clip.frames[:3], 16)
    with pytest.raises(ValueError, match="shorter than"):
        pipe.interpolate(clip.frames[:3], 4, num_frames=5)


def _area_down(frames, factor):
    t, h, w, c = frames.shape
    low = frames.reshape(t, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))
    return np.rint(low).astype(np.uint8)


def test_super_resolve_lowpass_reproduces_the_lowres_input(pipe, clip):
    low = _area_down(clip.frames[:6], 2)  # (6, 8, 8, 3)
    out = pipe.super_resolve(low, strategy="lowpass", num_inference_steps=3, generator=_gen())
    assert out.frames.shape == (6, SIZE, SIZE, 3)
    target = torch.from_numpy(low).float().permute(3, 0, 1, 2) / 127.5 - 1  # (C, T, 8, 8)
    blocks = out.x[0].unflatten(2, (8, 2)).unflatten(4, (8, 2))  # (C, T, 8, 2, 8, 2)
    means = blocks.mean(dim=(3, 5))  # (C, T, 8, 8)
    unclipped = (blocks.abs() < 1).all(dim=5).all(dim=3)  # projection not undone by clipping
    assert unclipped.sum() >= 10
    torch.testing.assert_close(means[unclipped], target[unclipped], atol=1e-5, rtol=0)


def test_super_resolve_reconstruction_runs_and_blocks_long_clips(pipe, clip):
    low = _area_down(clip.frames[:20], 4)  # (20, 4, 4, 3)
    out = pipe.super_resolve(low, num_inference_steps=2, generator=_gen())
    assert out.frames.shape == (20, SIZE, SIZE, 3)
    assert out.info["w_r"] == 64.0  # lowres_w_r(4) = 4 f^2
    assert out.info["block_starts"] == [0, 10]


def test_super_resolve_rejects_bad_sizes(pipe, clip):
    with pytest.raises(ValueError, match="integer factor"):
        pipe.super_resolve(clip.frames[:4])
    with pytest.raises(ValueError, match="integer factor"):
        pipe.super_resolve(clip.frames[:4, :6, :6])
    with pytest.raises(ValueError, match="unknown strategy"):
        pipe.super_resolve(_area_down(clip.frames[:4], 2), strategy="replacement")


def test_compare_returns_both_strategies_and_scores(pipe):
    truth = world_clip(5, 24, SIZE)
    steps = []
    result = pipe.compare(truth.frames[:8], 24, seed=2, k=8, num_inference_steps=2,
                          truth=truth, callback=steps.append)
    assert set(result.videos) == {"replacement", "reconstruction"}
    for name, frames in result.videos.items():
        assert frames.shape == (24, SIZE, SIZE, 3)
        np.testing.assert_array_equal(frames[:8], truth.frames[:8])
        assert {"seam_jump", "psnr_vs_truth", "trajectory_error_px",
                "colour_persistence"} <= set(result.scores[name])
    np.testing.assert_array_equal(result.truth, truth.frames)
    assert result.given == list(range(8)) and result.block_starts == [8, 16]
    # two blocks (windows [0, 16) and [8, 24)) per strategy, on one counter
    assert {(s.block, s.num_blocks) for s in steps} == {(b, 4) for b in range(4)}


def test_compare_back_to_back_shares_the_seed(pipe):
    truth = world_clip(5, 24, SIZE)
    result = pipe.compare(truth.frames[:8], 24, seed=2, k=8, w_r=0.0, num_inference_steps=2)
    np.testing.assert_array_equal(result.videos["replacement"], result.videos["reconstruction"])


def test_compare_strategies_for_super_resolution_and_interpolation(pipe, clip):
    config = default_config("super_resolve", steps=2)
    low = _area_down(clip.frames[:6], 2)
    sr = compare_strategies(pipe, "super_resolve", {"lowres": low}, truth=clip.frames,
                            config=config, seed=1, lowres=low)
    assert list(sr.videos) == ["lowpass", "reconstruction"] and sr.given == []
    assert {"psnr_vs_truth", "pixel_rmse", "lowres_mse"} <= set(sr.scores["lowpass"])
    assert sr.errors["reconstruction"].shape == (6,)
    interp = compare_strategies(pipe, "interpolate", {"video_sparse": clip.frames[:9:4],
                                                      "every": 4}, truth=clip,
                                config=default_config("interpolate", steps=2))
    assert interp.given == [0, 4, 8] and interp.error_label.startswith("trajectory")
    assert interp.frame_changes["truth"].shape == (8,)
    with pytest.raises(ValueError, match="fewer than num_frames"):
        compare_strategies(pipe, "extend", {"video": clip.frames[:4], "num_frames": 30},
                           truth=clip.frames[:20])
    with pytest.raises(ValueError, match="unknown task"):
        compare_strategies(pipe, "outpaint", {})


def test_score_video_scores_the_truth_perfectly_and_a_seam_as_a_jump():
    clip = world_clip(9, 24, SIZE)
    perfect = score_video(clip.frames, range(8, 24), [8, 16], clip)
    assert perfect.scores["psnr_vs_truth"] == float("inf")
    assert perfect.scores["trajectory_error_px"] < 1.0
    assert perfect.scores["colour_persistence"] == 1.0
    cut = np.concatenate([clip.frames[:16], clip.frames[:8]])  # the video restarts at frame 16
    assert score_video(cut, range(8, 24), [16]).scores["seam_jump"] > 2.0
    assert "seam_jump" not in score_video(cut, range(24), [0]).scores
    low = _area_down(clip.frames, 2)
    nearest = low.repeat(2, axis=1).repeat(2, axis=2)  # its area downsampling is low, exactly
    assert score_video(nearest, range(24), lowres=low).scores["lowres_mse"] == 0.0
    assert score_video(clip.frames, range(24), lowres=low).scores["lowres_mse"] > 0.0


def test_sampling_config_from_keywords_and_defaults():
    config = sampling_config("extend", num_inference_steps=5, guidance_weight=0.5, gamma=0.3)
    assert (config.steps, config.w, config.sampler_options) == (5, 0.5, {"gamma": 0.3})
    assert config.w_r == TASK_DEFAULTS["extend"].w_r and config.k == TASK_DEFAULTS["extend"].k
    assert sampling_config("super_resolve").w_r is None  # f^2, resolved by the task
    with pytest.raises(ValueError, match="unknown sampler"):
        SamplingConfig(sampler="euler")
    with pytest.raises(ValueError, match="w_r must be"):
        SamplingConfig(w_r=float("nan"))
    with pytest.raises(ValueError, match="unknown task"):
        default_config("outpaint")


def test_pipeline_methods_and_long_text_to_video(pipe, clip):
    out = pipe("a red circle moving right", num_frames=24, num_inference_steps=2,
               generator=_gen())
    assert out.frames.shape == (24, SIZE, SIZE, 3)
    assert out.info["block_starts"] == [0, 16]
    assert pipe.extend(clip.frames[:8], 12, num_inference_steps=1).frames.shape[0] == 12
    assert pipe.predict(clip.frames, 4, num_frames=8, num_inference_steps=1).frames.shape[0] == 8
    assert pipe.interpolate(clip.frames[:9:4], 4, num_inference_steps=1).frames.shape[0] == 9
    low = _area_down(clip.frames[:4], 2)
    assert pipe.super_resolve(low, num_inference_steps=1).frames.shape == (4, SIZE, SIZE, 3)
    result = pipe.compare(clip.frames[:8], 12, seed=0, num_inference_steps=1)
    assert result.scores["replacement"]["seam_jump"] > 0


def test_extend_rejects_float_videos_outside_the_data_range(pipe, clip):
    x = torch.from_numpy(clip.frames[:8]).float().permute(3, 0, 1, 2)  # (C, T, H, W) in [0, 255]
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        pipe.extend(x, 20)
    with pytest.raises(ValueError, match="finite"):
        pipe.extend(torch.full((3, 4, SIZE, SIZE), float("nan")), 20)


def test_prompt_windows_first_leaves_later_windows_unconditional(pipe, clip, monkeypatch):
    seen = []
    real_sample = pipe.sample

    def spy(prompts, z, config, *args):
        seen.append((list(prompts), config.w))
        return real_sample(prompts, z, config, *args)

    monkeypatch.setattr(pipe, "sample", spy)
    config = default_config("extend", steps=1, w=2.0, prompt_windows="first")
    first = pipe.extend(clip.frames[:8], 32, prompt="a red circle", config=config.seeded(0))
    assert seen == [(["a red circle"], 2.0), ([""], 0.0)]  # windows [4, 20) and [16, 32)
    seen.clear()
    every = pipe.extend(clip.frames[:8], 32, prompt="a red circle",
                        config=default_config("extend", steps=1, w=2.0).seeded(0))
    assert seen == [(["a red circle"], 2.0)] * 2
    np.testing.assert_array_equal(first.frames[:20], every.frames[:20])  # same first window
    assert not np.array_equal(first.frames[20:], every.frames[20:])
    with pytest.raises(ValueError, match="prompt_windows"):
        SamplingConfig(prompt_windows="last")
