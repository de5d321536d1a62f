"""Merge the evidence of every detector, per metric, into findings a person can act on.

Four detectors look at each metric; each answers a different question and none is
trusted alone:

* the window comparison (:mod:`compare`: Mann-Whitney + Hodges-Lehmann) — is the
  during/recovery window shifted, by how much? Its p-values are corrected with
  Benjamini-Hochberg across the run's metrics: a run with 50 metrics would otherwise
  "find" a degradation by chance in two runs out of five at alpha = 0.01;
* CUSUM change points — *when* did it change, and when was it back (time to impact /
  time to recover);
* the seasonal forecast band — which stretches left the predicted range, and the area
  of the excursion (run only on metrics the first two flag, at most
  :data:`MAX_FORECASTS` of them, most significant first, to bound the cost);
* the multivariate isolation forest — did the metrics jointly leave their baseline
  shape, and which metrics contributed.

The *kind* of a finding comes from the window comparison (the detector with calibrated
error rates) refined by the metric's role and by the timing detectors; the others raise
or lower the *confidence*: a finding the detectors agree on is worth more than one only
the rank test saw.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from analysis.core import detectors
from analysis.core.compare import (
    CompareConfig,
    Comparison,
    Outcome,
    compare_windows,
    relative_effect,
)
from analysis.core.model import SEVERITIES, Finding, MetricData, RunData
from analysis.core.stats import MAD_TO_SIGMA, Summary, clean, hodges_lehmann, summarize

__all__ = [
    "KINDS",
    "MetricEvidence",
    "benjamini_hochberg",
    "build_findings",
    "fast_compare",
    "gather_evidence",
    "metric_ceiling",
    "metric_role",
    "severity_for_effect",
]

KINDS = (
    "degradation",
    "error_spike",
    "saturation",
    "collateral_impact",
    "unexpected_improvement",
    "unconfirmed_change",
    "no_impact",
    "recovered",
    "slow_recovery",
    "no_recovery",
    "hypothesis_violated",
    "insufficient_data",
)

#: A recovery is slow when it took longer than this many sampling intervals ...
SLOW_RECOVERY_INTERVALS = 10
#: ... or longer than this share of the time the fault was active.
SLOW_RECOVERY_FRACTION = 0.5
#: A saturation-like metric is "at its ceiling" from this share of the ceiling.
SATURATION_LEVEL = 0.9
#: At most this many metrics get the (comparatively slow) forecast detector.
MAX_FORECASTS = 6
#: Raw p-value under which a metric is worth a forecast even if BH did not keep it.
FORECAST_GATE_P = 0.05
#: Bounds on the isolation forest's input (metrics, rows per phase).
MV_MAX_METRICS = 8
MV_MAX_ROWS = 96
#: Above this many baseline x window pairs :func:`fast_compare` takes over from
#: :func:`compare_windows` (see there for why).
FAST_PAIRS = 40_000

_ERROR_HINT = re.compile(r"error|err_|5xx|4xx|fail|timeout|reject|drop|abort|exception")
_LATENCY_HINT = re.compile(r"latenc|duration|response_time|rtt|_time$|p9\d|p50|wait")
_THROUGHPUT_HINT = re.compile(r"throughput|rps|qps|tps|requests_per|per_s|rate$|success|ops")
_SATURATION_HINT = re.compile(
    r"cpu|mem|memory|heap|disk|queue|pool|conn|thread|backlog|inflight|in_flight|util|load|fd"
)


# --- multiple testing --------------------------------------------------------------------


def benjamini_hochberg(p_values: ArrayLike) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (same order as the input; NaN stays NaN).

    ``p_adj[i] < alpha`` controls the false discovery rate at ``alpha``; when every
    metric is unaffected that is also the chance of any false finding at all.
    """
    p = np.asarray(p_values, dtype=float).ravel()
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return out
    pv = p[ok]
    order = np.argsort(pv, kind="stable")
    ranked = pv[order] * m / np.arange(1, m + 1)
    # Step-up: each adjusted value is the smallest of those at its rank or above.
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    adj = np.empty(m)
    adj[order] = np.clip(ranked, 0.0, 1.0)
    out[ok] = adj
    return out


# --- a faster window comparison for long windows ---------------------------------------


