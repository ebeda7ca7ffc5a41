"""scripts/cross_attention_probe.py: colour words, single-object pixels, and the weights read on
a model whose attention is known in closed form."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import load_script
from test_unet import TINY

from vdm_core.cross_attention import TextCrossAttention
from vdm_core.data import shape_coverage
from vdm_core.text import get_text_encoder
from vdm_core.unet3d import UNet3D

probe = load_script("cross_attention_probe")


def test_object_words_find_each_objects_colour_and_shape_pieces():
    encoder = get_text_encoder()
    caption = "a magenta square moving up and left and a red circle moving down"
    # [CLS] a mage ##nta square moving up and left and a red circle: positions 0-12
    assert probe.object_words(encoder, caption, 2) == [{"colour": [2, 3], "shape": [4]},
                                                       {"colour": [11], "shape": [12]}]
    with pytest.raises(ValueError, match="cannot find 2 objects"):
        probe.object_words(encoder, "a red circle moving left", 2)


def test_object_masks_keep_the_pixels_of_one_object_alone():
    clip = probe.two_object_clips(3)[2]
    full = probe.object_masks(clip, 32)  # (2, T, 32, 32)
    assert full.shape == (2, 16, 32, 32) and full.any(axis=(1, 2, 3)).all()
    assert not (full[0] & full[1]).any()
    obj = clip.scene.objects[0]
    cover = shape_coverage(obj.shape, obj.radius, clip.positions[:, 0, 0], clip.positions[:, 0, 1],
                           32, 32)
    assert (cover[full[0]] > probe.OWN).all()
    coarse = probe.object_masks(clip, 8)
    assert coarse.shape == (2, 16, 8, 8) and coarse.sum() < full.sum() / 4


def test_uniform_attention_reads_each_colour_by_its_share_of_the_tokens(randomized_unet):
    """With its queries zeroed, a layer attends uniformly to [null, tokens]: the colour words get
    (their pieces) / (tokens + 1) and each object's own share is its words' pieces over both
    objects'."""
    model = randomized_unet(replace(TINY, image_size=32, attn_resolutions=(16,),
                                    cross_attention_resolutions=(16,)))
    layers = [m for m in model.modules() if isinstance(m, TextCrossAttention)]
    with torch.no_grad():
        for layer in layers:
            layer.q.weight.zero_()
            layer.q.bias.zero_()
    recorder = probe.WeightRecorder(model)
    clip = next(c for c in probe.two_object_clips(12) if "magenta" in c.caption
                or "cyan" in c.caption)  # a two-piece colour word, so the shares differ
    encoder = get_text_encoder()
    objects = probe.object_words(encoder, clip.caption, 2)
    pieces = [len(o["colour"]) for o in objects]
    words = [len(o["colour"]) + len(o["shape"]) for o in objects]
    tokens = int(encoder.encode([clip.caption])[1].sum())
    masks = probe.object_masks(clip, 16)
    shares = probe.clip_shares(model, recorder, clip, -2.0, seed=0)
    assert len(shares) == len(layers) == 3
    seen = [i for i in range(2) if masks[i].any()]
    for cells in shares.values():
        assert cells["colour words"] == pytest.approx(sum(pieces) / (tokens + 1), rel=1e-5)
        assert cells["own colour"] == pytest.approx(
            np.mean([pieces[i] / sum(pieces) for i in seen]), rel=1e-5)
        assert cells["own words"] == pytest.approx(
            np.mean([words[i] / sum(words) for i in seen]), rel=1e-5)
    assert probe.clip_shares(model, recorder, clip, -2.0, seed=0) == shares  # fixed noise


def test_a_model_without_cross_attention_is_refused(tiny_model_dir):
    with pytest.raises(SystemExit, match="no TextCrossAttention layer"):
        probe.WeightRecorder(UNet3D.from_pretrained(tiny_model_dir))
