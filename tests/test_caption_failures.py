"""scripts/caption_failures.py: failure reasons on true and recoloured clips, and the whole
section from a tiny model."""


import numpy as np
from conftest import load_script

from report.common import CAPTION_SEEDS
from vdm_core.data import PALETTE, world_clip
from vdm_core.detect import caption_match, caption_objects

failures = load_script("caption_failures")


def two_shape_clip():
    """A held-out two-object clip of two different shapes that the detector matches."""
    for seed in CAPTION_SEEDS:
        clip = world_clip(seed, 16)
        objects = caption_objects(clip.caption)
        if (len(objects) == 2 and objects[0][1] != objects[1][1]
                and caption_match(clip.frames, clip.caption)):
            return clip
    raise AssertionError("no matching two-shape clip among the held-out captions")


def recoloured(frames: np.ndarray, a: str, b: str) -> np.ndarray:
    """frames with the pixels of colour a and colour b exchanged (anti-aliased edges kept)."""
    out = frames.copy()
    pa, pb = np.array(PALETTE[a]), np.array(PALETTE[b])
    is_a = np.all(np.abs(frames.astype(int) - pa) <= 2, axis=-1)
    is_b = np.all(np.abs(frames.astype(int) - pb) <= 2, axis=-1)
    out[is_a], out[is_b] = pb, pa
    return out


def test_true_clip_matches_and_swapped_colours_are_named_as_such():
    clip = two_shape_clip()
    (c1, _), (c2, _) = caption_objects(clip.caption)
    true = failures.failure_counts([clip.frames], [clip.caption])
    assert true == {2: {"samples": 1, "matched": 1, "absent": 0, "shape": 0, "extra": 0,
                        "swapped": 0}}
    swapped = failures.failure_counts([recoloured(clip.frames, c1, c2)], [clip.caption])[2]
    assert swapped["matched"] == 0 and swapped["swapped"] == 1 and swapped["shape"] == 1
    assert swapped["absent"] == 0 and swapped["extra"] == 0


def test_the_section_counts_every_sample_once(tmp_path, tiny_model_dir):
    out = tmp_path / "recipe.md"
    out.write_text("# recipe\n")
    failures.main(["--model", str(tiny_model_dir), "--samples", "3", "--steps", "1",
                   "--batch", "2", "--threads", "1", "--out", str(out), "--title", "Tiny"])
    text = out.read_text()
    assert "## Tiny\n" in text and "--samples 3" in text
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith(f"| {tmp_path}")]
    assert rows and sum(int(r[2].split("/")[1]) for r in rows) == 3
    for r in rows:
        matched, samples = map(int, r[2].split("/"))
        failed = samples - matched
        reasons = [int(c.rstrip(" |")) for c in r[3:]]
        assert all(0 <= n <= failed for n in reasons)
