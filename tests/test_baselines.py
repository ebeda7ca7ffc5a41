"""No-model baselines (`vdm_core.baselines`) on cases with known answers and on world clips."""

import numpy as np
import pytest

from vdm_core.baselines import (
    bicubic,
    bicubic_projected,
    constant_velocity,
    hold_nearest,
    linear_blend,
)
from vdm_core.data import EVAL_SEEDS, world_clip
from vdm_core.metrics import downsample, psnr, trajectory_error


def _flat(values):
    return np.stack([np.full((4, 4, 3), v, np.uint8) for v in values])


def test_hold_nearest_and_linear_blend_on_flat_frames():
    given = _flat([0, 100, 200])
    held = hold_nearest(given, [0, 4, 8], 10)
    assert [int(f[0, 0, 0]) for f in held] == [0, 0, 0, 100, 100, 100, 100, 200, 200, 200]
    blend = linear_blend(given, [0, 4, 8], 10)
    assert [int(f[0, 0, 0]) for f in blend] == [0, 25, 50, 75, 100, 125, 150, 175, 200, 200]
    with pytest.raises(ValueError, match="indices must increase"):
        linear_blend(given, [0, 8, 4], 10)
    with pytest.raises(ValueError, match="3 frames for 2 indices"):
        hold_nearest(given, [0, 4], 10)


def test_bicubic_projected_keeps_the_low_res_input_and_beats_plain_bicubic():
    clip = world_clip(EVAL_SEEDS[7], 8)
    low = np.round(downsample(clip.frames, 16) * 255).astype(np.uint8)  # (8, 16, 16, 3)
    plain, projected = bicubic(low, 32), bicubic_projected(low, 32)
    assert plain.shape == projected.shape == clip.frames.shape

    def low_error(frames):
        return np.abs(downsample(frames, 16) * 255 - low).mean()

    assert low_error(projected) < 0.5 < low_error(plain)
    assert psnr(projected, clip.frames) > psnr(plain, clip.frames)


def test_constant_velocity_follows_the_world_until_objects_interact():
    """Single-object clips: carrying on at constant velocity with wall bounces is the world's
    own physics, so the trajectory stays within about a pixel; holding the frame does not."""
    errors, held = [], []
    for seed in EVAL_SEEDS[:24]:
        clip = world_clip(seed, 16)
        if len(clip.scene.objects) != 1:
            continue
        pred = constant_velocity(clip.frames[:4], 16)
        np.testing.assert_array_equal(pred[:4], clip.frames[:4])
        errors.append(np.nanmean(trajectory_error(pred[4:], clip.positions[4:], clip.scene)))
        still = hold_nearest(clip.frames[:4], range(4), 16)
        held.append(np.nanmean(trajectory_error(still[4:], clip.positions[4:], clip.scene)))
    assert len(errors) >= 4
    assert np.median(errors) < 1.0 < 3.0 < np.median(held)
    with pytest.raises(ValueError, match="at least 2 given frames"):
        constant_velocity(clip.frames[:1], 16)
