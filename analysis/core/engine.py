"""Turn one run's metric series into a verdict, findings, a score and advice (analysis v1).

The engine only orchestrates; each decision lives in its own module so it can be read,
tested and tuned alone:

* :mod:`analysis.core.rules` — the hypothesis rules, judged on their phase;
* :mod:`analysis.core.findings` — every detector per metric (window comparison with
  Benjamini-Hochberg across metrics, CUSUM time to impact / recover, forecast band,
  isolation forest), merged into findings with severity, confidence and evidence;
* :mod:`analysis.core.verdict` — passed / failed / inconclusive with a reason;
* :mod:`analysis.core.score` — resilience score 0–100 with a bootstrap interval;
* :mod:`analysis.core.recommendations` — what to fix, with the run's numbers;
* :mod:`analysis.core.suggestions` — :func:`suggest_next` proposes the next experiments.
  It needs the experiment's history, which only the caller has, so it is a separate
  call rather than part of :func:`analyse_run`.

``AnalysisResult.to_dict()`` keeps every v0 key (``verdict``, ``confidence``,
``reason``, ``metrics``, ``rules``, ``findings``) and adds ``score``,
``recommendations`` and ``detectors``. Finding kinds added in v1: ``error_spike``,
``saturation``, ``collateral_impact``, ``slow_recovery``; ``improvement`` is now
``unexpected_improvement``.

Nothing here imports Django; the caller loads series from the database into
:class:`RunData` and stores :meth:`AnalysisResult.to_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analysis.core import detectors
from analysis.core.compare import CompareConfig
from analysis.core.findings import (
    MetricEvidence,
    build_findings,
    gather_evidence,
    severity_for_effect,
)
from analysis.core.model import (
    PHASES,
    SEVERITIES,
    Finding,
    MetricData,
    RunData,
    Verdict,
    jsonable,
)
from analysis.core.recommendations import recommend
from analysis.core.rules import evaluate_rule
from analysis.core.score import MetricScoreInput, ScoreResult, resilience_score
from analysis.core.stats import summarize
from analysis.core.suggestions import suggest_next
from analysis.core.verdict import decide_verdict

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
    "suggest_next",
]


@dataclass(frozen=True)
class AnalysisConfig:
    compare: CompareConfig = field(default_factory=CompareConfig)
    #: Bootstrap replicates for the score interval (more = smoother, slower).
    score_replicates: int = 500

    @property
    def min_points(self) -> int:
        return self.compare.min_points


@dataclass
class AnalysisResult:
    verdict: Verdict
    confidence: float
    reason: str
    metrics: dict[str, dict[str, Any]]
    rules: list[dict[str, Any]]
    findings: list[Finding]
    score: dict[str, Any] = field(default_factory=dict)
    recommendations: list[dict[str, Any]] = field(default_factory=list)
    detectors: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (no numpy scalars, no NaN)."""
        return {
            "verdict": self.verdict,
            "confidence": round(float(self.confidence), 4),
            "reason": self.reason,
            "metrics": jsonable(self.metrics),
            "rules": jsonable(self.rules),
            "findings": [f.to_dict() for f in self.findings],
            "score": jsonable(self.score),
            "recommendations": jsonable(self.recommendations),
            "detectors": jsonable(self.detectors),
        }


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


# --- score -------------------------------------------------------------------------------


def _recovery_window(metric: MetricData, interval_s: float) -> float:
    ts = metric.series("recovery")[0]
    ts = ts[np.isfinite(ts)]
    return float(ts[-1] - ts[0] + interval_s) if ts.size else 0.0


def _slowness(e: MetricEvidence, interval_s: float) -> float:
    """0 = back at once (or never hurt), 1 = never back within the recovery window."""
    if e.during_outcome != "degraded" and e.recovery_outcome != "degraded":
        return 0.0
    if e.recovered is False:
        return 1.0
    seconds = (e.recovery_time or {}).get("seconds")
    window = _recovery_window(e.metric, interval_s)
    if seconds is None or window <= 0:
        return 0.0
    return min(1.0, float(seconds) / window)


def _score(
    run: RunData,
    evidence: dict[str, MetricEvidence],
    rules: list[dict[str, Any]],
    cfg: AnalysisConfig,
) -> ScoreResult:
    inputs = [
        MetricScoreInput(
            name=e.name,
            better=e.metric.better,
            baseline=e.metric.series("baseline")[1],
            during=e.metric.series("during")[1],
            recovery=e.metric.series("recovery")[1],
            tolerance=e.during.tolerance or 0.0,
            slowness=_slowness(e, run.interval_s),
        )
        for e in evidence.values()
        if e.during_outcome != "insufficient"
    ]
    return resilience_score(inputs, rules, n_boot=cfg.score_replicates)


# --- per-metric summary --------------------------------------------------------------------


def summary_dict(metric: MetricData, phase: str) -> dict[str, Any]:
    """Robust summary of one phase of one metric, JSON-ready."""
    return summarize(metric.series(phase)[1]).to_dict()


def _metric_entry(e: MetricEvidence) -> dict[str, Any]:
    m = e.metric
    return {
        "name": m.name,
        "unit": m.unit,
        "better": m.better,
        "role": e.role,
        "component": m.component,
        "targeted": not m.collateral,
        # The comparisons already summarised each phase; reuse rather than recompute.
        "phases": {
            "baseline": e.during.baseline.to_dict(),
            "during": e.during.window.to_dict(),
            "recovery": e.recovery.window.to_dict(),
        },
        "during": {**e.during.to_dict(), "p_adjusted": e.p_during_adj},
        "recovery": {**e.recovery.to_dict(), "p_adjusted": e.p_recovery_adj},
        "outcome": e.during_outcome,
        "recovery_outcome": e.recovery_outcome,
        "recovered": e.recovered,
        "baseline_cv": e.baseline_cv,
        "time_to_impact": e.impact,
        "time_to_recover": e.recovery_time,
        "degradation_area": e.area,
        "forecast": e.forecast,
        "if_contribution": e.if_contribution,
        "detectors": e.votes,
    }


# --- entry point -------------------------------------------------------------------------


def analyse_run(run: RunData, config: AnalysisConfig | None = None) -> AnalysisResult:
    """Analyse one run: detectors per metric, rule results, findings, verdict, score, advice."""
    cfg = config or AnalysisConfig()
    min_points = cfg.min_points
    rules = _evaluate_rules(run, min_points)
    evidence, joint = gather_evidence(run, cfg.compare)
    findings = build_findings(run, evidence, rules, min_points)
    verdict = decide_verdict(run, rules, evidence, min_points)
    score = _score(run, evidence, rules, cfg)
    metrics = {name: _metric_entry(e) for name, e in evidence.items()}
    advice = recommend(
        [f.to_dict() for f in findings],
        fault=run.fault,
        intensity=run.intensity,
        interval_s=run.interval_s,
        fault_duration=run.fault_duration,
    )
    return AnalysisResult(
        verdict=verdict.verdict,
        confidence=verdict.confidence,
        reason=verdict.reason,
        metrics=metrics,
        rules=rules,
        findings=findings,
        score=score.to_dict(),
        recommendations=advice,
        detectors={"available": dict(detectors.DETECTORS), "multivariate": joint},
    )
