"""Turn one run's metric series into a verdict, findings and rule results (analysis v0).

Per metric the engine compares baseline vs during ("what did the fault do?") and baseline
vs recovery ("did it come back after the revert?") with :func:`compare_windows`, and
evaluates every hypothesis rule with :func:`evaluate_rule`.

Findings (one or more per metric)
    * ``degradation`` / ``improvement`` / ``no_impact`` — the during comparison.
    * ``no_recovery`` — recovery still degraded vs baseline; ``recovered`` — a degradation
      that is gone in the recovery window.
    * ``hypothesis_violated`` — a failed rule on this metric.
    * ``insufficient_data`` — a needed window has fewer than ``min_points`` samples.

    Severity grows with the relative effect (|shift| / |baseline median|): < 25 % low,
    < 50 % medium, < 100 % high, otherwise critical; an effect with no meaningful ratio
    (baseline median ~0) is medium. A degradation on a metric whose rule failed is bumped
    one level; ``no_recovery`` and ``hypothesis_violated`` are at least medium.
    Confidence is ``(1 - p) x n/(n+5)`` for changes (n = the smaller window), and for
    "nothing happened" findings ``n/(n+5)`` when the whole shift interval sits inside the
    tolerance, half that otherwise.

Verdict, first match wins
    1. A hypothesis rule failed on enough data → ``failed``. Confidence grows with the
       sample size and with how far past the threshold the worst rule is.
    2. A needed phase has too little data → ``inconclusive`` (confidence 0). Needed phases
       are those the rules read (plus baseline for relative rules); without rules,
       baseline and during of every metric, and recovery of a degraded metric.
    3. Rules exist and all passed → ``passed`` (confidence from the sample size and the
       headroom below the thresholds).
    4. No rules: a metric degraded and still degraded in recovery → ``failed``; otherwise
       ``passed``. Both with lower confidence (x 0.7 / x 0.6), as no hypothesis was
       stated and the engine is inferring what "broken" means.
    5. An aborted run (``aborted_reason``) never ``passed``: it becomes ``inconclusive``.

Nothing here imports Django; the caller loads series from the database into
:class:`RunData` and stores :meth:`AnalysisResult.to_dict`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

import numpy as np

from analysis.core.compare import Better, CompareConfig, Comparison, compare_windows
from analysis.core.rules import evaluate_rule
from analysis.core.stats import summarize

__all__ = [
    "PHASES",
    "SEVERITIES",
    "AnalysisConfig",
    "AnalysisResult",
    "Finding",
    "MetricData",
    "RunData",
    "analyse_run",
    "jsonable",
    "severity_for_effect",
]

PHASES = ("baseline", "during", "recovery")
SEVERITIES = ("info", "low", "medium", "high", "critical")
Verdict = Literal["passed", "failed", "inconclusive"]

_EMPTY = (np.empty(0), np.empty(0))


@dataclass
class MetricData:
    """One metric's samples split by phase: ``phase -> (timestamps epoch s, values)``."""

    name: str
    better: Better
    unit: str
    phases: dict[str, tuple[np.ndarray, np.ndarray]]

    def series(self, phase: str) -> tuple[np.ndarray, np.ndarray]:
        """The phase's ``(timestamps, values)``; empty arrays for a phase never collected."""
        ts, vs = self.phases.get(phase, _EMPTY)
        return np.asarray(ts, dtype=float), np.asarray(vs, dtype=float)


@dataclass
class RunData:
    """Everything the engine needs about a finished (or aborted) run.

    ``hypothesis`` holds rule mappings shaped like the spec's ``RuleSpec``;
    ``interval_s`` is the sampling interval, kept for models that need the cadence.
    """

    metrics: list[MetricData]
    hypothesis: list[dict]
    injected_at: float | None
    reverted_at: float | None
    interval_s: float
    aborted_reason: str = ""


@dataclass(frozen=True)
class AnalysisConfig:
    compare: CompareConfig = field(default_factory=CompareConfig)

    @property
    def min_points(self) -> int:
        return self.compare.min_points


