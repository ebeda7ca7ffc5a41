"""The factorized 3D U-Net: shapes, frame-count freedom, temporal masking and save/load."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from vdm_core.attention import packed_attention, relative_position_bucket, temporal_attention_mask
from vdm_core.diffusion import model_denoiser
from vdm_core.spacetime_attention import KV_SIZE, SpaceTimeAttention
from vdm_core.temporal_attention import TemporalAttention
from vdm_core.unet3d import UNet3D, UNetConfig, backprop_frames

TINY = UNetConfig(base_channels=16, channel_mults=(1, 2), attn_resolutions=(8, 4), head_dim=8,
                  image_size=8, text_heads=2)


@pytest.fixture(scope="module")
def model(randomized_unet):
    return randomized_unet(TINY)


def inputs(b: int, t: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, 3, t, 8, 8, generator=g)  # (B, C, T, H, W)
    states = torch.randn(b, 5, 384, generator=g)  # (B, L, D)
    mask = torch.ones(b, 5, dtype=torch.bool)
    return z, torch.zeros(b), states, mask


def plain_attention(qkv: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v by plain autograd ops, the definition."""
    q, k, v = qkv.movedim(-3, 0).transpose(-3, -2)  # each (..., heads, N, d)
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if bias is not None:
        scores = scores + bias
    out = torch.softmax(scores, dim=-1) @ v  # (..., heads, N, d)
    return out.transpose(-3, -2).flatten(-2)


@pytest.mark.parametrize("lead, bias_shape", [((3,), None), ((2, 3), (2, 1, 2, 5, 5)),
                                              ((2, 3), (1, 1, 2, 5, 5))])
