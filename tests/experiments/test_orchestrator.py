"""A run end to end through a real orchestrator worker, a real agent and its fault proxy,
against the demo API: phases, ledger, revert on abort, kill switch, stop conditions and a
worker SIGKILLed mid-fault."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from analysis.models import Finding, MetricSeries
from experiments.choices import EventKind, RunStatus
from experiments.models import Run
from experiments.services.catalog import create_experiment
from experiments.services.runs import (
    KillSwitchEngaged,
    abort_run,
    engage_kill_switch,
    release_kill_switch,
    start_run,
)
from injectors.models import ActiveFault, FaultState
from tests.support.processes import round_trip_ms, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def start(spec: dict) -> Run:
    experiment = create_experiment(spec, actor="test", source="system")
    return start_run(experiment, actor="test", source="system")


def wait_status(run: Run, statuses, timeout: float = 60) -> Run:
    statuses = {statuses} if isinstance(statuses, str) else set(statuses)

    def reached():
        run.refresh_from_db()
        return run.status in statuses

    wait_until(reached, timeout, f"run {run.pk} to reach {statuses} (is {run.status})")
    return run


def test_a_run_goes_through_every_phase_reverts_its_fault_and_judges_the_impact(
    stack, start_worker
):
    start_worker()
    # Six-second windows: enough samples for a significant shift even when a loaded host
    # stretches some ticks (with four-second windows a loaded run once missed the shift).
    run = start(stack.spec(baseline=6, duration=6))
    run = wait_status(run, RunStatus.terminal(), timeout=120)

    assert run.status == RunStatus.COMPLETED, run.status_reason
    transitions = [
        e.phase for e in run.events.filter(kind=EventKind.TRANSITION).order_by("at", "id")
    ]
    for earlier, later in zip(
        [
            "queued",
            "preflight",
            "baseline",
            "injecting",
            "during",
            "reverting",
            "recovery",
            "analysing",
            "completed",
        ][:-1],
        [
            "preflight",
            "baseline",
            "injecting",
            "during",
            "reverting",
            "recovery",
            "analysing",
            "completed",
        ],
        strict=True,
    ):
        assert transitions.index(earlier) < transitions.index(later)
    fault = ActiveFault.objects.get(run=run)
    assert fault.state == FaultState.REVERTED
    assert run.injected_at <= fault.reverted_at <= run.recovery_started_at
    phases = set(
        MetricSeries.objects.filter(run=run, metric="latency").values_list("phase", flat=True)
    )
    assert phases == {"baseline", "during", "recovery"}
    # 150 ms were added to a ~10 ms API: the hypothesis (p50 <= 100 ms) must fail ...
    assert run.verdict == "failed"
    # ... and the latency metric must be found degraded, with its numbers.
    degradation = Finding.objects.get(run=run, metric="latency", kind="degradation")
    assert degradation.evidence
    folder = Path(settings.SCEP_REPORTS_DIR) / str(run.pk)
    assert "latency" in (folder / "report.json").read_text()
    assert "<svg" in (folder / "report.html").read_text()
    assert round_trip_ms(f"{stack.api_url}/api/items") < 100


def test_abort_reverts_the_fault_promptly(stack, start_worker):
    start_worker()
    run = start(stack.spec(duration=60))
    wait_status(run, RunStatus.DURING)
    assert round_trip_ms(f"{stack.api_url}/api/items") > 140

    abort_run(run, actor="test", source="system", reason="enough")
    fault = wait_until(
        lambda: ActiveFault.objects.filter(run=run, state=FaultState.REVERTED).first(),
        30,
        "fault reverted",
    )
    run.refresh_from_db()
    # Tens of milliseconds at p50 (benchmarks/orchestration.py); the bound here only has
    # to tell "the abort reverted it" from "the expiry did" on a loaded host.
    assert (fault.reverted_at - run.abort_requested_at).total_seconds() < 5.0
    assert round_trip_ms(f"{stack.api_url}/api/items") < 100
    run = wait_status(run, RunStatus.terminal())
    assert run.status == RunStatus.ABORTED
    assert run.status_reason == "enough"


def test_the_kill_switch_reverts_everything_and_refuses_new_runs(stack, start_worker):
    start_worker()
    run = start(stack.spec(duration=60))
    wait_status(run, RunStatus.DURING)

    counts = engage_kill_switch(actor="test", source="system", reason="incident")
    try:
        assert counts == {"aborted_runs": 1, "reverted_faults": 1}
        assert ActiveFault.objects.get(run=run).state == FaultState.REVERTED
        assert round_trip_ms(f"{stack.api_url}/api/items") < 100
        with pytest.raises(KillSwitchEngaged):
            start_run(run.experiment, actor="test", source="system")
        run = wait_status(run, RunStatus.terminal())
        assert run.status == RunStatus.ABORTED
    finally:
        release_kill_switch(actor="test", source="system")
    start_run(run.experiment, actor="test", source="system")


def test_a_breached_stop_condition_aborts_and_reverts_quickly(stack, start_worker):
    start_worker()
    spec = stack.spec(duration=60, recovery=1)
    spec["fault"]["params"]["latency_ms"] = 300
    spec["stop_conditions"] = [
        {
            "name": "latency over 200 ms",
            "metric": "latency",
            "phase": "during",
            "aggregate": "p50",
            "operator": ">",
            "threshold": 200,
            "window": 1.5,
        },
    ]
    run = start(spec)
    run = wait_status(run, RunStatus.terminal(), timeout=60)

    assert run.status == RunStatus.ABORTED
    assert run.verdict == "failed"
    breach = run.events.get(kind=EventKind.STOP_CONDITION)
    assert "latency over 200 ms" in breach.message
    assert breach.data["evidence"]["observed"] > 200
    fault = ActiveFault.objects.get(run=run)
    # Milliseconds at p50 (benchmarks/orchestration.py); far below the 60 s fault here.
    assert (fault.reverted_at - breach.at).total_seconds() < 5.0
    assert (run.finished_at - run.injected_at).total_seconds() < 40


def test_a_worker_sigkilled_mid_fault_leaves_no_fault_and_a_failed_run(stack, start_worker):
    # The expiry leaves room for a cold worker's start and first reaper pass on a loaded
    # host; the revert must still come from the reaper, before it.
    victim = start_worker(SCEP_FAULT_EXPIRY_GRACE_S="12")
    run = start(stack.spec(duration=8))
    wait_status(run, RunStatus.DURING)
    fault = ActiveFault.objects.get(run=run)
    assert fault.state == FaultState.ACTIVE
    assert round_trip_ms(f"{stack.api_url}/api/items") > 140

    victim.kill()  # SIGKILL: no finally block runs in the worker
    start_worker("--beat", SCEP_REAPER_INTERVAL_S="0.5")

    fault = wait_until(
        lambda: ActiveFault.objects.filter(pk=fault.pk, state=FaultState.REVERTED).first(),
        (fault.expires_at - timezone.now()).total_seconds(),
        "fault reverted before expiry",
    )
    assert fault.reverted_at <= fault.expires_at
    assert round_trip_ms(f"{stack.api_url}/api/items") < 100
    run = wait_status(run, RunStatus.terminal(), timeout=10)
    assert run.status == RunStatus.FAILED
    assert "lost" in run.status_reason and str(victim.pid) in run.status_reason
    assert ActiveFault.objects.filter(run=run).count() == 1  # never injected twice


def test_a_run_whose_agent_is_offline_fails_preflight_with_the_reason(
    transactional_db, start_worker
):
    from experiments.services.catalog import create_target

    create_target(
        actor="test",
        source="system",
        name="lonely",
        agent="nobody",
        config={"proxies": {"downstream": {"listen": "127.0.0.1:1", "upstream": "127.0.0.1:2"}}},
    )
    start_worker()
    spec = {
        "name": "no-agent",
        "target": "lonely",
        "fault": {"type": "network.latency", "params": {"proxy": "downstream", "latency_ms": 10}},
        "duration": 1,
        "baseline": 1,
        "recovery": 1,
        "metrics": [
            {
                "name": "m",
                "better": "lower",
                "measure": "latency_p50",
                "probe": {"url": "http://127.0.0.1:1/"},
            }
        ],
    }
    run = wait_status(start(spec), RunStatus.terminal())
    assert run.status == RunStatus.FAILED
    assert "agent 'nobody'" in run.status_reason and "offline" in run.status_reason
    assert not ActiveFault.objects.filter(run=run).exists()


def test_a_statistical_stop_condition_aborts_an_over_harmful_fault(stack, start_worker):
    start_worker()
    spec = stack.spec(duration=60, recovery=1, baseline=5)
    spec["fault"]["params"]["latency_ms"] = 300
    spec["stop_conditions"] = [
        {"name": "latency left its baseline", "metric": "latency", "phase": "during",
         "detector": "cusum", "threshold": 8, "consecutive": 1},
    ]  # fmt: skip
    run = wait_status(start(spec), RunStatus.terminal(), timeout=60)

    assert run.status == RunStatus.ABORTED and run.verdict == "failed"
    breach = run.events.get(kind=EventKind.STOP_CONDITION)
    assert breach.data["evidence"]["detector"] == "cusum"
    assert breach.data["evidence"]["z"] > 8
    timing = run.events.get(message__startswith="stop condition breach → fault reverted")
    # Breach to reverted: milliseconds at p50 (benchmarks/orchestration.py); here only
    # "promptly, not at the end of the 60 s fault".
    assert timing.data["breach_to_revert_ms"] <= 5000
    assert (run.finished_at - run.injected_at).total_seconds() < 40
