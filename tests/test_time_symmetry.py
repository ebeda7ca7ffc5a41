"""scripts/time_symmetry.py: does a model know which way time runs?"""

import dataclasses

import pytest
import torch
from conftest import load_script

from vdm_core.data import world_clip
from vdm_core.grow import load_init
from vdm_core.metrics import mirrored_caption
from vdm_core.temporal_attention import TemporalAttention
from vdm_core.train import main as train_main
from vdm_core.train import parse_args
from vdm_core.unet3d import UNet3D, UNetConfig
from vdm_core.video_io import frames_to_tensor

TINY = UNetConfig(base_channels=8, channel_mults=(1, 2), attn_resolutions=(8,), head_dim=8,
                  text_heads=2, image_size=16, num_frames=8)


def symmetrise(model) -> None:
    """Make every temporal attention bias even in the distance: bias(d) = bias(-d)."""
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, TemporalAttention):
                t = model.config.num_frames
                buckets = layer.distance_buckets(t)  # (T, T)
                ahead = torch.ones(t, t, dtype=torch.bool).triu(1)  # j > i: each distance d >= 1
                layer.rel_bias.weight[buckets.T[ahead]] = layer.rel_bias.weight[buckets[ahead]]


def test_a_symmetric_bias_makes_the_model_exactly_time_reversal_equivariant(randomized_unet):
    script = load_script("time_symmetry")
    model = randomized_unet(TINY).eval()
    clips = [world_clip(s, 8, 16) for s in (1, 2)]
    x = torch.stack([frames_to_tensor(c.frames) for c in clips])  # (B, C, T, H, W)
    texts = [c.caption for c in clips]
    assert all(odd > 0.1 for _, odd, _ in script.bias_parts(model))  # fresh: not symmetric
    symmetrise(model)
    assert all(odd == 0 and even > 0 for _, odd, even in script.bias_parts(model))
    gap = script.per_clip(script.x_hats(model, x, texts), script.x_hats(model, x, texts, True))
    assert gap.max() < 1e-10  # float32 rounding only
    with torch.no_grad():  # an odd part in one layer is enough to tell forward from backward
        layer = next(m for m in model.modules() if isinstance(m, TemporalAttention))
        layer.rel_bias.weight[layer.num_buckets // 2 + 1] += 1.0  # distance +1 only
    odd = [o for _, o, _ in script.bias_parts(model)]
    assert odd[0] > 0.1 and not any(odd[1:])
    gap = script.per_clip(script.x_hats(model, x, texts), script.x_hats(model, x, texts, True))
    assert gap.min() > 1e-8


def test_a_conditioned_odd_bias_starts_at_zero_then_lets_the_conditioning_read_time(
        tmp_path, randomized_unet):
    script = load_script("time_symmetry")
    model = randomized_unet(TINY).eval()
    symmetrise(model)  # the fixed bias even: only the new layers can tell forward from backward
    model.save_pretrained(tmp_path)
    _, cli_cfg = parse_args(["--conditioned-odd-bias"])
    assert cli_cfg.conditioned_odd_bias and not parse_args([])[1].conditioned_odd_bias
    grown, added = load_init(str(tmp_path), dataclasses.replace(TINY, conditioned_odd_bias=True))
    layers = [m for m in grown.modules() if isinstance(m, TemporalAttention)]
    assert len(added) == 2 * len(layers) and all(".odd_from_emb." in n for n in added)
    clips = [world_clip(s, 8, 16) for s in (1, 2)]
    x = torch.stack([frames_to_tensor(c.frames) for c in clips])  # (B, C, T, H, W)
    texts = [c.caption for c in clips]
    before = script.x_hats(model, x, texts)
    assert torch.equal(script.x_hats(grown, x, texts), before)  # step 0: the saved function
    gap = script.per_clip(script.x_hats(grown, x, texts), script.x_hats(grown, x, texts, True))
    assert gap.max() < 1e-10
    assert all(rms == change == 0 for _, rms, change in
               script.conditioned_odd_parts(grown, texts, -6.0))
    with torch.no_grad():
        for layer in layers:
            layer.odd_from_emb.weight.normal_(0, 0.3)
        emb = torch.randn(2, TINY.emb_dim, generator=torch.Generator().manual_seed(0))
        bias = layers[0].bias(5, None, "cpu", torch.float32, emb)  # (B, 1, heads, T, T)
    with pytest.raises(ValueError, match="pass odd_emb"):
        layers[0].bias(5, None, "cpu", torch.float32)
    even, odd = bias + bias.transpose(-1, -2), bias - bias.transpose(-1, -2)
    torch.testing.assert_close(even[0], even[1])  # what the conditioning adds is odd in j - i
    assert (odd[0] - odd[1]).abs().max() > 0.1  # and it depends on the conditioning
    gap = script.per_clip(script.x_hats(grown, x, texts), script.x_hats(grown, x, texts, True))
    assert gap.min() > 1e-8
    parts = script.conditioned_odd_parts(grown, texts, -6.0)
    assert len(parts) == len(layers) and all(rms > change > 0 for _, rms, change in parts)
    table = script.conditioned_lines(grown, script.held_out_clips(grown, 2))
    assert "| layer | logsnr -6 | mirrored change | logsnr 0 | mirrored change |" in table
    assert sum(line.startswith(("| down.", "| mid.", "| up.")) for line in table) == len(layers)
    grown.save_pretrained(tmp_path / "grown")
    assert UNet3D.from_pretrained(tmp_path / "grown").config.conditioned_odd_bias
    with pytest.raises(RuntimeError, match="unexpected"):
        UNet3D.from_pretrained(tmp_path / "grown", conditioned_odd_bias=False)


def test_the_odd_bias_can_read_the_caption_through_its_own_pooling(tmp_path, randomized_unet):
    script = load_script("time_symmetry")
    cob = dataclasses.replace(TINY, conditioned_odd_bias=True)
    model = randomized_unet(cob).eval()  # odd_from_emb trained (random), as in a continued run
    model.save_pretrained(tmp_path)
    _, cli_cfg = parse_args(["--conditioned-odd-bias", "--odd-bias-text-pool"])
    assert cli_cfg.odd_bias_text_pool and not parse_args([])[1].odd_bias_text_pool
    grown, added = load_init(str(tmp_path), dataclasses.replace(cob, odd_bias_text_pool=True))
    assert added and all(n.startswith("odd_text_pool.") for n in added)
    clips = [world_clip(s, 8, 16) for s in (1, 2)]
    x = torch.stack([frames_to_tensor(c.frames) for c in clips])  # (B, C, T, H, W)
    texts = [c.caption for c in clips]
    assert torch.equal(script.x_hats(grown, x, texts), script.x_hats(model, x, texts))  # step 0
    before = {name: change for name, _, change in script.conditioned_odd_parts(grown, texts, 0.0)}
    lines = script.text_direction_lines(grown, clips)
    row = next(line for line in lines if "odd-bias pooling" in line)
    assert row.endswith("| 0.0000 | 0.0000 | 0.0000 | - |")  # zero output at step 0
    with torch.no_grad():
        grown.odd_text_pool.out.weight.normal_(0, 0.3)
        grown.text_pool.out.weight.zero_()  # the shared pooling passes nothing on
    after = script.conditioned_odd_parts(grown, texts, 0.0)
    assert all(change > before[name] for name, _, change in after)  # directions reach the bias
    states, mask = script.get_text_encoder().encode(texts)
    with torch.no_grad():
        emb = grown.embed(torch.zeros(2), states, mask)
        assert not torch.equal(grown.odd_embed(emb, states, mask), emb)
        assert torch.equal(model.odd_embed(emb, states, mask), emb)
        assert UNet3D(TINY).odd_embed(emb, states, mask) is None
    row = next(line for line in script.text_direction_lines(grown, clips)
               if "odd-bias pooling" in line)
    assert float(row.split("|")[3]) > 0
    with pytest.raises(ValueError, match="needs conditioned_odd_bias"):
        UNet3D(dataclasses.replace(TINY, odd_bias_text_pool=True))
    with pytest.raises(SystemExit, match="add --conditioned-odd-bias"):
        train_main(["--odd-bias-text-pool", "--out-dir", str(tmp_path / "never")])
    assert not (tmp_path / "never").exists()


def test_mirrored_and_recoloured_captions():
    script = load_script("time_symmetry")
    assert (mirrored_caption("a red circle moving up and left and a blue square moving right")
            == "a red circle moving down and right and a blue square moving left")
    scene = world_clip(3, 8, 16).scene
    other = script.recoloured(scene)
    assert other.count(" and a ") == scene.objects.__len__() - 1
    assert not any(o.colour in other for o in scene.objects)
    assert all(o.shape in other and o.direction in other for o in scene.objects)


def test_the_section_is_written_into_the_recipe_page(tmp_path, randomized_unet):
    script = load_script("time_symmetry")
    randomized_unet(dataclasses.replace(TINY, num_frames=16)).save_pretrained(tmp_path / "m")
    out = tmp_path / "recipe.md"
    out.write_text("# Recipe\n\nkept\n")
    script.main([str(tmp_path / "m"), "--clips", "2", "--samples", "2", "--threads", "1",
                 "--out", str(out)])
    text = out.read_text()
    assert text.startswith("# Recipe\n\nkept\n")
    assert "<!-- time-symmetry:start -->\n## The direction of time" in text
    assert text.count("| down.") + text.count("| up.") + text.count("| mid.") >= 2
    assert "| error rise, directions mirrored |" in text and "- Prediction from 4" in text
    assert "--conditioned-odd-bias" not in text
    rows = [line for line in text.splitlines() if line.startswith("| the same pooling, untr")]
    assert len(rows) == 1 and float(rows[0].split("|")[3]) > 0  # mirroring changes the vector
