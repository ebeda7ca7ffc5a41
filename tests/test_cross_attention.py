"""Per-token text cross-attention: the definition, the null token, frames kept apart, and a
saved model grown by it into the same function."""

import pytest
import torch
from test_unet import TINY, assert_grown_starts_as_the_same_function

from vdm_core.cross_attention import TextCrossAttention
from vdm_core.unet3d import UNet3D


def random_layer(seed: int = 0) -> TextCrossAttention:
    """A layer whose zero-initialised output projection is redrawn, so the text path shows."""
    torch.manual_seed(seed)
    layer = TextCrossAttention(16, text_dim=12, head_dim=8).eval()
    with torch.no_grad():
        layer.out.weight.normal_(0, 0.3)
        layer.null_kv.normal_(0, 1.0)
    return layer


def definition(layer: TextCrossAttention, x, states, mask, t: int) -> torch.Tensor:
    """x + out(softmax(q k^T / sqrt(d)) v), each pixel's query over [null token, its sample's
    unmasked tokens], written per sample and per head with plain ops.  # (B T, C, H, W)"""
    bt, c, h, w = x.shape
    d = c // layer.heads
    out = torch.empty_like(x)
    for i in range(bt):
        sample = i // t
        pixels = layer.norm(x[i:i + 1])[0].flatten(1).T  # (HW, C)
        tokens = layer.text_norm(states[sample][mask[sample]])  # (L', D)
        k, v = layer.kv(tokens).split(c, dim=1)  # each (L', C)
        k = torch.cat([layer.null_kv[0:1], k])
        v = torch.cat([layer.null_kv[1:2], v])
        q = layer.q(pixels)  # (HW, C)
        heads = []
        for j in range(layer.heads):
            s = slice(j * d, (j + 1) * d)
            weights = torch.softmax(q[:, s] @ k[:, s].T / d ** 0.5, dim=-1)  # (HW, 1 + L')
            heads.append(weights @ v[:, s])
        y = layer.out(torch.cat(heads, dim=1))  # (HW, C)
        out[i] = x[i] + y.T.reshape(c, h, w)
    return out


def test_cross_attention_matches_its_definition_and_ignores_padding():
    layer = random_layer()
    b, t, h, w = 2, 3, 4, 4
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b * t, 16, h, w, generator=g)  # (B T, C, H, W)
    states = torch.randn(b, 5, 12, generator=g)  # (B, L, D)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    with torch.no_grad():
        out = layer(x, states, mask, t)
        torch.testing.assert_close(out, definition(layer, x, states, mask, t))
        padded = states.clone()
        padded[1, 3:] = 100.0
        torch.testing.assert_close(layer(x, padded, mask, t), out)
        # each pixel reads the tokens in its own way: the text's share differs across pixels
        text_share = out - layer(x, states, torch.zeros_like(mask), t)
        assert text_share[0].flatten(1).std(dim=1).min() > 1e-3


def test_a_row_without_tokens_reads_the_null_value_alone_and_frames_stay_apart():
    layer = random_layer(2)
    t = 4
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2 * t, 16, 4, 4, generator=g)
    states = torch.randn(2, 3, 12, generator=g)
    no_text = torch.zeros(2, 3, dtype=torch.bool)
    with torch.no_grad():
        out = layer(x, states, no_text, t)
        null_out = layer.out(layer.null_kv[1])  # (C,): one value, whatever the query
        torch.testing.assert_close(out, x + null_out[None, :, None, None])
        nudged = x.clone()
        nudged[1] += 1.0  # sample 0, frame 1
        moved = (layer(nudged, states, torch.ones_like(no_text), t)
                 - layer(x, states, torch.ones_like(no_text), t)).abs()
    assert moved[1].max() > 1e-3
    assert moved[[0, 2, 3]].max() == 0 and moved[t:].max() == 0


def test_cross_attention_grows_a_saved_model_into_the_same_function(tmp_path, randomized_unet):
    model = randomized_unet(TINY)
    model.save_pretrained(tmp_path)
    grown, added = UNet3D.load_grown(tmp_path, cross_attention_resolutions=(8, 4))
    layers = [m for m in grown.modules() if isinstance(m, TextCrossAttention)]
    assert len(layers) == 6  # the down stage and both up stages of each of the two levels
    assert added and all(".text_norm." in n or ".kv." in n or ".q." in n or "null_kv" in n
                         or ".out." in n or ".norm." in n for n in added)
    assert_grown_starts_as_the_same_function(model, grown, layers)
    grown.save_pretrained(tmp_path / "grown")
    reloaded = UNet3D.from_pretrained(tmp_path / "grown")
    assert reloaded.config.cross_attention_resolutions == (8, 4)
    with pytest.raises(RuntimeError, match="unexpected"):
        UNet3D.from_pretrained(tmp_path / "grown", cross_attention_resolutions=())


def test_vdm_train_grows_cross_attention_and_trains_it_alone_from_captions(tmp_path):
    from test_train import final_state, run_train

    base = run_train(tmp_path / "base", 1, "--export-dir", str(tmp_path / "base_export"))
    assert base.wait(timeout=300) == 0, base.stdout.read()
    grown = run_train(tmp_path / "grown", 2, "--init-from", str(tmp_path / "base_export"),
                      "--cross-attention-resolutions", "4", "--freeze-init",
                      "--warmup-steps", "1", "--cond-drop", "0")
    assert grown.wait(timeout=300) == 0, grown.stdout.read()
    start = UNet3D.from_pretrained(tmp_path / "base_export", cross_attention_resolutions=(4,))
    start_state, after = start.state_dict(), final_state(tmp_path / "grown")["model"]
    moved = {key for key in start_state if not torch.equal(after[key], start_state[key])}
    layers = [name for name, m in start.named_modules() if isinstance(m, TextCrossAttention)]
    assert moved and all(any(key.startswith(name + ".") for name in layers) for key in moved)
    # step 1 moves the zero output; step 2 then sends the loss's gradient to the token keys
    assert any(key.endswith(".kv.weight") for key in moved)
