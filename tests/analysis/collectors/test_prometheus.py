"""PromQL collection against a REAL Prometheus server scraping the demo target.

One session-scoped server scrapes the demo target (under 20 req/s of load) every second.
Without the ``prometheus`` binary the tests skip locally, but FAIL in CI (``CI`` set),
where ``.ci/install-system.sh`` installs it: a silently skipped integration test is how
a broken collector reaches production.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from analysis.collectors.collector import MetricCollector
from analysis.collectors.errors import (
    BadQueryError,
    CollectionError,
    EmptyResultError,
    TargetUnreachableError,
)
from analysis.collectors.prometheus import PrometheusQuery, parse_prom_duration
from analysis.collectors.query_template import (
    UnknownPlaceholderError,
    placeholders,
    query_context,
    render_query,
)
from demo.services import DemoServices, start_demo_services
from tests.support.processes import free_port
from tests.support.prometheus import prometheus

pytestmark = pytest.mark.slow

RPS = 20.0
RATE = 'sum(rate(demo_requests_total{job="{target}",env="{env}"}[5s]))'
CONTEXT = {"target": "demo", "env": "test"}


@dataclass
class PromServer:
    url: str
    demo: DemoServices


@pytest.fixture(scope="session")
def prom() -> Iterator[PromServer]:
    """Demo services + a Prometheus scraping the target every 1 s, ready with 10 s of data."""
    demo = start_demo_services(loadgen=True, loadgen_rps=RPS)
    try:
        target = demo.target_url.split("://", 1)[1]
        with prometheus("demo", target, labels="{env: test}") as url:
            yield PromServer(url, demo)
    finally:
        demo.stop(grace=2.0)


# -- templates (no server needed) -----------------------------------------------------
def test_template_fills_placeholders_and_leaves_matchers_alone():
    assert placeholders(RATE) == ["target", "env"]
    rendered = render_query(RATE, CONTEXT)
    assert rendered == 'sum(rate(demo_requests_total{job="demo",env="test"}[5s]))'
    # An empty selector and a matcher are not placeholders.
    assert render_query('up{} + up{job="x"}', {}) == 'up{} + up{job="x"}'


def test_template_escapes_values_for_promql_strings():
    assert render_query('x{a="{v}"}', {"v": 'say "hi"\\'}) == r'x{a="say \"hi\"\\"}'


def test_unknown_placeholders_are_all_named():
    with pytest.raises(UnknownPlaceholderError) as info:
        render_query("{target} {zone} {tier}", query_context("demo", {"env": "x"}))
    assert info.value.unknown == ["zone", "tier"]
    assert "{zone}, {tier}" in str(info.value) and "{env}, {target}" in str(info.value)


def test_target_name_wins_over_a_label_called_target():
    ctx = query_context("real", {"target": "label", "n": 3, "bad-key": "x"})
    assert ctx == {"target": "real", "n": "3"}


def test_prom_durations():
    assert parse_prom_duration("1m30s") == 90
    assert parse_prom_duration("500ms") == 0.5
    with pytest.raises(ValueError):
        parse_prom_duration("1 minute")


def test_construction_refuses_a_placeholder_without_value():
    with pytest.raises(ValueError, match=r"\{env\}"):
        PrometheusQuery("http://127.0.0.1:9", RATE, context={"target": "demo"})


# -- against the real server ----------------------------------------------------------
def test_instant_rate_matches_the_load(prom):
    with PrometheusQuery(prom.url, RATE, context=CONTEXT) as q:
        assert q.query == 'sum(rate(demo_requests_total{job="demo",env="test"}[5s]))'
        value = q.instant()
    assert RPS * 0.7 <= value <= RPS * 1.3


def test_several_series_are_summed(prom):
    at = time.time() - 1
    with (
        PrometheusQuery(prom.url, "demo_request_duration_seconds_bucket") as each,
        PrometheusQuery(prom.url, "sum(demo_request_duration_seconds_bucket)") as total,
    ):
        assert each.instant(at) == pytest.approx(total.instant(at))


def test_scalar_result(prom):
    with PrometheusQuery(prom.url, "scalar(vector(2)) * 3") as q:
        assert q.instant() == 6.0


def test_range_step_follows_the_scrape_interval(prom):
    end = time.time() - 1
    with PrometheusQuery(prom.url, RATE, context=CONTEXT) as q:
        assert q.scrape_interval() == 1.0
        points = q.range(end - 4, end)
        coarse = q.range(end - 4, end, step=2)
    assert 4 <= len(points) <= 6
    assert all(b[0] - a[0] == pytest.approx(1.0) for a, b in itertools.pairwise(points))
    assert len(coarse) in (2, 3)
    mean = sum(v for _, v in points) / len(points)
    assert RPS * 0.7 <= mean <= RPS * 1.3


def test_bad_query_surfaces_the_servers_message(prom):
    with (
        PrometheusQuery(prom.url, "sum(rate(demo_requests_total[5s])") as q,
        pytest.raises(BadQueryError) as info,
    ):
        q.instant()
    message = str(info.value)
    assert "bad_data" in message and "parse error" in message and prom.url in message


def test_empty_result(prom):
    with (
        PrometheusQuery(prom.url, 'demo_requests_total{code="999"}') as q,
        pytest.raises(EmptyResultError, match="no series"),
    ):
        q.instant()
        now = time.time()
        with pytest.raises(EmptyResultError):
            q.range(now - 3, now)


def test_unreachable_server_fails_fast():
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with (
        PrometheusQuery(url, "up", timeout=1.0) as q,
        pytest.raises(TargetUnreachableError, match="cannot reach Prometheus"),
    ):
        q.instant()
        with pytest.raises(TargetUnreachableError):
            q.scrape_interval()
    assert time.monotonic() - started < 2.0


def test_collector_mixes_prometheus_with_scrape(prom):
    metrics = [
        {"name": "rate", "better": "higher", "prometheus": {"url": prom.url, "query": RATE}},
        {"name": "nan", "better": "lower", "prometheus": {"url": prom.url, "query": "0/0"}},
        {"name": "bad", "better": "lower", "prometheus": {"url": prom.url, "query": "up{"}},
        {
            "name": "in_flight",
            "better": "lower",
            "scrape": {"url": prom.demo.metrics_url, "metric": "demo_in_flight_requests"},
        },
    ]
    with MetricCollector(metrics, context=CONTEXT) as collector:
        values = collector.collect()
        end = time.time() - 1
        series = collector.collect_range(end - 3, end)
    assert RPS * 0.7 <= values["rate"] <= RPS * 1.3
    assert values["in_flight"] is not None
    assert values["nan"] is None and "NaN" in collector.last_errors["nan"]
    assert values["bad"] is None and "parse error" in collector.last_errors["bad"]
    assert set(series) == {"rate", "nan", "bad"}  # scrapes have no history
    assert len(series["rate"]) >= 3 and all(math.isfinite(v) for _, v in series["rate"])
    assert series["bad"] == [] and "parse error" in collector.range_errors["bad"]


def test_collector_refuses_unfilled_placeholders_at_start(prom):
    metrics = [{"name": "r", "better": "higher", "prometheus": {"url": prom.url, "query": RATE}}]
    with pytest.raises(ValueError, match="unknown placeholder"):
        MetricCollector(metrics, context={"target": "demo"})


def test_errors_are_collection_errors():
    assert issubclass(BadQueryError, CollectionError)
    assert issubclass(EmptyResultError, CollectionError)
