"""/metrics: django-prometheus's metrics, SCEP's database gauges and the event counters."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from experiments.choices import RunStatus
from experiments.models import Run
from injectors import execution
from injectors.models import ActiveFault, Agent, FaultState
from observability.events import reason_kind

pytestmark = pytest.mark.django_db


def _scrape() -> tuple[str, dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return text, samples


def _value(samples: dict[Any, float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def _run(experiment: Any, status: str) -> Run:
    return Run.objects.create(
        experiment=experiment, experiment_version=1, spec=experiment.spec, status=status
    )


def _fault(run: Run | None, target: Any, injector: str, **fields: Any) -> ActiveFault:
    fields.setdefault("expires_at", timezone.now() + timedelta(minutes=5))
    return ActiveFault.objects.create(
        run=run, target=target, injector=injector, agent="local", **fields
    )


def test_metrics_exposes_django_prometheus_and_empty_scep_gauges() -> None:
    text, samples = _scrape()
    assert "django_http_requests_before_middlewares_total" in text
    assert _value(samples, "scep_runs", status="queued") == 0.0
    assert _value(samples, "scep_agents_online") == 0.0
    assert _value(samples, "scep_queue_lag_seconds") == 0.0
    assert _value(samples, "scep_metrics_db_up") == 1.0
    assert "scep_fault_active{" not in text


def test_scep_gauges_reflect_the_database(experiment: Any, make_target: Any) -> None:
    target = experiment.target
    other = make_target("other-target")
    queued = _run(experiment, RunStatus.QUEUED)
    Run.objects.filter(pk=queued.pk).update(created_at=timezone.now() - timedelta(seconds=90))
    _run(experiment, RunStatus.QUEUED)
    during = _run(experiment, RunStatus.DURING)
    _run(experiment, RunStatus.COMPLETED)
    _fault(during, target, "network.latency", state=FaultState.ACTIVE)
    _fault(None, other, "network.latency")  # pending counts as open
    _fault(during, target, "network.latency", state=FaultState.REVERTED)  # closed
    _fault(during, other, "process.pause", state=FaultState.FAILED)  # never took effect
    Agent.objects.create(name="local", last_heartbeat=timezone.now())
    Agent.objects.create(name="gone", last_heartbeat=timezone.now() - timedelta(hours=1))

    text, samples = _scrape()

    assert 'scep_active_faults{injector="network.latency"} 2.0' in text
    assert _value(samples, "scep_active_faults", injector="process.pause") is None
    assert _value(samples, "scep_runs", status="queued") == 2.0
    assert _value(samples, "scep_runs", status="during") == 1.0
    assert _value(samples, "scep_runs", status="completed") == 1.0
    assert _value(samples, "scep_runs", status="failed") == 0.0
    annotation = {k: v for k, v in samples.items() if k[0] == "scep_fault_active"}
    assert annotation == {
        (
            "scep_fault_active",
            frozenset(
                {
                    "experiment": experiment.name,
                    "target": target.name,
                    "fault": "network.latency",
                }.items()
            ),
        ): 1.0,
        (
            "scep_fault_active",
            frozenset({"experiment": "", "target": other.name, "fault": "network.latency"}.items()),
        ): 1.0,
    }
    assert _value(samples, "scep_agents_online") == 1.0
    assert 89.0 <= _value(samples, "scep_queue_lag_seconds") < 200.0


def _counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_event_counters_move_on_apply_and_revert(target: Any) -> None:
    applied = {"injector": "control.placebo", "outcome": "applied"}
    reverted = {"injector": "control.placebo", "reason_kind": "kill_switch"}
    before_apply = _counter("scep_injections_total", **applied)
    before_revert = _counter("scep_reverts_total", **reverted)
    fault = _fault(None, target, "control.placebo", params={})

    execution.apply_fault(fault.pk)
    execution.apply_fault(fault.pk)  # duplicate delivery: no injection, not counted
    fault.refresh_from_db()
    assert fault.state == FaultState.ACTIVE
    assert _counter("scep_injections_total", **applied) == before_apply + 1

    execution.revert_fault(fault.pk, reason="kill switch")
    execution.revert_fault(fault.pk, reason="kill switch")  # already closed
    assert _counter("scep_reverts_total", **reverted) == before_revert + 1

    _, samples = _scrape()
    assert _value(samples, "scep_injections_total", **applied) == before_apply + 1
    assert _value(samples, "scep_reverts_total", **reverted) == before_revert + 1


def test_expired_pending_fault_counts_as_expired_injection(target: Any) -> None:
    labels = {"injector": "control.placebo", "outcome": "expired"}
    before = _counter("scep_injections_total", **labels)
    fault = _fault(None, target, "control.placebo", expires_at=timezone.now())
    execution.apply_fault(fault.pk)
    assert _counter("scep_injections_total", **labels) == before + 1


def test_reaper_and_analysis_metrics(target: Any) -> None:
    from experiments.services.reaper import reap

    # The placebo is host-local and no agent is online: the reaper closes the expired row
    # itself (self-expiring mechanism) instead of asking for a revert.
    labels = {"action": "faults_expired"}
    before = _counter("scep_reaper_actions_total", **labels)
    _fault(None, target, "control.placebo", expires_at=timezone.now() - timedelta(seconds=1))
    assert reap()["faults_expired"] == 1
    assert _counter("scep_reaper_actions_total", **labels) == before + 1
    _, samples = _scrape()
    assert _value(samples, "scep_analysis_duration_seconds_count") is not None


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("reaper: expired", "reaper"),
        ("kill switch", "kill_switch"),
        ("stop condition breached: errors", "stop_condition"),
        ("duration elapsed", "completed"),
        ("expired", "expired"),
        ("agent restarted", "agent_restart"),
        ("aborted by user", "abort"),
        ("InjectionError: boom", "error"),
        ("", "other"),
    ],
)
def test_reason_kind_is_a_small_fixed_set(reason: str, kind: str) -> None:
    assert reason_kind(reason) == kind
