"""scripts/binding_probe.py: the labels, and the probe reading binding from the real encoder."""

from conftest import load_script

from vdm_core.data import EVAL_SEEDS, SHAPES
from vdm_core.detect import caption_objects

probe = load_script("binding_probe")


def test_labels_name_the_colour_of_the_first_shape_in_either_caption_order():
    captions, labels = probe.binding_captions(EVAL_SEEDS)
    assert len(captions) >= 60
    orders = set()
    for caption, label in zip(captions, labels.tolist(), strict=True):
        objects = caption_objects(caption)
        assert len(objects) == 2 and objects[0][1] != objects[1][1]
        colour, shape = min(objects, key=lambda o: SHAPES.index(o[1]))
        assert probe.COLOURS[label] == colour
        orders.add(objects[0][1] == shape)
    assert orders == {True, False}
    assert len(probe.binding_captions(EVAL_SEEDS, limit=5)[0]) == 5


def test_the_encoder_token_mean_carries_the_binding(tmp_path, tiny_model_dir):
    out = tmp_path / "recipe.md"
    out.write_text("# recipe\n")
    probe.main(["--model", str(tiny_model_dir), "--train", "400", "--out", str(out)])
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1] for line in out.read_text().splitlines()
            if line.startswith("| ") and "[" in line}
    assert float(rows["token mean"].split()[0]) >= 0.9  # the pairing is in the token states
    pooled = float(rows[f"{tiny_model_dir}: pooled text vector"].split()[0])
    assert 0.0 <= pooled <= 1.0
