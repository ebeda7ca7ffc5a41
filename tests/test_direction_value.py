"""scripts/direction_value.py: the ideal denoiser's use of a caption's direction word."""

import math

import numpy as np
import pytest
import torch
from conftest import load_script

from vdm_core.data import DIRECTIONS, positions_at
from vdm_core.schedule import alpha_sigma
from vdm_core.unet3d import UNetConfig


def test_the_posterior_mean_of_two_clips_is_the_closed_form_one():
    script = load_script("direction_value")
    generator = torch.Generator().manual_seed(0)
    videos = torch.randn(2, 50, generator=generator, dtype=torch.float64)  # (H, D)
    z = torch.randn(3, 50, generator=generator, dtype=torch.float64)  # (N, D)
    logsnr = -1.0
    alpha, sigma = alpha_sigma(torch.tensor(logsnr, dtype=torch.float64))
    # p(a | z) = sigmoid(log N(z; alpha a, sigma^2) - log N(z; alpha b, sigma^2))
    a, b = videos
    log_ratio = (-(z - alpha * a).pow(2).sum(1) + (z - alpha * b).pow(2).sum(1)) / (2 * sigma**2)
    w = torch.sigmoid(log_ratio)[:, None]
    expected = w * a + (1 - w) * b  # (N, D)
    logits = script.log_likelihoods(z, videos, logsnr)
    torch.testing.assert_close(script.posterior_means(logits, videos), expected)
    only_b = torch.tensor([[False, True]] * 3)
    torch.testing.assert_close(script.posterior_means(logits, videos, only_b), b.expand(3, -1))


def test_the_clips_are_the_worlds_one_object_clips_in_every_direction():
    script = load_script("direction_value")
    videos, directions = script.hypotheses("circle", "red", 64, 8, 16, seed=1)
    assert videos.shape == (64, 3 * 8 * 16 * 16) and videos.abs().max() <= 1.0
    assert set(directions) == set(range(len(DIRECTIONS)))
    again, _ = script.hypotheses("circle", "red", 64, 8, 16, seed=1)
    assert torch.equal(videos, again)
    frames = videos.view(64, 3, 8, 16, 16)
    assert (frames[:, 0] > frames[:, 2] + 1).any(dim=(1, 2, 3)).all()  # a red object in each
    names = list(DIRECTIONS)
    assert script.OPPOSITE["up and left"] == "down and right"
    assert all(script.OPPOSITE[script.OPPOSITE[n]] == n for n in names)
    for name in names:  # the mirrored word is the reversed motion
        assert np.allclose(DIRECTIONS[script.OPPOSITE[name]], -np.array(DIRECTIONS[name]))


def test_objects_moving_one_way_crowd_the_far_wall():
    """Why the direction word moves the prior mean: the start is uniform, but objects moving
    right leave the left wall and bounce back from the right one."""
    script = load_script("direction_value")
    rng = np.random.default_rng(0)
    xs = []
    for _ in range(400):
        obj = script.place_object(rng, "circle", "red", 5.0, "right", 32)
        xs.append(positions_at(script.Scene((obj,), 32), np.array([15.0]))[0, 0, 0])
    assert np.mean(np.array(xs) < 12) < 0.15 < np.mean(np.array(xs) > 20)


