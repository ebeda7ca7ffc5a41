"""The evaluation report: its interval arithmetic, its verdicts, and one real end-to-end run."""

import math

import pytest

from vdm_core import evaluate
from vdm_core.evaluate import Cell, t_interval, verdict, wilson
from vdm_core.pipeline import DEFAULT_MODEL


def test_t_interval_is_mean_plus_minus_t_s_over_sqrt_n_and_drops_nan():
    cell = t_interval([1.0, 2.0, 3.0, math.nan])
    half = 4.303 * 1.0 / math.sqrt(3)  # s = 1, t_{0.975, 2} = 4.303
    assert cell.n == 3 and cell.mean == pytest.approx(2.0)
    assert (cell.lo, cell.hi) == pytest.approx((2.0 - half, 2.0 + half))
    one = t_interval([5.0])
    assert one.n == 1 and one.mean == 5.0 and math.isnan(one.lo)
    assert t_interval([]).text() == "n/a"


def test_t_interval_uses_the_normal_quantile_for_large_n():
    values = [float(i % 2) for i in range(100)]  # mean 0.5, s = sqrt(100 / 99) / 2
    cell = t_interval(values)
    half = 1.96 * math.sqrt(100 / 99) / 2 / 10
    assert (cell.lo, cell.hi) == pytest.approx((0.5 - half, 0.5 + half))


def test_wilson_interval_closed_forms():
    # All hits: the upper end is 1 and the lower end is n / (n + z^2).
    cell = wilson([True] * 10)
    assert cell.mean == 1.0 and cell.hi == pytest.approx(1.0)
    assert cell.lo == pytest.approx(10 / (10 + 1.96**2))
    # Half hits: symmetric about 1/2, inside [0, 1] unlike the normal interval at small n.
    half = wilson([True, False] * 3)
    assert half.lo + half.hi == pytest.approx(1.0) and 0 < half.lo < 0.5


@pytest.mark.parametrize(("lo", "hi", "higher_is_better", "expected"), [
    (-0.5, -0.1, False, "reconstruction better"),  # error went down
    (0.1, 0.5, False, "replacement better"),
    (0.1, 0.5, True, "reconstruction better"),  # kept fraction went up
    (-0.5, -0.1, True, "replacement better"),
    (-0.1, 0.2, False, "no separable difference"),
])
def test_verdict_reads_the_interval_of_the_paired_difference(lo, hi, higher_is_better, expected):
    assert verdict(Cell(4, (lo + hi) / 2, lo, hi), higher_is_better) == expected
    assert verdict(Cell(1, lo, math.nan, math.nan), higher_is_better) == "too few samples"


def test_one_command_writes_every_table_and_picture(tmp_path):
    out = tmp_path / "results.md"
    evaluate.main(["--model", str(DEFAULT_MODEL), "--samples", "1", "--steps", "1",
                   "--frames", "20", "--out", str(out)])
    text = out.read_text()
    for title in ("Table 6 analogue", "Table 5 analogue", "Prediction", "Super-resolution",
                  "Interpolation"):
        assert title in text, title
    assert "Paired differences" in text and "seam jump" in text
    for name in ("extension", "extension_curves", "cfg", "prediction", "super_resolution",
                 "interpolation"):
        assert (tmp_path / "results" / f"{name}.png").stat().st_size > 1000, name
    with pytest.raises(ValueError, match="--frames"):
        evaluate.main(["--frames", "200", "--out", str(out)])
