"""A resilience score 0–100 per run, with an uncertainty interval, and its trend over runs.

Why a score at all: a verdict is binary and depends on the thresholds someone wrote; a
score lets a team see "we went from 82 to 64 on the same experiment" even when both runs
passed. Why an interval: a score from 20 noisy samples is not the same as one from 2,000,
and a dashboard that shows 64 vs 66 as a change would train people to ignore it.

Per metric, a *health* in 0..1::

    health = 1 - (0.5·impact + 0.3·residual + 0.2·slowness)

* ``impact`` — how much worse the during median is than the baseline median, beyond the
  comparison's tolerance, relative to the baseline level, mapped through
  ``1 - exp(-x)`` into 0..1 (0.63 when "twice as bad");
* ``residual`` — the same for the recovery median (what is still broken);
* ``slowness`` — time to recover as a share of the recovery window (1 if never).

The run's score is ``100 x (mean health + worst health) / 2`` — a single broken metric
must pull the score down even among 50 healthy ones — minus a penalty per failed rule
(10 points plus up to 20 more with its margin, at most 40 in total).

The interval is a 95 % percentile bootstrap over the samples: each replicate redraws the
three phase medians of every metric from their *exact* bootstrap distribution (the
median of a resample is an order statistic whose rank has a binomial law), so a replicate
costs O(1) per metric instead of O(n) — fast enough for 50 metrics x 1,000 points — and
it is seeded, so the same run always gets the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from analysis.core.stats import clean

__all__ = [
    "MetricScoreInput",
    "ScoreResult",
    "bootstrap_medians",
    "metric_health",
    "resilience_score",
    "target_trend",
]

IMPACT_WEIGHT = 0.5
RESIDUAL_WEIGHT = 0.3
SLOWNESS_WEIGHT = 0.2
N_BOOT = 500
SEED = 20240601
Z95 = 1.959964


@dataclass
class MetricScoreInput:
    """One metric's share of the score. ``slowness`` is 0..1, known without resampling."""

    name: str
    better: str
    baseline: ArrayLike
    during: ArrayLike
    recovery: ArrayLike
    tolerance: float
    slowness: float = 0.0
    weight: float = 1.0


@dataclass(frozen=True)
class ScoreResult:
    value: float | None
    low: float | None
    high: float | None
    per_metric: dict[str, float]
    rule_penalty: float

    def to_dict(self) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(float(x), 2)

        return {
            "value": r(self.value),
            "low": r(self.low),
            "high": r(self.high),
            "per_metric": {k: round(v, 4) for k, v in self.per_metric.items()},
            "rule_penalty": round(self.rule_penalty, 2),
        }


