"""Joint anomalies across metrics: "is this combination of values unusual?".

Per-metric tests miss a fault that breaks a *relationship*: requests and CPU that always
move together, until a fault makes CPU rise while requests fall, each still inside its
own usual range. An isolation forest fitted on the baseline rows (one row per timestamp,
one column per metric) scores how easy each evaluation row is to isolate from them.

Choices
    * Columns are standardised by the baseline median and robust sigma, so a metric in
      milliseconds does not dominate one in ratios, and NaN cells are imputed with the
      baseline median (0 after standardising): a missing scrape looks ordinary.
    * The threshold is the ``1 - contamination/2`` quantile of HONEST baseline scores: each
      half of the baseline is scored by a forest fitted on the other half. In-sample
      scores look more normal than a new healthy row would, so a threshold from them
      would flag healthy evaluation rows more often than ``contamination`` says.
    * The forest sees the baseline's whitened principal components (see ``_Features``),
      where a broken correlation is far out along the minor axis. A forest only splits
      inside the training range, so a row far beyond it scores no worse than the
      baseline's own extremes; rows are therefore ALSO flagged when their squared
      whitened distance exceeds the baseline's ``1 - contamination/2`` quantile. Each of
      the two rules gets half of ``contamination``; ``scores``/``threshold`` are the
      forest's (``-score_samples``, higher = more anomalous).
    * ``contributions``: for each anomalous row and each metric, how much the anomaly
      (forest score over its threshold plus distance over its limit) drops when that
      metric alone is reset to the value the other metrics imply (a ridge fit on the
      baseline). This credits both metrics of a broken pair — each one, reset, restores
      the relationship — and a lone spiking metric, but not an innocent bystander.
      Shares are normalised to sum to 1 (all 0 when nothing was anomalous).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest
from threadpoolctl import threadpool_limits

from analysis.core.stats import MAD_TO_SIGMA

__all__ = ["MIN_ROWS", "MultivariateResult", "detect_multivariate"]

#: Fewer baseline rows than this cannot describe "normal" for a forest.
MIN_ROWS = 10
#: Trees per forest; 100 is scikit-learn's default and scores are stable at this size.
N_ESTIMATORS = 100
#: Smallest spread (in baseline z units) a principal direction is scaled by.
PC_SCALE_FLOOR = 0.05


def _num(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class MultivariateResult:
    """Anomaly score per evaluation row (higher = more anomalous) and what drives it."""

    scores: np.ndarray
    threshold: float
    anomalous: np.ndarray
    share_anomalous: float
    contributions: dict[str, float]
    insufficient: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; NaN becomes ``None``."""
        return {
            "scores": [_num(v) for v in self.scores],
            "threshold": _num(self.threshold),
            "anomalous": [bool(v) for v in self.anomalous],
            "share_anomalous": _num(self.share_anomalous),
            "contributions": {k: _num(v) for k, v in self.contributions.items()},
            "insufficient": bool(self.insufficient),
            "reason": self.reason,
        }


def _as_2d(a: np.ndarray, m: int | None = None) -> np.ndarray:
    arr = np.asarray(a, dtype=float)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1) if m in (None, 1) else arr.reshape(-1, m)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {arr.shape}")
    return arr


