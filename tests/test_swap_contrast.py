"""The swap-contrastive training term: which clips it takes, the colour swap against a real
re-render, its hinge, that it scores the 2 x 2 of (clip, colour-swapped clip) and (caption,
swapped caption) on one shared eps, that it is blind to a model that ignores the caption, and that
vdm-train logs it and resumes it exactly."""

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from test_train import run_train, straight_and_resumed
from test_unet import TINY as TINY_UNET

from vdm_core.data import Clip, render_clip, world_clip
from vdm_core.diffusion import model_denoiser
from vdm_core.schedule import q_sample
from vdm_core.swap_contrast import (
    SWAP_LOGSNR_RANGE,
    parse_logsnr_range,
    smooth_hinge,
    swap_colours,
    swap_contrast_loss,
    swap_logsnr,
    swap_rows,
)
from vdm_core.train import TrainConfig, check_config
from vdm_core.video_io import frames_to_tensor

CAPTIONS = [
    "a magenta triangle moving down and right and a cyan square moving up and left",
    "a yellow square moving left",
    "a red circle moving left and a red square moving up",  # one colour: nothing to swap
    "a red square moving down and left and a green square moving up",  # one shape
    "a magenta square moving up and left and a red triangle moving up",
]


def test_swap_rows_take_two_objects_differing_in_colour_and_shape():
    rows, swapped, colours = swap_rows(CAPTIONS)
    assert rows == [0, 4]
    assert colours == [("magenta", "cyan"), ("magenta", "red")]
    assert swapped == [
        "a cyan triangle moving down and right and a magenta square moving up and left",
        "a red square moving up and left and a magenta triangle moving up"]
    assert swap_rows(["a yellow square moving left"]) == ([], [], [])


def two_object_clip() -> Clip:
    """The first world clip of two objects of different colours whose shapes overlap in some
    frame (so the swap is checked where one colour is blended over the other)."""
    for seed in range(500):
        clip = world_clip(seed, 48)
        objects = clip.scene.objects
        if len(objects) == 2 and objects[0].colour != objects[1].colour:
            both = [np.abs(clip.frames.astype(int) - render_clip(
                dataclasses.replace(clip.scene, objects=(o,)), 48)).sum(-1) > 0
                for o in objects]  # (T, H, W) where the other object changed the pixel
            if (both[0] & both[1]).any():
                return clip
    raise AssertionError("no overlapping two-object clip in 500 seeds")


def test_swap_colours_matches_the_world_rendered_with_the_colours_exchanged():
    clip = two_object_clip()
    a, b = (o.colour for o in clip.scene.objects)
    exchanged = dataclasses.replace(clip.scene, objects=tuple(
        dataclasses.replace(o, colour=b if o.colour == a else a) for o in clip.scene.objects))
    want = frames_to_tensor(render_clip(exchanged, 48))  # (C, T, H, W)
    got = swap_colours(frames_to_tensor(clip.frames), a, b)
    assert (got - want).abs().max() < 4 / 127.5  # the uint8 rounding of both renders
    assert (frames_to_tensor(clip.frames) - want).abs().max() > 1.0  # the swap did change it
    twice = swap_colours(swap_colours(frames_to_tensor(clip.frames), a, b), a, b)
    assert torch.allclose(twice, frames_to_tensor(clip.frames), atol=2 / 127.5)  # projection


def test_smooth_hinge_values_and_slope():
    m = 0.003
    rise = torch.tensor([-1.0, 0.0, 0.05], requires_grad=True)
    value = smooth_hinge(rise, m)
    assert value[0].item() == pytest.approx(1.0, rel=1e-6)  # far below: the loss is -rise
    assert value[1].item() == pytest.approx(m * math.log(2), rel=1e-6)
    assert value[2].item() < 1e-9  # a rise of many margins costs nothing
    value.sum().backward()
    expected = -torch.sigmoid(-rise.detach() / m)  # d/drise m softplus(-rise / m)
    assert torch.allclose(rise.grad, expected)


