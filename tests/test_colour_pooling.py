"""scripts/colour_pooling.py: decoding a frame's colour, the exact Bayes decision, the table."""

import math

import pytest
import torch
from conftest import load_script

from vdm_core.schedule import alpha_sigma
from vdm_core.unet3d import UNetConfig
from vdm_core.video_io import frames_to_tensor

TINY = UNetConfig(base_channels=8, channel_mults=(1, 2), attn_resolutions=(8,), head_dim=8,
                  text_heads=2, image_size=16, num_frames=16)


@pytest.fixture(scope="module")
def script():
    return load_script("colour_pooling")


def test_clean_frames_decode_to_their_colour_and_one_recoloured_frame_breaks_agreement(script):
    clip = script.one_object_clips(1)[0]
    templates = script.recoloured(clip)[None]  # (1, K, C, T, H, W)
    truth = script.COLOURS.index(clip.scene.objects[0].colour)
    assert torch.equal(templates[0, truth], frames_to_tensor(clip.frames))  # re-render is exact
    x = frames_to_tensor(clip.frames)[None]
    decisions = script.decode_frames(x, templates)
    assert decisions.tolist() == [[truth] * 16]
    assert script.agreement(decisions).item() == 1.0
    other = (truth + 1) % len(script.COLOURS)
    x[:, :, 5] = templates[:, other, :, 5]
    decisions = script.decode_frames(x, templates)
    assert decisions[0, 5].item() == other
    assert script.agreement(decisions).item() == 15 / 16


def test_pooled_bayes_decision_between_two_colours_matches_the_closed_form(script):
    """With two candidate clips x_1, x_2, the pooled posterior decision from z = alpha x_1 +
    sigma eps is right with probability Phi(alpha ||x_1 - x_2|| / (2 sigma)); one frame's is
    right with Phi of that frame's distance, so pooling can only help."""
    clip = script.one_object_clips(1, num_frames=8, size=16)[0]
    truth = script.COLOURS.index(clip.scene.objects[0].colour)
    other = (truth + 3) % len(script.COLOURS)
    pair = script.recoloured(clip)[[truth, other]]  # (2, C, T, H, W)
    logsnr, draws = -6.0, 1500
    alpha, sigma = (v.item() for v in alpha_sigma(torch.tensor(logsnr, dtype=torch.float64)))
    eps = torch.randn((draws, *pair.shape[1:]), generator=torch.Generator().manual_seed(0),
                      dtype=torch.float64)
    z = alpha * pair[0].double() + sigma * eps
    per_frame, pooled = script.bayes_decisions(z, logsnr, pair[None].expand(draws, -1, -1, -1, -1,
                                                                             -1))

    def phi(v: float) -> float:
        return 0.5 * (1 + math.erf(v / math.sqrt(2)))

    gap = (pair[0] - pair[1]).double().pow(2)
    expected_all = phi(alpha * gap.sum().sqrt().item() / (2 * sigma))
    expected_frames = sum(phi(alpha * g.sqrt().item() / (2 * sigma))
                          for g in gap.sum(dim=(0, 2, 3))) / gap.shape[1]
    se = math.sqrt(expected_all * (1 - expected_all) / draws)
    assert 0.6 < expected_all < 0.97  # the level is one where pooling matters
    assert abs((pooled == 0).double().mean().item() - expected_all) < 4 * se + 1e-3
    assert abs((per_frame == 0).double().mean().item() - expected_frames) < 0.03
    assert expected_frames < expected_all - 0.1


