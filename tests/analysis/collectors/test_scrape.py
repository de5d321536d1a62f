"""Scraping and interpreting Prometheus expositions, against a real loopback server."""

from __future__ import annotations

import time

import pytest

from analysis.collectors.errors import (
    AmbiguousMetricError,
    CollectionError,
    ExpositionParseError,
    NoMatchingSamplesError,
    TargetHTTPError,
    TargetUnreachableError,
    UnknownMetricError,
)
from analysis.collectors.scrape import Exposition, Scraper, ScrapeSeries


def counters(ok: float, failed: float = 0.0) -> str:
    return (
        "# HELP jobs_total Jobs processed.\n"
        "# TYPE jobs_total counter\n"
        f'jobs_total{{code="200",pod="a"}} {ok}\n'
        f'jobs_total{{code="500",pod="a"}} {failed}\n'
    )


GAUGES = """# TYPE queue_depth gauge
queue_depth{queue="fast",zone="x"} 4
queue_depth{queue="slow",zone="x"} 10
queue_depth{queue="slow",zone="y"} 1
# TYPE req_seconds histogram
req_seconds_bucket{le="0.1"} 3
req_seconds_bucket{le="+Inf"} 5
req_seconds_sum 1.5
req_seconds_count 5
# TYPE rpc summary
rpc{quantile="0.5"} 0.2
rpc{quantile="0.9"} 0.7
rpc_sum 12
rpc_count 40
"""


def at(text: str, t: float) -> Exposition:
    return Exposition.parse(text, url="test", fetched_at=t)


def test_counter_rate_across_two_real_scrapes(server):
    server.metrics_text = counters(100)
    series = ScrapeSeries("jobs_total", labels={"code": "200"})
    with Scraper(server.url("/metrics"), timeout=2.0) as scraper:
        first = scraper.fetch()
        assert series.observe(first) is None  # nothing to compare with yet
        time.sleep(0.2)
        server.metrics_text = counters(150)
        second = scraper.fetch()
    rate = series.observe(second)
    assert rate == pytest.approx(50 / (second.fetched_at - first.fetched_at))
    assert 50 / 0.5 < rate < 50 / 0.19


def test_counter_rate_is_exact_for_known_timestamps():
    series = ScrapeSeries("jobs", labels={"code": "200"})
    assert series.observe(at(counters(100), 10.0)) is None
    assert series.observe(at(counters(130), 12.0)) == pytest.approx(15.0)
    assert series.observe(at(counters(130), 13.0)) == pytest.approx(0.0)


def test_both_counter_spellings_find_the_family():
    exp = at(counters(7), 1.0)
    for name in ("jobs", "jobs_total"):
        assert ScrapeSeries(name, labels={"code": "200"}, counter="raw").observe(exp) == 7


def test_counter_reset_counts_new_value_as_increase():
    series = ScrapeSeries("jobs_total", labels={"code": "200"})
    series.observe(at(counters(1000), 0.0))
    # the process restarted and has served 30 since: increase 30 over 2 s
    assert series.observe(at(counters(30), 2.0)) == pytest.approx(15.0)
    assert series.observe(at(counters(50), 4.0)) == pytest.approx(10.0)


def test_rates_are_per_series_so_one_reset_does_not_spoil_the_sum():
    series = ScrapeSeries("jobs_total", aggregate="sum")  # both codes
    series.observe(at(counters(100, 500), 0.0))
    # code=200 grew by 20, code=500 reset and is now 4
    assert series.observe(at(counters(120, 4), 2.0)) == pytest.approx((20 + 4) / 2)


def test_raw_counter_and_gauges_are_returned_as_is():
    assert ScrapeSeries("jobs_total", counter="raw").observe(at(counters(5, 2), 0.0)) == 7
    gauge = ScrapeSeries("queue_depth", counter="rate")  # rate mode ignored for gauges
    assert gauge.observe(at(GAUGES, 0.0)) == 15


