"""Fixtures that start real platform processes (imported by tests/conftest.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from tests.support.processes import PlatformProcess, platform_env, reset_broker, wait_until


@pytest.fixture
def broker_dir(tmp_path: Path) -> Path:
    path = tmp_path / "broker"
    reset_broker(path)
    return path


@pytest.fixture
def spawn(broker_dir: Path, tmp_path: Path):
    """Start ``scep <args>`` subprocesses; all are stopped after the test."""
    procs: list[PlatformProcess] = []

    def _spawn(*args: str, **env: str) -> PlatformProcess:
        log = tmp_path / f"{args[0]}-{len(procs)}.log"
        proc = PlatformProcess(list(args), platform_env(broker_dir, **env), log)
        procs.append(proc)
        return proc

    yield _spawn
    for proc in procs:
        proc.stop()


@pytest.fixture
def start_agent(spawn, transactional_db):
    """Start an agent and wait until its heartbeat is in the database."""
    from injectors.models import Agent

    def _start(name: str = "local", **env: str) -> PlatformProcess:
        began = timezone.now() - timedelta(seconds=1)
        proc = spawn("agent", "--name", name, **env)

        def ready():
            assert proc.alive(), f"agent {name} exited:\n{proc.log()}"
            return Agent.objects.filter(name=name, pid=proc.pid, last_heartbeat__gte=began).exists()

        wait_until(ready, 30, f"agent {name} heartbeat")
        return proc

    return _start


@pytest.fixture
def start_worker(spawn, transactional_db):
    """Start an orchestrator worker (optionally with the beat-driven reaper)."""

    def _start(*extra: str, **env: str) -> PlatformProcess:
        # Messages wait in the broker until the worker consumes them, so tests wait on
        # the run's state rather than on the worker's readiness.
        return spawn("worker", *extra, **env)

    return _start
