"""scripts/log_curve.py: block means of a run's log, read from a training or exported folder."""

import pytest
from conftest import load_script

from vdm_core.records import EXPORTED_LOG_NAME, LOG_NAME, write_jsonl

curve = load_script("log_curve")


def test_block_means_put_each_step_in_the_block_that_ends_at_or_after_it():
    records = [{"step": s, "loss": float(s)} for s in (10, 20, 100, 110, 200, 210)]
    records.insert(2, {"step": 50, "grad_norm": 1.0})  # a line without the field is skipped
    assert curve.block_means(records, "loss", 100) == {100: (10 + 20 + 100) / 3,
                                                       200: (110 + 200) / 2, 300: 210.0}


def test_table_reads_both_folder_kinds_and_leaves_missing_blocks_empty(tmp_path, capsys):
    train, export = tmp_path / "run", tmp_path / "export"
    train.mkdir()
    export.mkdir()
    write_jsonl(train / LOG_NAME, [{"step": s, "loss": 1.0, "swap_rise": s / 1000}
                                   for s in (50, 100, 150)])
    write_jsonl(export / EXPORTED_LOG_NAME, [{"step": 50, "loss": 2.0, "swap_rise": 0.5}])
    out = tmp_path / "doc.md"
    curve.main([str(train), str(export), "--field", "swap_rise", "--every", "100",
                "--out", str(out), "--section", "c"])
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ")]
    assert rows[0].count("swap_rise") == 2
    assert rows[1] == "| 1-100 | 0.075 | 0.5 |"
    assert rows[2] == "| 101-200 | 0.15 |  |"
    assert "<!-- c:start -->" in out.read_text()
    assert "| 1-100 |" in capsys.readouterr().out


def test_clear_errors_for_a_folder_without_a_log_and_an_unknown_field(tmp_path):
    with pytest.raises(SystemExit, match="neither log.jsonl"):
        curve.main([str(tmp_path)])
    write_jsonl(tmp_path / LOG_NAME, [{"step": 10, "loss": 1.0}])
    with pytest.raises(SystemExit, match="no line of .* has the field 'swap_rise'; it has"):
        curve.main([str(tmp_path), "--field", "swap_rise"])
    with pytest.raises(SystemExit):
        curve.main([str(tmp_path), "--every", "0"])
