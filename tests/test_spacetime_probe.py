"""scripts/spacetime_probe.py: the object cells of a clip and the attention mass on them."""

from dataclasses import replace

import numpy as np
import torch
from conftest import load_script

probe = load_script("spacetime_probe")


def test_object_cells_marks_the_covered_cells_of_each_frame():
    frames = np.full((2, 8, 8, 3), probe.BACKGROUND, dtype=np.uint8)  # (T, H, W, 3)
    frames[0, :4, :4] = 200  # frame 0: the top-left quarter
    frames[1, 4:, 4:, 1] = 200  # frame 1: the bottom-right quarter, one channel only
    cells = probe.object_cells(frames, grid=2)
    assert cells.tolist() == [[True, False, False, False], [False, False, False, True]]


def test_object_mass_against_uniform_and_against_attention_on_the_object():
    t, pixels = 2, 4
    cells = torch.tensor([[True, False, False, False], [False, False, False, True]])
    n = t * pixels
    uniform = torch.full((1, n, n), 1.0 / n)  # (heads, N, N)
    mass, share = probe.object_mass(uniform, cells)
    assert share == 1.0 / n  # one object position in the other frame
    assert abs(mass - share) < 1e-6  # uniform attention puts exactly its share there
    focused = torch.zeros(1, n, n)
    focused[0, 0, 7] = 1.0  # frame 0's object looks at frame 1's object
    focused[0, 7, 3] = 1.0  # frame 1's object looks at a background cell of frame 0
    focused[0, 1:7, 0] = 1.0  # the rest (background queries) are not counted
    mass, _ = probe.object_mass(focused, cells)
    assert mass == 0.5


def test_the_probe_reads_every_space_time_layer_of_a_tiny_model(randomized_unet):
    from test_unet import TINY

    from vdm_core.data import world_clip

    model = randomized_unet(replace(TINY, spacetime_resolutions=(4,)))
    clips = [world_clip(seed, num_frames=3, size=8) for seed in (1, 2)]
    rows = probe.probe(model, clips)
    assert len(rows) == len(probe.LOGSNRS) * 3  # three layers at the 4x4 level
    for row in rows:
        assert 0.0 <= row["mass"] <= 1.0 and 0.0 < row["entropy"] <= 1.0 + 1e-6
        assert row["out_ratio"] > 0  # randomized output projections contribute


def test_object_mass_with_pooled_keys_counts_the_key_grid():
    t = 2
    cells = torch.zeros(t, 16, dtype=torch.bool)  # a 4x4 query grid
    cells[0, 0], cells[1, 15] = True, True
    key_cells = torch.tensor([[True, False, False, False], [False, False, False, True]])  # 2x2
    uniform = torch.full((1, t * 16, t * 4), 1.0 / (t * 4))  # (heads, N, N_k)
    mass, share = probe.object_mass(uniform, cells, key_cells)
    assert share == 1.0 / (t * 4) and abs(mass - share) < 1e-6
    focused = torch.zeros(1, t * 16, t * 4)
    focused[0, 0, 7] = 1.0  # frame 0's object query looks at frame 1's object key
    focused[0, 31, 4] = 1.0  # frame 1's object query looks at a background key of frame 1
    assert probe.object_mass(focused, cells, key_cells)[0] == 0.5


def test_the_probe_reads_a_layer_that_pools_its_keys(randomized_unet):
    from test_unet import TINY

    from vdm_core.data import world_clip

    size = 2 * probe.KV_SIZE
    model = randomized_unet(replace(TINY, image_size=size, spacetime_resolutions=(size,)))
    clips = [world_clip(seed, num_frames=3, size=size) for seed in (1, 2)]
    rows = probe.probe(model, clips)
    assert len(rows) == len(probe.LOGSNRS) * 3  # the finest level's three stages
    for row in rows:
        assert 0.0 <= row["mass"] <= 1.0 and 0.0 < row["entropy"] <= 1.0 + 1e-6
        assert row["share"] > 0  # the object's cells on the pooled key grid