def test_packed_attention_matches_definition_and_its_gradients(lead, bias_shape):
    g = torch.Generator().manual_seed(0)
    qkv = torch.randn(*lead, 5, 3, 2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    bias = None
    if bias_shape is not None:
        bias = torch.randn(bias_shape, generator=g, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(packed_attention(qkv, bias), plain_attention(qkv, bias))
    assert torch.autograd.gradcheck(packed_attention, (qkv, bias))


def test_packed_attention_under_autocast_with_float32_inputs():
    g = torch.Generator().manual_seed(1)
    qkv = torch.randn(2, 6, 3, 2, 8, generator=g, requires_grad=True)  # float32
    bias = torch.randn(2, 6, 6, generator=g, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = packed_attention(qkv, bias)
    assert out.dtype == torch.bfloat16
    grads = torch.autograd.grad(out.float().square().sum(), (qkv, bias))
    expected = torch.autograd.grad(plain_attention(qkv, bias).square().sum(), (qkv, bias))
    for got, want in zip(grads, expected, strict=True):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=0.1, atol=0.05 * want.abs().max().item())


def test_packed_attention_with_blocked_keys():
    qkv = torch.randn(2, 4, 3, 1, 8, dtype=torch.float64, requires_grad=True)  # (B, N, 3, h, d)
    allowed = temporal_attention_mask(4, torch.tensor([2, 4]), "cpu")  # (B, N, N)
    bias = torch.zeros(2, 1, 4, 4, dtype=torch.float64).masked_fill(~allowed[:, None], -torch.inf)
    out = packed_attention(qkv, bias)
    torch.testing.assert_close(out, plain_attention(qkv, bias))
    (grad,) = torch.autograd.grad(out[0, 0].sum(), qkv)  # sample 0, frame 0 sees frames 0, 1
    assert grad[0, 2:].abs().max() == 0 and grad[0, :2].abs().max() > 0


def test_backprop_frames_keeps_outputs_and_their_gradients(randomized_unet):
    # attention only at 4x4: the 8x8 up stages and the output layers form the per-frame tail
    cfg = UNetConfig(base_channels=16, channel_mults=(1, 2), attn_resolutions=(4,), head_dim=8,
                     image_size=8, text_heads=2)
    model = randomized_unet(cfg).requires_grad_(False)
    assert 0 < model.tail_start < len(model.up)
    z, logsnr, states, mask = inputs(2, 6)
    known = [0, 2, 3]

    def output_and_grad(frames, loss_frames):
        z_in = z.clone().requires_grad_(True)
        with backprop_frames(frames):
            out = model(z_in, logsnr, states, mask, torch.tensor([6, 4]))
        (grad,) = torch.autograd.grad(out[:, :, loss_frames].square().sum(), z_in)
        return out.detach(), grad

    out, grad = output_and_grad(None, known)
    out_hinted, grad_hinted = output_and_grad(known, known)
    torch.testing.assert_close(out_hinted, out)
    torch.testing.assert_close(grad_hinted, grad, rtol=1e-4, atol=1e-6 * grad.abs().max().item())
    assert grad[:, :, [1, 4, 5]].abs().max() > 0  # temporal attention spreads the gradient

    # the promise is what makes it faster: outputs at other frames lose their tail history
    _, grad_other = output_and_grad(None, [1])
    _, grad_other_hinted = output_and_grad(known, [1])
    assert (grad_other_hinted - grad_other).abs().max() > 1e-3 * grad_other.abs().max()


def test_default_config_size():
    n = sum(p.numel() for p in UNet3D(UNetConfig()).parameters())
    assert 3.0e6 < n < 4.0e6


@pytest.mark.parametrize("t", [1, 3, 16, 64])
def test_any_frame_count(model, t):
    z, logsnr, states, mask = inputs(1, t)
    with torch.no_grad():
        assert model(z, logsnr, states, mask).shape == z.shape


def test_image_frames_are_isolated_and_video_frames_mix(model):
    z, logsnr, states, mask = inputs(2, 8)
    n_video = torch.tensor([5, 5])  # frames 5, 6, 7 are independent images
    with torch.no_grad():
        base = model(z, logsnr, states, mask, n_video)
        z_img = z.clone()
        z_img[:, :, 6] += 1.0
        out = model(z_img, logsnr, states, mask, n_video)
        changed = (out - base).abs().amax(dim=(0, 1, 3, 4))  # (T,)
        assert changed[6] > 1e-3
        assert torch.all(changed[[0, 1, 2, 3, 4, 5, 7]] == 0)

        z_vid = z.clone()
        z_vid[:, :, 2] += 1.0
        out = model(z_vid, logsnr, states, mask, n_video)
        changed = (out - base).abs().amax(dim=(0, 1, 3, 4))
        assert torch.all(changed[[0, 1, 3, 4]] > 1e-4)
        assert torch.all(changed[5:] == 0)


def test_masked_temporal_attention_makes_frames_independent(model):
    z, logsnr, states, mask = inputs(1, 6)
    no_video = torch.tensor([0])
    with torch.no_grad():
        full = model(z, logsnr, states, mask, no_video)
        for k in range(6):
            alone = model(z[:, :, k:k + 1], logsnr, states, mask, no_video)
            torch.testing.assert_close(alone[:, :, 0], full[:, :, k], atol=1e-5, rtol=1e-5)


def test_text_and_null_embedding(model):
    z, logsnr, states, mask = inputs(2, 4)
    with torch.no_grad():
        cond = model(z, logsnr, states, mask)
        uncond = model(z, logsnr, states, torch.zeros_like(mask))
        no_text = model(z, logsnr)
        other_pad = model(z, logsnr, torch.randn_like(states), torch.zeros_like(mask))
    assert (cond - uncond).abs().max() > 1e-3
    torch.testing.assert_close(uncond, no_text)
    torch.testing.assert_close(uncond, other_pad)


def test_padding_tokens_are_ignored(model):
    z, logsnr, states, mask = inputs(1, 4)
    mask[:, 3:] = False
    padded = states.clone()
    padded[:, 3:] = 100.0
    with torch.no_grad():
        torch.testing.assert_close(model(z, logsnr, states, mask), model(z, logsnr, padded, mask))


def test_temporal_mask_and_buckets():
    allowed = temporal_attention_mask(4, torch.tensor([2]), "cpu")[0]
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]).bool()
    assert torch.equal(allowed, expected)
    d = torch.arange(-64, 65)
    b = relative_position_bucket(d, 32, 64)
    assert b.min() >= 0 and b.max() < 32
    assert len(set(b[d > 0].tolist()) & set(b[d <= 0].tolist())) == 0
    assert torch.all(b[(d >= 0)].diff() >= 0)


