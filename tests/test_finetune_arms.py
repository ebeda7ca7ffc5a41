"""scripts/finetune_arms.py: equal-compute fine-tuning arms from a shipped model."""

import pytest
import torch
from conftest import load_script

from report.stats import Cell
from vdm_core.unet3d import UNet3D, UNetConfig

TINY = UNetConfig(base_channels=8, channel_mults=(1, 2), attn_resolutions=(16,), head_dim=8,
                  text_heads=2, image_size=32, num_frames=4)


def table_rows(text: str, title: str) -> list[list[str]]:
    part = text[text.index(title):].split("\n\n")[1]
    return [line.split(" | ") for line in part.splitlines()[2:]]


def test_arms_train_from_the_init_score_paired_and_resume_without_retraining(
        tmp_path, randomized_unet):
    script = load_script("finetune_arms")
    randomized_unet(TINY).save_pretrained(tmp_path / "init")
    doc = tmp_path / "recipe.md"
    doc.write_text("# Recipe\n\nKept above the section.\n")
    argv = ["--steps", "2", "--clips", "3", "--init", str(tmp_path / "init"), "--work",
            str(tmp_path / "work"), "--out", str(doc)]
    script.main(argv)
    text = doc.read_text()
    assert text.startswith("# Recipe\n\nKept above the section.\n\n<!-- arms:start -->")
    shipped = table_rows(text, "Against the shipped model")
    assert [row[0].lstrip("| ") for row in shipped] == list(script.ARMS)
    versus = table_rows(text, "Against the control arm")
    assert [row[0].lstrip("| ") for row in versus] == list(script.ARMS)[1:]

    exports = {name: tmp_path / "work" / script.SLUG[name] / "export" for name in script.ARMS}
    control = UNet3D.from_pretrained(exports[script.CONTROL]).state_dict()
    init = UNet3D.from_pretrained(tmp_path / "init").state_dict()
    assert any(not torch.equal(control[k], init[k]) for k in init)
    fast = UNet3D.from_pretrained(exports["lr 3e-4 (the GPU phases' rate)"]).state_dict()
    assert any(not torch.equal(control[k], fast[k]) for k in control)
    grown = UNet3D.from_pretrained(exports["temporal attention at 32x32"])
    assert grown.config.temporal_resolutions == (32,) and len(grown.state_dict()) > len(init)
    assert "temporal attention at 32x32: the added layers' output weights reached an RMS" in text
    assert script.added_layer_scale(UNet3D.from_pretrained(exports[script.CONTROL]),
                                    UNet3D.from_pretrained(tmp_path / "init")) is None
    new, old = script.added_layer_scale(grown, UNet3D.from_pretrained(tmp_path / "init"))
    assert 0 < new < old  # two steps from zero, against randomly initialised trained layers
    faster = UNet3D.from_pretrained(exports["temporal attention at 32x32, added layers at 10x lr"])
    fast_new, _ = script.added_layer_scale(faster, UNet3D.from_pretrained(tmp_path / "init"))
    assert fast_new > 5 * new  # Adam's first steps move each weight by about lr * sign(grad)

    checkpoints = {p: p.stat().st_mtime_ns for p in (tmp_path / "work").glob("*/checkpoint.pt")}
    assert len(checkpoints) == len(script.ARMS)
    script.main(argv)  # every arm is done: nothing retrains, and the scores are the same
    assert {p: p.stat().st_mtime_ns for p in checkpoints} == checkpoints
    again = doc.read_text()
    assert again.count("<!-- arms:start -->") == 1
    assert table_rows(again, "Against the control arm") == versus

    script.main([*argv, "--seed", "8", "--arms", "cond-drop-0-2"])  # a repeat at another seed
    repeat = doc.read_text()
    assert repeat.startswith(again.rstrip("\n"))  # the first seed's section is kept as it was
    assert "<!-- arms-seed8:start -->" in repeat and "(training seed 8" in repeat
    seed8 = repeat[repeat.index("<!-- arms-seed8:start -->"):]
    assert [row[0].lstrip("| ") for row in table_rows(seed8, "Against the control arm")] == [
        "cond-drop 0.2"]
    assert "--seed 8 --arms cond-drop-0-2" in seed8
    other = UNet3D.from_pretrained(tmp_path / "work" / f"{script.SLUG[script.CONTROL]}-seed8"
                                   / "export").state_dict()
    assert any(not torch.equal(control[k], other[k]) for k in control)  # other clips and noise
    with pytest.raises(SystemExit):
        script.main([*argv, "--arms", "cond-drop"])


def test_verdict_needs_a_separated_interval_and_none_against():
    script = load_script("finetune_arms")
    below, above, across = Cell(8, -2.0, -3.0, -1.0), Cell(8, 2.0, 1.0, 3.0), Cell(8, 0, -1, 1)
    assert script.verdict([below, across]) == "better"
    assert script.verdict([below, above]) == "worse"
    assert script.verdict([across, across]) == "no separated difference"
