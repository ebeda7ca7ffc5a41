"""scripts/binding_loss.py: the swapped caption, the clips, and error rises that vanish exactly
for a model that cannot read text."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import load_script
from test_unet import TINY

from vdm_core.detect import caption_objects

probe = load_script("binding_loss")


def test_swapped_caption_exchanges_the_colours_of_the_two_shapes_only():
    clips = probe.binding_clips(6)
    assert len(clips) == 6
    for clip in clips:
        (c0, s0), (c1, s1) = caption_objects(clip.caption)
        assert c0 != c1 and s0 != s1
        swapped = probe.swapped_caption(clip.caption)
        assert caption_objects(swapped) == [(c1, s0), (c0, s1)]
        assert swapped.replace(c0, "X").replace(c1, c0).replace("X", c1) == clip.caption
    with pytest.raises(ValueError, match="two different colours"):
        probe.swapped_caption("a red circle moving left")


def test_error_rises_are_exactly_zero_without_a_text_path_and_not_with_one(randomized_unet):
    model = randomized_unet(replace(TINY, image_size=32))
    clips = probe.binding_clips(2)
    with_text = probe.error_rises(model, clips)
    assert set(with_text) == {"own error", "colours swapped", "empty prompt"}
    assert all(v.shape == (len(probe.LOGSNRS), 2) for v in with_text.values())
    assert np.abs(with_text["colours swapped"]).max() > 0
    assert np.abs(with_text["empty prompt"]).max() > 0
    with torch.no_grad():  # the pooled text vector is the U-Net's only text input: make it 0
        for p in (model.text_pool.out.weight, model.text_pool.out.bias, model.text_pool.null):
            p.zero_()
    blind = probe.error_rises(model, clips)
    assert np.abs(blind["colours swapped"]).max() == 0 and np.abs(blind["empty prompt"]).max() == 0
    assert (blind["own error"] > 0).all()
