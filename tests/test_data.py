"""Tests for the procedural bouncing-shapes world (vdm_core.data)."""

import json
import time

import numpy as np
import pytest
import torch

from vdm_core.data import (
    BACKGROUND,
    DIRECTIONS,
    EVAL_SEEDS,
    PALETTE,
    SHAPES,
    TRAIN_SEED_LIMIT,
    Scene,
    WorldObject,
    WorldStream,
    caption,
    extent,
    image_frames,
    render_clip,
    resample_motion,
    sample_scene,
    shape_area,
    training_seeds,
    trajectory,
    window_draws,
    world_clip,
    world_window,
)
from vdm_core.video_io import frames_to_tensor

SEEDS = range(40)


def _scene(seed: int, size: int = 32) -> Scene:
    """The scene sampled from ``seed``."""
    return sample_scene(np.random.default_rng(seed), size=size)


def _coverage_area(frame: np.ndarray, colour: str) -> float:
    """Coverage-weighted pixel area of one colour in a single-object uint8 frame (H, W, 3)."""
    background = np.asarray(BACKGROUND, dtype=np.float64)  # (3,)
    axis = np.asarray(PALETTE[colour], dtype=np.float64) - background  # (3,)
    alpha = (frame.astype(np.float64) - background) @ axis / (axis @ axis)  # (H, W)
    return float(alpha.sum())


def test_palette_directions_and_shapes():
    assert SHAPES == ("circle", "square", "triangle")
    assert len(PALETTE) == 6 and len(DIRECTIONS) == 8
    for dx, dy in DIRECTIONS.values():
        assert np.isclose(np.hypot(dx, dy), 1.0)
    assert DIRECTIONS["up"] == (0.0, -1.0)
    assert DIRECTIONS["down and right"][0] > 0 and DIRECTIONS["down and right"][1] > 0
    colours = np.array([*PALETTE.values(), BACKGROUND], dtype=float)  # (7, 3)
    gaps = np.linalg.norm(colours[:, None] - colours[None], axis=-1)  # (7, 7)
    assert gaps[~np.eye(len(colours), dtype=bool)].min() > 150


def test_world_clip_is_deterministic():
    a, b, c = world_clip(7), world_clip(7), world_clip(8)
    assert a.frames.dtype == np.uint8 and a.frames.shape == (16, 32, 32, 3)
    assert np.array_equal(a.frames, b.frames)
    assert np.array_equal(a.positions, b.positions)
    assert a.caption == b.caption and a.scene == b.scene
    assert not np.array_equal(a.frames, c.frames)


@pytest.mark.parametrize("size", [32, 64])
def test_objects_stay_inside_frame_for_128_frames(size):
    for seed in SEEDS:
        scene = _scene(seed, size)
        positions = trajectory(scene, 128)  # (128, n, 2)
        assert positions.shape == (128, len(scene.objects), 2)
        for i, obj in enumerate(scene.objects):
            left, top, right, bottom = extent(obj.shape, obj.radius)
            x, y = positions[:, i, 0], positions[:, i, 1]
            assert np.all(x - left >= -1e-9) and np.all(x + right <= size + 1e-9)
            assert np.all(y - top >= -1e-9) and np.all(y + bottom <= size + 1e-9)


def _check_axis(path: np.ndarray, velocity: float, lo: float, hi: float) -> np.ndarray:
    """Assert elastic motion along one axis; return which steps contain a bounce."""
    step = np.diff(path)  # (T - 1,)
    bounce = ~np.isclose(np.abs(step), abs(velocity), rtol=0, atol=1e-9)
    # Across a bounce the object travels to the wall and back by |v| in total.
    via_lo = (path[:-1] - lo) + (path[1:] - lo)
    via_hi = (hi - path[:-1]) + (hi - path[1:])
    at_wall = np.isclose(via_lo, abs(velocity), atol=1e-9) | np.isclose(
        via_hi, abs(velocity), atol=1e-9
    )
    assert np.all(at_wall[bounce])
    sign = np.sign(velocity)
    for k in range(len(step)):
        if bounce[k]:
            sign = -sign
        else:
            assert np.sign(step[k]) == sign or velocity == 0
    return bounce


def test_constant_speed_and_bounces_only_at_walls():
    bounces = 0
    for seed in SEEDS:
        scene = _scene(seed)
        positions = trajectory(scene, 128)  # (128, n, 2)
        for i, obj in enumerate(scene.objects):
            left, top, right, bottom = extent(obj.shape, obj.radius)
            bx = _check_axis(positions[:, i, 0], obj.vx, left, scene.size - right)
            by = _check_axis(positions[:, i, 1], obj.vy, top, scene.size - bottom)
            free = ~(bx | by)
            speed = np.linalg.norm(np.diff(positions[:, i], axis=0), axis=1)  # (127,)
            assert np.allclose(speed[free], np.hypot(obj.vx, obj.vy), atol=1e-9)
            bounces += int(bx.sum() + by.sum())
    assert bounces > 50


