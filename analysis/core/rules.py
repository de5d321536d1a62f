"""Window aggregates and threshold rules (hypotheses and stop conditions).

A rule reads ``aggregate(metric over phase) operator threshold``, e.g. "p95 of
api_latency during the fault <= 250". It is a plain mapping shaped like the spec's
``RuleSpec`` so that this module stays free of Django and pydantic::

    {"name": "", "metric": "api_latency", "phase": "during", "aggregate": "p95",
     "operator": "<=", "threshold": 250, "relative": "absolute", "window": None}

With ``relative: "baseline"`` the threshold is a factor: the effective threshold is
``threshold x aggregate(baseline)``, so ``p95 <= 1.5`` means "at most 1.5 x baseline p95".

``window`` (seconds) has one meaning in both uses: the rule must hold over *every*
trailing window of that length. Live (:func:`evaluate_window_rule`) that is the window
ending now; after the run (:func:`evaluate_rule`) it is every full window inside the
phase, and the worst one is reported. Without a window the whole phase is aggregated.

A rule's ``passed`` is ``None`` (unknown), never ``False``, when there is no data to judge:
a silent metric must not be reported as a violation, nor as a pass.
"""

from __future__ import annotations

import operator as op
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "AGGREGATES",
    "OPERATORS",
    "aggregate",
    "evaluate_rule",
    "evaluate_window_rule",
]

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": op.lt,
    "<=": op.le,
    ">": op.gt,
    ">=": op.ge,
}


def _rate(ts: np.ndarray, vs: np.ndarray) -> float | None:
    """Per-second change from first to last sample: how fast a counter-like value moves."""
    if vs.size < 2:
        return None
    elapsed = float(ts[-1] - ts[0])
    if elapsed <= 0:
        return None
    return float(vs[-1] - vs[0]) / elapsed


def _pct(q: float) -> Callable[[np.ndarray, np.ndarray], float]:
    return lambda _ts, vs: float(np.percentile(vs, q))


AGGREGATES: dict[str, Callable[[np.ndarray, np.ndarray], float | None]] = {
    "p50": _pct(50),
    "p95": _pct(95),
    "p99": _pct(99),
    "mean": lambda _ts, vs: float(np.mean(vs)),
    "max": lambda _ts, vs: float(np.max(vs)),
    "min": lambda _ts, vs: float(np.min(vs)),
    "rate": _rate,
}


def _clean_series(
    timestamps: ArrayLike | None, values: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray]:
    """Finite samples only, sorted by time; without timestamps the index stands in."""
    vs = np.asarray([] if values is None else values, dtype=float).ravel()
    if timestamps is None:
        ts = np.arange(vs.size, dtype=float)
    else:
        ts = np.asarray(timestamps, dtype=float).ravel()
        if ts.size != vs.size:
            raise ValueError(f"{ts.size} timestamps for {vs.size} values")
    keep = np.isfinite(vs) & np.isfinite(ts)
    ts, vs = ts[keep], vs[keep]
    order = np.argsort(ts, kind="stable")
    return ts[order], vs[order]


def aggregate(
    name: str, values: ArrayLike | None, timestamps: ArrayLike | None = None
) -> float | None:
    """The named aggregate of the finite values, or ``None`` when it cannot be computed.

    ``rate`` needs timestamps (epoch seconds) and at least two distinct instants.
    """
    if name not in AGGREGATES:
        raise ValueError(f"unknown aggregate {name!r}; expected one of {', '.join(AGGREGATES)}")
    if name == "rate" and timestamps is None:
        return None
    ts, vs = _clean_series(timestamps, values)
    if vs.size == 0:
        return None
    return AGGREGATES[name](ts, vs)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _label(rule: Mapping[str, Any]) -> str:
    return str(rule.get("name") or f"{rule.get('aggregate', 'p95')}({rule.get('metric', '?')})")


def _effective_threshold(
    rule: Mapping[str, Any],
    baseline_timestamps: ArrayLike | None,
    baseline_values: ArrayLike | None,
) -> tuple[float | None, float | None]:
    """``(effective threshold, baseline aggregate)``; the threshold is None if unknowable."""
    threshold = float(rule["threshold"])
    if rule.get("relative", "absolute") != "baseline":
        return threshold, None
    base = aggregate(rule.get("aggregate", "p95"), baseline_values, baseline_timestamps)
    if base is None:
        return None, None
    return threshold * base, base


def _margin(observed: float, effective: float, operator: str) -> float:
    """Signed distance past the threshold relative to its size: > 0 violates, < 0 passes.

    Normalised so that confidence can grow with "how far over"; a zero threshold falls
    back to the absolute distance.
    """
    diff = observed - effective if operator in ("<", "<=") else effective - observed
    return diff / abs(effective) if effective != 0 else diff