def test_save_load_roundtrip(tmp_path, model):
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = UNet3D.from_pretrained(tmp_path)
    assert loaded.config == model.config
    z, logsnr, states, mask = inputs(1, 3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(z, logsnr, states, mask), model(z, logsnr, states, mask))


def test_missing_model_folder_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        UNet3D.from_pretrained(tmp_path)


def fs_inputs(b: int = 2, t: int = 4):
    z, _, states, mask = inputs(b, t)
    return z, torch.tensor([-2.0, 4.0])[:b], states, mask


def test_frameskip_input_starts_as_an_exact_zero_then_conditions(tmp_path, model):
    model.save_pretrained(tmp_path)
    fs_model = UNet3D.from_pretrained(tmp_path, frameskip_conditioning=True)
    assert fs_model.config.frameskip_conditioning and not model.config.frameskip_conditioning
    z, logsnr, states, mask = fs_inputs()
    with torch.no_grad():
        base = model(z, logsnr, states, mask)
        for frameskip in (None, 1, 4, torch.tensor([1, 4])):
            assert torch.equal(fs_model(z, logsnr, states, mask, frameskip=frameskip), base)
            assert torch.equal(model(z, logsnr, states, mask, frameskip=frameskip), base)
        fs_model.frameskip_mlp[-1].weight.normal_(0, 0.2)
        one, four = (fs_model(z, logsnr, states, mask, frameskip=f) for f in (1, 4))
        assert (one - four).abs().max() > 1e-3
        assert torch.equal(fs_model(z, logsnr, states, mask), one)
        mixed = fs_model(z, logsnr, states, mask, frameskip=torch.tensor([1, 4]))
        torch.testing.assert_close(mixed, torch.cat([one[:1], four[1:]]))


def test_config_without_frameskip_field_loads_with_it_off(tmp_path, model):
    saved = json.loads(model.config.to_json())
    del saved["frameskip_conditioning"]
    assert UNetConfig.from_dict(saved) == TINY
    model.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = UNet3D.from_pretrained(tmp_path)
    assert loaded.config == TINY and not hasattr(loaded, "frameskip_mlp")


def test_from_pretrained_refuses_weights_that_do_not_fit(tmp_path):
    UNet3D(replace(TINY, frameskip_conditioning=True)).save_pretrained(tmp_path)
    assert UNet3D.from_pretrained(tmp_path).config.frameskip_conditioning
    with pytest.raises(RuntimeError, match="unexpected"):
        UNet3D.from_pretrained(tmp_path, frameskip_conditioning=False)


def test_model_denoiser_passes_frameskip_through_guidance_batches(randomized_unet):
    fs_model = randomized_unet(replace(TINY, frameskip_conditioning=True))
    z, logsnr, states, mask = fs_inputs()
    frameskip = torch.tensor([1, 4])
    with torch.no_grad():
        denoise = model_denoiser(fs_model, states, mask, frameskip=frameskip)
        single = denoise(z, logsnr)
        stacked = denoise(torch.cat([z, z]), torch.cat([logsnr, logsnr]),
                          uncond=torch.tensor([False, False, True, True]))
        other = model_denoiser(fs_model, states, mask, frameskip=4)(z, logsnr)
    torch.testing.assert_close(stacked[:2], single)
    assert (single - other).abs().max() > 1e-4


def test_shipped_weights_gain_the_frameskip_input_with_outputs_unchanged():
    model_dir = Path(__file__).resolve().parents[1] / "assets" / "model"
    shipped = UNet3D.from_pretrained(model_dir)
    converted = UNet3D.from_pretrained(model_dir, frameskip_conditioning=True)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 3, 3, 32, 32, generator=g)  # (B, C, T, H, W)
    logsnr, states = torch.tensor([-3.0, 5.0]), torch.randn(2, 4, 384, generator=g)
    mask = torch.ones(2, 4, dtype=torch.bool)
    with torch.no_grad():
        want = shipped(z, logsnr, states, mask)
        assert torch.equal(converted(z, logsnr, states, mask, frameskip=4), want)