def test_the_direction_word_is_worth_something_and_the_section_is_written(tmp_path,
                                                                          randomized_unet):
    script = load_script("direction_value")
    cfg = UNetConfig(base_channels=8, channel_mults=(1, 2), attn_resolutions=(8,), head_dim=8,
                     text_heads=2, image_size=16, num_frames=8)
    randomized_unet(cfg).save_pretrained(tmp_path / "m")
    out = tmp_path / "recipe.md"
    out.write_text("# Recipe\n\nkept\n")
    script.main(["--size", "16", "--num-frames", "8", "--clips", "400", "--draws", "48",
                 "--model", str(tmp_path / "m"), "--out", str(out)])
    text = out.read_text()
    assert text.startswith("# Recipe\n\nkept\n\n<!-- direction-value:start -->\n")
    rows = [line.split("|") for line in text.splitlines() if line.startswith("| -")
            or line.startswith("| +")]
    assert len(rows) == len(script.LOGSNRS) and all(len(r) == 8 for r in rows)  # 6 columns
    name = script.display_path(tmp_path / "m")
    assert f"| `{name}`: error, caption | `{name}`: error rise, mirrored |" in text
    ran = [r for r in rows if float(r[1]) <= script.MODEL_MAX_LOGSNR]
    assert 0 < len(ran) < len(rows) and all(float(r[5]) > 0 for r in ran)
    assert all(r[5].strip() == "" for r in rows if r not in ran)  # not run where worth nothing
    gains = [float(r[3].split("[")[0]) for r in rows]
    assert max(gains) > 0.001  # the caption's direction lowers the ideal error somewhere
    assert gains[-1] == 0  # where z_t alone pins the clip down, the word adds nothing
    videos, directions = script.hypotheses("circle", "red", 400, 8, 16, seed=0)
    gap, noise, odd = script.prior_mean_gap(videos, directions, 8)
    assert gap > 2 * noise > 0 and f"{gap:.4f}" in text and 0.1 < odd < 0.9
    still = videos.view(400, 3, 8, -1)[:, :, :1].expand(-1, -1, 8, -1).reshape(400, -1)
    assert script.prior_mean_gap(still, directions, 8)[2] < 1e-12  # frozen clips: no odd part
    with pytest.raises(SystemExit, match="makes 8 frames of 16 px"):
        script.main(["--model", str(tmp_path / "m"), "--out", str(out)])
    with pytest.raises(SystemExit, match="at least 8 times --draws"):
        script.main(["--clips", "100", "--draws", "20", "--out", str(out)])


def test_at_pure_noise_the_ideal_error_is_the_prior_variance():
    script = load_script("direction_value")
    videos, directions = script.hypotheses("square", "blue", 200, 4, 16, seed=2)
    errors = script.direction_errors(videos, directions, 40, seed=3)[script.LOGSNRS[0]]
    mean = videos.mean(0)
    generator = torch.Generator().manual_seed(3)
    pick = torch.randint(len(videos), (40,), generator=generator)  # direction_errors' draws
    prior = (videos[pick] - mean).pow(2).mean(1).numpy()
    assert math.isclose(errors["none"].mean(), prior.mean(), rel_tol=0.02)


def test_pure_noise_mode_sets_what_models_draw_beside_the_ideal_prior_mean(tmp_path,
                                                                           randomized_unet):
    script = load_script("direction_value")
    videos, directions = script.hypotheses("circle", "red", 400, 8, 16, seed=0)
    assert script.structure(torch.full((3 * 8 * 16 * 16,), 0.3), 8).abs().max() < 1e-6
    names = list(DIRECTIONS)
    means = {d: videos[torch.as_tensor(directions == names.index(d))].mean(0)
             for d in ("right", "left")}
    shift = (script.structure(means["right"], 8) - script.structure(means["left"], 8))
    columns = shift.view(3, 8, 16, 16)[0].mean(dim=(0, 1))  # red, over frames and rows
    assert columns[8:].sum() > 0 > columns[:8].sum()  # "right" draws the object further right

    cfg = UNetConfig(base_channels=8, channel_mults=(1, 2), attn_resolutions=(8,), head_dim=8,
                     text_heads=2, image_size=16, num_frames=8)
    randomized_unet(cfg).save_pretrained(tmp_path / "m")
    out = tmp_path / "recipe.md"
    out.write_text("# Recipe\n")
    script.main(["--pure-noise", "--size", "16", "--num-frames", "8", "--clips", "400",
                 "--draws", "4", "--model", str(tmp_path / "m"), "--out", str(out)])
    text = out.read_text()
    assert "<!-- pure-noise:start -->" in text and "400 equally likely clips; 4 noise draws" in text
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:5]]
            for line in text.splitlines() if line.startswith("| ideal") or line.startswith("| `")}
    ideal = rows.pop("ideal")
    assert ideal[0].endswith("(+1.00)") and ideal[1].endswith("(+1.00)") and ideal[2] == "0.0000"
    assert float(ideal[1].split()[0]) == pytest.approx(shift.pow(2).mean().sqrt().item(), abs=1e-4)
    (model,) = rows.values()
    assert float(model[2]) > 0  # a random network's x_hat moves with the noise
    assert all(-1 <= float(c.split("(")[1].rstrip(")")) <= 1 for c in model[:2])
    with pytest.raises(SystemExit, match="give --model"):
        script.main(["--pure-noise", "--out", str(out)])
