"""The demo services as real subprocesses: end to end, metrics, and clean shutdown."""

from __future__ import annotations

import time

import httpx
import psutil
import pytest

from analysis.collectors.collector import MetricCollector
from demo.services import DemoStartupError, start_demo_services, start_service

pytestmark = pytest.mark.slow


def _children_pids() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _metric_value(text: str, line_prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_prefix):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{line_prefix} not in exposition")


def test_demo_end_to_end_and_clean_stop():
    demo = start_demo_services(loadgen_rps=40)
    pids = {p.pid for p in demo.processes}
    try:
        assert pids <= _children_pids()
        with httpx.Client(trust_env=False, timeout=2.0) as client:
            resp = client.get(demo.items_url)
            assert resp.status_code == 200
            assert resp.json()["source"] == "downstream"
            assert {item["name"] for item in resp.json()["items"]} >= {"anvil"}
            assert client.get(demo.downstream_url + "/healthz").json()["service"] == "downstream"

            time.sleep(0.6)  # let the load generator put some traffic through
            text = client.get(demo.metrics_url).text
            assert _metric_value(text, 'demo_requests_total{code="200"}') >= 5
            assert "demo_request_duration_seconds_bucket" in text
            assert "demo_in_flight_requests" in text
            assert 'demo_downstream_errors_total{reason="timeout"} 0.0' in text
            stats = client.get(demo.loadgen.url + "/stats").json()
            assert stats["ok"] >= 5 and stats["errors"] == 0

        # the platform's collector reads the demo like any other target
        spec = [
            {"name": "p95", "better": "lower", "measure": "latency_p95",
             "probe": {"url": demo.items_url, "requests": 5, "timeout": 2.0}},
            {"name": "served", "better": "higher",
             "scrape": {"url": demo.metrics_url, "metric": "demo_requests_total",
                        "labels": {"code": "200"}, "aggregate": "sum", "counter": "rate"}},
        ]  # fmt: skip
        with MetricCollector(spec) as collector:
            collector.collect()
            time.sleep(0.5)
            values = collector.collect()
        assert values["p95"] is not None and values["p95"] < 1000
        assert values["served"] > 10  # ~40 rps of background load
    finally:
        demo.stop(grace=3.0)
    assert all(p.process.returncode is not None for p in demo.processes)
    assert not (pids & _children_pids())
    assert "loadgen: url=" in demo.loadgen.output()  # summary printed on SIGTERM


def test_target_answers_502_when_downstream_is_gone():
    def nowhere(downstream_url: str) -> str:
        return "http://127.0.0.1:9"  # discard port: nothing listens

    with start_demo_services(downstream_via=nowhere, loadgen=False) as demo:
        assert demo.loadgen is None
        with httpx.Client(trust_env=False, timeout=3.0) as client:
            resp = client.get(demo.items_url)
            assert resp.status_code == 502
            assert "downstream" in resp.json()["error"]
            text = client.get(demo.metrics_url).text
        assert _metric_value(text, 'demo_requests_total{code="502"}') == 1
        assert _metric_value(text, 'demo_downstream_errors_total{reason="connect"}') == 1
    assert all(not p.alive for p in demo.processes)


def test_startup_failure_is_reported_with_output():
    before = _children_pids()
    with pytest.raises(DemoStartupError, match="target failed to start") as info:
        start_service("target", "demo.target", ["--port", "0"], startup_timeout=10)
    assert "--downstream" in str(info.value)  # argparse's complaint is included
    assert _children_pids() <= before


def test_loadgen_refuses_non_loopback_targets():
    with pytest.raises(DemoStartupError, match="loopback"):
        start_service(
            "loadgen", "demo.loadgen",
            ["--url", "http://192.0.2.10/", "--status-port", "0"], startup_timeout=10,
        )  # fmt: skip
