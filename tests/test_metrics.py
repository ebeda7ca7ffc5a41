"""Pixel metrics of `vdm_core.metrics` on world clips with known answers."""

import math
from dataclasses import replace

import numpy as np
import pytest

from vdm_core.data import EVAL_SEEDS, Scene, caption, render_clip, scene_at, world_clip
from vdm_core.detect import caption_objects
from vdm_core.metrics import (
    conditioning_fidelity,
    describe_clip,
    direction_cosines,
    direction_shares,
    diversity,
    downsample,
    frame_change,
    frame_errors,
    ghost_rate,
    identity_kept,
    lowres_mse,
    motion_against_truth,
    motion_stats,
    object_errors,
    persistence,
    psnr,
    seam_jump,
    trajectory_error,
)

SEED = EVAL_SEEDS[3]


@pytest.fixture(scope="module")
def clip():
    return world_clip(SEED, 64)


def test_frame_change_is_per_pair_mean_abs_difference():
    frames = np.zeros((4, 2, 2, 3), dtype=np.uint8)
    frames[2] = 255
    np.testing.assert_allclose(frame_change(frames), [0.0, 1.0, 1.0])


def test_seam_jump_is_one_for_a_smooth_video_and_large_for_a_jump(clip):
    starts = [16, 28, 40, 52]
    assert seam_jump(clip.frames, starts) == pytest.approx(1.0, abs=0.25)
    jumped = clip.frames.copy()
    jumped[28:] = render_clip(clip.scene, 36, start_frame=40)  # skip 12 frames at the seam
    assert seam_jump(jumped, starts) > 2.0
    # The jump is attributed to the boundary it lies on: no boundary there -> no seam signal.
    assert seam_jump(jumped, [16, 40, 52]) < seam_jump(jumped, starts)


def test_seam_jump_edge_cases():
    static = np.zeros((8, 4, 4, 3), dtype=np.uint8)
    assert seam_jump(static, [4]) == 1.0
    assert math.isnan(seam_jump(static, []))
    assert math.isnan(seam_jump(static, [0, 8]))  # outside [1, T - 1]: ignored
    jump = static.copy()
    jump[4:] = 50
    assert seam_jump(jump, [4]) == math.inf


def test_trajectory_error_of_the_truth_is_subpixel_and_measures_a_shift(clip):
    err = trajectory_error(clip.frames, clip.positions, clip.scene)
    assert err.shape == (64,)
    assert np.nanmean(err) < 1.0
    shifted = clip.positions + np.array([3.0, 4.0])  # 5 px away from every true centre
    err = trajectory_error(clip.frames, shifted, clip.caption)
    assert np.nanmedian(err) == pytest.approx(5.0, abs=1.0)


def test_trajectory_error_of_missing_objects_is_nan_or_the_penalty(clip):
    blank = np.full_like(clip.frames[:4], 12)
    assert np.isnan(trajectory_error(blank, clip.positions[:4], clip.scene)).all()
    penalised = trajectory_error(blank, clip.positions[:4], clip.scene, missing=45.0)
    np.testing.assert_allclose(penalised, 45.0)


def test_object_errors_keep_each_object_and_frame_errors_pool_them(clip):
    # frames 0-3 true, 4-7 blank: every object is found in the first half only
    frames = clip.frames[:8].copy()
    frames[4:] = 12
    per_object = object_errors(frames, clip.positions[:8], clip.scene)
    assert per_object.shape == (8, len(clip.scene.objects))
    assert (per_object[:4] < 1.0).all() and np.isnan(per_object[4:]).all()
    np.testing.assert_array_equal(frame_errors(per_object),
                                  trajectory_error(frames, clip.positions[:8], clip.scene))
    np.testing.assert_allclose(frame_errors(per_object, 30.0)[4:], 30.0)
    np.testing.assert_allclose(frame_errors(np.array([[1.0, np.nan]]), 5.0), [3.0])


def test_trajectory_error_checks_shapes(clip):
    with pytest.raises(ValueError, match="do not match"):
        trajectory_error(clip.frames[:4], clip.positions[:5], clip.scene)


def test_persistence_of_a_true_clip_and_a_blank_clip(clip):
    kept = persistence(clip.frames, clip.caption)
    assert kept["colour"] == 1.0
    assert kept["shape"] > 0.8
    blank = np.full_like(clip.frames[:4], 12)
    assert persistence(blank, clip.caption) == {"colour": 0.0, "shape": 0.0}
    assert persistence(clip.frames, clip.caption, start=60)["colour"] == 1.0


