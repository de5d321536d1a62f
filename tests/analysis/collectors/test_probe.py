"""Probe behaviour against real loopback servers: latency, concurrency, errors, reuse."""

from __future__ import annotations

import time

import pytest

from analysis.collectors.probe import MEASURES, Probe, ProbeSample


def test_latency_reflects_server_delay(server):
    with Probe(server.url("/sleep?ms=200"), requests=5, timeout=2.0) as probe:
        probe.sample()  # connections and threads opened: a cold start is not latency
        sample = probe.sample()
    assert sample.n == 5
    assert sample.error_rate == 0.0
    # Never below the server's delay; the upper bound leaves room for a busy CI host.
    assert 195 <= sample.latency_p50 <= 450
    assert 195 <= sample.latency_mean <= 450
    assert sample.latency_p50 <= sample.latency_p95 <= sample.latency_p99 < 600


def test_concurrent_requests_fit_in_one_tick(server):
    """Five 200 ms requests must overlap: one tick ~200 ms, not 1 s."""
    with Probe(server.url("/sleep?ms=200"), requests=5, timeout=2.0) as probe:
        probe.sample()  # connections opened
        started = time.perf_counter()
        sample = probe.sample()
        wall = time.perf_counter() - started
    assert wall < 0.45
    assert sample.elapsed < 0.45
    # throughput = successful requests / tick duration, so about 5 / 0.2 s
    assert 10 < sample.throughput <= 5 / 0.2 + 1


def test_500_responses_are_errors_but_keep_their_latency(server):
    with Probe(server.url("/status?code=500"), requests=4) as probe:
        sample = probe.sample()
    assert sample.error_rate == 1.0
    assert sample.errors == 4
    assert sample.timeouts == 0
    assert sample.throughput == 0.0
    assert sample.latency_p50 is not None  # a fast failure is still a response
    assert sample.last_error == "HTTP 500"


def test_expect_status_defines_success(server):
    with Probe(server.url("/status?code=500"), requests=2, expect_status=[500]) as probe:
        assert probe.sample().error_rate == 0.0
    with Probe(server.url("/sleep"), requests=2, expect_status=[201]) as probe:
        assert probe.sample().error_rate == 1.0


def test_timeouts_are_errors_without_latency(server):
    with Probe(server.url("/hang"), requests=5, timeout=0.3) as probe:
        started = time.perf_counter()
        sample = probe.sample()
        wall = time.perf_counter() - started
    assert wall < 0.3 + 0.3
    assert sample.error_rate == 1.0
    assert sample.timeouts == 5
    assert sample.latency_p50 is None and sample.latency_mean is None
    assert "timeout" in sample.last_error


def test_connection_refused_is_an_error(dead_url):
    with Probe(dead_url, requests=3, timeout=1.0) as probe:
        sample = probe.sample()
    assert sample.error_rate == 1.0
    assert sample.timeouts == 0
    assert sample.latency_p95 is None
    assert "ConnectError" in sample.last_error


def test_connections_are_kept_alive_across_ticks(server):
    with Probe(server.url("/sleep?ms=20"), requests=3) as probe:
        for _ in range(4):
            assert probe.sample().error_rate == 0.0
    assert server.hits["/sleep"] == 12
    assert len(server.client_ports) <= 3


def test_method_and_headers_are_sent(server):
    with Probe(server.url("/sleep"), method="head", requests=1, headers={"X-A": "1"}) as probe:
        sample = probe.sample()
    # the test server has no do_HEAD: a 501 proves the method went out as HEAD
    assert sample.last_error == "HTTP 501"


def test_from_spec_and_measure():
    probe = Probe.from_spec(
        {
            "url": "http://127.0.0.1:9/x",
            "method": "GET",
            "timeout": 0.5,
            "requests": 2,
            "expect_status": [],
            "headers": {},
        }
    )
    try:
        assert (probe.timeout, probe.requests, probe.method) == (0.5, 2, "GET")
    finally:
        probe.close()
    sample = ProbeSample(1.0, 2.0, 3.0, 1.5, 0.25, 10.0, n=4)
    assert [sample.measure(m) for m in MEASURES] == [1.0, 2.0, 3.0, 1.5, 0.25, 10.0]
    with pytest.raises(ValueError, match="unknown probe measure"):
        sample.measure("latency_p42")


def test_closed_probe_refuses_to_sample(server):
    probe = Probe(server.url("/sleep"), requests=1)
    probe.close()
    probe.close()
    with pytest.raises(RuntimeError):
        probe.sample()
