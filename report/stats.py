"""95% intervals over samples: t-intervals for means, Wilson intervals for rates."""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# Two-sided 95% t quantiles t_{0.975, df}; df > 30 uses the normal 1.96.
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
Z_975 = 1.96


@dataclass(frozen=True)
class Cell:
    """Mean and 95% interval of the finite values among n samples."""

    n: int
    mean: float
    lo: float
    hi: float

    def text(self, digits: int = 2, samples: int | None = None) -> str:
        """ "mean [lo, hi]", "n/a" without data, with "(n = ...)" when n < samples."""
        if self.n == 0:
            return "n/a"
        text = f"{self.mean:.{digits}f}"
        if self.n > 1 and math.isfinite(self.lo):
            text += f" [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"
        return text if samples is None or self.n >= samples else f"{text} (n = {self.n})"


EMPTY = Cell(0, math.nan, math.nan, math.nan)


def num(v: float) -> str:
    """Four decimals, or two significant digits where that would print a non-zero as 0.0000."""
    return f"{v:.1e}" if 0 < abs(v) < 5e-5 else f"{v:.4f}"


def t_interval(values: Sequence[float]) -> Cell:
    """Mean +- t_{0.975, n-1} s / sqrt(n) over the finite values (nan/inf samples are dropped)."""
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return EMPTY
    if len(v) == 1:
        return Cell(1, float(v[0]), math.nan, math.nan)
    t = T_975[len(v) - 2] if len(v) - 1 <= len(T_975) else Z_975
    half = t * v.std(ddof=1) / math.sqrt(len(v))
    return Cell(len(v), float(v.mean()), float(v.mean() - half), float(v.mean() + half))


def wilson(hits: Sequence[bool]) -> Cell:
    """A rate with its 95% Wilson score interval."""
    n = len(hits)
    if n == 0:
        return EMPTY
    p, z = float(np.mean(hits)), Z_975
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Cell(n, p, centre - half, centre + half)


def paired_difference(before: Sequence[Mapping[str, float]],
                      after: Sequence[Mapping[str, float]], key: str) -> Cell:
    """The t-interval of after[i][key] - before[i][key] over paired samples i."""
    return t_interval([b[key] - a[key] for a, b in zip(before, after, strict=True)])