def test_diversity_is_zero_for_identical_videos_and_positive_otherwise(clip):
    assert diversity([clip.frames, clip.frames.copy()]) == 0.0
    other = world_clip(SEED + 1, 64).frames
    assert diversity([clip.frames, other, clip.frames]) > 0.01
    with pytest.raises(ValueError, match="at least 2"):
        diversity([clip.frames])


def test_conditioning_fidelity_is_inf_when_exact_and_drops_with_noise(clip):
    assert conditioning_fidelity(clip.frames, clip.frames[:4], [0, 1, 2, 3]) == math.inf
    noisy = clip.frames.copy()
    noisy[:4] = np.clip(noisy[:4].astype(int) + 10, 0, 255).astype(np.uint8)
    value = conditioning_fidelity(noisy, clip.frames[:4], [0, 1, 2, 3])
    assert 25.0 < value < 40.0
    with pytest.raises(ValueError, match="indices"):
        conditioning_fidelity(clip.frames, clip.frames[:4], [0, 1])


def test_psnr_of_a_constant_offset():
    a = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    assert psnr(a, a + 51) == pytest.approx(10 * math.log10(25.0))


def test_lowres_mse_of_the_true_downsampled_clip_is_rounding_only(clip):
    low = np.rint(downsample(clip.frames, 16) * 255).astype(np.uint8)  # (T, 16, 16, 3)
    assert lowres_mse(clip.frames, low) <= (0.5 / 255) ** 2
    assert lowres_mse(clip.frames[::-1], low) > 1e-3
    with pytest.raises(ValueError, match="multiple"):
        downsample(clip.frames, 12)


def test_motion_stats_of_the_world_follow_its_physics(clip):
    stats = motion_stats(clip.frames)
    assert stats["num_objects"] == len(clip.scene.objects)
    assert stats["acceleration"] < 0.3
    assert stats["presence"] == 1.0
    assert stats["area_cv"] < 0.15
    assert stats["shape_consistency"] > 0.8
    shuffled = clip.frames[np.random.default_rng(0).permutation(64)]
    assert motion_stats(shuffled)["acceleration"] > 1.0


def test_metrics_reject_non_uint8_frames(clip):
    with pytest.raises(ValueError, match="uint8"):
        frame_change(clip.frames.astype(np.float32))


def test_sharp_trajectory_error_does_not_reward_a_cross_fade():
    """A 50% cross-fade of two frames 6 frames apart puts each object's coverage centroid on
    the straight line between them; only sharp detections of the right shape count as hits."""
    for seed in EVAL_SEEDS[:40]:
        clip = world_clip(seed, 7)
        if len(clip.scene.objects) == 1 and np.hypot(*(clip.positions[6, 0] -
                                                       clip.positions[0, 0])) > 6:
            break
    fade = ((clip.frames[0].astype(float) + clip.frames[6]) / 2).round().astype(np.uint8)
    middle = clip.positions[3:4]
    assert np.isfinite(trajectory_error(fade[None], middle, clip.scene)[0])  # a "hit"
    assert np.isnan(trajectory_error(fade[None], middle, clip.scene, sharp=True)[0])
    drawn = trajectory_error(clip.frames, clip.positions, clip.scene, sharp=True)
    assert np.nanmax(drawn) < 1.0 and not np.isnan(drawn).any()


def test_ghost_rate_counts_frames_with_a_doubled_object():
    clip = next(c for c in (world_clip(s, 4) for s in EVAL_SEEDS[:40])
                if len(c.scene.objects) == 1)
    assert ghost_rate(clip.frames, clip.scene) == 0.0
    ghosted = clip.frames.copy()
    shifted = np.roll(clip.frames[0], 12, axis=(0, 1))  # the same object elsewhere
    ghosted[2] = np.maximum(clip.frames[2], shifted)
    assert ghost_rate(ghosted, clip.scene) == 0.25
    assert math.isnan(ghost_rate(clip.frames, "nothing named here"))