def bootstrap_medians(values: ArrayLike, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` draws of the median of a bootstrap resample, without resampling.

    The resample's median is the order statistic ``x_(j)`` for the first ``j`` at which
    at least half of the resample is ``<= x_(j)``; the count of such points is
    Binomial(n, j/n), so the CDF over ``j`` is a binomial tail and one uniform per
    replicate picks ``j`` by inversion. (For even n this is the lower middle value.)
    """
    x = np.sort(clean(values))
    n = x.size
    if n == 0:
        return np.full(n_boot, np.nan)
    r = (n + 1) // 2
    cdf = special.bdtrc(r - 1, n, np.arange(1, n + 1) / n)
    idx = np.searchsorted(cdf, rng.random(n_boot), side="left")
    return x[np.minimum(idx, n - 1)]


def _worse_share(level: ArrayLike, base: ArrayLike, sign: float, tol: float) -> np.ndarray:
    """``1 - exp(-excess / scale)``: 0 within tolerance, 0.63 at "twice as bad", -> 1.

    Saturating smoothly rather than clipping keeps large effects distinguishable (and
    their bootstrap interval non-degenerate).
    """
    base = np.asarray(base, dtype=float)
    scale = np.maximum(np.maximum(np.abs(base), tol), 1e-9)
    excess = np.clip(sign * (np.asarray(level, dtype=float) - base) - tol, 0.0, None)
    return 1.0 - np.exp(-excess / scale)


def metric_health(
    base_median: ArrayLike,
    during_median: ArrayLike,
    recovery_median: ArrayLike,
    better: str,
    tolerance: float,
    slowness: float = 0.0,
) -> np.ndarray:
    """Health in 0..1 from the three phase medians (vectorised over replicates)."""
    sign = 1.0 if better == "lower" else -1.0
    tol = max(float(tolerance or 0.0), 0.0)
    impact = _worse_share(during_median, base_median, sign, tol)
    rec = np.asarray(recovery_median, dtype=float)
    residual = np.where(
        np.isfinite(rec), _worse_share(np.nan_to_num(rec), base_median, sign, tol), 0.0
    )
    slow = min(1.0, max(0.0, float(slowness)))
    return 1.0 - (IMPACT_WEIGHT * impact + RESIDUAL_WEIGHT * residual + SLOWNESS_WEIGHT * slow)


def _combine(health: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(weighted mean + worst) / 2 over metrics; ``health`` is metrics x replicates."""
    mean = (health * weights[:, None]).sum(axis=0) / weights.sum()
    return 0.5 * (mean + health.min(axis=0))


def _rule_penalty(rules: Sequence[dict[str, Any]]) -> float:
    total = 0.0
    for rule in rules:
        if rule.get("passed") is False and rule.get("enough_data", True):
            total += 10.0 + 20.0 * min(1.0, max(0.0, float(rule.get("margin") or 0.0)))
    return min(40.0, total)


def resilience_score(
    metrics: Sequence[MetricScoreInput],
    rules: Sequence[dict[str, Any]] = (),
    *,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    confidence: float = 0.95,
) -> ScoreResult:
    """Score 0–100 with a percentile-bootstrap interval (see the module docstring)."""
    usable = [m for m in metrics if clean(m.baseline).size and clean(m.during).size]
    penalty = _rule_penalty(rules)
    if not usable:
        return ScoreResult(None, None, None, {}, penalty)
    rng = np.random.default_rng(seed)
    point, boot = [], []
    for m in usable:
        base, dur, rec = clean(m.baseline), clean(m.during), clean(m.recovery)
        rec_med = float(np.median(rec)) if rec.size else np.nan
        point.append(
            metric_health(
                np.median(base), np.median(dur), rec_med, m.better, m.tolerance, m.slowness
            )
        )
        rec_boot = bootstrap_medians(rec, n_boot, rng) if rec.size else np.full(n_boot, np.nan)
        boot.append(
            metric_health(
                bootstrap_medians(base, n_boot, rng),
                bootstrap_medians(dur, n_boot, rng),
                rec_boot,
                m.better,
                m.tolerance,
                m.slowness,
            )
        )
    weights = np.array([max(m.weight, 0.0) or 1.0 for m in usable])
    value = float(_combine(np.array(point, dtype=float)[:, None], weights)[0]) * 100 - penalty
    reps = _combine(np.array(boot), weights) * 100 - penalty
    tail = (1.0 - confidence) / 2.0 * 100
    low, high = np.percentile(reps, [tail, 100 - tail])
    value = max(0.0, value)
    low = max(0.0, min(float(low), value))
    high = max(float(high), value)
    per_metric = {m.name: float(h) for m, h in zip(usable, point, strict=True)}
    return ScoreResult(value, low, min(100.0, high), per_metric, penalty)


# --- trend across runs ------------------------------------------------------------------


def target_trend(scores: Sequence[tuple[float, float, float, float]]) -> dict[str, Any]:
    """Trend of a target's (or experiment's) scores: ``(timestamp s, score, low, high)``.

    * slope (points per day) by weighted least squares, each run weighted by the inverse
      of its score variance (from its interval) plus the between-run scatter the
      intervals do not explain; the slope's 95 % interval comes from that fit;
    * ``regression`` — the latest score is below the weighted mean of the earlier runs
      by more than 1.96 x the combined noise (its own, the reference's and the scatter):
      a drop that the runs' own uncertainty cannot explain.
    """
    pts = sorted(
        (float(t), float(s), float(lo), float(hi))
        for t, s, lo, hi in scores
        if all(v is not None and math.isfinite(v) for v in (t, s, lo, hi))
    )
    out: dict[str, Any] = {
        "n": len(pts),
        "slope_per_day": None,
        "slope_low": None,
        "slope_high": None,
        "direction": "unknown",
        "latest": pts[-1][1] if pts else None,
        "reference": None,
        "drop": None,
        "noise": None,
        "regression": False,
        "reason": "",
    }
    if len(pts) < 2:
        out["reason"] = "At least two scored runs are needed for a trend."
        return out
    t = np.array([p[0] for p in pts])
    y = np.array([p[1] for p in pts])
    se = np.maximum((np.array([p[3] for p in pts]) - [p[2] for p in pts]) / (2 * Z95), 0.5)
    x = (t - t[0]) / 86_400.0

    tau2 = _between_run_variance(x, y, se)
    w = 1.0 / (se**2 + tau2)
    if np.ptp(x) > 0:
        xw = (w * x).sum() / w.sum()
        yw = (w * y).sum() / w.sum()
        sxx = (w * (x - xw) ** 2).sum()
        slope = float((w * (x - xw) * (y - yw)).sum() / sxx)
        slope_se = math.sqrt(1.0 / sxx)
        out.update(
            slope_per_day=slope,
            slope_low=slope - Z95 * slope_se,
            slope_high=slope + Z95 * slope_se,
        )
        if slope - Z95 * slope_se > 0:
            out["direction"] = "improving"
        elif slope + Z95 * slope_se < 0:
            out["direction"] = "declining"
        else:
            out["direction"] = "flat"

    wp = w[:-1]
    reference = float((wp * y[:-1]).sum() / wp.sum())
    noise = math.sqrt(se[-1] ** 2 + 1.0 / wp.sum() + tau2)
    drop = reference - y[-1]
    out.update(reference=reference, drop=drop, noise=noise, regression=bool(drop > Z95 * noise))
    out["reason"] = (
        f"Latest score {y[-1]:.1f} vs {reference:.1f} before: a drop of {drop:.1f} against "
        f"noise ±{Z95 * noise:.1f} — "
        + ("a regression." if out["regression"] else "within the noise.")
    )
    return out


def _between_run_variance(x: np.ndarray, y: np.ndarray, se: np.ndarray) -> float:
    """Scatter around a straight line beyond what the runs' own intervals explain."""
    if x.size < 3:
        return 0.0
    if np.ptp(x) > 0:
        coef = np.polyfit(x, y, 1)
        resid = y - np.polyval(coef, x)
        dof = x.size - 2
    else:
        resid = y - y.mean()
        dof = x.size - 1
    return float(max(0.0, (resid**2).sum() / dof - float(np.mean(se**2))))
