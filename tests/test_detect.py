"""Tests for the pixel-level object detector (vdm_core.detect)."""

import numpy as np
import pytest

from vdm_core.data import BACKGROUND, PALETTE, SHAPES, Scene, WorldObject, render_clip, world_clip
from vdm_core.detect import (
    caption_match,
    caption_mismatches,
    caption_objects,
    connected_components,
    detect_clip,
    detect_objects,
    dilate,
    validate_detector,
)


@pytest.fixture(scope="module")
def validation() -> dict:
    """Detector scores on 200 held-out ground-truth clips (computed once)."""
    scores = validate_detector(num_clips=200)
    print(scores)
    return scores


def _single(shape: str, colour: str, radius: float, x: float, y: float) -> np.ndarray:
    """One rendered frame (32, 32, 3) of a single static object."""
    scene = Scene(objects=(WorldObject(shape, colour, radius, x, y, 0.0, 0.0, "up"),), size=32)
    return render_clip(scene, 1)[0]


def test_validation_accuracy(validation):
    assert validation["num_clips"] == 200
    assert validation["visible_objects"] > 2000
    assert validation["object_accuracy"] >= 0.98
    assert validation["mean_centroid_error_px"] < 1.0


def test_validation_caption_match(validation):
    assert validation["caption_match_rate"] >= 0.98
    assert validation["wrong_colour_reject_rate"] >= 0.98
    assert validation["wrong_shape_reject_rate"] >= 0.98


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("radius", [4.0, 5.5, 7.0])
def test_every_shape_colour_and_size(shape, radius):
    for k, colour in enumerate(PALETTE):
        x, y = 12.3 + 0.37 * k, 17.8 - 0.29 * k
        found = detect_objects(_single(shape, colour, radius, x, y))
        assert len(found) == 1
        assert (found[0].colour, found[0].shape) == (colour, shape)
        assert np.hypot(found[0].x - x, found[0].y - y) < 0.3


def test_background_and_specks_give_nothing():
    frame = np.empty((32, 32, 3), dtype=np.uint8)  # (32, 32, 3)
    frame[:] = BACKGROUND
    assert detect_objects(frame) == []
    frame[5:7, 5:7] = PALETTE["red"]
    frame[20, 9] = PALETTE["cyan"]
    assert detect_objects(frame) == []


def test_caption_objects_parses_world_captions():
    text = "a red circle moving up and left and a blue square moving right"
    assert caption_objects(text) == [("red", "circle"), ("blue", "square")]
    assert caption_objects("a cyan triangle moving down") == [("cyan", "triangle")]
    assert caption_objects("nothing here") == []


def _two_object_clip() -> tuple[np.ndarray, Scene]:
    """A 16-frame clip of two separated objects, (16, 32, 32, 3)."""
    scene = Scene(
        objects=(
            WorldObject("circle", "red", 5.0, 8.0, 8.0, 0.0, 0.5, "down"),
            WorldObject("triangle", "blue", 5.0, 24.0, 22.0, 0.0, -0.5, "up"),
        ),
        size=32,
    )
    return render_clip(scene, 16), scene


def test_caption_match_accepts_truth_and_rejects_errors():
    frames, _ = _two_object_clip()
    truth = "a red circle moving down and a blue triangle moving up"
    assert caption_match(frames, truth)
    assert not caption_match(frames, "a green circle moving down and a blue triangle moving up")
    assert not caption_match(frames, "a red square moving down and a blue triangle moving up")
    assert not caption_match(frames, "a red circle moving down")
    assert not caption_match(frames, "")


def test_caption_mismatches_name_each_reason():
    frames, _ = _two_object_clip()
    detections = detect_clip(frames)
    none = {"absent": False, "shape": False, "extra": False}
    truth = "a red circle moving down and a blue triangle moving up"
    assert caption_mismatches(detections, truth) == none
    assert caption_mismatches(detections, "a green circle moving down and a blue triangle "
                              "moving up") == {**none, "absent": True, "extra": True}
    assert caption_mismatches(detections, "a red square moving down and a blue triangle "
                              "moving up") == {**none, "shape": True}
    assert caption_mismatches(detections, "a red circle moving down") == {**none, "extra": True}


def test_robust_to_noise_and_colour_shift():
    rng = np.random.default_rng(0)
    clips = [world_clip(10_000 + seed) for seed in range(24)]
    clean = [clip for clip in clips if caption_match(clip.frames, clip.caption)]
    assert len(clean) >= 20
    for clip in clean:
        noisy = clip.frames + rng.normal(0.0, 8.0, clip.frames.shape)  # (16, 32, 32, 3)
        noisy += rng.uniform(-20.0, 20.0, size=3)
        noisy = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        assert caption_match(noisy, clip.caption)


def test_detect_clip_is_per_frame():
    frames, _ = _two_object_clip()
    detections = detect_clip(frames)
    assert len(detections) == 16
    assert all({d.colour for d in frame} == {"red", "blue"} for frame in detections)
    assert all(d.area > 30 for frame in detections for d in frame)


def test_connected_components_and_dilation():
    mask = np.zeros((6, 7), dtype=bool)  # (6, 7)
    mask[0, 0] = mask[1, 1] = True  # diagonal neighbours: one 8-connected component
    mask[4:6, 3:7] = True
    mask[0, 6] = True
    labels, count = connected_components(mask)  # (6, 7)
    assert count == 3
    assert labels[0, 0] == labels[1, 1] != labels[4, 3]
    assert len({labels[0, 0], labels[4, 3], labels[0, 6]}) == 3 and labels[3, 0] == 0
    assert connected_components(np.zeros((4, 4), dtype=bool))[1] == 0
    assert connected_components(np.ones((4, 4), dtype=bool))[1] == 1
    grown = dilate(mask)
    assert grown[2, 2] and grown[3, 5] and not grown[3, 0] and grown.sum() > mask.sum()