def test_identity_kept_counts_the_frames_before_a_colour_change():
    cyan, yellow = world_clip(EVAL_SEEDS[0], 16), world_clip(EVAL_SEEDS[3], 16)
    assert [len(c.scene.objects) for c in (cyan, yellow)] == [1, 1]
    assert identity_kept(cyan.frames) == 1.0
    # The cyan circle becomes a yellow square at frame 10: the last 6 frames lose identity.
    spliced = np.concatenate([cyan.frames[:10], yellow.frames[10:]])
    assert identity_kept(spliced) == pytest.approx(10 / 16)
    # A second object appearing for 3 frames costs exactly those frames.
    both = cyan.frames.copy()
    mask = yellow.frames[:3].max(axis=-1) > 60  # (3, H, W) the yellow square's pixels
    both[:3][mask] = yellow.frames[:3][mask]
    assert identity_kept(both) == pytest.approx(13 / 16)
    assert math.isnan(identity_kept(np.full_like(cyan.frames, 12)))


def test_direction_cosines_tell_forward_from_backward_motion():
    # The first held-out clips whose objects all move without a bounce over frames 2..6.
    clips = [c for c in (world_clip(s, 16) for s in EVAL_SEEDS[:40])
             if all(np.allclose(np.diff(c.positions[2:7, k], n=2, axis=0), 0, atol=1e-6)
                    for k in range(len(c.scene.objects)))][:4]
    assert len(clips) == 4
    for c in clips:
        np.testing.assert_array_less(0.95, direction_cosines(c.frames, c.scene, 2, 6))
        # The same frames against the scene at frame 2 with every object moving the other way.
        at_2 = scene_at(c.scene, 2)
        backward = Scene(tuple(replace(o, vx=-o.vx, vy=-o.vy) for o in at_2.objects), at_2.size)
        np.testing.assert_array_less(direction_cosines(c.frames[2:], backward, 0, 4), -0.95)
        still = np.repeat(c.frames[:1], 8, axis=0)  # objects that do not move have no direction
        assert np.isnan(direction_cosines(still, c.scene, 2, 6)).all()
        # ... and no speed; the true frames move at the scene's speed, and over the same span
        # with every other frame dropped, at twice it
        _, ratios = motion_against_truth(c.frames, c.scene, 2, 6)
        np.testing.assert_allclose(ratios, 1.0, atol=0.1)
        np.testing.assert_allclose(motion_against_truth(c.frames[2::2], at_2, 0, 2)[1], 2.0,
                                   atol=0.2)
        np.testing.assert_allclose(motion_against_truth(still, c.scene, 2, 6)[1], 0.0,
                                   atol=0.05)
    with pytest.raises(ValueError, match="first < last"):
        direction_cosines(clips[0].frames, clips[0].scene, 6, 6)



def test_direction_shares_pool_measured_objects_only():
    d = direction_shares(np.array([1.0, 0.8, -0.9, 0.2, np.nan, np.nan]))
    assert d["right"] == pytest.approx(2 / 4) and d["opposite"] == pytest.approx(1 / 4)
    assert d["measured"] == pytest.approx(4 / 6) and d["mean"] == pytest.approx(1.1 / 4)
    c = world_clip(EVAL_SEEDS[0], 16)  # a true clip moves the way its scene says
    assert direction_shares(direction_cosines(c.frames, c.scene, 2, 5))["right"] == 1.0
    none = direction_shares(np.full(3, np.nan))
    assert none["measured"] == 0.0 and math.isnan(none["right"])

def test_describe_clip_reads_the_world_caption_back():
    matched = 0
    for seed in EVAL_SEEDS[:24]:
        clip = world_clip(seed, 12)
        truth = caption(scene_at(clip.scene, 9))  # the motion over the last 3 frames
        described = describe_clip(clip.frames)
        assert sorted(caption_objects(described)) == sorted(caption_objects(truth))
        matched += sorted(described.split(" and ")) == sorted(truth.split(" and "))
    assert matched >= 20  # a bounce in the last frames or an occlusion can turn a direction
    # Clips whose objects bounced after frame 0: the caption follows the motion at the end.
    bounced = [c for c in (world_clip(s, 12) for s in EVAL_SEEDS[:40])
               if caption(scene_at(c.scene, 0)) != caption(scene_at(c.scene, 9))]
    late = [sorted(describe_clip(c.frames).split(" and "))
            == sorted(caption(scene_at(c.scene, 9)).split(" and ")) for c in bounced]
    assert len(bounced) >= 10 and sum(late) >= 0.7 * len(bounced)
    blank = np.zeros((6, 32, 32, 3), dtype=np.uint8)
    assert describe_clip(blank) == ""
    still = np.repeat(world_clip(EVAL_SEEDS[0], 1).frames, 6, axis=0)
    assert " moving " not in describe_clip(still) and describe_clip(still)
