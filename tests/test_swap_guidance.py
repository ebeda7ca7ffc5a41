"""scripts/swap_guidance.py: the captions it samples and the guided estimate it samples with."""

import torch
from conftest import load_script, tiny_pipeline

from vdm_core.detect import caption_objects
from vdm_core.metrics import swapped_caption

guidance = load_script("swap_guidance")


def test_captions_are_the_cards_two_colour_two_object_ones():
    captions = guidance.two_colour_captions(24)
    assert captions and len(captions) < 24
    for caption in captions:
        (c0, _), (c1, _) = caption_objects(caption)
        assert c0 != c1


def test_swap_guided_estimate_adds_w_b_times_the_binding_direction():
    prompts = guidance.two_colour_captions(12)[:2]
    with tiny_pipeline() as pipe:
        z = torch.randn(2, 3, 16, 16, 16, generator=torch.Generator().manual_seed(0))
        logsnr = torch.full((2,), -2.0)
        with torch.no_grad():
            plain = pipe.denoiser(prompts, 2.0)(z, logsnr)
            assert torch.equal(guidance.swap_guided(pipe, prompts, 2.0, 0.0)(z, logsnr), plain)
            x_c = pipe.denoiser(prompts, 0.0)(z, logsnr)
            x_s = pipe.denoiser([swapped_caption(p) for p in prompts], 0.0)(z, logsnr)
            guided = guidance.swap_guided(pipe, prompts, 2.0, 3.0)(z, logsnr)
        assert (x_c - x_s).abs().max() > 1e-4  # the tiny model reads the pairing
        torch.testing.assert_close(guided, plain + 3.0 * (x_c - x_s))