def test_temporal_attention_at_full_resolution_starts_as_an_exact_zero_then_mixes(
        tmp_path, randomized_unet):
    base_cfg = replace(TINY, attn_resolutions=(4,))
    model = randomized_unet(base_cfg)
    with torch.no_grad():
        for block in model.modules():  # no temporal mixing anywhere: frames independent
            if isinstance(block, TemporalAttention):
                block.out.weight.zero_()
                block.out.bias.zero_()
    model.save_pretrained(tmp_path)
    grown = UNet3D.from_pretrained(tmp_path, temporal_resolutions=(8,))
    added = [m for m in grown.modules() if isinstance(m, TemporalAttention)]
    assert len(added) == len([m for m in model.modules() if isinstance(m, TemporalAttention)]) + 3
    assert grown.tail_start > model.tail_start  # full-resolution stages now mix frames
    z, logsnr, states, mask = inputs(1, 4)
    with torch.no_grad():
        assert torch.equal(grown(z, logsnr, states, mask), model(z, logsnr, states, mask))
        for block in added:
            block.out.weight.normal_(0, 0.2)
        nudged = z.clone()
        nudged[:, :, 0] += 1.0  # change frame 0 only
        torch.testing.assert_close(model(z, logsnr, states, mask)[:, :, 1:],
                                   model(nudged, logsnr, states, mask)[:, :, 1:])
        out, out_nudged = grown(z, logsnr, states, mask), grown(nudged, logsnr, states, mask)
        assert (out[:, :, 3] - out_nudged[:, :, 3]).abs().max() > 1e-4
        images = torch.zeros(1, dtype=torch.long)  # every frame an independent image
        out, out_nudged = (grown(x, logsnr, states, mask, num_video_frames=images)
                           for x in (z, nudged))
        torch.testing.assert_close(out[:, :, 1:], out_nudged[:, :, 1:])
    grown.save_pretrained(tmp_path / "grown")
    assert UNet3D.from_pretrained(tmp_path / "grown").config.temporal_resolutions == (8,)
    with pytest.raises(RuntimeError, match="unexpected"):
        UNet3D.from_pretrained(tmp_path / "grown", temporal_resolutions=())


def nudged_change(layer, x: torch.Tensor, allowed: torch.Tensor, t: int) -> torch.Tensor:
    """|layer(x') - layer(x)| where x' nudges one corner pixel of sample 0's frame 0 and of
    sample 1's frame 2 (x is (B T, C, H, W) with B = 2).  # (B T, C, H, W)"""
    nudged = x.clone()
    nudged[0, :, 0, 0] += 1.0  # sample 0, frame 0, one corner pixel
    nudged[t + 2, :, 0, 0] += 1.0  # sample 1's frame 2
    with torch.no_grad():
        return (layer(nudged, allowed, t) - layer(x, allowed, t)).abs()