@pytest.mark.parametrize(
    ("labels", "aggregate", "expected"),
    [
        ({}, "sum", 15),
        ({}, "max", 10),
        ({}, "min", 1),
        ({}, "mean", 5),
        ({"queue": "slow"}, "sum", 11),
        ({"queue": "slow", "zone": "y"}, "sum", 1),
        ({"zone": "x"}, "mean", 7),
    ],
)
def test_label_filter_and_aggregate(labels, aggregate, expected):
    series = ScrapeSeries("queue_depth", labels=labels, aggregate=aggregate)
    assert series.observe(at(GAUGES, 0.0)) == pytest.approx(expected)


def test_histogram_and_summary_parts_by_sample_name():
    exp1 = at(GAUGES, 0.0)
    exp2 = at(GAUGES.replace("req_seconds_count 5", "req_seconds_count 9"), 2.0)
    count = ScrapeSeries("req_seconds_count")
    assert count.observe(exp1) is None
    assert count.observe(exp2) == pytest.approx(2.0)
    assert ScrapeSeries("req_seconds_sum", counter="raw").observe(exp1) == 1.5
    assert ScrapeSeries("rpc", labels={"quantile": "0.9"}).observe(exp1) == 0.7
    assert ScrapeSeries("rpc_count", counter="raw").observe(exp1) == 40
    with pytest.raises(AmbiguousMetricError, match="req_seconds_count"):
        ScrapeSeries("req_seconds").observe(exp1)


def test_unknown_family_is_a_clear_error():
    with pytest.raises(UnknownMetricError, match="did you mean jobs") as info:
        ScrapeSeries("jobz").observe(at(counters(1), 0.0))
    assert info.value.metric == "jobz"


def test_no_matching_labels_names_what_exists():
    with pytest.raises(NoMatchingSamplesError, match='code="200"') as info:
        ScrapeSeries("jobs_total", labels={"code": "404"}).observe(at(counters(1), 0.0))
    assert 'code="404"' in str(info.value)


def test_unreachable_url(dead_url):
    with Scraper(dead_url, timeout=1.0) as scraper, pytest.raises(TargetUnreachableError) as info:
        scraper.fetch()
    assert dead_url in str(info.value)


def test_hanging_url_times_out(blackhole_url):
    with Scraper(blackhole_url, timeout=0.3) as scraper:
        started = time.perf_counter()
        with pytest.raises(TargetUnreachableError, match=r"did not answer within 0\.3s"):
            scraper.fetch()
    assert time.perf_counter() - started < 1.0


def test_http_error_status(server):
    scraper = Scraper(server.url("/nothing-here"), timeout=1.0)
    with scraper, pytest.raises(TargetHTTPError, match="HTTP 404") as info:
        scraper.fetch()
    assert info.value.status == 404


def test_garbage_body_is_a_parse_error(server):
    server.metrics_text = "<html><body>login first</body></html>"
    with Scraper(server.url("/metrics")) as scraper, pytest.raises(ExpositionParseError):
        scraper.fetch()


def test_errors_share_one_base_class():
    for cls in (
        TargetUnreachableError,
        TargetHTTPError,
        ExpositionParseError,
        UnknownMetricError,
        NoMatchingSamplesError,
        AmbiguousMetricError,
    ):
        assert issubclass(cls, CollectionError)


def test_from_spec_and_validation():
    series = ScrapeSeries.from_spec(
        {"url": "http://x/m", "metric": "jobs", "labels": {"code": "200"}, "aggregate": "max",
         "counter": "raw", "timeout": 2.0}
    )  # fmt: skip
    assert (series.metric, series.labels, series.aggregate, series.counter) == (
        "jobs", {"code": "200"}, "max", "raw",
    )  # fmt: skip
    with pytest.raises(ValueError):
        ScrapeSeries("x", aggregate="median")  # type: ignore[arg-type]
