"""CloudWatch collection against a local ``moto_server`` (put_metric_data, then read).

The moto fixtures come from the cloud injector tests: a session-wide server, fake
credentials in the environment and no path to real AWS (``aws_env`` is autouse).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import boto3
import pytest

from analysis.collectors.cloudwatch import CloudWatchQuery
from analysis.collectors.collector import MetricCollector
from analysis.collectors.errors import (
    EmptyResultError,
    QueryBackendError,
    TargetUnreachableError,
)
from tests.injectors.cloud.conftest import REGION, aws_env, moto_server  # noqa: F401

pytestmark = pytest.mark.slow


def metric_of(ns: str) -> str:
    """The test's metric name, unique like its namespace: moto's GetMetricData ignores the
    namespace when dimensions are given, so another test's datapoints under the same name
    and dimensions would leak into this one's periods."""
    return f"Latency-{ns.rsplit('-', 1)[-1]}"


@pytest.fixture
def namespace(moto_server: str) -> str:  # noqa: F811
    """A namespace of its own, with three datapoints 60 s apart ending a minute ago."""
    ns = f"SCEP/Test-{uuid.uuid4().hex[:8]}"
    client = boto3.client("cloudwatch", region_name=REGION, endpoint_url=moto_server)
    base = (int(time.time()) // 60 - 3) * 60
    client.put_metric_data(
        Namespace=ns,
        MetricData=[
            {
                "MetricName": metric_of(ns),
                "Dimensions": [{"Name": "Service", "Value": "demo"}],
                "Timestamp": datetime.fromtimestamp(base + 60 * i, UTC),
                "Value": value,
            }
            for i, value in enumerate((10.0, 20.0, 30.0))
        ],
    )
    return ns


def query(ns: str, **kw: object) -> CloudWatchQuery:
    kw.setdefault("dimensions", {"Service": "demo"})
    kw.setdefault("stat", "Sum")
    return CloudWatchQuery(ns, metric_of(ns), period=60, **kw)  # type: ignore[arg-type]


def test_latest_datapoint(namespace):
    with query(namespace) as q:
        assert q.region == REGION  # from the environment chain, not the spec
        assert q.latest() == 30.0


def test_range_over_a_phase(namespace):
    now = time.time()
    with query(namespace, stat="Average") as q:
        points = q.range(now - 600, now)
    assert [v for _, v in points] == [10.0, 20.0, 30.0]
    assert points[1][0] - points[0][0] == 60


def test_unknown_dimension_is_an_empty_result(namespace):
    with (
        query(namespace, dimensions={"Service": "ghost"}) as q,
        pytest.raises(EmptyResultError, match="Service=ghost"),
    ):
        q.latest()


def test_no_credentials_is_a_clear_error(namespace, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with query(namespace) as q, pytest.raises(QueryBackendError, match="no AWS credentials"):
        q.latest()


def test_unreachable_endpoint(monkeypatch):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        query("X", endpoint_url=f"http://127.0.0.1:{port}", timeout=1.0) as q,
        pytest.raises(TargetUnreachableError, match="cannot reach CloudWatch"),
    ):
        q.latest()


def test_no_region_anywhere_fails_at_construction(monkeypatch):
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(ValueError, match="no region"):
        query("X")


def test_collector_reads_cloudwatch(namespace):
    block = {
        "namespace": namespace,
        "metric_name": metric_of(namespace),
        "dimensions": {"Service": "demo"},
        "stat": "Maximum",
        "period": 60,
    }
    metrics = [
        {"name": "latency", "better": "lower", "cloudwatch": block},
        {"name": "ghost", "better": "lower",
         "cloudwatch": {**block, "dimensions": {"Service": "ghost"}}},
    ]  # fmt: skip
    with MetricCollector(metrics) as collector:
        values = collector.collect()
        series = collector.collect_range(time.time() - 600, time.time())
    assert values == {"latency": 30.0, "ghost": None}
    assert "no datapoints" in collector.last_errors["ghost"]
    assert [v for _, v in series["latency"]] == [10.0, 20.0, 30.0]
