"""The thin database layer around the pure analysis core: load series, store results,
assemble and write the report."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction

from analysis.core.engine import AnalysisResult, MetricData, RunData
from analysis.core.engine import analyse_run as analyse_core
from analysis.models import Finding, MetricSeries, Suggestion, SuggestionStatus
from observability import events

__all__ = [
    "accept_suggestion",
    "analyse_run",
    "build_report",
    "load_series",
    "report_series",
    "store_suggestions",
    "target_scores",
    "write_report_files",
]

PHASES = ("baseline", "during", "recovery")


def load_series(run: Any) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """metric -> phase -> (timestamps, values), chunks concatenated in order."""
    out: dict[str, dict[str, tuple[list[float], list[float]]]] = defaultdict(
        lambda: {p: ([], []) for p in PHASES}
    )
    rows = MetricSeries.objects.filter(run=run).order_by("metric", "phase", "seq")
    for row in rows.values_list("metric", "phase", "timestamps", "values"):
        metric, phase, ts, vs = row
        out[metric][phase][0].extend(ts)
        out[metric][phase][1].extend(vs)
    return out


def run_data(run: Any, aborted_reason: str = "") -> RunData:
    spec = run.spec
    series = load_series(run)
    metrics = []
    for m in spec["metrics"]:
        phases = {
            phase: (np.asarray(ts, dtype=float), np.asarray(vs, dtype=float))
            for phase, (ts, vs) in series[m["name"]].items()
        }
        metrics.append(
            MetricData(
                name=m["name"],
                better=m["better"],
                unit=m.get("unit", ""),
                phases=phases,
                component=m.get("component", ""),
                targeted=m.get("targeted", True),
                role=m.get("role", ""),
                ceiling=m.get("ceiling"),
            )
        )
    return RunData(
        metrics=metrics,
        hypothesis=spec.get("hypothesis", []),
        injected_at=run.injected_at.timestamp() if run.injected_at else None,
        reverted_at=run.reverted_at.timestamp() if run.reverted_at else None,
        interval_s=spec.get("interval", 1.0),
        aborted_reason=aborted_reason,
        fault=spec.get("fault"),
        intensity=spec.get("intensity"),
    )


@events.analysis_timed
def analyse_run(run: Any, aborted_reason: str = "") -> AnalysisResult:
    """Analyse a run's stored series and replace its findings with the new ones."""
    result = analyse_core(run_data(run, aborted_reason))
    payload = result.to_dict()
    with transaction.atomic():
        Finding.objects.filter(run=run).delete()
        Finding.objects.bulk_create(
            Finding(
                run=run,
                metric=f.get("metric", ""),
                kind=f["kind"],
                severity=f["severity"],
                confidence=f["confidence"],
                title=f["title"][:200],
                summary=f.get("summary", ""),
                evidence=f.get("evidence", {}),
            )
            for f in payload["findings"]
        )
        score = payload.get("score") or {}
        scores = {
            "score": score.get("value"),
            "score_low": score.get("low"),
            "score_high": score.get("high"),
        }
        type(run).objects.filter(pk=run.pk).update(summary={"analysis": payload}, **scores)
        for key, value in scores.items():
            setattr(run, key, value)
    run.summary = {"analysis": payload}
    store_suggestions(run, result)
    return result


def _history(run: Any) -> list[dict[str, Any]]:
    """Earlier judged runs on the same target, for suggestions (oldest first)."""
    from experiments.models import Run

    earlier = (
        Run.objects.filter(experiment__target=run.experiment.target, dry_run=False)
        .exclude(pk=run.pk)
        .exclude(verdict="")
        .order_by("created_at")
        .values("spec", "verdict")
    )
    return list(earlier)


def store_suggestions(run: Any, result: AnalysisResult) -> list[Suggestion]:
    """Replace the run's open suggestions with fresh ones (accepted ones are kept)."""
    from analysis.core.suggestions import suggest_next
    from experiments.spec import default_caps

    proposals = suggest_next(
        run.spec, _history(run), result, run.experiment.target.config, caps=default_caps()
    )
    with transaction.atomic():
        Suggestion.objects.filter(run=run, status=SuggestionStatus.OPEN).delete()
        return Suggestion.objects.bulk_create(
            Suggestion(
                run=run,
                kind=p["kind"],
                title=p["title"][:200],
                rationale=p.get("rationale", ""),
                spec=p["spec"],
                rank=rank,
            )
            for rank, p in enumerate(proposals)
        )


