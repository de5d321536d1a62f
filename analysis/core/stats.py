"""Distribution-free statistics for comparing two windows of one metric.

Chaos metrics (latencies, error rates, queue depths) are skewed, heavy-tailed and often
carry outliers, so everything here is rank- or order-statistic based: the Mann-Whitney U
test asks "is one window stochastically larger than the other?" and the Hodges-Lehmann
estimator says "by how much?", with a confidence interval that needs no normality.

Inputs are cleaned first: NaN and ±inf are dropped rather than propagated, because a
failed scrape or a division by zero in a collector must not poison a whole analysis.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

__all__ = [
    "MAD_TO_SIGMA",
    "MAX_PAIRS",
    "Alternative",
    "ShiftEstimate",
    "Summary",
    "TestResult",
    "clean",
    "hodges_lehmann",
    "mann_whitney",
    "summarize",
]

Alternative = Literal["two-sided", "less", "greater"]

#: Scales a median absolute deviation to a standard deviation for normal data.
MAD_TO_SIGMA = 1.4826
#: Upper bound on pairwise differences materialised by :func:`hodges_lehmann` (~2 MB).
MAX_PAIRS = 250_000


def clean(values: ArrayLike | None) -> np.ndarray:
    """A flat float array with NaN and ±inf removed (an empty array for ``None``)."""
    if values is None:
        return np.empty(0, dtype=float)
    arr = np.asarray(values, dtype=float).ravel()
    return arr[np.isfinite(arr)]


def _none_if_nan(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass(frozen=True)
class Summary:
    """Robust description of one window; fields are NaN when the window is empty."""

    n: int
    mean: float
    p50: float
    p95: float
    p99: float
    min: float
    max: float
    std: float
    mad: float

    @property
    def robust_sigma(self) -> float:
        """MAD scaled to a standard deviation: a spread estimate outliers cannot inflate."""
        return self.mad * MAD_TO_SIGMA

    def to_dict(self) -> dict[str, float | int | None]:
        """Plain JSON types: NaN becomes ``None`` because JSON has no NaN."""
        out: dict[str, float | int | None] = {}
        for key, value in asdict(self).items():
            out[key] = value if key == "n" else _none_if_nan(value)
        return out


def summarize(values: ArrayLike | None) -> Summary:
    """Count, moments, tail percentiles and MAD of the finite values."""
    x = clean(values)
    if x.size == 0:
        nan = float("nan")
        return Summary(0, nan, nan, nan, nan, nan, nan, nan, nan)
    p50, p95, p99 = np.percentile(x, [50, 95, 99])
    return Summary(
        n=int(x.size),
        mean=float(x.mean()),
        p50=float(p50),
        p95=float(p95),
        p99=float(p99),
        min=float(x.min()),
        max=float(x.max()),
        # Sample (ddof=1) deviation; a single point has no spread to speak of.
        std=float(x.std(ddof=1)) if x.size > 1 else 0.0,
        mad=float(np.median(np.abs(x - p50))),
    )


@dataclass(frozen=True)
class TestResult:
    """Outcome of a Mann-Whitney U test of ``b`` against ``a``."""

    statistic: float
    p_value: float
    alternative: Alternative

    __test__ = False  # not a pytest test class despite the name


def mann_whitney(a: ArrayLike, b: ArrayLike, alternative: Alternative = "two-sided") -> TestResult:
    """Mann-Whitney U test; ``"greater"`` means "``b`` tends to be larger than ``a``".

    The argument order follows the engine's "baseline first, then the window under test"
    convention, which is why ``b`` is passed to scipy first. Degenerate inputs (an empty
    window, or every value identical) yield p = 1: there is no evidence of a difference,
    and scipy would otherwise return NaN with a warning.
    """
    x, y = clean(a), clean(b)
    if x.size == 0 or y.size == 0:
        return TestResult(float("nan"), 1.0, alternative)
    if np.ptp(np.concatenate([x, y])) == 0:
        return TestResult(x.size * y.size / 2.0, 1.0, alternative)
    res = sps.mannwhitneyu(y, x, alternative=alternative, method="auto")
    p = float(res.pvalue)
    return TestResult(float(res.statistic), 1.0 if math.isnan(p) else p, alternative)


@dataclass(frozen=True)
class ShiftEstimate:
    """Hodges-Lehmann location shift ``b - a`` with a distribution-free interval.

    ``n_a``/``n_b`` are the sizes actually used, smaller than the inputs when the inputs
    were thinned to respect :data:`MAX_PAIRS` (the interval is then honest but wider).
    """

    shift: float
    low: float
    high: float
    confidence: float
    n_a: int
    n_b: int

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "shift": _none_if_nan(self.shift),
            "low": _none_if_nan(self.low),
            "high": _none_if_nan(self.high),
            "confidence": self.confidence,
            "n_a": self.n_a,
            "n_b": self.n_b,
        }


def _thin(x: np.ndarray, k: int) -> np.ndarray:
    """``k`` evenly spaced order statistics of ``x``.

    Deterministic (same input, same output, no RNG state) and it keeps the shape of the
    distribution, unlike taking the first or last ``k`` samples of a drifting series.
    """
    if x.size <= k:
        return x
    idx = np.round(np.linspace(0, x.size - 1, k)).astype(int)
    return np.sort(x)[idx]


def _thin_pair(x: np.ndarray, y: np.ndarray, max_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    m, n = x.size, y.size
    if m * n <= max_pairs:
        return x, y
    small = min(m, n)
    if small * small <= max_pairs:
        # One short window and one long one: keep every point of the short window and
        # thin only the long one, which loses the least information.
        k = max_pairs // small
        return (x, _thin(y, k)) if m == small else (_thin(x, k), y)
    # Both long: shrink both by the same factor so their ratio is kept.
    factor = math.sqrt(max_pairs / (m * n))
    return _thin(x, max(1, int(m * factor))), _thin(y, max(1, int(n * factor)))


def hodges_lehmann(
    a: ArrayLike,
    b: ArrayLike,
    confidence: float = 0.95,
    max_pairs: int = MAX_PAIRS,
) -> ShiftEstimate:
    """Median of all pairwise differences ``b_j - a_i``, with a confidence interval.

    The interval takes the k-th smallest and k-th largest pairwise differences, with k
    the lower critical value of the Mann-Whitney statistic from its normal approximation
    ``mn/2 - z * sqrt(mn(m+n+1)/12)``. That approximation is close to the exact critical
    values from about five points per side, which is also the engine's minimum. Ties are
    not corrected for; with heavy ties the interval errs on the wide side.
    """
    x, y = clean(a), clean(b)
    if x.size == 0 or y.size == 0:
        nan = float("nan")
        return ShiftEstimate(nan, nan, nan, confidence, int(x.size), int(y.size))
    x, y = _thin_pair(x, y, max_pairs)
    m, n = x.size, y.size
    diffs = np.sort(np.subtract.outer(y, x).ravel())
    total = diffs.size
    z = float(sps.norm.ppf(0.5 + confidence / 2.0))
    k = math.floor(m * n / 2.0 - z * math.sqrt(m * n * (m + n + 1) / 12.0))
    k = min(max(k, 1), (total + 1) // 2)  # 1-based rank, clipped to a valid range
    return ShiftEstimate(
        shift=float(np.median(diffs)),
        low=float(diffs[k - 1]),
        high=float(diffs[total - k]),
        confidence=confidence,
        n_a=int(m),
        n_b=int(n),
    )
