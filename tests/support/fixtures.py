"""Fixtures that start real platform processes (imported by tests/conftest.py), and a
real stack: the demo dependency and API with the fault proxy of a real agent between them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from tests.support.processes import (
    PlatformProcess,
    free_port,
    platform_env,
    reset_broker,
    wait_until,
)


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
    """Start a worker: queues orchestrator and analysis unless `--queues` says otherwise
    (optionally with the beat-driven reaper)."""

    def _start(*extra: str, **env: str) -> PlatformProcess:
        # Messages wait in the broker until the worker consumes them, so tests wait on
        # the run's state rather than on the worker's readiness.
        return spawn("worker", *extra, **env)

    return _start


@dataclass
class Stack:
    target: Any
    api_url: str
    proxy_url: str
    agent: PlatformProcess

    def spec(self, **overrides: Any) -> dict[str, Any]:
        probe = {"url": f"{self.api_url}/api/items", "timeout": 2.0, "requests": 3}
        spec: dict[str, Any] = {
            "name": "orchestration-test",
            "target": self.target.name,
            "fault": {
                "type": "network.latency",
                "params": {"proxy": "downstream", "latency_ms": 150},
            },
            "duration": 4,
            "baseline": 4,
            "recovery": 3,
            "interval": 0.5,
            "metrics": [
                {
                    "name": "latency",
                    "better": "lower",
                    "unit": "ms",
                    "probe": probe,
                    "measure": "latency_p50",
                },
                {"name": "errors", "better": "lower", "probe": probe, "measure": "error_rate"},
            ],
            "hypothesis": [
                {
                    "metric": "latency",
                    "phase": "during",
                    "aggregate": "p50",
                    "operator": "<=",
                    "threshold": 100,
                },
            ],
        }
        spec.update(overrides)
        return spec


@pytest.fixture
def stack(start_agent, transactional_db):
    from demo.services import start_demo_services
    from experiments.services.catalog import create_target

    proxy_listen = f"127.0.0.1:{free_port()}"
    holder: dict[str, Any] = {}

    def via_proxy(downstream_url: str) -> str:
        downstream = downstream_url.split("://", 1)[1].rstrip("/")
        holder["target"] = create_target(
            actor="test",
            source="system",
            name="shop",
            agent="test-agent",
            config={"proxies": {"downstream": {"listen": proxy_listen, "upstream": downstream}}},
        )
        holder["agent"] = start_agent("test-agent")
        return f"http://{proxy_listen}"

    services = start_demo_services(downstream_via=via_proxy, loadgen=False)
    try:
        yield Stack(
            holder["target"], services.target_url, f"http://{proxy_listen}", holder["agent"]
        )
    finally:
        services.stop()