def accept_suggestion(suggestion: Suggestion, *, actor: Any, source: str) -> Any:
    """Turn a suggestion into an experiment (a free name is found if its name is taken)."""
    from audit.services import record
    from experiments.models import Experiment
    from experiments.services.catalog import create_experiment

    if suggestion.status == SuggestionStatus.ACCEPTED and suggestion.experiment_id:
        return suggestion.experiment
    spec = dict(suggestion.spec)
    base, n = spec["name"][:90], 2
    while Experiment.objects.filter(name=spec["name"]).exists():
        spec["name"] = f"{base}-{n}"
        n += 1
    with transaction.atomic():
        experiment = create_experiment(spec, actor=actor, source=source)
        suggestion.status = SuggestionStatus.ACCEPTED
        suggestion.experiment = experiment
        suggestion.save(update_fields=["status", "experiment"])
        record(
            actor=actor,
            action="suggestion.accept",
            source=source,
            obj=suggestion,
            changes={"experiment": experiment.name},
        )
    return experiment


def target_scores(target: Any) -> dict[str, Any]:
    """A target's resilience scores across runs, with their trend."""
    from analysis.core.score import target_trend
    from experiments.models import Run

    runs = (
        Run.objects.filter(experiment__target=target, score__isnull=False)
        .select_related("experiment")
        .order_by("finished_at")
    )
    points = [
        {
            "run": r.pk,
            "experiment": r.experiment.name,
            "finished_at": _iso(r.finished_at),
            "verdict": r.verdict,
            "score": r.score,
            "low": r.score_low,
            "high": r.score_high,
        }
        for r in runs
    ]
    trend = target_trend(
        [
            (r.finished_at.timestamp(), r.score, r.score_low, r.score_high)
            for r in runs
            if r.finished_at and r.score_low is not None and r.score_high is not None
        ]
    )
    return {"target": target.name, "runs": points, "trend": trend}


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def report_series(run: Any) -> dict[str, dict[str, list[Any]]]:
    """The report's ``series`` section: per metric, every sample with its phase."""
    series = {}
    for metric, phases in load_series(run).items():
        ts, vs, ph = [], [], []
        for phase in PHASES:
            p_ts, p_vs = phases[phase]
            ts.extend(p_ts)
            vs.extend(p_vs)
            ph.extend([phase] * len(p_ts))
        series[metric] = {"timestamps": ts, "values": vs, "phases": ph}
    return series


def build_report(
    run: Any, *, refresh: bool = True, series: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The report as plain data: what analysis.report renders and the API returns.

    ``series`` may be given when the caller already has them (a finished run's series
    never change, so the API keeps them cached: they are most of the report's cost).
    """
    if refresh:
        run.refresh_from_db()
    if series is None:
        series = report_series(run)
    spec = run.spec
    return {
        "run": {
            "id": run.pk,
            "experiment": run.experiment.name,
            "experiment_version": run.experiment_version,
            "target": run.experiment.target.name,
            "fault": spec["fault"],
            "intensity": spec.get("intensity"),
            "duration": spec.get("duration"),
            "status": run.status,
            "status_reason": run.status_reason,
            "verdict": run.verdict,
            "verdict_confidence": run.verdict_confidence,
            "verdict_reason": run.verdict_reason,
            "started_at": _iso(run.started_at),
            "finished_at": _iso(run.finished_at),
            "injected_at": _iso(run.injected_at),
            "reverted_at": _iso(run.reverted_at),
            "metrics": {
                m["name"]: {"better": m["better"], "unit": m.get("unit", "")}
                for m in spec["metrics"]
            },
            "hypothesis": spec.get("hypothesis", []),
            "stop_conditions": spec.get("stop_conditions", []),
        },
        "analysis": (run.summary or {}).get("analysis", {}),
        "suggestions": [
            {
                "id": sg.pk,
                "kind": sg.kind,
                "title": sg.title,
                "rationale": sg.rationale,
                "status": sg.status,
            }
            for sg in run.suggestions.all()
        ],
        "series": series,
        "events": [
            {"at": _iso(e.at), "kind": e.kind, "phase": e.phase, "message": e.message}
            for e in run.events.all()
        ],
    }


def write_report_files(run: Any, *, refresh: bool = True) -> dict[str, Path]:
    from analysis.exports import export_report

    report = build_report(run, refresh=refresh)
    folder = Path(settings.SCEP_REPORTS_DIR) / str(run.pk)
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / "report.json"
    html_path = folder / "report.html"
    json_path.write_text(export_report(report, "json").content)
    html_path.write_text(export_report(report, "html").content)
    return {"json": json_path, "html": html_path}


def report_json(run: Any) -> str:
    return json.dumps(build_report(run), indent=2, default=str)
