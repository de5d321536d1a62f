"""The platform's own faults, each survived with nothing lost: an agent SIGKILLed
mid-fault, the broker restarted mid-run (Redis and RabbitMQ), PostgreSQL restarted mid-run
and the web process restarted while a run is active. (A worker SIGKILLed mid-fault is in
tests/experiments/test_orchestrator.py.) After each: the fault reverted within its expiry,
the run in a truthful terminal state with its reason, one ledger row (no duplicate
injection) and the metric series collected before the fault still there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.db import connection

from analysis.models import MetricSeries
from experiments.choices import RunStatus
from injectors.models import ActiveFault, FaultState
from tests.scale.conftest import (
    assert_no_open_fault,
    services_pass,
    start,
    switch_broker,
    wait_status,
)
from tests.scale.private_services import (
    PrivatePostgres,
    PrivateRabbitMQ,
    PrivateRedis,
    postgres_bin,
    rabbitmq_sbin,
)
from tests.support.processes import ROOT, free_port, platform_env, round_trip_ms, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def samples(run, phase: str) -> int:
    return sum(
        len(ts)
        for ts in MetricSeries.objects.filter(run=run, metric="latency", phase=phase).values_list(
            "timestamps", flat=True
        )
    )


def reverted_in_time(fault: ActiveFault, timeout: float | None = None) -> ActiveFault:
    from django.utils import timezone

    left = (fault.expires_at - timezone.now()).total_seconds()
    done = wait_until(
        lambda: ActiveFault.objects.filter(pk=fault.pk, state=FaultState.REVERTED).first(),
        timeout or max(left, 1.0),
        f"fault {fault.pk} reverted before its expiry",
        poll=0.1,
    )
    assert done.reverted_at <= done.expires_at
    return done


def test_an_agent_sigkilled_mid_fault_is_undone_and_the_run_says_why(
    stack, start_worker, start_agent
):
    start_worker(SCEP_FAULT_EXPIRY_GRACE_S="5", SCEP_AGENT_REPLY_TIMEOUT_S="5")
    run = start(stack.spec(duration=30))
    wait_status(run, RunStatus.DURING)
    fault = ActiveFault.objects.get(run=run)
    assert round_trip_ms(f"{stack.api_url}/api/items") > 140
    before = samples(run, "baseline")

    stack.agent.kill()  # SIGKILL: its proxies die with it, the ledger row stays open
    assert ActiveFault.objects.get(pk=fault.pk).state == FaultState.ACTIVE
    start_agent("test-agent")  # a new incarnation reverts what the last one left

    reverted = reverted_in_time(fault)
    assert "agent restarted" in reverted.revert_reason
    assert round_trip_ms(f"{stack.api_url}/api/items") < 100
    run = wait_status(run, RunStatus.terminal(), timeout=60)
    # The fault lasted a fraction of its 30 s: the run must not claim it completed.
    assert run.status == RunStatus.FAILED, run.status_reason
    assert "ended before its duration elapsed" in run.status_reason
    assert "agent restarted" in run.status_reason
    assert ActiveFault.objects.filter(run=run).count() == 1
    assert samples(run, "baseline") >= before > 0
    assert samples(run, "during") > 0
    assert_no_open_fault()


@pytest.fixture
def private_redis(tmp_path: Path, settings):
    """Point this process and every process it spawns at a redis-server of the test's own."""
    redis = PrivateRedis(tmp_path / "redis")
    redis.start()
    restore = switch_broker(settings, redis.url)
    try:
        yield redis
    finally:
        restore()
        redis.stop()