def test_swap_logsnr_is_seeded_and_in_its_band():
    a = swap_logsnr(1000, torch.Generator().manual_seed(3))
    b = swap_logsnr(1000, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    lo, hi = SWAP_LOGSNR_RANGE
    assert lo <= a.min() and a.max() <= hi and a.max() - a.min() > 0.9 * (hi - lo)
    c = swap_logsnr(1000, torch.Generator().manual_seed(3), (-4.0, 0.0))
    assert torch.allclose(c, (a - lo) / (hi - lo) * 4.0 - 4.0, atol=1e-5)  # the same draws


def text_states(seed: int, b: int, length: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, length, 384, generator=g), torch.ones(b, length, dtype=torch.bool)


def test_the_two_by_two_is_scored_on_one_shared_eps(randomized_unet):
    model = randomized_unet(TINY_UNET)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 4, 8, 8, generator=g) * 2 - 1  # (R, C, T, H, W)
    x_swapped = torch.rand(2, 3, 4, 8, 8, generator=g) * 2 - 1
    states, mask = text_states(1, 2)
    swapped, swapped_mask = text_states(2, 2)
    with torch.no_grad():
        loss, rise = swap_contrast_loss(model, x, x_swapped, states, mask, swapped, swapped_mask,
                                        0.003, "v", torch.Generator().manual_seed(7))
    # the same draws, in the same order, written out: log-SNR, then one eps for all four pairs
    g = torch.Generator().manual_seed(7)
    logsnr = swap_logsnr(2, g)
    eps = torch.randn(x.shape, generator=g)

    def error(clip, s, m):
        with torch.no_grad():
            x_hat = model_denoiser(model, s, m, torch.full((2,), 4))(
                q_sample(clip, logsnr, eps), logsnr)
        return (x_hat - clip).pow(2).mean(dim=(1, 2, 3, 4))

    rise_x = error(x, swapped, swapped_mask) - error(x, states, mask)
    rise_x_swapped = error(x_swapped, states, mask) - error(x_swapped, swapped, swapped_mask)
    assert torch.allclose(rise, 0.5 * (rise_x + rise_x_swapped), atol=1e-6)
    assert rise_x.abs().min() > 1e-6 and rise_x_swapped.abs().min() > 1e-6
    expected = smooth_hinge(rise_x, 0.003) + smooth_hinge(rise_x_swapped, 0.003)
    assert torch.allclose(loss, expected, atol=1e-6)


def term_gradient(model, x, states, mask, swapped, swapped_mask) -> tuple[float, torch.Tensor]:
    """The largest |gradient| of the summed term over the model's parameters, and the rises."""
    model.zero_grad()
    loss, rise = swap_contrast_loss(model, x, x.flip(0), states, mask, swapped, swapped_mask,
                                    0.003, "v", torch.Generator().manual_seed(7))
    loss.sum().backward()
    return max(p.grad.abs().max().item() for p in model.parameters() if p.grad is not None), rise


def test_a_model_that_cannot_tell_the_captions_apart_gets_no_gradient(randomized_unet):
    model = randomized_unet(TINY_UNET)
    x = torch.rand(2, 3, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    states, mask = text_states(1, 2)
    same, rise = term_gradient(model, x, states, mask, states.clone(), mask.clone())
    assert torch.equal(rise, torch.zeros(2))
    different, _ = term_gradient(model, x, states, mask, *text_states(2, 2))
    # d(e_true - e_swapped) cancels (to float rounding): the term is not a denoising loss
    assert different > 1e-3 and same < 1e-5 * different
    model.zero_grad()


def test_swap_contrast_options_are_checked(monkeypatch):
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="--swap-contrast"):
            check_config(TrainConfig(swap_contrast=bad))
    with pytest.raises(ValueError, match="--swap-margin"):
        check_config(TrainConfig(swap_contrast=1.0, swap_margin=0.0))
    for band in ("-4", "0,-4", "-8,nan", "low,high"):
        with pytest.raises(ValueError, match="--swap-logsnr must be two log-SNRs"):
            check_config(TrainConfig(swap_contrast=1.0, swap_logsnr=band))
    assert parse_logsnr_range(" -4, 0") == (-4.0, 0.0)
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it
    with pytest.raises(ValueError, match="runs in one process"):
        check_config(TrainConfig(swap_contrast=1.0))
    check_config(TrainConfig())  # the term off: data-parallel training is fine
    monkeypatch.delenv("WORLD_SIZE")
    with pytest.raises(ValueError, match="needs the procedural world"):
        check_config(TrainConfig(swap_contrast=1.0, data="/some/videos", image_frames=0))


def test_vdm_train_logs_the_term_and_resumes_it_exactly(tmp_path):
    extra = ["--swap-contrast", "1", "--batch-size", "4", "--ckpt-every", "1"]
    straight_and_resumed(tmp_path, 3, 2, extra)
    log = [json.loads(line) for line in (tmp_path / "straight" / "log.jsonl").open()]
    with_term = [r for r in log if "swap_rise" in r]
    assert with_term and all(r["swap_loss"] > 0 for r in with_term)
    assert all(math.isfinite(r["swap_rise"]) for r in with_term)
    plain = run_train(tmp_path / "plain", 3, "--batch-size", "4", "--ckpt-every", "1")
    assert plain.wait(timeout=300) == 0, plain.stdout.read()
    plain_log = [json.loads(line) for line in (tmp_path / "plain" / "log.jsonl").open()]
    assert len(plain_log) == 3 and not any("swap_rise" in r for r in plain_log)
