"""Orchestration latency: API start → fault active, abort → fault reverted, a
statistical stop condition's breach → fault reverted, and the kill switch with 50 active
faults → all reverted.

Runs N real experiments (real agent, real orchestrator worker, the demo service behind
the fault proxy) on the configured database and broker — the embedded default unless
DATABASE_URL / CELERY_BROKER_URL say otherwise — in a throwaway data folder, and prints
percentiles. Usage: ``.venv/bin/python benchmarks/orchestration.py [--runs N]
[--kill-faults 50] [--kill-reps 5]``. For the kill switch, KILL_FAULTS placebo faults on
as many targets are applied by the real agent (ledger rows with no run attached, so only
the switch itself is timed), then the switch is engaged: time from engaging to the last
ledger row reverted. Targets at p50: 100 ms, 200 ms and 1 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--stop-runs", type=int, default=5)
    parser.add_argument("--kill-faults", type=int, default=50)
    parser.add_argument("--kill-reps", type=int, default=5)
    args = parser.parse_args()

    var = tempfile.mkdtemp(prefix="scep-bench-")
    os.environ.setdefault("SCEP_VAR_DIR", var)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scep.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)

    from demo.services import start_demo_services
    from experiments.services.catalog import create_experiment, create_target
    from injectors.models import Agent

    procs: list[subprocess.Popen] = []

    def spawn(*argv: str) -> None:
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "scep", *argv],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    def wait(predicate, timeout: float = 30.0, poll: float = 0.005):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(poll)
        raise TimeoutError("benchmark step timed out")

    proxy = f"127.0.0.1:{free_port()}"
    services = None
    try:

        def via(url: str) -> str:
            create_target(
                actor="bench",
                source="system",
                name="bench",
                agent="bench",
                config={
                    "proxies": {"downstream": {"listen": proxy, "upstream": url.split("://", 1)[1]}}
                },
            )
            spawn("agent", "--name", "bench")
            wait(lambda: Agent.objects.filter(name="bench").exists())
            return f"http://{proxy}"

        services = start_demo_services(downstream_via=via, loadgen=False)
        spawn("worker")
        spec = {
            "name": "bench",
            "target": "bench",
            "fault": {
                "type": "network.latency",
                "params": {"proxy": "downstream", "latency_ms": 100},
            },
            "duration": 120,
            "baseline": 0,
            "recovery": 0,
            "interval": 1,
            "metrics": [
                {
                    "name": "latency",
                    "better": "lower",
                    "measure": "latency_p50",
                    "probe": {"url": f"{services.target_url}/api/items", "requests": 1},
                }
            ],
        }
        experiment = create_experiment(spec, actor="bench", source="system")
        to_active, to_reverted = [], []
        for i in range(args.runs + 1):  # the first run warms the worker up; not counted
            active_ms, reverted_ms = measure_one(experiment, wait)
            if i:
                to_active.append(active_ms)
                to_reverted.append(reverted_ms)
        stop_spec = {
            **spec,
            "name": "bench-stop",
            "baseline": 3,
            "interval": 0.5,
            "fault": {"type": "network.latency",
                      "params": {"proxy": "downstream", "latency_ms": 300}},
            "stop_conditions": [{"metric": "latency", "detector": "cusum", "threshold": 8}],
        }  # fmt: skip
        stopper = create_experiment(stop_spec, actor="bench", source="system")
        breach_to_revert = [measure_stop(stopper, wait) for _ in range(args.stop_runs)]
        kill_targets = [
            create_target(actor="bench", source="system", name=f"kill-{i}", agent="bench",
                          config={})
            for i in range(args.kill_faults)
        ]  # fmt: skip
        kill_switch = [measure_kill_switch(kill_targets, wait) for _ in range(args.kill_reps)]
    finally:
        if services is not None:
            services.stop()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)

    from django.conf import settings

    broker = settings.CELERY_BROKER_URL.split("://")[0]
    db = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    print(
        f"orchestration latency over {args.runs} runs + {args.stop_runs} stop-condition runs "
        f"({db}, {broker} broker); stop condition: cusum h=8, interval 0.5 s"
    )
    print(f"{'measure':<28}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
    rows = (
        ("start -> fault active", to_active),
        ("abort -> fault reverted", to_reverted),
        ("stop breach -> reverted", breach_to_revert),
        (f"kill switch, {args.kill_faults} faults", kill_switch),
    )
    for name, values in rows:
        print(
            f"{name:<28}{statistics.median(values):>10.1f}"
            f"{percentile(values, 0.95):>10.1f}{max(values):>10.1f}"
        )
    return 0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_stop(experiment, wait) -> float:
    """A cusum stop condition on a 300 ms fault: ms from its breach to the revert."""
    from experiments.choices import RunStatus
    from experiments.models import Run, RunEvent
    from experiments.services.runs import start_run

    run = start_run(experiment, actor="bench", source="system")
    wait(Run.objects.filter(pk=run.pk, status__in=RunStatus.terminal()).exists, timeout=60)
    event = RunEvent.objects.get(run=run, data__has_key="breach_to_revert_ms")
    return float(event.data["breach_to_revert_ms"])


def measure_kill_switch(targets, wait) -> float:
    """Apply one placebo fault per target through the agent, engage the kill switch:
    ms from engaging to the last fault reverted."""
    from datetime import timedelta

    from django.utils import timezone

    from experiments.services.runs import engage_kill_switch, release_kill_switch
    from injectors.models import ActiveFault, FaultState
    from injectors.services import _send, open_fault

    faults = [
        open_fault(run=None, target=t, injector="control.placebo", params={}, intensity=1.0,
                   expires_at=timezone.now() + timedelta(minutes=5), owner_worker="bench")
        for t in targets
    ]  # fmt: skip
    for fault in faults:
        _send("apply_fault", fault)
    ids = [f.pk for f in faults]
    active = ActiveFault.objects.filter(pk__in=ids, state=FaultState.ACTIVE)
    wait(lambda: active.count() == len(ids), timeout=60)
    engaged = timezone.now()
    try:
        counts = engage_kill_switch(actor="bench", source="system", reason="benchmark")
        assert counts["reverted_faults"] == len(ids), counts
        reverted = ActiveFault.objects.filter(pk__in=ids, state=FaultState.REVERTED)
        wait(lambda: reverted.count() == len(ids), timeout=30)
    finally:
        release_kill_switch(actor="bench", source="system")
    last = max(reverted.values_list("reverted_at", flat=True))
    return (last - engaged).total_seconds() * 1000


def measure_one(experiment, wait) -> tuple[float, float]:
    """Start a run, wait for its fault, abort it; (start→active, abort→reverted) in ms."""
    from experiments.choices import RunStatus
    from experiments.models import Run
    from experiments.services.runs import abort_run, start_run
    from injectors.models import ActiveFault, FaultState

    run = start_run(experiment, actor="bench", source="system")
    active = ActiveFault.objects.filter(run=run, state=FaultState.ACTIVE)
    fault = wait(active.first)
    abort_run(run, actor="bench", source="system", reason="benchmark")
    run.refresh_from_db()
    reverted = wait(ActiveFault.objects.filter(pk=fault.pk, state=FaultState.REVERTED).first)
    wait(Run.objects.filter(pk=run.pk, status__in=RunStatus.terminal()).exists)
    return (
        (fault.injected_at - run.created_at).total_seconds() * 1000,
        (reverted.reverted_at - run.abort_requested_at).total_seconds() * 1000,
    )


if __name__ == "__main__":
    sys.exit(main())