def assert_broker_restart_survived(stack, run, fault, *, timeout: float) -> None:
    """What a broker restart mid-run must leave: the run completed, its fault reverted by
    the worker through the restarted broker (not left to expire: the agent's consumer came
    back), one ledger row, every phase's series kept, and a new run carried end to end."""
    run = wait_status(run, RunStatus.terminal(), timeout=timeout)
    assert run.status == RunStatus.COMPLETED, run.status_reason
    fault = reverted_in_time(fault)
    assert fault.revert_reason == "duration elapsed"
    assert round_trip_ms(f"{stack.api_url}/api/items") < 100
    assert ActiveFault.objects.filter(run=run).count() == 1
    assert {"baseline", "during", "recovery"} <= set(
        MetricSeries.objects.filter(run=run).values_list("phase", flat=True)
    )
    second = wait_status(start(stack.spec(name="after-restart", duration=2)),
                         RunStatus.terminal(), timeout=90)  # fmt: skip
    assert second.status == RunStatus.COMPLETED, second.status_reason
    assert_no_open_fault()


def test_the_broker_restarted_mid_run_loses_nothing(private_redis, stack, start_worker):
    start_worker(SCEP_AGENT_REPLY_TIMEOUT_S="20")
    run = start(stack.spec(duration=10))
    wait_status(run, RunStatus.DURING)
    fault = ActiveFault.objects.get(run=run)

    private_redis.restart(down_s=2)  # no persistence: queues and bindings are gone

    assert_broker_restart_survived(stack, run, fault, timeout=90)


@pytest.fixture
def private_rabbitmq(tmp_path: Path, settings):
    """Point this process and every process it spawns at a RabbitMQ node of the test's own
    (the machine's node is shared with other tests and must not be restarted)."""
    if rabbitmq_sbin() is None:
        if os.environ.get("CI"):
            pytest.fail("rabbitmq-server not installed (CI requires it)")
        pytest.skip("rabbitmq-server not installed")
    rabbit = PrivateRabbitMQ(tmp_path / "rabbitmq")
    try:
        rabbit.start()
        restore = switch_broker(settings, rabbit.url)
        try:
            yield rabbit
        finally:
            restore()
    finally:
        rabbit.stop()


def test_rabbitmq_restarted_mid_run_loses_nothing(private_rabbitmq, stack, start_worker):
    """The Redis test's promises, on RabbitMQ crashed (SIGKILL) and started again.

    A node takes about ten seconds to boot on two busy cores, so the fault lasts long
    enough for the node to be back before its revert is due: what is tested is that every
    process finds the restarted broker again, that the run message recovered from disk
    (Celery's queues are durable, its messages persistent) and redelivered causes no second
    injection, and that the worker still consumes after the reconnect — the run's hand-off
    to analysis and the second run go through it. (Without
    ``CELERY_WORKER_ENABLE_PREFETCH_COUNT_REDUCTION = False`` this failed about one run in
    three: the worker's pool thread and main thread both blocked reading its connection.)
    """
    from django.utils import timezone

    duration = 30
    start_worker(SCEP_AGENT_REPLY_TIMEOUT_S="20")
    run = start(stack.spec(duration=duration))
    run = wait_status(run, RunStatus.DURING)
    fault = ActiveFault.objects.get(run=run)
    during_since = timezone.now()

    private_rabbitmq.restart(down_s=2)
    back_after = (timezone.now() - during_since).total_seconds()
    assert back_after < duration - 5, f"the node took {back_after:.1f} s to come back"

    assert_broker_restart_survived(stack, run, fault, timeout=duration + 90)


@pytest.fixture
def private_postgres(tmp_path: Path, transactional_db):
    """Run this test (and every process it spawns) on a PostgreSQL cluster of its own."""
    if not services_pass():
        pytest.skip("PostgreSQL restart: runs in the PostgreSQL + Redis pass")
    if postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries not installed")
    from django.core.management import call_command

    pg = PrivatePostgres(Path("/tmp") / f"scep-pg-{os.getpid()}-{free_port()}")
    pg.init()
    conn = connection
    saved = dict(conn.settings_dict)
    try:
        pg.createdb("scep_private")
        conn.close()
        conn.settings_dict.update(
            NAME="scep_private", HOST="127.0.0.1", PORT=str(pg.port), USER="postgres", PASSWORD=""
        )
        call_command("migrate", interactive=False, verbosity=0)
        yield pg
    finally:
        conn.close()
        conn.settings_dict.clear()
        conn.settings_dict.update(saved)
        pg.stop()
        subprocess.run(["rm", "-rf", str(pg.folder)], check=False)


