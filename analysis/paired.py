"""Comparisons over seeds: wins-ties-losses and the mean paired difference with its 95% interval (a paired t).

A seed fixes everything two methods share (the evaluation's draws, Stage II's data order), so two methods' results
pair up seed by seed. For a claim "A beats B" on one metric, with d_s = A_s - B_s over the n seeds:

    wins-ties-losses   #{d_s > 0} - #{d_s = 0} - #{d_s < 0}
    interval           mean(d) ± t_{0.975, n-1} * std(d, ddof=1) / sqrt(n)
    verdict            "held" where the interval lies above 0, "reversed" where it lies below, else "not separable"

The t interval is used rather than a bootstrap over seeds: with 10 seeds a percentile bootstrap is too narrow (it
resamples 10 values and ignores the uncertainty of their spread), and the t interval can be checked by hand.

Example (the differences 1, 2, 3, 4, 5: mean 3, std sqrt(2.5), t_{0.975, 4} = 2.7764):
    >>> iv = interval([1, 2, 3, 4, 5])
    >>> round(iv.mean, 4), round(iv.low, 4), round(iv.high, 4), iv.verdict
    (3.0, 1.0368, 4.9632, 'held')
    >>> wins_ties_losses([0.3, 0.2, 0.1], [0.1, 0.2, 0.3])
    (1, 1, 1)
"""

import math
from dataclasses import dataclass

import numpy as np

# t_{0.975, df}, the two-sided 95% quantile of Student's t, df = 1..30 (standard tables, 4 decimals).
T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip


def t975(df: int) -> float:
    """Student's t 97.5% quantile: the table up to df = 30, beyond it the Cornish-Fisher expansion around z = 1.96
    (within 2e-4 of the exact value there).

    Example:
        >>> t975(9), t975(30), round(t975(120), 3)
        (2.2622, 2.0423, 1.98)
    """
    if df < 1:
        raise ValueError(f"a t interval needs 2 or more values (df = {df})")
    if df <= len(T975):
        return T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class Interval:
    """The mean of n values with its 95% t interval [low, high]; verdict reads it against 0."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def verdict(self) -> str:
        if self.low > 0:
            return "held"
        return "reversed" if self.high < 0 else "not separable"

    def text(self, digits: int = 3) -> str:
        """'+0.021 [-0.004, +0.046]'"""
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


def interval(values) -> Interval:
    """Mean and 95% t interval of values (one per seed); for a paired comparison pass the differences A - B."""
    v = np.asarray(values, dtype=float)  # [n]
    if v.ndim != 1 or len(v) < 2:
        raise ValueError(f"a t interval needs 2 or more values, got {v.shape}")
    half = t975(len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return Interval(float(v.mean()), float(v.mean() - half), float(v.mean() + half), len(v))


def wins_ties_losses(a, b) -> tuple[int, int, int]:
    """Over paired values: how often a > b, a == b, a < b."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    return int((d > 0).sum()), int((d == 0).sum()), int((d < 0).sum())


def compare(a, b) -> dict:
    """Everything a table cell says about "a beats b" over paired seeds; "cell" is the cell itself: W-T-L, the mean
    difference with its interval, and the verdict in bold where the interval excludes 0.

    Example:
        >>> c = compare([0.3, 0.2, 0.5, 0.4, 0.1], [0.1, 0.2, 0.2, 0.1, 0.3])
        >>> c["wtl"], c["text"], c["verdict"], c["cell"]
        ((3, 1, 1), '+0.120 [-0.149, +0.389]', 'not separable', '3-1-1 +0.120 [-0.149, +0.389]')
        >>> compare([0.2, 0.21, 0.22], [0.1] * 3)["cell"]
        '3-0-0 +0.110 [+0.085, +0.135] **held**'
    """
    iv, wtl = interval(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)), wins_ties_losses(a, b)
    mark = "" if iv.verdict == "not separable" else f" **{iv.verdict}**"
    return {"wtl": wtl, "mean": iv.mean, "low": iv.low, "high": iv.high, "text": iv.text(), "verdict": iv.verdict,
            "cell": f"{'-'.join(map(str, wtl))} {iv.text()}{mark}"}  # fmt: skip
