"""The demo's service under test: an API that depends on the downstream service.

``GET /api/items`` calls ``<downstream>/data`` (in the orchestrated demo that URL points at
the fault proxy, so injected latency, errors and resets hit this call) with a 2 s
timeout, and answers 502 when the dependency fails. It exposes its own view of health on
``GET /metrics`` so experiments can compare what clients see (probes) with what the
service reports (scrapes):

* ``demo_requests_total{code}``            counter, per response code of /api/items
* ``demo_request_duration_seconds``        histogram of /api/items handling time
* ``demo_in_flight_requests``              gauge of /api/items requests being handled
* ``demo_downstream_errors_total{reason}`` counter: timeout | connect | status | other

Each server thread keeps its own keep-alive connection to the downstream: that is how
typical thread-per-request services behave, and it makes connection-level faults
(resets, stalls) affect one worker at a time as they would in production.

Run: ``python -m demo.target --port 8001 --downstream http://127.0.0.1:8002``
"""

from __future__ import annotations

import argparse
import ssl
import threading
import time
import weakref

import httpx
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from demo._http import QuietHandler, announce, make_server, serve_until_signal, server_url

__all__ = ["TargetMetrics", "main"]


class TargetMetrics:
    """The service's metrics, on a private registry (no process/platform collectors)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "demo_requests", "Requests to /api/items by status code", ["code"],
            registry=self.registry,
        )  # fmt: skip
        self.duration = Histogram(
            "demo_request_duration_seconds",
            "Time to handle /api/items",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "demo_in_flight_requests", "Requests to /api/items in progress",
            registry=self.registry,
        )  # fmt: skip
        self.downstream_errors = Counter(
            "demo_downstream_errors", "Failed calls to the downstream by reason", ["reason"],
            registry=self.registry,
        )  # fmt: skip
        # Expose zero-valued series up front, so scrapes with label filters work from the
        # first tick instead of failing until the first error happens.
        for code in ("200", "502"):
            self.requests.labels(code=code)
        for reason in ("timeout", "connect", "status", "other"):
            self.downstream_errors.labels(reason=reason)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _ThreadClient:
    """A per-thread httpx client, closed when its thread's storage is released."""

    def __init__(self, timeout: float):
        self._timeout = timeout
        self._local = threading.local()
        # Building an SSL context loads the CA bundle (~30 ms); share one instead of
        # paying that on every new server thread, which would show up as latency spikes.
        self._ssl = ssl.create_default_context()

    def get(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(
                timeout=httpx.Timeout(self._timeout),
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                verify=self._ssl,
                trust_env=False,
            )
            self._local.client = client
            holder = self._local.holder = _Holder()
            weakref.finalize(holder, client.close)
        return client


class _Holder:
    """Its collection, with the thread-local, tells us the thread is gone."""


def _handler(data_url: str, timeout: float, metrics: TargetMetrics) -> type[QuietHandler]:
    clients = _ThreadClient(timeout)

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/api/items":
                self._items()
            elif path == "/healthz":
                self.send_json(200, {"status": "ok", "service": "target"})
            elif path == "/metrics":
                self.send_body(200, metrics.render(), CONTENT_TYPE_LATEST)
            else:
                self.not_found()

        def _items(self) -> None:
            start = time.perf_counter()
            metrics.in_flight.inc()
            status = 502
            try:
                status, payload = self._call_downstream()
                self.send_json(status, payload)
            finally:
                metrics.in_flight.dec()
                metrics.duration.observe(time.perf_counter() - start)
                metrics.requests.labels(code=str(status)).inc()

        def _call_downstream(self) -> tuple[int, dict[str, object]]:
            try:
                resp = clients.get().get(data_url)
            except httpx.TimeoutException:
                return self._failed("timeout", "downstream timed out")
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                return self._failed("connect", f"downstream connection failed: {exc}")
            except httpx.HTTPError as exc:
                return self._failed("other", f"downstream call failed: {exc}")
            if resp.status_code >= 400:
                return self._failed("status", f"downstream answered {resp.status_code}")
            try:
                data = resp.json()
            except ValueError:
                return self._failed("other", "downstream sent invalid JSON")
            return 200, {"items": data.get("items", []), "source": "downstream"}

        def _failed(self, reason: str, message: str) -> tuple[int, dict[str, object]]:
            metrics.downstream_errors.labels(reason=reason).inc()
            return 502, {"error": message}

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port")
    parser.add_argument(
        "--downstream",
        required=True,
        help="base URL of the dependency (or of the fault proxy in front of it)",
    )
    parser.add_argument("--downstream-timeout", type=float, default=2.0, help="seconds")
    args = parser.parse_args(argv)
    disable_created_metrics()  # keep the exposition to the series people query
    data_url = args.downstream.rstrip("/") + "/data"
    server = make_server(
        args.host, args.port, _handler(data_url, args.downstream_timeout, TargetMetrics())
    )
    announce(server_url(server))
    serve_until_signal(server)


if __name__ == "__main__":
    main()
