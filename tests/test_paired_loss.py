"""scripts/paired_loss.py: two runs' logged losses paired step by step, binned, with t-intervals."""

import json
import math

import pytest
from conftest import load_script

main = load_script("paired_loss").main


def write_log(folder, records):
    folder.mkdir()
    (folder / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_bins_pair_the_common_steps_with_a_t_interval(tmp_path):
    # the second run logs 0.1, 0.2, 0.3 more than the first at steps 10, 20, 30 (bin 1-30) and
    # 0.5 more at step 40 (bin 31-60, one step: no interval); step 50 only the first run logged
    write_log(tmp_path / "a", [{"step": s, "loss": 1.0, "grad_norm": 0.5, "lr": 1e-4}
                               for s in (10, 20, 30, 40, 50)])
    write_log(tmp_path / "b", [{"step": s, "loss": 1.0 + d, "grad_norm": 2.0, "lr": 1e-4}
                               for s, d in ((10, 0.1), (20, 0.2), (30, 0.3), (40, 0.5))])
    out = tmp_path / "recipe.md"
    out.write_text("# Recipe\n")
    main(["--run", f"slow={tmp_path / 'a'}", "--run", f"fast={tmp_path / 'b'}", "--bin", "30",
          "--out", str(out), "--section", "pair", "--title", "Slow against fast"])
    text = out.read_text()
    assert text.startswith("# Recipe\n") and "## Slow against fast" in text
    assert f"`scripts/paired_loss.py --run slow={tmp_path / 'a'}" in text
    assert "--title 'Slow against fast'`" in text  # quoted: the line runs as it stands
    rows = [line for line in text.splitlines() if line.startswith("| 1-30") or
            line.startswith("| 31-40")]
    half = 4.303 * 0.1 / math.sqrt(3)  # t_{0.975, 2} s / sqrt(n), s = 0.1
    assert rows[0] == (f"| 1-30 | 3 | 1.00000 | 1.20000 | +0.20000 [{0.2 - half:+.5f}, "
                       f"{0.2 + half:+.5f}] | 0.500 | 2.000 |")
    assert rows[1] == "| 31-40 | 1 | 1.00000 | 1.50000 | +0.50000 | 0.500 | 2.000 |"
    assert "| 41-" not in text  # step 50 has no partner
    main(["--run", f"slow={tmp_path / 'a'}", "--run", f"fast={tmp_path / 'b'}", "--bin", "30",
          "--until", "20", "--out", str(out), "--section", "pair", "--title", "Slow against fast"])
    text = out.read_text()
    assert text.count("## Slow against fast") == 1 and "| 1-20 | 2 |" in text


def test_bad_runs_are_named(tmp_path):
    write_log(tmp_path / "a", [{"step": 10, "loss": 1.0, "grad_norm": 0.5}])
    (tmp_path / "r.md").write_text("# r\n")
    with pytest.raises(SystemExit, match="does not exist"):
        main(["--run", f"a={tmp_path / 'a'}", "--run", f"b={tmp_path / 'none'}",
              "--section", "s", "--title", "t", "--out", str(tmp_path / "r.md")])
    write_log(tmp_path / "c", [{"step": 20, "loss": 1.0, "grad_norm": 0.5}])
    with pytest.raises(SystemExit, match="no step in common"):
        main(["--run", f"a={tmp_path / 'a'}", "--run", f"c={tmp_path / 'c'}",
              "--section", "s", "--title", "t", "--out", str(tmp_path / "r.md")])
    with pytest.raises(SystemExit):  # argparse: no such --out file
        main(["--run", f"a={tmp_path / 'a'}", "--run", f"c={tmp_path / 'c'}",
              "--section", "s", "--title", "t", "--out", str(tmp_path / "none.md")])
    with pytest.raises(SystemExit):  # argparse: LABEL=FOLDER
        main(["--run", str(tmp_path / "a"), "--run", f"c={tmp_path / 'c'}",
              "--section", "s", "--title", "t"])