@dataclass
class Finding:
    metric: str
    kind: str
    severity: str
    confidence: float
    title: str
    summary: str
    evidence: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "kind": self.kind,
            "severity": self.severity,
            "confidence": round(float(self.confidence), 4),
            "title": self.title,
            "summary": self.summary,
            "evidence": jsonable(self.evidence),
        }


@dataclass
class AnalysisResult:
    verdict: Verdict
    confidence: float
    reason: str
    metrics: dict[str, dict[str, Any]]
    rules: list[dict[str, Any]]
    findings: list[Finding]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (no numpy scalars, no NaN)."""
        return {
            "verdict": self.verdict,
            "confidence": round(float(self.confidence), 4),
            "reason": self.reason,
            "metrics": jsonable(self.metrics),
            "rules": jsonable(self.rules),
            "findings": [f.to_dict() for f in self.findings],
        }


def jsonable(obj: Any) -> Any:
    """Plain JSON types from numpy scalars/arrays, tuples and datetimes; NaN/inf -> ``None``.

    Shared with the report renderer so stored analyses and reports agree on the encoding.
    """
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [jsonable(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    return obj


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


def _sample_factor(n: int) -> float:
    """Shrinks confidence for small samples: 5 points → 0.5, 30 → 0.86, 100 → 0.95."""
    return n / (n + 5.0) if n > 0 else 0.0


def _change_confidence(c: Comparison) -> float:
    p = 1.0 if c.p_value is None else c.p_value
    return (1.0 - p) * _sample_factor(c.n)


def _null_confidence(c: Comparison) -> float:
    return _sample_factor(c.n) * (1.0 if c.within_tolerance else 0.5)


def _rule_confidence(rule: Mapping[str, Any]) -> float:
    """Sample size x distance from the threshold (a quarter past/below it counts as clear)."""
    distance = min(1.0, abs(rule.get("margin") or 0.0) / 0.25)
    return _sample_factor(int(rule.get("n") or 0)) * (0.6 + 0.4 * distance)


# --- findings ----------------------------------------------------------------------------


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:.4g}{' ' + unit if unit else ''}"


def _pct(rel: float | None) -> str:
    return "n/a" if rel is None else f"{rel * 100:+.0f}%"


def _evidence(c: Comparison, phase: str, unit: str) -> dict[str, Any]:
    shift = c.shift
    return {
        "phase": phase,
        "unit": unit,
        "baseline_median": c.baseline.p50,
        "window_median": c.window.p50,
        "baseline_p95": c.baseline.p95,
        "window_p95": c.window.p95,
        "p_value": c.p_value,
        "shift": None if shift is None else shift.shift,
        "shift_ci": None if shift is None else [shift.low, shift.high],
        "ci_level": c.config.confidence,
        "relative_effect": c.relative_effect,
        "tolerance": c.tolerance,
        "n_baseline": c.baseline.n,
        "n_window": c.window.n,
    }


def _change_text(c: Comparison, phase: str, unit: str) -> str:
    shift = c.shift
    assert shift is not None
    return (
        f"Median moved from {_fmt(c.baseline.p50, unit)} (baseline) to "
        f"{_fmt(c.window.p50, unit)} ({phase}); shift {_fmt(shift.shift, unit)} "
        f"[{c.config.confidence:.0%} CI {_fmt(shift.low)} … {_fmt(shift.high)}], "
        f"{_pct(c.relative_effect)} of baseline, p={c.p_value:.2g}, "
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


def _during_finding(metric: MetricData, c: Comparison, rule_failed: bool) -> Finding:
    ev = _evidence(c, "during", metric.unit)
    if c.outcome == "degraded":
        sev = severity_for_effect(c.relative_effect)
        return Finding(
            metric.name,
            "degradation",
            _bump(sev) if rule_failed else sev,
            _change_confidence(c),
            f"{metric.name} degraded during the fault ({_pct(c.relative_effect)})",
            _change_text(c, "during", metric.unit),
            ev,
        )
    if c.outcome == "improved":
        return Finding(
            metric.name,
            "improvement",
            "info",
            _change_confidence(c),
            f"{metric.name} improved during the fault ({_pct(c.relative_effect)})",
            _change_text(c, "during", metric.unit),
            ev,
        )
    return Finding(
        metric.name,
        "no_impact",
        "info",
        _null_confidence(c),
        f"{metric.name}: no material change during the fault",
        (
            f"Median {_fmt(c.baseline.p50, metric.unit)} → {_fmt(c.window.p50, metric.unit)}, "
            f"p={c.p_value:.2g}; changes within ±{_fmt(c.tolerance, metric.unit)} "
            "are treated as noise."
        ),
        ev,
    )


def _recovery_finding(metric: MetricData, during: Comparison, c: Comparison) -> Finding | None:
    """``no_recovery`` when recovery is still worse, ``recovered`` after a degradation."""
    ev = _evidence(c, "recovery", metric.unit)
    if c.outcome == "degraded":
        late = "" if during.outcome == "degraded" else " (it degraded only after the revert)"
        return Finding(
            metric.name,
            "no_recovery",
            _at_least(severity_for_effect(c.relative_effect), "medium"),
            _change_confidence(c),
            f"{metric.name} did not recover after the revert{late}",
            _change_text(c, "recovery", metric.unit),
            ev,
        )
    if during.outcome == "degraded":
        return Finding(
            metric.name,
            "recovered",
            "info",
            _null_confidence(c) if c.outcome == "ok" else _change_confidence(c),
            f"{metric.name} recovered after the revert",
            (
                f"Recovery median {_fmt(c.window.p50, metric.unit)} vs baseline "
                f"{_fmt(c.baseline.p50, metric.unit)} (p={c.p_value:.2g}): back within "
                "tolerance."
            ),
            ev,
        )
    return None


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
        _rule_confidence(rule),
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


# --- rules -------------------------------------------------------------------------------


def _evaluate_rules(run: RunData, min_points: int) -> list[dict[str, Any]]:
    by_name = {m.name: m for m in run.metrics}
    results = []
    for rule in run.hypothesis:
        metric = by_name.get(rule["metric"])
        phase = rule.get("phase", "during")
        if metric is None:
            res = evaluate_rule(rule, None, None)
            res["explanation"] = f"Metric {rule['metric']!r} was not collected; cannot judge."
            res["n_baseline"] = 0
            res["enough_data"] = False
            results.append(res)
            continue
        ts, vs = metric.series(phase)
        bts, bvs = metric.series("baseline")
        res = evaluate_rule(rule, ts, vs, bts, bvs)
        needs_baseline = rule.get("relative", "absolute") == "baseline"
        base_n = int(np.isfinite(bvs).sum())
        res["n_baseline"] = base_n
        res["enough_data"] = res["n"] >= min_points and (not needs_baseline or base_n >= min_points)
        results.append(res)
    return results


# --- verdict -----------------------------------------------------------------------------


def _too_few(rule: Mapping[str, Any], min_points: int) -> str:
    if rule["n"] < min_points:
        return f"{rule['metric']} has {rule['n']} {rule['phase']} samples (need {min_points})"
    return f"{rule['metric']} has {rule['n_baseline']} baseline samples (need {min_points})"


def _with_abort(
    run: RunData, verdict: Verdict, confidence: float, reason: str
) -> tuple[Verdict, float, str]:
    if run.aborted_reason and verdict == "passed":
        return (
            "inconclusive",
            0.0,
            f"The run was aborted ({run.aborted_reason}), so the hypothesis could not be "
            "confirmed.",
        )
    return verdict, confidence, reason


def _verdict(
    run: RunData,
    rules: list[dict[str, Any]],
    comparisons: dict[str, tuple[Comparison, Comparison]],
    min_points: int,
) -> tuple[Verdict, float, str]:
    failed = [r for r in rules if r["passed"] is False and r["enough_data"]]
    if failed:
        worst = max(failed, key=lambda r: r["margin"] or 0.0)
        more = f" (and {len(failed) - 1} more rule(s))" if len(failed) > 1 else ""
        return "failed", _rule_confidence(worst), f"{worst['explanation']}{more}".strip()

    if not run.metrics:
        return "inconclusive", 0.0, "No metrics were collected for this run."

    missing: list[str] = []
    if rules:
        missing = [
            r["explanation"].rstrip(".") if r["passed"] is None else _too_few(r, min_points)
            for r in rules
            if not r["enough_data"]
        ]
    else:
        for name, (during, recovery) in comparisons.items():
            if during.outcome == "insufficient":
                missing.append(
                    f"{name} has {during.baseline.n} baseline and {during.window.n} during "
                    f"samples (need {min_points})"
                )
            elif during.outcome == "degraded" and recovery.outcome == "insufficient":
                missing.append(f"{name} degraded but has only {recovery.window.n} recovery samples")
    if missing:
        return "inconclusive", 0.0, f"Too little data to judge: {'; '.join(missing)}."

    if rules:
        conf = min(_rule_confidence(r) for r in rules)
        return _with_abort(run, "passed", conf, f"All {len(rules)} hypothesis rule(s) held.")

    stuck = [
        (name, rec)
        for name, (during, rec) in comparisons.items()
        if during.outcome == "degraded" and rec.outcome == "degraded"
    ]
    if stuck:
        names = ", ".join(name for name, _ in stuck)
        conf = 0.7 * max(_change_confidence(rec) for _, rec in stuck)
        return (
            "failed",
            conf,
            f"No hypothesis was given and {names} degraded without recovering after the revert.",
        )
    conf = 0.6 * min(_sample_factor(d.n) for d, _ in comparisons.values())
    degraded = [n for n, (d, _) in comparisons.items() if d.outcome == "degraded"]
    detail = (
        f"{', '.join(degraded)} degraded during the fault but recovered"
        if degraded
        else "no metric degraded without recovering"
    )
    return _with_abort(run, "passed", conf, f"No hypothesis was given and {detail}.")


# --- entry point -------------------------------------------------------------------------


def analyse_run(run: RunData, config: AnalysisConfig | None = None) -> AnalysisResult:
    """Analyse one run: comparisons per metric, rule results, findings and a verdict."""
    cfg = config or AnalysisConfig()
    min_points = cfg.min_points
    rules = _evaluate_rules(run, min_points)
    # A "violation" seen on a handful of points is not evidence; it shows in the rule
    # results and makes the verdict inconclusive instead.
    failed_metrics = {r["metric"] for r in rules if r["passed"] is False and r["enough_data"]}
    units = {m.name: m.unit for m in run.metrics}

    findings: list[Finding] = []
    metrics: dict[str, dict[str, Any]] = {}
    comparisons: dict[str, tuple[Comparison, Comparison]] = {}
    for metric in run.metrics:
        base = metric.series("baseline")[1]
        during = compare_windows(base, metric.series("during")[1], metric.better, cfg.compare)
        recovery = compare_windows(base, metric.series("recovery")[1], metric.better, cfg.compare)
        comparisons[metric.name] = (during, recovery)

        if during.outcome == "insufficient":
            findings.append(_insufficient(metric, during, "during", min_points))
        else:
            findings.append(_during_finding(metric, during, metric.name in failed_metrics))
        if recovery.outcome == "insufficient":
            if during.outcome == "degraded":
                findings.append(_insufficient(metric, recovery, "recovery", min_points))
        else:
            rec = _recovery_finding(metric, during, recovery)
            if rec is not None:
                findings.append(rec)

        recovered: bool | None = None
        if recovery.outcome != "insufficient":
            recovered = recovery.outcome != "degraded"
        metrics[metric.name] = {
            "name": metric.name,
            "unit": metric.unit,
            "better": metric.better,
            "phases": {p: summary_dict(metric, p) for p in PHASES},
            "during": during.to_dict(),
            "recovery": recovery.to_dict(),
            "outcome": during.outcome,
            "recovered": recovered,
        }

    for rule in rules:
        if rule["passed"] is False and rule["enough_data"]:
            findings.append(_rule_finding(rule, units.get(rule["metric"], "")))

    verdict, confidence, reason = _verdict(run, rules, comparisons, min_points)
    findings.sort(key=lambda f: (-SEVERITIES.index(f.severity), -f.confidence, f.metric))
    return AnalysisResult(
        verdict=verdict,
        confidence=float(min(1.0, max(0.0, confidence))),
        reason=reason,
        metrics=metrics,
        rules=rules,
        findings=findings,
    )


def summary_dict(metric: MetricData, phase: str) -> dict[str, Any]:
    """Robust summary of one phase of one metric, JSON-ready."""
    return summarize(metric.series(phase)[1]).to_dict()