def test_velocity_matches_direction_and_speed_range():
    for seed in SEEDS:
        for obj in _scene(seed).objects:
            speed = np.hypot(obj.vx, obj.vy)
            assert 0.6 <= speed <= 1.6 and 4.0 <= obj.radius <= 7.0
            dx, dy = DIRECTIONS[obj.direction]
            assert np.allclose((obj.vx / speed, obj.vy / speed), (dx, dy))


def test_continuation_equals_slice_of_long_render():
    for seed in range(5):
        scene = _scene(seed)
        full = render_clip(scene, 128)  # (128, 32, 32, 3)
        assert full.shape == (128, 32, 32, 3)
        for start in (1, 16, 77, 112):
            assert np.array_equal(render_clip(scene, 16, start), full[start : start + 16])
            assert np.array_equal(trajectory(scene, 16, start), trajectory(scene, 128)[start:][:16])


def test_caption_mentions_every_object():
    for seed in SEEDS:
        scene = _scene(seed)
        text = caption(scene)
        for obj in scene.objects:
            assert f"a {obj.colour} {obj.shape} moving {obj.direction}" in text
    example = Scene(
        objects=(
            WorldObject("circle", "red", 5.0, 10.0, 10.0, -0.7, -0.7, "up and left"),
            WorldObject("square", "blue", 5.0, 20.0, 20.0, 1.0, 0.0, "right"),
        ),
        size=32,
    )
    assert caption(example) == "a red circle moving up and left and a blue square moving right"


def test_two_objects_never_share_a_colour():
    counts = set()
    for seed in range(500):
        scene = _scene(seed)
        colours = [o.colour for o in scene.objects]
        counts.add(len(colours))
        assert len(set(colours)) == len(colours)
    assert counts == {1, 2}


def test_image_frames_keep_objects():
    rng = np.random.default_rng(0)
    for seed in range(30):
        scene = _scene(seed)
        moved = resample_motion(scene, rng)
        for a, b in zip(scene.objects, moved.objects, strict=True):
            assert (a.shape, a.colour, a.radius, a.direction) == (
                b.shape,
                b.colour,
                b.radius,
                b.direction,
            )
            assert (a.x, a.y) != (b.x, b.y)
            assert np.allclose(np.sign((a.vx, a.vy)), np.sign((b.vx, b.vy)))
        frames = image_frames(scene, 3, rng)  # (3, 32, 32, 3)
        assert frames.shape == (3, 32, 32, 3) and frames.dtype == np.uint8
        if len(scene.objects) == 1:
            obj = scene.objects[0]
            for frame in frames:
                area = _coverage_area(frame, obj.colour)
                assert area == pytest.approx(shape_area(obj.shape, obj.radius), rel=0.03)


def test_rendered_area_and_antialiasing():
    for seed in range(20):
        scene = _scene(seed)
        if len(scene.objects) != 1:
            continue
        obj = scene.objects[0]
        frames = render_clip(scene, 16)  # (16, 32, 32, 3)
        for frame in frames:
            assert _coverage_area(frame, obj.colour) == pytest.approx(
                shape_area(obj.shape, obj.radius), rel=0.03
            )
        pure = {tuple(PALETTE[obj.colour]), tuple(BACKGROUND)}
        mixed = [tuple(p) not in pure for p in frames.reshape(-1, 3)]
        assert sum(mixed) > 16 * 8


def test_render_speed():
    scenes = [_scene(seed) for seed in range(8)]
    render_clip(scenes[0], 16)
    start = time.perf_counter()
    for scene in scenes:
        render_clip(scene, 16)
    elapsed = time.perf_counter() - start
    print(f"render 8 clips of 16x32x32: {elapsed * 1000:.1f} ms")
    assert elapsed < 0.5


def test_eval_seeds_disjoint_from_training_stream():
    assert len(EVAL_SEEDS) == 256 and len(set(EVAL_SEEDS)) == 256
    assert min(EVAL_SEEDS) >= TRAIN_SEED_LIMIT
    for batch_index in range(50):
        seeds = training_seeds(0, batch_index, 64)
        assert seeds.min() >= 0 and seeds.max() < TRAIN_SEED_LIMIT
        assert not set(seeds.tolist()) & set(EVAL_SEEDS)


def test_stream_batch_layout():
    batch = next(WorldStream(seed=1, batch_size=3, num_frames=8, image_frames=2))
    assert batch.video.shape == (3, 3, 10, 32, 32) and batch.video.dtype == torch.float32
    assert batch.video.min() >= -1.0 and batch.video.max() <= 1.0
    assert batch.num_video_frames == 8 and len(batch.captions) == 3
    assert all(isinstance(text, str) and text.startswith("a ") for text in batch.captions)