def _mann_whitney_asymptotic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Mann-Whitney p-value by the normal approximation.

    The same statistic scipy's ``method="auto"`` uses once a window has more than eight
    points (tie-corrected variance, continuity correction), without its per-call
    overhead, which dominates a 50-metric analysis.
    """
    both = np.concatenate([a, b])
    if np.ptp(both) == 0:
        return 1.0
    n_a, n_b = a.size, b.size
    n = n_a + n_b
    # Average ranks from one sort: a value's rank is the middle of its tie block.
    _, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    mid_rank = np.cumsum(counts) - (counts - 1) / 2.0
    u_b = float(mid_rank[inverse[n_a:]].sum()) - n_b * (n_b + 1) / 2.0
    mu = n_a * n_b / 2.0
    counts = counts.astype(float)
    ties = float((counts**3 - counts).sum())
    var = n_a * n_b / 12.0 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return 1.0
    u = max(u_b, n_a * n_b - u_b)
    z = (u - mu - 0.5) / math.sqrt(var)
    return float(min(1.0, math.erfc(z / math.sqrt(2.0))))


def fast_compare(
    baseline: ArrayLike,
    window: ArrayLike,
    better: str,
    config: CompareConfig,
    baseline_summary: Summary | None = None,
) -> Comparison:
    """:func:`compare_windows` with a bounded cost, for the many-metric case.

    Short windows go to :func:`compare_windows` unchanged. Long ones use the asymptotic
    Mann-Whitney p-value (identical to scipy's for such sizes) and a Hodges-Lehmann
    estimate on at most :data:`FAST_PAIRS` pairs — same estimator, an interval that is
    honest but slightly wider. Outcome rules are exactly those of :mod:`compare`.
    """
    a, b = clean(baseline), clean(window)
    if a.size * b.size <= FAST_PAIRS or min(a.size, b.size) <= 8:
        return compare_windows(a, b, better, config)  # type: ignore[arg-type]
    sa, sb = baseline_summary or summarize(a), summarize(b)
    p_value = _mann_whitney_asymptotic(a, b)
    est = hodges_lehmann(a, b, confidence=config.confidence, max_pairs=FAST_PAIRS)
    tolerance = max(
        config.rel_tolerance * abs(sa.p50),
        config.noise_floor_sigmas * sa.mad * MAD_TO_SIGMA,
        config.abs_tolerance,
    )
    significant = p_value < config.alpha
    material = abs(est.shift) > tolerance
    scale = float(max(abs(a).max(), abs(b).max()))
    outcome: Outcome = "ok"
    if significant and material:
        worse = est.shift > 0 if better == "lower" else est.shift < 0
        outcome = "degraded" if worse else "improved"
    return Comparison(
        better=better,  # type: ignore[arg-type]
        baseline=sa,
        window=sb,
        outcome=outcome,
        p_value=p_value,
        shift=est,
        relative_effect=relative_effect(est.shift, sa.p50, scale),
        tolerance=float(tolerance),
        significant=significant,
        material=material,
        config=config,
    )


# --- metric roles --------------------------------------------------------------------------


def metric_role(metric: MetricData) -> str:
    """``errors``, ``latency``, ``throughput``, ``saturation`` or ``other``.

    An explicit ``role`` wins; otherwise name and unit hints decide, errors first
    (``http_5xx_latency`` is rare, ``error_rate`` that is "per second" is common).
    """
    if metric.role in ("errors", "latency", "throughput", "saturation"):
        return metric.role
    name = metric.name.lower()
    unit = metric.unit.lower().strip()
    if _ERROR_HINT.search(name):
        return "errors"
    if unit in ("ms", "s", "us", "µs", "sec", "seconds", "milliseconds") or _LATENCY_HINT.search(
        name
    ):
        return "latency"
    if _SATURATION_HINT.search(name):
        return "saturation"
    if _THROUGHPUT_HINT.search(name) or unit in ("rps", "req/s", "ops/s", "/s"):
        return "throughput"
    if unit in ("ratio", "fraction") and metric.better == "lower":
        return "errors"
    return "other"


def metric_ceiling(metric: MetricData) -> float | None:
    """The hard limit of a saturation-like metric, explicit or implied by its unit."""
    if metric.ceiling is not None:
        return float(metric.ceiling)
    unit = metric.unit.lower().strip()
    if unit in ("%", "percent", "pct"):
        return 100.0
    if unit in ("ratio", "fraction", "share"):
        return 1.0
    return None


# --- evidence ------------------------------------------------------------------------------


@dataclass
class MetricEvidence:
    """What every detector said about one metric, before it is turned into findings."""

    metric: MetricData
    role: str
    during: Comparison
    recovery: Comparison
    p_during_adj: float | None = None
    p_recovery_adj: float | None = None
    during_outcome: str = "insufficient"
    recovery_outcome: str = "insufficient"
    impact: dict[str, Any] | None = None
    recovery_time: dict[str, Any] | None = None
    forecast: dict[str, Any] | None = None
    area: float | None = None
    if_contribution: float | None = None
    votes: dict[str, float | None] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.metric.name

    @property
    def sign(self) -> float:
        """+1 when up is worse (latency), -1 when down is worse (throughput)."""
        return 1.0 if self.metric.better == "lower" else -1.0

    @property
    def baseline_cv(self) -> float | None:
        """Robust coefficient of variation of the baseline (MAD·1.4826 / |median|)."""
        b = self.during.baseline
        if b.n == 0 or not math.isfinite(b.p50) or abs(b.p50) < 1e-12:
            return None
        return b.mad * MAD_TO_SIGMA / abs(b.p50)

    @property
    def recovered(self) -> bool | None:
        """Did the metric come back? Window comparison, sharpened by the recovery detector."""
        if self.recovery_outcome == "insufficient":
            return None
        if self.recovery_outcome != "degraded":
            return True
        return bool(self.slow_but_recovered)

    @property
    def slow_but_recovered(self) -> bool:
        """The recovery window is worse overall only because the way back took long.

        True when the recovery detector found a stable return and the samples after it
        sit within tolerance of the baseline: then the two detectors do not disagree.
        """
        rt = self.recovery_time or {}
        if self.recovery_outcome != "degraded" or not rt.get("recovered"):
            return False
        if self.recovery.tolerance is None:
            return False
        ts, vs = self.metric.series("recovery")
        at = rt.get("recovered_at")
        after = vs[ts >= at] if at is not None else vs
        after = after[np.isfinite(after)]
        if after.size < self.during.config.min_points:
            return False
        residual = float(np.median(after)) - self.during.baseline.p50
        return self.sign * residual <= self.recovery.tolerance

    @property
    def detectors_disagree(self) -> bool:
        """The window test and the recovery detector contradict each other on recovery."""
        rt = self.recovery_time or {}
        if rt.get("recovered") is None or self.recovery_outcome == "insufficient":
            return False
        if self.recovery_outcome == "degraded":
            return bool(rt.get("recovered")) and not self.slow_but_recovered
        return self.during_outcome == "degraded" and rt.get("recovered") is False


def _outcome(c: Comparison, p_adj: float | None) -> str:
    """The comparison's outcome, re-decided with the BH-adjusted p-value."""
    if c.outcome == "insufficient" or c.shift is None:
        return "insufficient"
    if p_adj is None or p_adj >= c.config.alpha or not c.material:
        return "ok"
    worse = c.shift.shift > 0 if c.better == "lower" else c.shift.shift < 0
    return "degraded" if worse else "improved"


def _excess_area(ev: MetricEvidence, interval_s: float) -> float:
    """Area (unit x s) of the during+recovery excursion beyond tolerance, worse side only."""
    tol = ev.during.tolerance or 0.0
    base = ev.during.baseline.p50
    vs = np.concatenate([ev.metric.series("during")[1], ev.metric.series("recovery")[1]])
    vs = vs[np.isfinite(vs)]
    if vs.size == 0 or not math.isfinite(base):
        return 0.0
    excess = np.clip(ev.sign * (vs - base) - tol, 0.0, None)
    return float(excess.sum() * interval_s)


def _aligned(metrics: list[MetricData], phase: str, names: list[str]) -> np.ndarray:
    """A samples x metrics matrix, truncated to the shortest series.

    Collectors sample every metric on the same tick, so aligning by position is exact
    in the normal case and a fair approximation when a scrape was missed.
    """
    by = {m.name: m for m in metrics}
    cols: list[np.ndarray] = []
    for name in names:
        vs = by[name].series(phase)[1]
        cols.append(vs[np.isfinite(vs)])
    k = min(c.size for c in cols)
    return np.column_stack([c[:k] for c in cols])


def _forecast_vote(fc: Mapping[str, Any] | None, ev: MetricEvidence) -> float | None:
    if not fc or "error" in fc or fc.get("insufficient"):
        return None
    worse = "above" if ev.metric.better == "lower" else "below"
    segs = [s for s in fc.get("segments") or [] if s.get("direction") == worse]
    return 1.0 if fc.get("anomalous") and segs else 0.0


def gather_evidence(
    run: RunData, config: CompareConfig | None = None
) -> tuple[dict[str, MetricEvidence], dict[str, Any] | None]:
    """Run every detector on every metric; returns per-metric evidence and the joint result."""
    cfg = config or CompareConfig()
    out: dict[str, MetricEvidence] = {}
    for metric in run.metrics:
        base = clean(metric.series("baseline")[1])
        during = fast_compare(base, metric.series("during")[1], metric.better, cfg)
        out[metric.name] = MetricEvidence(
            metric=metric,
            role=metric_role(metric),
            during=during,
            recovery=fast_compare(
                base, metric.series("recovery")[1], metric.better, cfg, during.baseline
            ),
        )
    evs = list(out.values())

    # Benjamini-Hochberg, one family per question (during, recovery).
    for attr, adj_attr, out_attr in (
        ("during", "p_during_adj", "during_outcome"),
        ("recovery", "p_recovery_adj", "recovery_outcome"),
    ):
        raw = [getattr(e, attr).p_value for e in evs]
        adj = benjamini_hochberg([np.nan if p is None else p for p in raw])
        for e, p in zip(evs, adj, strict=True):
            p_adj = None if not math.isfinite(p) else float(p)
            setattr(e, adj_attr, p_adj)
            setattr(e, out_attr, _outcome(getattr(e, attr), p_adj))

    for e in evs:
        if e.during_outcome == "insufficient":
            continue
        base = e.metric.series("baseline")[1]
        base = base[np.isfinite(base)]
        ts, vs = _finite(*e.metric.series("during"))
        e.impact = detectors.impact(ts, vs, base, run.injected_at, e.metric.better)
        if e.during_outcome == "degraded" or e.recovery_outcome == "degraded":
            rts, rvs = _finite(*e.metric.series("recovery"))
            e.recovery_time = detectors.recovery(rts, rvs, base, run.reverted_at, e.metric.better)
        e.area = _excess_area(e, run.interval_s)

    _run_forecasts(run, evs, cfg)
    joint = _run_multivariate(run, evs, cfg)
    for e in evs:
        e.votes = _votes(e, joint, len(evs))
    return out, joint


def _finite(ts: np.ndarray, vs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(ts) & np.isfinite(vs)
    return ts[keep], vs[keep]


def _run_forecasts(run: RunData, evs: list[MetricEvidence], cfg: CompareConfig) -> None:
    """Forecast only the metrics worth it, most suspicious first, at most MAX_FORECASTS."""
    if not detectors.DETECTORS["forecast"]:
        return
    candidates = [
        e
        for e in evs
        if e.during_outcome != "insufficient"
        and (
            e.during_outcome in ("degraded", "improved")
            or (
                e.during.p_value is not None
                and e.during.p_value < FORECAST_GATE_P
                and (e.impact or {}).get("seconds") is not None
            )
        )
    ]
    candidates.sort(key=lambda e: e.during.p_value if e.during.p_value is not None else 1.0)
    for e in candidates[:MAX_FORECASTS]:
        bts, bvs = _finite(*e.metric.series("baseline"))
        dts, dvs = _finite(*e.metric.series("during"))
        rts, rvs = _finite(*e.metric.series("recovery"))
        e.forecast = detectors.forecast(
            bts,
            bvs,
            np.concatenate([dts, rts]),
            np.concatenate([dvs, rvs]),
            alpha=cfg.alpha,
            interval_s=run.interval_s,
        )
        if e.forecast and "error" not in e.forecast:
            worse = "above" if e.metric.better == "lower" else "below"
            areas = [
                abs(float(s.get("area") or 0.0))
                for s in e.forecast.get("segments") or []
                if s.get("direction") == worse
            ]
            if areas:
                e.forecast["worse_area"] = float(sum(areas))


def _rows(matrix: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` evenly spaced rows, in time order (a deterministic subsample)."""
    if matrix.shape[0] <= limit:
        return matrix
    return matrix[np.round(np.linspace(0, matrix.shape[0] - 1, limit)).astype(int)]


def _run_multivariate(
    run: RunData, evs: list[MetricEvidence], cfg: CompareConfig
) -> dict[str, Any] | None:
    """The isolation forest on the most suspicious metrics and a row subsample.

    Its cost grows with rows x metrics (and contributions need a pass per metric), so
    it sees at most :data:`MV_MAX_METRICS` metrics — smallest during p-values first —
    and :data:`MV_MAX_ROWS` rows per phase.
    """
    usable = [e for e in evs if e.during_outcome != "insufficient"]
    usable.sort(key=lambda e: e.during.p_value if e.during.p_value is not None else 1.0)
    names = [e.name for e in usable[:MV_MAX_METRICS]]
    if len(names) < 2 or not detectors.DETECTORS["multivariate"]:
        return None
    joint = detectors.multivariate(
        _rows(_aligned(run.metrics, "baseline", names), MV_MAX_ROWS),
        _rows(_aligned(run.metrics, "during", names), MV_MAX_ROWS),
        names,
    )
    if joint is not None:
        joint["metrics"] = names
    if joint and "error" not in joint:
        contributions = joint.get("contributions") or {}
        for e in evs:
            if e.name in contributions:
                e.if_contribution = contributions[e.name]
    return joint


def _votes(e: MetricEvidence, joint: Mapping[str, Any] | None, n_metrics: int) -> dict:
    """Each detector's "something happened on this metric" in 0..1 (None = did not run)."""
    votes: dict[str, float | None] = {"rank": None, "cusum": None, "forecast": None, "if": None}
    if e.during_outcome != "insufficient":
        p = e.p_during_adj if e.p_during_adj is not None else 1.0
        votes["rank"] = (1.0 - p) if e.during_outcome in ("degraded", "improved") else 0.0
    if e.impact and "error" not in e.impact and e.impact.get("source") != "none":
        votes["cusum"] = 1.0 if e.impact.get("seconds") is not None else 0.0
    votes["forecast"] = _forecast_vote(e.forecast, e)
    if joint and "error" not in joint and not joint.get("insufficient"):
        share = e.if_contribution
        seen = len(joint.get("metrics") or []) or n_metrics
        above_average = share is not None and share >= 1.0 / max(1, seen)
        votes["if"] = 1.0 if joint.get("anomalous") and above_average else 0.0
    return votes


# --- severity and confidence -------------------------------------------------------------


def severity_for_effect(relative_effect: float | None) -> str:
    """Severity of a change from its size relative to the baseline median."""
    if relative_effect is None or not math.isfinite(relative_effect):
        return "medium"
    size = abs(relative_effect)
    if size >= 1.0:
        return "critical"
    if size >= 0.5:
        return "high"
    if size >= 0.25:
        return "medium"
    return "low"


def _bump(severity: str, steps: int = 1) -> str:
    return SEVERITIES[min(len(SEVERITIES) - 1, SEVERITIES.index(severity) + steps)]


def _at_least(severity: str, floor: str) -> str:
    return max(severity, floor, key=SEVERITIES.index)


def sample_factor(n: int) -> float:
    """Shrinks confidence for small samples: 5 points → 0.5, 30 → 0.86, 100 → 0.95."""
    return n / (n + 5.0) if n > 0 else 0.0


def _others(votes: Mapping[str, float | None]) -> list[float]:
    return [v for k, v in votes.items() if k != "rank" and v is not None]


def change_confidence(e: MetricEvidence, c: Comparison, p_adj: float | None) -> float:
    """Strength of the rank test, tempered by how many other detectors agree.

    70 % from the (BH-adjusted) rank test, 30 % from the share of the other detectors
    that saw something; with no other detector available the rank test stands alone.
    """
    p = 1.0 if p_adj is None else p_adj
    rank = (1.0 - p) * sample_factor(c.n)
    others = _others(e.votes)
    if not others:
        return rank
    return rank * (0.7 + 0.3 * float(np.mean(others)))


def null_confidence(e: MetricEvidence, c: Comparison) -> float:
    """ "Nothing happened" is believable when the CI sits inside tolerance and nobody objects."""
    base = sample_factor(c.n) * (1.0 if c.within_tolerance else 0.5)
    others = _others(e.votes)
    if not others:
        return base
    return base * (1.0 - 0.3 * float(np.mean(others)))


def rule_confidence(rule: Mapping[str, Any]) -> float:
    """Sample size x distance from the threshold (a quarter past/below it counts as clear)."""
    distance = min(1.0, abs(rule.get("margin") or 0.0) / 0.25)
    return sample_factor(int(rule.get("n") or 0)) * (0.6 + 0.4 * distance)


# --- findings ----------------------------------------------------------------------------


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:.4g}{' ' + unit if unit else ''}"


def _pct(rel: float | None) -> str:
    return "n/a" if rel is None else f"{rel * 100:+.0f}%"


def _phase_stats(e: MetricEvidence) -> dict[str, Any]:
    """Per-phase statistics; baseline/during/recovery reuse the comparisons' summaries."""
    out = {}
    for phase, s in (
        ("baseline", e.during.baseline),
        ("during", e.during.window),
        ("recovery", e.recovery.window),
    ):
        out[phase] = {"n": s.n, "median": s.p50, "p95": s.p95, "p99": s.p99, "mad": s.mad}
    return out


def _evidence(e: MetricEvidence, phase: str) -> dict[str, Any]:
    """Every number behind a finding; v0 keys kept so stored reports stay readable."""
    c = e.during if phase == "during" else e.recovery
    p_adj = e.p_during_adj if phase == "during" else e.p_recovery_adj
    shift = c.shift
    fc = e.forecast or {}
    return {
        "phase": phase,
        "unit": e.metric.unit,
        "better": e.metric.better,
        "role": e.role,
        "component": e.metric.component,
        "targeted": not e.metric.collateral,
        "baseline_median": c.baseline.p50,
        "window_median": c.window.p50,
        "baseline_p95": c.baseline.p95,
        "window_p95": c.window.p95,
        "baseline_p99": c.baseline.p99,
        "window_p99": c.window.p99,
        "phases": _phase_stats(e),
        "p_value": c.p_value,
        "p_adjusted": p_adj,
        "shift": None if shift is None else shift.shift,
        "shift_ci": None if shift is None else [shift.low, shift.high],
        "ci_level": c.config.confidence,
        "relative_effect": c.relative_effect,
        "tolerance": c.tolerance,
        "n_baseline": c.baseline.n,
        "n_window": c.window.n,
        "baseline_cv": e.baseline_cv,
        "time_to_impact_s": (e.impact or {}).get("seconds"),
        "time_to_recover_s": (e.recovery_time or {}).get("seconds"),
        "recovered_at": (e.recovery_time or {}).get("recovered_at"),
        "degradation_area": e.area,
        "forecast_model": fc.get("model"),
        "forecast_area": fc.get("worse_area"),
        "forecast_segments": len(fc.get("segments") or []),
        "if_contribution": e.if_contribution,
        "detectors": dict(e.votes),
    }


def _change_text(c: Comparison, phase: str, unit: str, p_adj: float | None) -> str:
    shift = c.shift
    assert shift is not None
    adj = f" (BH-adjusted {p_adj:.2g})" if p_adj is not None and c.p_value != p_adj else ""
    return (
        f"Median moved from {_fmt(c.baseline.p50, unit)} (baseline) to "
        f"{_fmt(c.window.p50, unit)} ({phase}); shift {_fmt(shift.shift, unit)} "
        f"[{c.config.confidence:.0%} CI {_fmt(shift.low)} … {_fmt(shift.high)}], "
        f"{_pct(c.relative_effect)} of baseline, p={c.p_value:.2g}{adj}, "
        f"n={c.baseline.n}/{c.window.n}."
    )


def _insufficient(metric: MetricData, c: Comparison, phase: str, min_points: int) -> Finding:
    return Finding(
        metric=metric.name,
        kind="insufficient_data",
        severity="info",
        confidence=1.0,
        title=f"{metric.name}: too little data to compare {phase} with baseline",
        summary=(
            f"Baseline has {c.baseline.n} and {phase} has {c.window.n} usable samples; "
            f"at least {min_points} each are needed."
        ),
        evidence={"phase": phase, "n_baseline": c.baseline.n, "n_window": c.window.n},
    )


def _error_severity(e: MetricEvidence) -> str:
    """Errors from ~0 have no meaningful ratio: judge by the level reached instead."""
    rel = e.during.relative_effect
    if rel is not None:
        return _at_least(severity_for_effect(rel), "medium")
    level = e.during.window.p50
    ceiling = metric_ceiling(e.metric) or (100.0 if e.metric.unit.strip() == "%" else 1.0)
    share = level / ceiling if ceiling else 0.0
    if share >= 0.2:
        return "critical"
    if share >= 0.05:
        return "high"
    return "medium"


def _saturated(e: MetricEvidence) -> tuple[bool, float | None]:
    """At (or near) the ceiling during the fault, having been below it in the baseline."""
    ceiling = metric_ceiling(e.metric)
    if e.role != "saturation" or not ceiling:
        return False, None
    level = e.during.window.p95 / ceiling
    return (
        bool(level >= SATURATION_LEVEL and e.during.baseline.p95 / ceiling < SATURATION_LEVEL),
        level,
    )


def _during_finding(e: MetricEvidence, rule_failed: bool) -> Finding:
    m, c, unit = e.metric, e.during, e.metric.unit
    ev = _evidence(e, "during")
    text = _change_text(c, "during", unit, e.p_during_adj) if c.shift is not None else ""
    if e.during_outcome == "degraded":
        conf = change_confidence(e, c, e.p_during_adj)
        sev = severity_for_effect(c.relative_effect)
        kind, title = "degradation", f"{m.name} degraded during the fault"
        saturated, level = _saturated(e)
        if m.collateral:
            kind = "collateral_impact"
            where = f" ({m.component})" if m.component else ""
            title = f"{m.name}{where} was hit although the fault did not target it"
            sev = _bump(sev)
        elif e.role == "errors":
            kind, title = "error_spike", f"{m.name}: errors rose during the fault"
            sev = _error_severity(e)
        elif saturated:
            kind = "saturation"
            title = f"{m.name} ran at {level:.0%} of its ceiling during the fault"
            sev = "critical" if (level or 0) >= 0.98 else _at_least(sev, "high")
            ev["ceiling"] = metric_ceiling(m)
            ev["ceiling_share"] = level
        title = f"{title} ({_pct(c.relative_effect)})"
        return Finding(m.name, kind, _bump(sev) if rule_failed else sev, conf, title, text, ev)
    if e.during_outcome == "improved":
        return Finding(
            m.name,
            "unexpected_improvement",
            "info" if not m.collateral else "low",
            change_confidence(e, c, e.p_during_adj),
            f"{m.name} improved during the fault ({_pct(c.relative_effect)})",
            text + " A fault should not make things better: check for shed load, cached "
            "responses or a broken probe.",
            ev,
        )
    if c.material:
        return _unconfirmed_change(e, c, ev, text)
    return Finding(
        m.name,
        "no_impact",
        "info",
        null_confidence(e, c),
        f"{m.name}: no material change during the fault",
        (
            f"Median {_fmt(c.baseline.p50, unit)} → {_fmt(c.window.p50, unit)}, "
            f"p={c.p_value:.2g}; changes within ±{_fmt(c.tolerance, unit)} "
            "are treated as noise."
        ),
        ev,
    )


def _unconfirmed_change(e: MetricEvidence, c: Comparison, ev: dict[str, Any], text: str) -> Finding:
    """A shift beyond tolerance that the rank test cannot tell from noise.

    Calling it "no impact" would claim evidence of absence where there is only absence
    of evidence: the effect may be real and the run too short to show it. It is kept
    apart so the reader, the suggestions and the exports treat it as "unknown".
    """
    m = e.metric
    shift = c.shift
    assert shift is not None
    worse = shift.shift > 0 if c.better == "lower" else shift.shift < 0
    direction = "worse" if worse else "better"
    ev["direction"] = direction
    p = 1.0 if e.p_during_adj is None else e.p_during_adj
    return Finding(
        m.name,
        "unconfirmed_change",
        "low" if worse and not m.collateral else "info",
        float(min(1.0, max(0.0, 1.0 - p)) * sample_factor(c.n) * 0.5),
        f"{m.name} moved {_pct(c.relative_effect)} ({direction}) during the fault, "
        "but not significantly",
        text + f" The shift is beyond the ±{_fmt(c.tolerance, m.unit)} tolerance, yet the "
        f"rank test cannot tell it from noise at alpha {c.config.alpha:g}: neither an "
        "impact nor its absence is shown. Longer phases would settle it.",
        ev,
    )


def _is_slow(seconds: float | None, run: RunData) -> tuple[bool, float | None]:
    """Slow = more than N intervals or more than X % of the fault's duration."""
    if seconds is None:
        return False, None
    fraction = None
    if run.fault_duration:
        fraction = seconds / run.fault_duration
    slow = seconds > SLOW_RECOVERY_INTERVALS * run.interval_s or (
        fraction is not None and fraction > SLOW_RECOVERY_FRACTION
    )
    return slow, fraction


def _recovery_finding(e: MetricEvidence, run: RunData) -> Finding | None:
    """no_recovery / slow_recovery / recovered, from the window test and the TTR detector."""
    m, c, unit = e.metric, e.recovery, e.metric.unit
    if e.recovery_outcome == "insufficient":
        return None
    ev = _evidence(e, "recovery")
    seconds = (e.recovery_time or {}).get("seconds")
    slow, fraction = _is_slow(seconds, run)
    ev["fault_duration_s"] = run.fault_duration
    ev["recovery_fraction_of_fault"] = fraction
    ev["detectors_disagree"] = e.detectors_disagree
    if e.recovery_outcome == "degraded" and not e.slow_but_recovered:
        late = "" if e.during_outcome == "degraded" else " (it degraded only after the revert)"
        conf = change_confidence(e, c, e.p_recovery_adj)
        if e.detectors_disagree:
            conf *= 0.5
        text = _change_text(c, "recovery", unit, e.p_recovery_adj)
        if e.detectors_disagree:
            text += (
                f" The recovery detector saw a return at +{_fmt(seconds, 's')} that did not "
                "hold up against the baseline: treat with care."
            )
        return Finding(
            m.name,
            "no_recovery",
            _at_least(severity_for_effect(c.relative_effect), "medium"),
            conf,
            f"{m.name} did not recover after the revert{late}",
            text,
            ev,
        )
    if e.during_outcome != "degraded" and e.recovery_outcome != "degraded":
        return None
    conf = null_confidence(e, c) if e.recovery_outcome == "ok" else sample_factor(c.n) * 0.8
    if e.detectors_disagree:
        conf *= 0.5
    if slow or e.slow_but_recovered:
        took = _fmt(seconds, "s")
        share = f" ({fraction:.0%} of the fault's duration)" if fraction is not None else ""
        return Finding(
            m.name,
            "slow_recovery",
            "medium" if (fraction or 0) > 1.0 or e.slow_but_recovered else "low",
            conf,
            f"{m.name} recovered, but only {took} after the revert",
            (
                f"Back within the baseline's noise {took} after the revert{share}; "
                f"slow means more than {SLOW_RECOVERY_INTERVALS} sampling intervals or "
                f"{SLOW_RECOVERY_FRACTION:.0%} of the fault's duration."
            ),
            ev,
        )
    took = f" {_fmt(seconds, 's')} after the revert" if seconds is not None else ""
    disagree = (
        " The recovery detector did not see a stable return: treat with care."
        if e.detectors_disagree
        else ""
    )
    return Finding(
        m.name,
        "recovered",
        "info",
        conf,
        f"{m.name} recovered after the revert",
        (
            f"Recovery median {_fmt(c.window.p50, unit)} vs baseline "
            f"{_fmt(c.baseline.p50, unit)} (p={c.p_value:.2g}): back within tolerance"
            f"{took}.{disagree}"
        ),
        ev,
    )


def _rule_finding(rule: Mapping[str, Any], unit: str) -> Finding:
    margin = rule.get("margin") or 0.0
    if margin >= 1.0:
        sev = "critical"
    elif margin >= 0.25:
        sev = "high"
    else:
        sev = "medium"
    return Finding(
        rule["metric"],
        "hypothesis_violated",
        sev,
        rule_confidence(rule),
        f"Hypothesis violated: {rule.get('name') or rule['metric']}",
        rule["explanation"],
        {
            "unit": unit,
            "aggregate": rule["aggregate"],
            "phase": rule["phase"],
            "observed": rule["observed"],
            "effective_threshold": rule["effective_threshold"],
            "operator": rule["operator"],
            "margin": margin,
            "n": rule["n"],
        },
    )


def build_findings(
    run: RunData,
    evidence: Mapping[str, MetricEvidence],
    rules: list[dict[str, Any]],
    min_points: int,
) -> list[Finding]:
    """All findings of a run, most severe and most confident first."""
    failed = [r for r in rules if r["passed"] is False and r.get("enough_data", True)]
    failed_metrics = {r["metric"] for r in failed}
    findings: list[Finding] = []
    for e in evidence.values():
        if e.during_outcome == "insufficient":
            findings.append(_insufficient(e.metric, e.during, "during", min_points))
        else:
            findings.append(_during_finding(e, e.name in failed_metrics))
        if e.recovery_outcome == "insufficient":
            if e.during_outcome == "degraded":
                findings.append(_insufficient(e.metric, e.recovery, "recovery", min_points))
        else:
            rec = _recovery_finding(e, run)
            if rec is not None:
                findings.append(rec)
    units = {m.name: m.unit for m in run.metrics}
    findings.extend(_rule_finding(r, units.get(r["metric"], "")) for r in failed)
    findings.sort(key=lambda f: (-SEVERITIES.index(f.severity), -f.confidence, f.metric, f.kind))
    return findings
