"""The report endpoint keeps a finished run's series in the cache, and still shows what
can change after the end (events, suggestion statuses); a running run is never cached."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.utils import timezone

from analysis.models import MetricSeries, Suggestion
from analysis.services import build_report
from experiments.choices import EventKind, RunStatus
from experiments.models import Run, RunEvent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty_cache() -> Any:
    cache.clear()
    yield
    cache.clear()


def _run(experiment: Any, status: str) -> Run:
    finished = timezone.now() if status in RunStatus.terminal() else None
    run = Run.objects.create(
        experiment=experiment,
        experiment_version=experiment.version,
        spec=experiment.spec,
        status=status,
        verdict="passed" if finished else "",
        started_at=timezone.now(),
        finished_at=finished,
        summary={"analysis": {"score": {"value": 80}}},
    )
    MetricSeries.objects.create(
        run=run, metric="latency", phase="baseline", seq=0, timestamps=[1, 2], values=[0.1, 0.2]
    )
    return run


def _report(client: Any, run: Run) -> dict[str, Any]:
    response = client.get(f"/api/v1/runs/{run.pk}/report/")
    assert response.status_code == 200, response.content
    return response.json()


def test_finished_run_report_matches_and_keeps_its_series_cached(
    viewer_client: Any, experiment: Any
) -> None:
    run = _run(experiment, RunStatus.COMPLETED)
    first = _report(viewer_client, run)
    assert first == build_report(Run.objects.get(pk=run.pk))
    assert first["series"]["latency"]["values"] == [0.1, 0.2]
    # Served from the cache: series rows changing underneath no longer show (they never
    # do for a finished run; this is how the test sees the cache at work).
    MetricSeries.objects.filter(run=run).update(values=[9.0, 9.0])
    assert _report(viewer_client, run)["series"] == first["series"]


def test_cached_report_still_shows_new_events_and_suggestion_statuses(
    viewer_client: Any, experiment: Any
) -> None:
    run = _run(experiment, RunStatus.COMPLETED)
    suggestion = Suggestion.objects.create(
        run=run, kind="intensity", title="try harder", spec=experiment.spec
    )
    assert _report(viewer_client, run)["suggestions"][0]["status"] == "open"
    RunEvent.objects.create(run=run, kind=EventKind.INFO, message="report written", phase="")
    Suggestion.objects.filter(pk=suggestion.pk).update(status="accepted")
    again = _report(viewer_client, run)
    assert again["suggestions"][0]["status"] == "accepted"
    assert again["events"][-1]["message"] == "report written"


def test_running_run_report_is_never_cached(viewer_client: Any, experiment: Any) -> None:
    run = _run(experiment, RunStatus.DURING)
    assert _report(viewer_client, run)["series"]["latency"]["values"] == [0.1, 0.2]
    MetricSeries.objects.create(
        run=run, metric="latency", phase="baseline", seq=1, timestamps=[3], values=[0.3]
    )
    assert _report(viewer_client, run)["series"]["latency"]["values"] == [0.1, 0.2, 0.3]