def test_postgresql_restarted_mid_run_loses_nothing(private_postgres, stack, start_worker):
    start_worker(SCEP_AGENT_REPLY_TIMEOUT_S="20")
    spec = stack.spec(duration=12, baseline=6)
    run = start(spec)
    wait_status(run, RunStatus.DURING)
    fault = ActiveFault.objects.get(run=run)
    time.sleep(1)

    private_postgres.restart()  # every open connection of every process is cut
    connection.close()

    run = wait_status(run, RunStatus.terminal(), timeout=120)
    assert run.status == RunStatus.COMPLETED, run.status_reason
    fault = reverted_in_time(fault)
    assert fault.revert_reason == "duration elapsed"
    assert ActiveFault.objects.filter(run=run).count() == 1
    # Samples taken while the database was down were buffered, not dropped: the series
    # cover each phase at (nearly) one sample per interval.
    per_phase = {p: samples(run, p) for p in ("baseline", "during", "recovery")}
    for phase, seconds in (("baseline", 6), ("during", 12), ("recovery", 3)):
        assert per_phase[phase] >= 0.6 * seconds / spec["interval"], per_phase
    assert round_trip_ms(f"{stack.api_url}/api/items") < 100
    assert_no_open_fault()


class Gunicorn:
    def __init__(self, env: dict[str, str], log: Path):
        self.port = free_port()
        self.env = env
        self.log = log
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "scep.wsgi", "--bind", f"127.0.0.1:{self.port}",
             "--workers", "2", "--log-level", "warning"],
            cwd=ROOT, env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

        def up() -> bool:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 60, "gunicorn to answer /healthz", poll=0.2)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # master and its workers
            self.proc.wait(timeout=10)


def test_the_web_process_restarted_while_a_run_is_active(
    stack, start_worker, broker_dir, operator, tmp_path
):
    from rest_framework.authtoken.models import Token

    from experiments.services.catalog import create_experiment

    token = Token.objects.create(user=operator).key
    headers = {"Authorization": f"Token {token}"}
    web = Gunicorn(platform_env(broker_dir), tmp_path / "gunicorn.log")
    start_worker()
    experiment = create_experiment(stack.spec(duration=8), actor="test", source="system")
    try:
        web.start()
        answer = httpx.post(f"{web.url}/api/v1/experiments/{experiment.pk}/start/",
                            json={}, headers=headers, timeout=10)  # fmt: skip
        assert answer.status_code == 201, answer.text
        run_id = answer.json()["id"]
        from experiments.models import Run

        wait_status(Run.objects.get(pk=run_id), RunStatus.DURING)

        web.kill()  # SIGKILL the whole web tier mid-run

        def web_down() -> bool:
            try:
                httpx.get(f"{web.url}/healthz", timeout=2)
            except httpx.TransportError:
                return True
            return False

        wait_until(web_down, 20, "the web tier to be gone", poll=0.2)
        web.start()

        def ended() -> dict | None:
            body = httpx.get(f"{web.url}/api/v1/runs/{run_id}/", headers=headers, timeout=10)
            assert body.status_code == 200, body.text
            data = body.json()
            return data if data["status"] in RunStatus.terminal() else None

        data = wait_until(ended, 90, f"run {run_id} terminal through the API", poll=0.5)
    finally:
        web.kill()
    assert data["status"] == RunStatus.COMPLETED, data.get("status_reason")
    fault = ActiveFault.objects.get(run_id=run_id)
    assert fault.state == FaultState.REVERTED and fault.reverted_at <= fault.expires_at
    assert round_trip_ms(f"{stack.api_url}/api/items") < 100
    assert_no_open_fault()