def test_spacetime_attention_is_full_attention_over_the_clip_and_keeps_images_apart():
    torch.manual_seed(0)
    layer = SpaceTimeAttention(16, head_dim=8).eval()
    with torch.no_grad():
        layer.out.weight.normal_(0, 0.3)
    b, t, c, h, w = 2, 3, 16, 4, 4
    x = torch.randn(b * t, c, h, w)  # (B T, C, H, W)
    video = torch.tensor([t, 2])  # the second sample: two video frames, then an image
    allowed = temporal_attention_mask(t, video, x.device)
    with torch.no_grad():
        out = layer(x, allowed, t)
        tokens = layer.norm(x).view(b, t, c, h * w).transpose(2, 3).reshape(b, t * h * w, c)
        qkv = layer.qkv(tokens).view(b, t * h * w, 3, layer.heads, c // layer.heads)
        frame = torch.arange(t).repeat_interleave(h * w)  # each token's frame
        keep = allowed[:, frame][:, :, frame]  # (B, T HW, T HW)
        bias = torch.zeros(keep.shape).masked_fill(~keep, float("-inf"))[:, None]
        ref = layer.out(plain_attention(qkv, bias))  # (B, T HW, C)
        ref = x + ref.view(b, t, h * w, c).transpose(2, 3).reshape(b * t, c, h, w)
    torch.testing.assert_close(out, ref)

    moved = nudged_change(layer, x, allowed, t)  # (B T, C, H, W)
    assert moved[2, :, 3, 3].max() > 1e-3  # reaches the far corner two frames later
    assert moved[t:t + 2].max() == 0  # sample 1's video frames never see its image frame
    assert moved[t + 2, :, 3, 3].max() > 1e-3  # the image still mixes within itself


def test_spacetime_attention_on_a_fine_grid_queries_every_pixel_against_pooled_keys():
    torch.manual_seed(1)
    layer = SpaceTimeAttention(16, head_dim=8).eval()
    with torch.no_grad():
        layer.out.weight.normal_(0, 0.3)
    b, t, c, h, w = 2, 3, 16, 2 * KV_SIZE, 2 * KV_SIZE  # keys pooled over 2x2 blocks
    x = torch.randn(b * t, c, h, w)  # (B T, C, H, W)
    allowed = temporal_attention_mask(t, torch.tensor([t, 2]), x.device)
    with torch.no_grad():
        out = layer(x, allowed, t)
        tokens = layer.norm(x).view(b, t, c, h * w).transpose(2, 3)  # (B, T, HW, C)
        q, k, v = layer.qkv(tokens).view(b, t, h, w, 3, layer.heads, -1).unbind(4)
        k, v = (a.view(b, t, KV_SIZE, 2, KV_SIZE, 2, layer.heads, -1).mean(dim=(3, 5))
                for a in (k, v))  # each (B, T, KV, KV, heads, d): the mean of each 2x2 block
        q, k, v = (a.flatten(1, 3).transpose(1, 2) for a in (q, k, v))  # (B, heads, N, d)
        scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5  # (B, heads, T HW, T KV^2)
        q_frame = torch.arange(t).repeat_interleave(h * w)
        k_frame = torch.arange(t).repeat_interleave(KV_SIZE * KV_SIZE)
        keep = allowed[:, q_frame][:, :, k_frame][:, None]  # (B, 1, T HW, T KV^2)
        y = scores.masked_fill(~keep, float("-inf")).softmax(-1) @ v  # (B, heads, T HW, d)
        ref = layer.out(y.transpose(1, 2).flatten(2))  # (B, T HW, C)
        ref = x + ref.view(b, t, h * w, c).transpose(2, 3).reshape(b * t, c, h, w)
    torch.testing.assert_close(out, ref)

    moved = nudged_change(layer, x, allowed, t)
    assert moved[2, :, h - 1, w - 1].max() > 1e-5  # the far corner two frames later
    assert moved[t:t + 2].max() == 0  # sample 1's video frames never see its image frame


def assert_grown_starts_as_the_same_function(model: UNet3D, grown: UNet3D, layers) -> None:
    """`grown` (model grown by `layers`, each with a zero output projection `.out`) computes
    model's function bit for bit, and a different one once those projections are redrawn."""
    z, logsnr, states, mask = inputs(2, 5)
    with torch.no_grad():
        assert torch.equal(grown(z, logsnr, states, mask), model(z, logsnr, states, mask))
        for layer in layers:
            layer.out.weight.normal_(0, 0.2)
        assert not torch.allclose(grown(z, logsnr, states, mask), model(z, logsnr, states, mask))


def test_spacetime_attention_grows_a_saved_model_into_the_same_function(tmp_path, model):
    model.save_pretrained(tmp_path)
    grown = UNet3D.from_pretrained(tmp_path, spacetime_resolutions=(4,))
    added = [m for m in grown.modules() if isinstance(m, SpaceTimeAttention)]
    assert len(added) == 3  # the coarsest level's down stage and its two up stages
    assert_grown_starts_as_the_same_function(model, grown, added)
    grown.save_pretrained(tmp_path / "grown")
    assert UNet3D.from_pretrained(tmp_path / "grown").config.spacetime_resolutions == (4,)
    with pytest.raises(RuntimeError, match="unexpected"):
        UNet3D.from_pretrained(tmp_path / "grown", spacetime_resolutions=())
