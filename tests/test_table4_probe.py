"""scripts/table4_probe.py: the joint video-image training arms differ only in image frames."""

import json

from conftest import load_script

from report import table4
from vdm_core.records import STATE_NAME


def test_probe_trains_one_arm_per_image_count_and_seed_and_writes_the_table(tmp_path):
    probe = load_script("table4_probe")
    out = tmp_path / "table4.md"
    probe.main(["--steps", "2", "--samples", "2", "--sample-steps", "1", "--base-channels", "8",
                "--batch", "2", "--seeds", "0,3", "--work", str(tmp_path / "runs"), "--out",
                str(out)])
    configs = {}
    for seed in (0, 3):
        for images in probe.ARMS:
            state = json.loads((probe.run_dir(str(tmp_path / "runs"), images, seed) / "export"
                                / STATE_NAME).read_text())
            assert state["step"] == 2
            configs[images, seed] = state["train_config"]
            assert configs[images, seed]["image_frames"] == images
            assert configs[images, seed]["seed"] == seed
    # Equal compute on videos: everything but the image frames (and the run folder) is shared.
    varying = {"image_frames", "out_dir", "export_dir"}
    for seed in (0, 3):
        for images in probe.ARMS[1:]:
            base, arm = configs[0, seed], configs[images, seed]
            differ = {k for k in base if base[k] != arm[k]}
            assert differ <= varying, differ
    assert (tmp_path / "runs" / "images4-seed3").is_dir()
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert [tuple(row.split(" | ")[:2]) for row in rows[1:-1]] == [
        ("| 0", "0"), ("| 4", "0"), ("| 8", "0"), ("| 0", "3"), ("| 4", "3"), ("| 8", "3")]
    assert rows[-1].startswith("| true clips |")
    assert "<br>" in rows[2] and "<br>" not in rows[1]  # paired differences against 0 images
    assert "<br>" in rows[5] and "<br>" not in rows[4]  # ... of the same training seed
    assert "- training seed 3, 8 image frames: caption match" in text
    assert "image frames match fewer captions than none in" in text
    # A second call finds every arm trained and only measures again.
    mtime = (tmp_path / "runs" / "images0" / "export" / "model.safetensors").stat().st_mtime
    probe.main(["--steps", "2", "--samples", "2", "--sample-steps", "1", "--base-channels", "8",
                "--batch", "2", "--work", str(tmp_path / "runs"), "--out", str(out)])
    assert (tmp_path / "runs" / "images0" / "export" /
            "model.safetensors").stat().st_mtime == mtime


def test_report_section_embeds_the_probe_table_or_says_how_to_make_it(monkeypatch, tmp_path):
    monkeypatch.setattr(table4, "TABLE", tmp_path / "missing.md")
    assert "scripts/table4_probe.py" in table4.section(None, None, None)
    (tmp_path / "t.md").write_text("## Joint video-image training\n\n| 0 | ... |\n")
    monkeypatch.setattr(table4, "TABLE", tmp_path / "t.md")
    assert table4.section(None, None, None).startswith("## Joint video-image training")