def _windowed_values(
    agg: str, ts: np.ndarray, vs: np.ndarray, window_s: float, operator: str
) -> tuple[float | None, int]:
    """Worst aggregate over every full trailing window of ``window_s`` in the series."""
    if vs.size == 0:
        return None, 0
    if ts[-1] - ts[0] < window_s:
        return AGGREGATES[agg](ts, vs), int(vs.size)
    worst: float | None = None
    worst_n = 0
    upper_is_bad = operator in ("<", "<=")
    for end in range(vs.size):
        if ts[end] - ts[0] < window_s:
            continue
        mask = (ts > ts[end] - window_s) & (ts <= ts[end])
        value = AGGREGATES[agg](ts[mask], vs[mask])
        if value is None:
            continue
        if worst is None or (value > worst if upper_is_bad else value < worst):
            worst, worst_n = value, int(mask.sum())
    return worst, worst_n


def _result(
    rule: Mapping[str, Any],
    observed: float | None,
    n: int,
    effective: float | None,
    base: float | None,
    scope: str,
) -> dict[str, Any]:
    agg = rule.get("aggregate", "p95")
    operator = rule["operator"]
    if operator not in OPERATORS:
        raise ValueError(f"unknown operator {operator!r}; expected one of {', '.join(OPERATORS)}")
    relative = rule.get("relative", "absolute")
    threshold = float(rule["threshold"])
    label = _label(rule)
    passed: bool | None
    margin: float | None = None
    if observed is None:
        passed = None
        explanation = f"{label}: no data for {rule['metric']} over {scope}; cannot judge."
    elif effective is None:
        passed = None
        explanation = (
            f"{label}: observed {_fmt(observed)} but no baseline {agg} to scale "
            f"the threshold x{threshold:g}; cannot judge."
        )
    else:
        passed = bool(OPERATORS[operator](observed, effective))
        margin = _margin(observed, effective, operator)
        rel = f" (= {threshold:g} x baseline {_fmt(base)})" if relative == "baseline" else ""
        verdict = "passed" if passed else "VIOLATED"
        explanation = (
            f"{label}: {agg} over {scope} = {_fmt(observed)} (n={n}), "
            f"required {operator} {_fmt(effective)}{rel} — {verdict}."
        )
    return {
        "name": rule.get("name", ""),
        "metric": rule["metric"],
        "phase": rule.get("phase", "during"),
        "aggregate": agg,
        "operator": operator,
        "threshold": threshold,
        "relative": relative,
        "window": rule.get("window"),
        "observed": observed,
        "baseline": base,
        "effective_threshold": effective,
        "passed": passed,
        "margin": margin,
        "n": n,
        "explanation": explanation,
    }


def evaluate_rule(
    rule: Mapping[str, Any],
    timestamps: ArrayLike | None,
    values: ArrayLike | None,
    baseline_timestamps: ArrayLike | None = None,
    baseline_values: ArrayLike | None = None,
) -> dict[str, Any]:
    """Judge a rule after the run on the samples of its phase.

    Returns a JSON-ready dict: the rule's fields plus ``observed``, ``baseline`` (the
    baseline aggregate for relative rules), ``effective_threshold``, ``passed``
    (``True``/``False``/``None``), ``margin`` (relative distance past the threshold,
    positive = violated), ``n`` and a one-line ``explanation`` with the numbers.
    """
    agg = rule.get("aggregate", "p95")
    if agg not in AGGREGATES:
        raise ValueError(f"unknown aggregate {agg!r}")
    ts, vs = _clean_series(timestamps, values)
    window = rule.get("window")
    scope = rule.get("phase", "during")
    if window:
        observed, n = _windowed_values(agg, ts, vs, float(window), rule["operator"])
        scope = f"worst {float(window):g}s window of {scope}"
    else:
        observed = AGGREGATES[agg](ts, vs) if vs.size else None
        n = int(vs.size)
    effective, base = _effective_threshold(rule, baseline_timestamps, baseline_values)
    return _result(rule, observed, n, effective, base, scope)


def evaluate_window_rule(
    rule: Mapping[str, Any],
    timestamps: ArrayLike,
    values: ArrayLike,
    baseline_values: ArrayLike | None,
    now: float,
    window_s: float | None,
    *,
    baseline_timestamps: ArrayLike | None = None,
) -> dict[str, Any]:
    """Judge a rule live (stop conditions) on the samples in ``(now - window_s, now]``.

    ``window_s`` of ``None`` falls back to the rule's own ``window``, then to all samples
    up to ``now``. A relative ``rate`` rule needs ``baseline_timestamps`` as well.
    """
    ts, vs = _clean_series(timestamps, values)
    window = window_s if window_s is not None else rule.get("window")
    keep = ts <= now
    if window:
        keep &= ts > now - float(window)
    ts, vs = ts[keep], vs[keep]
    agg = rule.get("aggregate", "p95")
    if agg not in AGGREGATES:
        raise ValueError(f"unknown aggregate {agg!r}")
    observed = AGGREGATES[agg](ts, vs) if vs.size else None
    effective, base = _effective_threshold(rule, baseline_timestamps, baseline_values)
    scope = f"last {float(window):g}s" if window else "the run so far"
    return _result(rule, observed, int(vs.size), effective, base, scope)