def test_table_separates_video_from_images_and_lands_between_markers(script, tmp_path,
                                                                       randomized_unet):
    model = randomized_unet(TINY)
    model.save_pretrained(tmp_path / "tiny")
    clips = script.one_object_clips(3, size=16)
    rows = script.pooling_table({"m": model}, clips, logsnrs=(-4.0, 2.0))
    assert [r["logsnr"] for r in rows] == [-4.0, 2.0]
    for r in rows:
        assert all(0.0 <= v <= 1.0 for k, v in r.items() if k != "logsnr")
    assert rows[1]["bayes_frame"] == rows[1]["bayes_all"] == 1.0  # log-SNR +2: plain to see
    out = tmp_path / "doc.md"
    out.write_text("# Doc\n\nkept text\n")
    args = ["--model", str(tmp_path / "tiny"), "--clips", "2", "--threads", "1", "--out", str(out),
            "--samplers", "ancestral:2", "--samples", "2"]
    script.main(args)
    script.main(args)
    text = out.read_text()
    assert text.startswith("# Doc\n\nkept text\n")
    assert text.count("<!-- colour-pooling:start -->") == 1
    assert text.count("| -8 |") == 1 and "| ancestral | 2 |" in text
    script.main(args + ["--section", "arms", "--title", "The arms, side by side"])
    text = out.read_text()
    assert text.count("| -8 |") == 2 and text.index("colour-pooling:end") < text.index("arms:start")
    assert "## The arms, side by side" in text
    assert "--section arms --title 'The arms, side by side'`" in text


def test_video_mode_mixes_frames_and_image_mode_does_not(script, randomized_unet):
    """The two modes differ only in the temporal mask: a change to one frame moves the other
    frames' x_hat as a video, and leaves them alone as images."""
    from vdm_core.diffusion import model_denoiser

    model = randomized_unet(TINY)
    z = torch.randn(1, 3, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    moved = z.clone()
    moved[:, :, 0] += 1.0
    level = torch.tensor([-3.0])
    for n_video, mixes in ((None, True), (torch.zeros(1, dtype=torch.long), False)):
        denoise = model_denoiser(model, num_video_frames=n_video)
        with torch.no_grad():
            change = (denoise(moved, level) - denoise(z, level))[:, :, 1:].abs().max().item()
        assert (change > 1e-4) == mixes, (n_video, change)


def test_bad_sampler_list_is_a_clear_exit(script):
    assert script.parse_samplers("ancestral:24,pc:8") == [("ancestral", 24), ("pc", 8)]
    with pytest.raises(SystemExit, match="'ddim' is not sampler:steps"):
        script.parse_samplers("ancestral:24,ddim")


def test_switched_sampling_uses_each_model_on_its_side_of_the_switch(script):
    """Alone, a model's samples are exactly the pipeline's for the same seed; switched at a level
    below every step's input the first model does all the work, above every one the second."""
    import copy

    from conftest import tiny_pipeline

    with tiny_pipeline() as first:
        second = copy.deepcopy(first)
        with torch.no_grad():
            second.model.conv_out.weight.add_(0.05)
        alone = script.unconditional_videos(first, None, 0.0, "ancestral", 3, 2)
        piped = first([""] * 2, num_inference_steps=3, guidance_weight=0.0,
                      generator=torch.Generator().manual_seed(0)).videos
        assert all((a == p).all() for a, p in zip(alone, piped, strict=True))
        other = script.unconditional_videos(second, None, 0.0, "ancestral", 3, 2)
        assert any((a != o).any() for a, o in zip(alone, other, strict=True))
        for switch, expected in ((-100.0, alone), (100.0, other)):
            mixed = script.unconditional_videos(first, second, switch, "ancestral", 3, 2)
            assert all((m == e).all() for m, e in zip(mixed, expected, strict=True)), switch
        middle = script.unconditional_videos(first, second, 0.0, "ancestral", 3, 2)
        assert all(any((m != e).any() for m, e in zip(middle, ref, strict=True))
                   for ref in (alone, other))


def test_switch_needs_two_models(script, tmp_path):
    with pytest.raises(SystemExit, match="exactly two --model"):
        script.main(["--model", str(tmp_path), "--samplers", "ancestral:2", "--switch-at", "-4"])
