"""Campaign report (scores over time per target, regressions) and the game-day timeline.

``flag_regressions`` is plain Python over (score, low, high) tuples so it can be tested on
known numbers without a database.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from campaigns.models import Campaign, GameDay

__all__ = ["campaign_report", "flag_regressions", "game_day_timeline", "timeline_markdown"]


def flag_regressions(points: Sequence[tuple[float, float, float]]) -> list[dict[str, Any]]:
    """For scores in time order ``(score, low, high)``, say which ones are regressions.

    Rule: a score is a regression when its whole interval lies below the previous one —
    its upper bound is under the previous run's lower bound. Each interval is that run's
    own 95 % bootstrap interval, i.e. its noise; when two such intervals do not even touch,
    run-to-run noise cannot explain the drop (non-overlap of two 95 % intervals is a
    conservative test, roughly p < 0.01), so the flag rarely fires on noise alone and a
    drop that does fire points at the execution where the behaviour changed. Comparing
    with the previous run, not a long average, keeps the flag on the step change itself.
    """
    out: list[dict[str, Any]] = []
    previous: tuple[float, float, float] | None = None
    for score, low, high in points:
        item: dict[str, Any] = {"regression": False, "drop": None, "reason": ""}
        if previous is not None:
            p_score, p_low, _ = previous
            item["drop"] = round(p_score - score, 3)
            if high < p_low:
                item["regression"] = True
                item["reason"] = (
                    f"score {score:.1f} [{low:.1f}, {high:.1f}] lies wholly below the previous "
                    f"run's {p_score:.1f} (lower bound {p_low:.1f}): a drop beyond its noise"
                )
        out.append(item)
        previous = (score, low, high)
    return out


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def campaign_report(campaign: Campaign) -> dict[str, Any]:
    """Executions, and per target each scored run of the campaign in time order.

    Scores are compared within one experiment (different faults on the same target score
    differently by design, so a change of experiment is not a regression); the points are
    grouped per target as the report reads. The target's whole-history trend from
    ``analysis.core.score.target_trend`` is added over this campaign's runs.
    """
    from analysis.core.score import target_trend
    from experiments.models import Run

    runs = (
        Run.objects.filter(campaign_step__campaign_run__campaign=campaign, score__isnull=False)
        .exclude(score_low__isnull=True)
        .exclude(score_high__isnull=True)
        .select_related("experiment__target", "campaign_step")
        .order_by("finished_at", "id")
    )
    by_experiment: dict[str, list[Any]] = defaultdict(list)
    for run in runs:
        by_experiment[run.experiment.name].append(run)
    by_target: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for series in by_experiment.values():
        flags = flag_regressions([(r.score, r.score_low, r.score_high) for r in series])
        for run, flag in zip(series, flags, strict=True):
            by_target[run.experiment.target.name].append(
                {
                    "run": run.pk,
                    "execution": run.campaign_step.campaign_run_id,
                    "experiment": run.experiment.name,
                    "finished_at": _iso(run.finished_at),
                    "verdict": run.verdict,
                    "score": run.score,
                    "low": run.score_low,
                    "high": run.score_high,
                    **flag,
                }
            )
    targets = []
    for name, points in sorted(by_target.items()):
        points.sort(key=lambda p: (p["finished_at"] or "", p["run"]))
        trend_input = [
            (r.finished_at.timestamp(), r.score, r.score_low, r.score_high)
            for r in runs
            if r.experiment.target.name == name and r.finished_at
        ]
        targets.append(
            {
                "target": name,
                "points": points,
                "regressions": [p["run"] for p in points if p["regression"]],
                "trend": target_trend(trend_input),
            }
        )
    executions = [
        {
            "id": e.pk,
            "trigger": e.trigger,
            "status": e.status,
            "reason": e.reason,
            "created_at": _iso(e.created_at),
            "finished_at": _iso(e.finished_at),
            "summary": e.summary,
        }
        for e in campaign.runs.order_by("created_at", "id")
    ]
    return {"campaign": campaign.name, "executions": executions, "targets": targets}


def game_day_timeline(game_day: GameDay) -> dict[str, Any]:
    """Everything that happened on a game day, in time order: steps, run phases, notes."""
    from experiments.choices import EventKind
    from experiments.models import RunEvent

    entries: list[dict[str, Any]] = [
        {"at": game_day.created_at, "kind": "created", "text": f"game day {game_day.name!r}"}
    ]
    if game_day.started_at:
        entries.append({"at": game_day.started_at, "kind": "started", "text": "game day started"})
    steps = []
    if game_day.execution is not None:
        steps = list(game_day.execution.steps.select_related("run", "experiment"))
    run_ids = [s.run_id for s in steps if s.run_id]
    for step in steps:
        if step.started_at:
            entries.append(
                {
                    "at": step.started_at,
                    "kind": "step",
                    "text": f"step {step.position}: {step.experiment.name} (run {step.run_id})",
                    "run": step.run_id,
                }
            )
        if step.run is not None and step.run.is_terminal and step.run.finished_at:
            verdict = f", verdict {step.run.verdict}" if step.run.verdict else ""
            entries.append(
                {
                    "at": step.run.finished_at,
                    "kind": "run_end",
                    "text": f"run {step.run_id} {step.run.status}{verdict}",
                    "run": step.run_id,
                }
            )
    events = RunEvent.objects.filter(run_id__in=run_ids).exclude(kind=EventKind.INFO)
    for event in events:
        entries.append(
            {
                "at": event.at,
                "kind": f"run_{event.kind}",
                "text": f"[{event.phase}] {event.message}",
                "run": event.run_id,
            }
        )
    for note in game_day.notes.select_related("author"):
        entries.append(
            {
                "at": note.at,
                "kind": "note",
                "text": note.text,
                "author": note.author.username if note.author else "",
            }
        )
    if game_day.finished_at:
        entries.append(
            {"at": game_day.finished_at, "kind": "finished", "text": "game day finished"}
        )
    entries.sort(key=lambda e: e["at"])
    for entry in entries:
        entry["at"] = entry["at"].isoformat()
    return {
        "game_day": game_day.pk,
        "name": game_day.name,
        "campaign": game_day.campaign.name,
        "status": game_day.status,
        "observers": sorted(u.username for u in game_day.observers.all()),
        "entries": entries,
    }


def timeline_markdown(timeline: dict[str, Any]) -> str:
    """The timeline as a Markdown document to paste into a post-mortem."""
    lines = [
        f"# Game day: {timeline['name']}",
        "",
        f"- Campaign: {timeline['campaign']}",
        f"- Status: {timeline['status']}",
        f"- Observers: {', '.join(timeline['observers']) or 'none'}",
        "",
        "| time (UTC) | what | detail |",
        "|---|---|---|",
    ]
    for entry in timeline["entries"]:
        detail = entry["text"].replace("|", "\\|").replace("\n", " ")
        if entry.get("author"):
            detail = f"**{entry['author']}**: {detail}"
        lines.append(f"| {entry['at'][:19].replace('T', ' ')} | {entry['kind']} | {detail} |")
    return "\n".join(lines) + "\n"
