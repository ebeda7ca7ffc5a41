"""scripts/colour_probe.py: pooling at the object, the linear probe, and the whole table."""


import numpy as np
import torch
from conftest import load_script

probe = load_script("colour_probe")


def test_coverage_marks_the_pixels_that_differ_from_the_background():
    frames = np.tile(np.asarray(probe.BACKGROUND, dtype=np.uint8), (2, 4, 4, 1))  # (T, H, W, 3)
    frames[0, 1, 2] = (230, 40, 40)
    frames[1, 3, 0, 2] = 255  # one channel is enough
    frames[1, 0, 0] = np.asarray(probe.BACKGROUND) + 20  # a faint edge pixel is not
    cover = probe.coverage(frames)
    assert cover.sum() == 2 and cover[0, 1, 2] == 1 and cover[1, 3, 0] == 1


def test_pool_averages_the_clip_and_the_object_cells_at_the_stage_grid():
    b, t, c = 1, 2, 3
    cover = torch.zeros(b, t, 4, 4)
    cover[0, 0, :2, :2] = 1.0  # frame 0: the top-left 2x2 block, one cell of a 2x2 grid
    cover[0, 1, 2:, 2:] = 1.0  # frame 1: the bottom-right cell
    h = torch.zeros(b * t, c, 2, 2)  # (B T, C, H', W')
    h[0, :, 0, 0] = torch.tensor([1.0, 2.0, 3.0])
    h[1, :, 1, 1] = torch.tensor([3.0, 2.0, 1.0])
    h[1, :, 0, 0] = 100.0  # off the object in frame 1: only in the clip mean
    whole, on_object = probe.pool(h, t, cover)
    assert torch.allclose(on_object, torch.tensor([[2.0, 2.0, 2.0]]))
    assert torch.allclose(whole, torch.tensor([[104.0, 104.0, 104.0]]) / 8)


def test_the_table_reads_the_colour_of_clean_inputs_at_the_object(tmp_path, tiny_model_dir):
    out = tmp_path / "recipe.md"
    out.write_text("# recipe\n")
    probe.main(["--model", str(tiny_model_dir), "--train-clips", "60", "--test-clips", "12",
                "--logsnrs", "6", "--out", str(out), "--title", "Probe of tiny"])
    text = out.read_text()
    assert "## Probe of tiny\n" in text and "--title 'Probe of tiny'" in text
    lines = text.splitlines()
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in lines if line.startswith("| ")}
    labels = [r for r in rows if r not in ("stage", "---|---|---|---|")]
    assert labels[0] == "z_t" and labels[-1] == "x_hat" and "mid" in labels
    assert any(r.startswith("down.") for r in labels) and any(r.startswith("up.") for r in labels)
    # nearly clean input: its mean over the object's pixels is the object's colour
    assert rows["z_t"][3].rstrip(" |") == "1.00"
    assert rows["z_t"][1] == "16x16 x 3"
