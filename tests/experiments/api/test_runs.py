"""Runs over the API: start, abort, detail and the kill switch.

Under the ``db`` fixture ``transaction.on_commit`` callbacks never fire, so starting a
run enqueues nothing: the run simply stays queued, which is what these tests look at.
"""

from __future__ import annotations

from typing import Any

import pytest

from analysis.models import Finding, MetricSeries
from audit.models import AuditEntry
from experiments.models import Run

pytestmark = pytest.mark.django_db


def _start(client: Any, experiment: Any, **body: Any) -> Any:
    return client.post(f"/api/v1/experiments/{experiment.pk}/start/", body, format="json")


def test_start_creates_a_queued_run_with_event_and_audit(
    operator_client: Any, experiment: Any
) -> None:
    response = _start(operator_client, experiment, dry_run=True)
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["status"] == "queued"
    assert data["dry_run"] is True
    assert data["experiment"] == experiment.name
    assert data["experiment_version"] == 1
    assert data["started_by"] == "otto-operator"
    assert [e["message"] for e in data["events"]] == ["run queued"]
    assert data["timestamps"]["queued"] is not None
    assert data["timestamps"]["finished"] is None
    entry = AuditEntry.objects.get(action="run.start")
    assert entry.object_id == str(data["id"])
    assert entry.source == "api"


def test_post_runs_by_name_or_id(operator_client: Any, experiment: Any) -> None:
    by_name = operator_client.post("/api/v1/runs/", {"experiment": experiment.name}, format="json")
    by_id = operator_client.post("/api/v1/runs/", {"experiment": experiment.pk}, format="json")
    assert by_name.status_code == by_id.status_code == 201
    assert Run.objects.count() == 2


@pytest.mark.parametrize(
    "body", [{}, {"experiment": "ghost"}, {"experiment": 999}, {"experiment": [1]}]
)
def test_post_runs_bad_experiment(operator_client: Any, experiment: Any, body: dict) -> None:
    response = operator_client.post("/api/v1/runs/", body, format="json")
    assert response.status_code == 400
    assert "experiment" in response.json()["errors"]


def test_abort_a_queued_run_ends_it(operator_client: Any, experiment: Any) -> None:
    run_id = _start(operator_client, experiment).json()["id"]
    response = operator_client.post(
        f"/api/v1/runs/{run_id}/abort/", {"reason": "changed my mind"}, format="json"
    )
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "aborted"
    assert response.json()["status_reason"] == "changed my mind"
    assert response.json()["timestamps"]["finished"] is not None
    assert Run.objects.get(pk=run_id).status == "aborted"


def test_abort_a_terminal_run_is_409(operator_client: Any, experiment: Any) -> None:
    run_id = _start(operator_client, experiment).json()["id"]
    Run.objects.filter(pk=run_id).update(status="completed")
    response = operator_client.post(f"/api/v1/runs/{run_id}/abort/", {}, format="json")
    assert response.status_code == 409
    assert "already completed" in response.json()["detail"]


def test_kill_switch_refuses_new_runs_until_released(
    operator_client: Any, admin_client: Any, experiment: Any
) -> None:
    queued = _start(operator_client, experiment).json()["id"]
    engaged = operator_client.post(
        "/api/v1/kill-switch/engage/", {"reason": "drill"}, format="json"
    )
    assert engaged.status_code == 200, engaged.content
    assert engaged.json()["engaged"] is True
    assert engaged.json()["aborted_runs"] == 1
    assert engaged.json()["reverted_faults"] == 0
    assert Run.objects.get(pk=queued).status == "aborted"

    refused = _start(operator_client, experiment)
    assert refused.status_code == 409
    assert "kill switch" in refused.json()["detail"]
    assert operator_client.get("/api/v1/kill-switch/").json()["reason"] == "drill"

    assert operator_client.post("/api/v1/kill-switch/release/").status_code == 403
    released = admin_client.post("/api/v1/kill-switch/release/")
    assert released.status_code == 200
    assert released.json()["engaged"] is False
    assert _start(operator_client, experiment).status_code == 201


def test_list_filters(viewer_client: Any, operator_client: Any, experiment: Any) -> None:
    first = _start(operator_client, experiment).json()["id"]
    _start(operator_client, experiment)
    Run.objects.filter(pk=first).update(status="completed", verdict="passed")

    def ids(query: str) -> list[int]:
        response = viewer_client.get(f"/api/v1/runs/?{query}")
        assert response.status_code == 200, response.content
        return [r["id"] for r in response.json()["results"]]

    assert ids("status=completed") == [first]
    assert ids("verdict=passed") == [first]
    assert len(ids(f"experiment={experiment.name}")) == 2
    assert len(ids(f"experiment={experiment.pk}")) == 2
    assert ids("experiment=nope") == []
    bad = viewer_client.get("/api/v1/runs/?status=sleeping")
    assert bad.status_code == 400
    assert "status" in bad.json()["errors"]


def test_detail_summarises_series_and_lists_findings(
    viewer_client: Any, operator_client: Any, experiment: Any
) -> None:
    run_id = _start(operator_client, experiment).json()["id"]
    # Two chunks of one phase, deliberately stored out of order.
    MetricSeries.objects.create(
        run_id=run_id,
        metric="latency",
        phase="during",
        seq=1,
        timestamps=[3, 4],
        values=[0.4, 0.5],
    )
    MetricSeries.objects.create(
        run_id=run_id,
        metric="latency",
        phase="during",
        seq=0,
        timestamps=[1, 2],
        values=[0.1, None],
    )
    MetricSeries.objects.create(
        run_id=run_id, metric="latency", phase="baseline", seq=0, timestamps=[], values=[]
    )
    Finding.objects.create(
        run_id=run_id,
        metric="latency",
        kind="shift",
        severity="high",
        confidence=0.97,
        title="latency rose",
    )
    data = viewer_client.get(f"/api/v1/runs/{run_id}/").json()
    during = data["series_summary"]["latency"]["during"]
    assert during["n"] == 3
    assert during["mean"] == pytest.approx(1.0 / 3)
    assert during["p50"] == pytest.approx(0.4)
    assert during["max"] == pytest.approx(0.5)
    assert during["p95"] == pytest.approx(0.49)
    assert data["series_summary"]["latency"]["baseline"]["n"] == 0
    assert data["findings"][0]["title"] == "latency rose"
    assert data["faults"] == []


def test_summarise_values_single_point() -> None:
    from experiments.api.serializers import summarise_values

    assert summarise_values([2]) == {"n": 1, "mean": 2.0, "p50": 2.0, "p95": 2.0, "max": 2.0}
    assert summarise_values([float("nan"), "x", True])["n"] == 0
