"""A real stack for orchestration tests: demo dependency and API with the fault proxy of
a real agent between them, plus helpers to build specs against it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.processes import PlatformProcess, free_port


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
            "baseline": 3,
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
