"""Read a metric from Amazon CloudWatch with ``GetMetricData``.

For targets running on AWS the best view of their health is often a CloudWatch metric
(an ALB's ``TargetResponseTime``, a queue's depth). Two uses, as for Prometheus:

* :meth:`CloudWatchQuery.latest` — the newest datapoint, for the per-tick ``collect()``.
  CloudWatch aggregates per ``period`` and publishes with a delay, so the value changes
  at most once per period and may lag by minutes; the tick still gets a value (the last
  known one) instead of nothing. Choose a small ``period`` (1/5/10/30 s need
  high-resolution metrics) for experiments of a few minutes.
* :meth:`CloudWatchQuery.range` — every datapoint of a phase, after the fact; this is
  the accurate one for analysis.

**Credentials** come only from boto3's normal chain (environment, shared profile,
instance/task role): the spec has no field for them, on purpose, because specs are
stored, versioned and shown in the UI. ``region`` and ``endpoint_url`` (a VPC endpoint,
or a local stand-in in tests) may be given; otherwise the chain decides them too.

Calls are made with short timeouts and no retries so that a tick stays on schedule; the
sampler's next tick is the retry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
)

from analysis.collectors.errors import (
    BadQueryError,
    EmptyResultError,
    QueryBackendError,
    TargetUnreachableError,
)

__all__ = ["CloudWatchQuery"]

# Error codes that mean "your request is wrong", as opposed to "AWS could not serve it".
_BAD_REQUEST = {
    "ValidationError",
    "InvalidParameterValue",
    "InvalidParameterCombination",
    "MissingParameter",
    "InvalidParameterValueException",
}
# How far back ``latest`` looks, in periods: data is published with a delay, and a
# sparse metric may skip periods.
_LOOKBACK_PERIODS = 10
_MIN_LOOKBACK_S = 600.0


class CloudWatchQuery:
    """One metric + statistic of CloudWatch; thread-safe (boto3 clients are)."""

    def __init__(
        self,
        namespace: str,
        metric_name: str,
        *,
        stat: str = "Average",
        dimensions: Mapping[str, str] | None = None,
        period: int = 60,
        region: str | None = None,
        endpoint_url: str | None = None,
        timeout: float = 5.0,
    ):
        if period <= 0:
            raise ValueError("period must be positive")
        self.namespace = namespace
        self.metric_name = metric_name
        self.stat = stat
        self.dimensions = {str(k): str(v) for k, v in (dimensions or {}).items()}
        self.period = int(period)
        self.timeout = float(timeout)
        config = Config(
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},
        )
        try:
            # A Session of our own: the default session is shared and not thread-safe.
            self._client = boto3.session.Session().client(
                "cloudwatch", region_name=region, endpoint_url=endpoint_url, config=config
            )
        except NoRegionError:
            raise ValueError(
                f"cloudwatch metric {namespace}/{metric_name}: no region in the spec and "
                "none configured (AWS_REGION / AWS_DEFAULT_REGION or the profile)"
            ) from None
        self.endpoint = self._client.meta.endpoint_url
        self.region = self._client.meta.region_name

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> CloudWatchQuery:
        """Build from a validated ``cloudwatch:`` mapping."""
        return cls(
            spec["namespace"],
            spec["metric_name"],
            stat=spec.get("stat") or "Average",
            dimensions=spec.get("dimensions") or {},
            period=int(spec.get("period") or 60),
            region=spec.get("region"),
            endpoint_url=spec.get("endpoint_url"),
            timeout=float(spec.get("timeout") or 5.0),
        )

    @property
    def label(self) -> str:
        dims = ",".join(f"{k}={v}" for k, v in sorted(self.dimensions.items()))
        return f"{self.stat}({self.namespace}/{self.metric_name}{{{dims}}}, {self.period}s)"

    def latest(self, now: float | None = None) -> float:
        """The newest datapoint within the last ``max(10 periods, 10 min)``."""
        end = datetime.now(UTC) if now is None else datetime.fromtimestamp(now, UTC)
        lookback = max(_LOOKBACK_PERIODS * self.period, _MIN_LOOKBACK_S)
        points = self._fetch(
            end - timedelta(seconds=lookback),
            end + timedelta(seconds=self.period),  # include the still-open period
            scan="TimestampDescending",
            limit=1,
        )
        if not points:
            raise self._empty(f"in the last {lookback:g}s")
        return points[0][1]

    def range(self, start: float, end: float) -> list[tuple[float, float]]:
        """``(timestamp, value)`` of every period starting in ``[start, end]``, oldest
        first (CloudWatch timestamps are the start of each period)."""
        if end < start:
            raise ValueError("end must not be before start")
        # Period-aligned bounds: CloudWatch (and moto) bucket from StartTime, and an
        # unaligned start can split one period's datapoints across two buckets.
        first = math.floor(start / self.period) * self.period
        last = math.ceil((end + 1) / self.period) * self.period
        points = self._fetch(
            datetime.fromtimestamp(first, UTC),
            datetime.fromtimestamp(last, UTC),
            scan="TimestampAscending",
        )
        by_time: dict[float, float] = {}
        for ts, value in points:  # one value per period start, within the asked window
            if start <= ts <= end:
                by_time.setdefault(ts, value)
        points = sorted(by_time.items())
        if not points:
            raise self._empty(f"between {start:.0f} and {end:.0f}")
        return points

    def _fetch(
        self, start: datetime, end: datetime, *, scan: str, limit: int | None = None
    ) -> list[tuple[float, float]]:
        request: dict[str, Any] = {
            "MetricDataQueries": [
                {
                    "Id": "m",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": self.namespace,
                            "MetricName": self.metric_name,
                            "Dimensions": [
                                {"Name": k, "Value": v} for k, v in self.dimensions.items()
                            ],
                        },
                        "Period": self.period,
                        "Stat": self.stat,
                    },
                    "ReturnData": True,
                }
            ],
            "StartTime": start,
            "EndTime": end,
            "ScanBy": scan,
        }
        points: list[tuple[float, float]] = []
        while True:
            resp = self._call(request)
            for result in resp.get("MetricDataResults", []):
                points.extend(
                    (ts.timestamp(), float(v))
                    for ts, v in zip(
                        result.get("Timestamps", []), result.get("Values", []), strict=True
                    )
                    if not math.isnan(float(v))
                )
            token = resp.get("NextToken")
            if not token or (limit is not None and len(points) >= limit):
                break
            request["NextToken"] = token
        points.sort(reverse=scan == "TimestampDescending")
        return points[:limit] if limit is not None else points

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            return dict(self._client.get_metric_data(**request))
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code, message = err.get("Code", "?"), err.get("Message", str(exc))
            cls = BadQueryError if code in _BAD_REQUEST else QueryBackendError
            raise cls(
                self.endpoint,
                self.label,
                f"CloudWatch ({self.region}) refused {self.label}: {code}: {message}",
            ) from exc
        except NoCredentialsError as exc:
            raise QueryBackendError(
                self.endpoint,
                self.label,
                "no AWS credentials found in the environment or profile chain "
                f"for CloudWatch {self.label}",
            ) from exc
        except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
            raise TargetUnreachableError(
                self.endpoint, f"cannot reach CloudWatch at {self.endpoint}: {exc}"
            ) from exc
        except BotoCoreError as exc:
            raise QueryBackendError(
                self.endpoint, self.label, f"CloudWatch call failed for {self.label}: {exc}"
            ) from exc

    def _empty(self, when: str) -> EmptyResultError:
        return EmptyResultError(
            self.endpoint,
            self.label,
            f"CloudWatch has no datapoints for {self.label} {when} in {self.region}: check "
            "namespace, metric name, every dimension (all must match exactly) and period",
        )

    def close(self) -> None:
        """Close the client's connection pool."""
        self._client.close()

    def __enter__(self) -> CloudWatchQuery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CloudWatchQuery({self.label})"
