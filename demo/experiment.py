"""The demo experiment: 300 ms latency on the target's downstream for 20 s.

Kept in code (not only in ``experiments/examples/demo-latency.yaml``) because the demo
picks free ports at start and the URLs must follow them.
"""

from __future__ import annotations

from typing import Any

TARGET_NAME = "demo"
AGENT_NAME = "demo"
EXPERIMENT_NAME = "demo-latency"


def demo_target_config(proxy_listen: str, downstream: str) -> dict[str, Any]:
    return {
        "base_url": "",
        "proxies": {"downstream": {"listen": proxy_listen, "upstream": downstream}},
    }


def demo_spec(
    target_url: str, *, baseline: float = 15, duration: float = 20, recovery: float = 15
) -> dict[str, Any]:
    probe = {"url": f"{target_url}/api/items", "timeout": 2.0, "requests": 5}
    return {
        "name": EXPERIMENT_NAME,
        "description": "300 ms of added latency on the downstream dependency for 20 s: "
        "does the API stay within its latency objective?",
        "target": TARGET_NAME,
        "fault": {
            "type": "network.latency",
            "params": {"proxy": "downstream", "latency_ms": 300, "jitter_ms": 10},
        },
        "intensity": 1.0,
        "duration": duration,
        "baseline": baseline,
        "recovery": recovery,
        "interval": 1.0,
        "metrics": [
            {
                "name": "api_latency_p50",
                "better": "lower",
                "unit": "ms",
                "probe": probe,
                "measure": "latency_p50",
            },
            {
                "name": "api_latency_p95",
                "better": "lower",
                "unit": "ms",
                "probe": probe,
                "measure": "latency_p95",
            },
            {
                "name": "api_error_rate",
                "better": "lower",
                "unit": "ratio",
                "probe": probe,
                "measure": "error_rate",
            },
            {
                "name": "served_rps",
                "better": "higher",
                "unit": "req/s",
                "scrape": {
                    "url": f"{target_url}/metrics",
                    "metric": "demo_requests_total",
                    "labels": {"code": "200"},
                },
            },
        ],
        "hypothesis": [
            {
                "name": "API p95 latency stays under 250 ms",
                "metric": "api_latency_p95",
                "phase": "during",
                "aggregate": "p95",
                "operator": "<=",
                "threshold": 250,
            },
            {
                "name": "API errors stay under 1 %",
                "metric": "api_error_rate",
                "phase": "during",
                "aggregate": "mean",
                "operator": "<=",
                "threshold": 0.01,
            },
        ],
        "stop_conditions": [
            {
                "name": "abort if most requests fail",
                "metric": "api_error_rate",
                "phase": "during",
                "aggregate": "mean",
                "operator": ">",
                "threshold": 0.5,
                "window": 5,
            },
        ],
        "cleanup": [{"type": "wait", "seconds": 0.5}],
    }