def test_stream_resume_is_exact():
    stream = WorldStream(seed=5, batch_size=2, num_frames=8, image_frames=2)
    for _ in range(3):
        next(stream)
    state = json.loads(json.dumps(stream.state_dict()))
    expected = [next(stream) for _ in range(2)]
    resumed = WorldStream(seed=5, batch_size=2, num_frames=8, image_frames=2)
    resumed.load_state_dict(state)
    for want, got in zip(expected, (next(resumed) for _ in range(2)), strict=True):
        assert torch.equal(want.video, got.video)
        assert want.captions == got.captions
    fresh = next(WorldStream(seed=6, batch_size=2, num_frames=8, image_frames=2))
    assert not torch.equal(fresh.video, expected[0].video)


def _old_training_example(scene_seed: int, num_frames: int, num_images: int, size: int):
    """The stream's example before windows existed: `world_clip` plus image frames."""
    clip = world_clip(scene_seed, num_frames, size)
    images = image_frames(clip.scene, num_images, np.random.default_rng([scene_seed, 1]))
    return frames_to_tensor(np.concatenate([clip.frames, images])), clip.caption


def test_window_at_frame_zero_is_world_clip():
    for seed in SEEDS:
        a, b = world_clip(seed), world_window(seed)
        assert np.array_equal(a.frames, b.frames) and np.array_equal(a.positions, b.positions)
        assert a.caption == b.caption


@pytest.mark.parametrize("frameskip", [1, 4])
def test_window_frames_are_a_strided_slice_of_the_long_render(frameskip):
    for seed in range(6):
        scene = _scene(seed)
        for start in (0, 7, 48):
            window = world_window(seed, 8, 32, start, frameskip)
            end = start + 8 * frameskip
            assert np.array_equal(window.frames, render_clip(scene, end)[start::frameskip])
            assert np.array_equal(window.positions, trajectory(scene, end)[start::frameskip])
            # the window's own scene continues it: its frame k is the world's start + fs k
            assert np.allclose(trajectory(window.scene, 8), window.positions, rtol=0, atol=1e-9)


def test_window_caption_matches_the_motion_of_its_first_frames():
    checked, changed = 0, 0
    for seed in SEEDS:
        for start in range(0, 64, 3):
            window = world_window(seed, 2, 32, start)
            assert world_window(seed, 16, 32, start, 4).caption == window.caption
            changed += window.caption != world_clip(seed).caption
            step = window.positions[1] - window.positions[0]  # (n, 2)
            for obj, (dx, dy) in zip(window.scene.objects, step, strict=True):
                assert f"a {obj.colour} {obj.shape} moving {obj.direction}" in window.caption
                if not np.isclose(np.hypot(dx, dy), np.hypot(obj.vx, obj.vy), atol=1e-9):
                    continue  # a bounce between the two frames
                ux, uy = DIRECTIONS[obj.direction]
                assert np.sign(np.round(dx, 9)) == np.sign(ux)
                assert np.sign(np.round(dy, 9)) == np.sign(uy)
                checked += 1
    assert checked > 800 and changed > 200  # the world's caption of frame 0 would be wrong


def test_stream_with_window_options_off_gives_the_original_batches():
    stream = WorldStream(seed=3, batch_size=3, num_frames=8, image_frames=2)
    for index in range(3):
        batch = next(stream)
        old = [_old_training_example(int(s), 8, 2, 32) for s in training_seeds(3, index, 3)]
        assert torch.equal(batch.video, torch.stack([video for video, _ in old]))
        assert batch.captions == [text for _, text in old]
        assert torch.equal(batch.frameskip, torch.ones(3, dtype=torch.long))


def test_stream_windows_carry_their_frameskip_and_resume_exactly():
    options = {"window_start_max": 48, "frameskips": (1, 4)}
    stream = WorldStream(seed=2, batch_size=4, num_frames=8, image_frames=1, **options)
    batches = [next(stream) for _ in range(3)]
    skips = torch.cat([b.frameskip for b in batches])
    assert set(skips.tolist()) == {1, 4}
    starts, drawn = window_draws(2, 0, 4, 48, (1, 4))
    assert torch.equal(batches[0].frameskip, torch.from_numpy(drawn))
    for k, seed in enumerate(training_seeds(2, 0, 4)):
        window = world_window(int(seed), 8, 32, int(starts[k]), int(drawn[k]))
        assert torch.equal(batches[0].video[k, :, :8], frames_to_tensor(window.frames))
        assert batches[0].captions[k] == window.caption

    state = json.loads(json.dumps(stream.state_dict()))
    expected = next(stream)
    resumed = WorldStream(seed=2, batch_size=4, num_frames=8, image_frames=1, **options)
    resumed.load_state_dict(state)
    got = next(resumed)
    assert torch.equal(got.video, expected.video) and got.captions == expected.captions
    assert torch.equal(got.frameskip, expected.frameskip)
    with pytest.raises(ValueError, match="window options"):
        WorldStream(seed=2, batch_size=4, num_frames=8, image_frames=1).load_state_dict(state)
    plain = WorldStream(seed=2, batch_size=4)
    plain.load_state_dict({"seed": 2, "batch_index": 5})  # saved before the options existed
    assert plain.batch_index == 5
