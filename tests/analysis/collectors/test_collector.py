"""MetricCollector: grouping, concurrency, and never raising for target trouble."""

from __future__ import annotations

import time

import pytest

from analysis.collectors.collector import MetricCollector

COUNTER = """# TYPE served_total counter
served_total{{code="200"}} {n}
served_total{{code="500"}} 3
"""


def probe_metric(name, url, measure, **probe):
    block = {"url": url, "method": "GET", "timeout": 2.0, "requests": 5,
             "expect_status": [], "headers": {}, **probe}  # fmt: skip
    return {"name": name, "better": "lower", "probe": block, "measure": measure}


def scrape_metric(name, url, metric="served_total", **scrape):
    block = {"url": url, "metric": metric, "labels": {}, "aggregate": "sum",
             "counter": "rate", "timeout": 2.0, **scrape}  # fmt: skip
    return {"name": name, "better": "higher", "scrape": block}


def test_one_probe_per_identical_config_and_one_fetch_per_url(server):
    server.metrics_text = COUNTER.format(n=10)
    url = server.url("/sleep?ms=100")
    metrics = [
        probe_metric("p95", url, "latency_p95"),
        probe_metric("errors", url, "error_rate"),
        # same config, keys in another order: still the same group
        {"name": "tput", "measure": "throughput", "better": "higher",
         "probe": {"headers": {}, "expect_status": [], "requests": 5, "timeout": 2, "url": url}},
        scrape_metric("ok_rate", server.url("/metrics"), labels={"code": "200"}),
        scrape_metric("all_raw", server.url("/metrics"), counter="raw"),
    ]  # fmt: skip
    with MetricCollector(metrics) as collector:
        started = time.perf_counter()
        first = collector.collect()
        # Concurrently: five 100 ms requests one after another would take >= 0.5 s.
        assert time.perf_counter() - started < 0.48
        assert server.hits["/sleep"] == 5
        assert server.hits["/metrics"] == 1
        assert first["ok_rate"] is None and "two scrapes" in collector.last_errors["ok_rate"]
        assert first["all_raw"] == 13
        assert 95 <= first["p95"] < 400
        assert first["errors"] == 0.0
        assert first["tput"] > 10

        server.metrics_text = COUNTER.format(n=40)
        time.sleep(0.1)
        second = collector.collect()
    assert server.hits["/sleep"] == 10
    assert server.hits["/metrics"] == 2
    assert second["ok_rate"] > 0
    assert second["all_raw"] == 43
    assert collector.last_errors == {}
    assert list(second) == ["p95", "errors", "tput", "ok_rate", "all_raw"]


def test_dead_target_gives_none_and_errors_without_raising(dead_url):
    metrics = [
        probe_metric("latency", dead_url, "latency_p50", timeout=1.0),
        probe_metric("errors", dead_url, "error_rate", timeout=1.0),
        scrape_metric("served", dead_url, timeout=1.0),
    ]
    with MetricCollector(metrics) as collector:
        values = collector.collect()
    assert values["latency"] is None
    assert values["served"] is None
    # an unreachable service has, truthfully, a 100 % error rate
    assert values["errors"] == 1.0
    assert set(collector.last_errors) == {"latency", "errors", "served"}
    assert "ConnectError" in collector.last_errors["latency"]
    assert "cannot reach" in collector.last_errors["served"]


def test_hanging_target_returns_within_the_timeout(blackhole_url, server):
    server.metrics_text = COUNTER.format(n=1)
    metrics = [
        probe_metric("hung_latency", blackhole_url, "latency_p95", timeout=0.5),
        scrape_metric("hung_scrape", blackhole_url, timeout=0.5),
        scrape_metric("healthy", server.url("/metrics"), counter="raw", timeout=0.5),
    ]
    with MetricCollector(metrics) as collector:
        for _ in range(2):
            started = time.perf_counter()
            values = collector.collect()
            # One timeout, not one per request (five in a row would take >= 2.5 s).
            assert time.perf_counter() - started < 0.5 + 1.5
            assert values["hung_latency"] is None
            assert values["hung_scrape"] is None
            assert values["healthy"] == 4
            assert "timeout" in collector.last_errors["hung_latency"]
            assert "did not answer" in collector.last_errors["hung_scrape"]
            assert "healthy" not in collector.last_errors


def test_selection_errors_are_per_metric(server):
    server.metrics_text = COUNTER.format(n=1)
    url = server.url("/metrics")
    metrics = [
        scrape_metric("good", url, counter="raw"),
        scrape_metric("typo", url, metric="servd_total"),
        scrape_metric("nolabel", url, labels={"code": "418"}),
    ]
    with MetricCollector(metrics) as collector:
        values = collector.collect()
    assert values == {"good": 4, "typo": None, "nolabel": None}
    assert "not exposed" in collector.last_errors["typo"]
    assert 'code="418"' in collector.last_errors["nolabel"]


def test_partial_failures_are_reported_with_the_value(server):
    metrics = [probe_metric("errors", server.url("/status?code=503"), "error_rate")]
    with MetricCollector(metrics) as collector:
        assert collector.collect() == {"errors": 1.0}
        assert "5/5 requests" in collector.last_errors["errors"]
        assert "HTTP 503" in collector.last_errors["errors"]


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ([probe_metric("a", "http://127.0.0.1:9/", "latency_p42")], "measure"),
        ([scrape_metric("a", "http://127.0.0.1:9/")] * 2, "duplicate"),
        ([{"name": "a", "better": "lower", "probe": None, "scrape": None}], "exactly one"),
    ],
)
def test_configuration_mistakes_fail_at_construction(metrics, message):
    with pytest.raises(ValueError, match=message):
        MetricCollector(metrics)


def test_close_is_idempotent_and_final(server):
    collector = MetricCollector([probe_metric("p", server.url("/sleep"), "latency_p50")])
    assert collector.timeout == 2.0
    collector.close()
    collector.close()
    with pytest.raises(RuntimeError):
        collector.collect()
