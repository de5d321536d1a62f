"""The analysis API on a run whose series are known: findings, score, recommendations,
suggestions (accepted in one call), the report in both formats and the target's trend."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from analysis.models import Finding, MetricSeries, Suggestion
from analysis.services import analyse_run
from experiments.choices import RunStatus
from experiments.models import Experiment, Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def judged_run(experiment):
    """A run with 30 s of baseline at ~20 ms, 30 s of fault at ~320 ms, 30 s recovered."""
    rng = np.random.default_rng(7)
    t0 = timezone.now() - timedelta(minutes=5)
    run = Run.objects.create(
        experiment=experiment,
        experiment_version=experiment.version,
        spec=experiment.spec,
        status=RunStatus.COMPLETED,
        started_at=t0,
        injected_at=t0 + timedelta(seconds=30),
        reverted_at=t0 + timedelta(seconds=60),
        finished_at=t0 + timedelta(seconds=95),
    )
    base = t0.timestamp()
    for phase, offset, level in (
        ("baseline", 0, 0.02),
        ("during", 30, 0.32),
        ("recovery", 60, 0.02),
    ):
        ts = [base + offset + i for i in range(30)]
        MetricSeries.objects.create(
            run=run,
            metric="latency",
            phase=phase,
            timestamps=ts,
            values=list(rng.normal(level, 0.003, 30)),
        )
        MetricSeries.objects.create(
            run=run, metric="error_rate", phase=phase, timestamps=ts, values=[0.0] * 30
        )
    result = analyse_run(run)
    run.refresh_from_db()
    return run, result


def test_analysis_stores_findings_a_score_with_its_interval_and_suggestions(judged_run):
    run, result = judged_run
    assert result.verdict == "failed"
    assert Finding.objects.filter(run=run, metric="latency", kind="degradation").exists()
    assert run.score is not None and run.score_low <= run.score <= run.score_high
    assert Suggestion.objects.filter(run=run).exists()


def test_the_report_is_served_as_json_and_as_a_self_contained_html_file(judged_run, viewer_client):
    run, _ = judged_run
    body = viewer_client.get(f"/api/v1/runs/{run.pk}/report/").json()
    assert body["run"]["id"] == run.pk
    assert len(body["series"]["latency"]["values"]) == 90
    assert body["analysis"]["verdict"] == "failed"
    html = viewer_client.get(f"/api/v1/runs/{run.pk}/report/?export=html")
    assert html.status_code == 200 and html["Content-Type"].startswith("text/html")
    assert b"<svg" in html.content and b"http://" not in html.content.split(b"<body")[0]
    assert b"What to fix" in html.content and b"Suggested next experiments" in html.content
    assert b"Resilience score" in html.content


def test_recommendations_carry_the_runs_numbers(judged_run, viewer_client):
    run, _ = judged_run
    body = viewer_client.get(f"/api/v1/runs/{run.pk}/recommendations/").json()
    assert body["score"]["low"] <= body["score"]["value"] <= body["score"]["high"]
    assert body["recommendations"], "a 15x latency degradation must yield advice"
    assert any(any(ch.isdigit() for ch in r.get("advice", "")) for r in body["recommendations"])


def test_findings_are_listed_by_run(judged_run, viewer_client):
    run, _ = judged_run
    rows = viewer_client.get(f"/api/v1/findings/?run={run.pk}").json()["results"]
    assert {r["kind"] for r in rows} >= {"degradation"}


def test_accepting_a_suggestion_creates_and_can_start_the_experiment(judged_run, operator_client):
    run, _ = judged_run
    suggestion = Suggestion.objects.filter(run=run).first()
    response = operator_client.post(
        f"/api/v1/suggestions/{suggestion.pk}/accept/", {"start": True}, format="json"
    )
    assert response.status_code == 201, response.json()
    created = Experiment.objects.get(name=response.json()["experiment"]["name"])
    assert created.spec["fault"]["type"] == suggestion.spec["fault"]["type"]
    assert response.json()["run"]["status"] == "queued"
    suggestion.refresh_from_db()
    assert suggestion.status == "accepted" and suggestion.experiment == created


def test_a_viewer_cannot_accept_a_suggestion(judged_run, viewer_client):
    run, _ = judged_run
    suggestion = Suggestion.objects.filter(run=run).first()
    assert viewer_client.post(f"/api/v1/suggestions/{suggestion.pk}/accept/").status_code == 403


def test_target_scores_list_every_judged_run_with_a_trend(judged_run, viewer_client):
    run, _ = judged_run
    body = viewer_client.get(f"/api/v1/targets/{run.experiment.target.pk}/scores/").json()
    assert [r["run"] for r in body["runs"]] == [run.pk]
    assert body["trend"]["n"] == 1
