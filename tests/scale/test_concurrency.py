"""100 experiments started within seconds across 4 orchestrator worker processes and two
agents: none lost or stuck, no fault left in place, never two faults on one target at
once, and never more than one ledger row per run."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from experiments.choices import RunStatus
from experiments.services.catalog import create_target
from injectors.models import ActiveFault, FaultState
from tests.scale.conftest import (
    assert_never_overlapping,
    assert_no_open_fault,
    placebo_spec,
    start,
    wait_terminal,
)

pytestmark = [pytest.mark.slow, pytest.mark.scale, pytest.mark.django_db(transaction=True)]

RUNS = 100
TARGETS = 25  # four runs per target: the exclusion is exercised on every one
WORKERS = 4


def test_a_hundred_runs_on_four_workers_end_truthfully_with_exclusion(
    http_server, start_agent, start_worker
):
    targets = [
        create_target(
            actor="test", source="system", name=f"svc-{i:02d}", agent=f"host-{i % 2}", config={}
        )
        for i in range(TARGETS)
    ]
    # Generous liveness windows: 100 runs on 2 cores are slow, not dead.
    env = {"SCEP_AGENT_OFFLINE_AFTER_S": "60", "SCEP_FAULT_EXPIRY_GRACE_S": "30"}
    start_agent("host-0", **env)
    start_agent("host-1", **env)
    for i in range(WORKERS):
        extra = ("--beat",) if i == 0 else ()
        start_worker(*extra, "--concurrency", "6", **env)

    began = time.monotonic()
    runs = [
        start(placebo_spec(f"c-{n:03d}", targets[n % TARGETS].name, http_server))
        for n in range(RUNS)
    ]
    started_in = time.monotonic() - began
    assert started_in < 30, f"starting {RUNS} runs took {started_in:.1f} s"

    runs = wait_terminal(runs, timeout=900)

    statuses = Counter(r.status for r in runs)
    assert set(statuses) <= {RunStatus.COMPLETED, RunStatus.FAILED}, statuses
    busy_words = ("already has an active fault", "is faulting target")
    for run in runs:
        assert run.status_reason, f"run {run.pk} ended {run.status} without a reason"
        if run.status == RunStatus.FAILED:
            # The only acceptable failure is the exclusion policy refusing a busy target.
            assert any(w in run.status_reason for w in busy_words), (
                f"run {run.pk}: {run.status_reason}"
            )
    print(f"{RUNS} runs started in {started_in:.1f} s, ended: {dict(statuses)}")
    assert statuses[RunStatus.COMPLETED] >= TARGETS, statuses  # each target ran something
    workers = {r.worker.rpartition(":")[2] for r in runs if r.worker}
    assert len(workers) == WORKERS, f"runs spread over {len(workers)} worker processes"

    assert_no_open_fault()
    assert_never_overlapping(t.pk for t in targets)
    per_run = Counter(ActiveFault.objects.values_list("run_id", flat=True))
    assert max(per_run.values()) == 1, "a run injected twice"
    completed = {r.pk for r in runs if r.status == RunStatus.COMPLETED}
    assert (
        set(
            ActiveFault.objects.filter(run_id__in=completed, state=FaultState.REVERTED).values_list(
                "run_id", flat=True
            )
        )
        == completed
    )
