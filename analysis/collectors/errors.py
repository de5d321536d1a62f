"""One exception hierarchy for everything that can go wrong while reading a metric.

The collector catches :class:`CollectionError` at one place and turns it into "no value
this tick" plus a message, so every failure mode below must carry a message that makes
sense on its own in a UI line (it names the URL or the metric and says what to check).
"""

from __future__ import annotations

__all__ = [
    "AmbiguousMetricError",
    "BadQueryError",
    "CollectionError",
    "EmptyResultError",
    "ExpositionParseError",
    "MetricSelectionError",
    "NoMatchingSamplesError",
    "QueryBackendError",
    "QueryError",
    "TargetError",
    "TargetHTTPError",
    "TargetUnreachableError",
    "UnknownMetricError",
]


class CollectionError(Exception):
    """Base of every error raised while collecting a metric value."""


class TargetError(CollectionError):
    """The endpoint itself could not deliver a usable document."""

    def __init__(self, url: str, message: str):
        self.url = url
        super().__init__(message)


class TargetUnreachableError(TargetError):
    """Connection refused, DNS failure, or no complete answer within the timeout."""


class TargetHTTPError(TargetError):
    """The endpoint answered, but with a 4xx/5xx status."""

    def __init__(self, url: str, status: int):
        self.status = status
        super().__init__(url, f"{url} answered HTTP {status}")


class ExpositionParseError(TargetError):
    """The body is not valid Prometheus text exposition format."""


class MetricSelectionError(CollectionError):
    """The document was fine, but the requested series could not be picked out of it."""

    def __init__(self, metric: str, message: str):
        self.metric = metric
        super().__init__(message)


class UnknownMetricError(MetricSelectionError):
    """No family (or sample name) of that name is exposed."""


class AmbiguousMetricError(MetricSelectionError):
    """The name matches a family whose samples mean different things (a histogram)."""


class NoMatchingSamplesError(MetricSelectionError):
    """The family exists, but no sample carries all of the requested labels."""


class QueryError(CollectionError):
    """A metrics backend (Prometheus server, CloudWatch) could not give a usable answer.

    Unlike a scrape, the value comes from someone else's query engine, so the message
    carries what that engine said, plus which backend and which query it was about.
    """

    def __init__(self, source: str, query: str, message: str):
        self.source = source
        self.query = query
        super().__init__(message)


class BadQueryError(QueryError):
    """The backend rejected the query itself (PromQL syntax, invalid CloudWatch stat)."""


class EmptyResultError(QueryError):
    """The query ran but matched no data: wrong labels, dimensions or time window."""


class QueryBackendError(QueryError):
    """The backend failed for reasons other than the query (5xx, throttling, no
    credentials, access denied)."""