def _scales(base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column median and robust sigma, never 0 (a constant metric is common)."""
    centre = np.nanmedian(base, axis=0)
    centre = np.where(np.isfinite(centre), centre, 0.0)
    dev = np.abs(base - centre)
    sigma = np.nanmedian(dev, axis=0) * MAD_TO_SIGMA
    fallback = np.nanmean(dev, axis=0) * math.sqrt(math.pi / 2.0)
    sigma = np.where(np.isfinite(sigma) & (sigma > 0), sigma, fallback)
    sigma = np.where(np.isfinite(sigma) & (sigma > 0), sigma, 1.0)
    return centre, sigma


def _standardise(x: np.ndarray, centre: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    z = (x - centre) / sigma
    return np.where(np.isfinite(z), z, 0.0)


@dataclass(frozen=True)
class _Features:
    """z-scores plus whitened principal components of the baseline z-scores.

    The forest cuts along axes, so a broken correlation (a point off the diagonal but
    inside each metric's range) is hard for it to isolate in z-space. Along the
    baseline's minor principal axis, scaled to unit spread, the same point is many
    sigmas out. The z columns stay so that a single metric's spike is still one cut.
    """

    rotation: np.ndarray
    pc_scale: np.ndarray

    @classmethod
    def fit(cls, zb: np.ndarray) -> _Features:
        if zb.shape[1] < 2:
            return cls(np.zeros((zb.shape[1], 0)), np.ones(0))
        _, _, vt = np.linalg.svd(zb - zb.mean(axis=0), full_matrices=False)
        rotation = vt.T
        pcs = zb @ rotation
        spread = np.median(np.abs(pcs - np.median(pcs, axis=0)), axis=0) * MAD_TO_SIGMA
        # Floor in z units: a direction with (almost) no baseline spread would turn any
        # rounding difference into a huge "anomaly".
        return cls(rotation, np.maximum(spread, PC_SCALE_FLOOR))

    def __call__(self, z: np.ndarray) -> np.ndarray:
        if self.pc_scale.size == 0:
            return z
        return (z @ self.rotation) / self.pc_scale


def _forest(x: np.ndarray, random_state: int, trees: int = N_ESTIMATORS) -> IsolationForest:
    return IsolationForest(n_estimators=trees, random_state=random_state).fit(x)


def _honest_scores(zb: np.ndarray, random_state: int) -> np.ndarray:
    """Baseline anomaly scores from forests that never saw the row being scored."""
    n = zb.shape[0]
    order = np.random.default_rng(random_state).permutation(n)
    halves = (order[: n // 2], order[n // 2 :])
    out = np.empty(n)
    for fit_idx, score_idx in (halves, halves[::-1]):
        # Half-size forests: they only set the threshold, and fitting dominates the cost.
        forest = _forest(zb[fit_idx], random_state, N_ESTIMATORS // 2)
        out[score_idx] = -forest.score_samples(zb[score_idx])
    return out


def _implied(zb: np.ndarray) -> np.ndarray:
    """Coefficients predicting each column from the others (ridge, on baseline z-scores).

    Row ``j`` holds the weights for column ``j`` (its own weight is 0), so
    ``z @ coef[j]`` is what the other metrics say metric ``j`` should be.
    """
    m = zb.shape[1]
    coef = np.zeros((m, m))
    if m == 1:
        return coef
    for j in range(m):
        others = [c for c in range(m) if c != j]
        a = zb[:, others]
        gram = a.T @ a + 1e-3 * zb.shape[0] * np.eye(len(others))
        coef[j, others] = np.linalg.solve(gram, a.T @ zb[:, j])
    return coef


def _contributions(
    forest: IsolationForest,
    features: _Features,
    limits: tuple[float, float],
    zb: np.ndarray,
    ze: np.ndarray,
    names: list[str],
) -> dict[str, float]:
    """Per metric, the mean relief (score and distance, each over its limit) from a reset."""
    coef = _implied(zb)
    score_limit, dist_limit = limits

    def badness(z: np.ndarray) -> np.ndarray:
        f = features(z)
        score = -forest.score_samples(f) / score_limit
        return score + np.sum(f**2, axis=1) / dist_limit

    before = badness(ze)
    drops = np.zeros(ze.shape[1])
    for j in range(ze.shape[1]):
        reset = ze.copy()
        reset[:, j] = ze @ coef[j]
        drops[j] = float(np.mean(np.maximum(before - badness(reset), 0.0)))
    if drops.sum() <= 0:
        # No single reset helps (every metric is off at once): fall back to how far
        # each metric is from its baseline median.
        drops = np.mean(np.abs(ze), axis=0)
    total = float(drops.sum())
    shares = drops / total if total > 0 else np.zeros_like(drops)
    return {name: float(s) for name, s in zip(names, shares, strict=True)}


def detect_multivariate(
    baseline: np.ndarray,
    evaluation: np.ndarray,
    names: list[str],
    *,
    contamination: float = 0.01,
    random_state: int = 0,
) -> MultivariateResult:
    """Score evaluation rows against an isolation forest fitted on the baseline rows.

    ``contamination`` is the share of healthy rows expected above the threshold (the
    false-alarm rate per row). Baseline rows that are entirely NaN are dropped; other
    NaN cells are imputed with the baseline median.
    """
    names = list(names)
    m = len(names)
    base = _as_2d(baseline, m or None)
    ev = _as_2d(evaluation, base.shape[1])
    k = ev.shape[0]
    if base.shape[1] != m or ev.shape[1] != m:
        raise ValueError(f"{m} names for arrays of shapes {base.shape} and {ev.shape}")

    def insufficient(reason: str) -> MultivariateResult:
        return MultivariateResult(
            scores=np.full(k, np.nan),
            threshold=float("nan"),
            anomalous=np.zeros(k, dtype=bool),
            share_anomalous=0.0,
            contributions={name: 0.0 for name in names},
            insufficient=True,
            reason=reason,
        )

    if m == 0:
        return insufficient("no metrics")
    base = base[~np.all(np.isnan(base), axis=1)]
    if base.shape[0] < MIN_ROWS:
        return insufficient(f"baseline has {base.shape[0]} rows (< {MIN_ROWS})")
    if k == 0:
        return insufficient("no evaluation rows")

    centre, sigma = _scales(base)
    zb = _standardise(base, centre, sigma)
    ze = _standardise(ev, centre, sigma)
    features = _Features.fit(zb)
    fb = features(zb)
    # One BLAS thread: the matrices are tiny and thread contention on a busy host
    # costs far more than it saves.
    with threadpool_limits(limits=1):
        honest = _honest_scores(fb, random_state)
        threshold = float(np.quantile(honest, 1.0 - contamination / 2.0))
        forest = _forest(fb, random_state)
        fe = features(ze)
        scores = -forest.score_samples(fe)
        # The forest only splits inside the baseline's range, so every row beyond it
        # scores about like the baseline's most extreme rows, however far out it is.
        # Distance in the whitened space has no such ceiling and catches those rows.
        dist_limit = float(np.quantile(np.sum(fb**2, axis=1), 1.0 - contamination / 2.0))
        far = np.sum(fe**2, axis=1) > dist_limit
        anomalous = (scores > threshold) | far
        if anomalous.any():
            limits = (threshold, dist_limit)
            contributions = _contributions(forest, features, limits, zb, ze[anomalous], names)
        else:
            contributions = {name: 0.0 for name in names}
    return MultivariateResult(
        scores=scores,
        threshold=threshold,
        anomalous=anomalous,
        share_anomalous=float(anomalous.mean()),
        contributions=contributions,
        insufficient=False,
        reason=f"isolation forest on {base.shape[0]} baseline rows x {m} metrics",
    )
