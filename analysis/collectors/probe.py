"""Active HTTP probing: the platform measures the target the way a client experiences it.

Each tick fires ``requests`` requests *concurrently* and summarises them in a
:class:`ProbeSample`. Concurrency matters because a tick must fit inside the collection
interval: five requests against a target with 300 ms injected latency have to take about
300 ms together, not 1.5 s, or the time series would be sampled at a slower, drifting rate
exactly when the fault is active.

Design choices, and why:

* **Threads + one shared ``httpx.Client``** rather than asyncio in a private loop thread.
  Callers (the orchestrator, Celery tasks, tests) are synchronous; a thread pool gives
  real concurrency for blocking I/O with no event-loop lifetime to manage, and
  ``httpx.Client`` is thread-safe and pools connections, so keep-alive connections are
  reused across ticks (we measure the service, not TCP handshakes). The pool is twice
  ``requests`` wide so a few stragglers from a previous tick cannot delay the next one.
* **Latency covers every request that got a response**, successful or not (a 500 that
  took 40 ms is 40 ms of user-visible waiting, and dropping it would make a failing
  service look *faster*). Requests that got no response at all (timeout, refused
  connection) are counted as errors but excluded from latency: their "duration" is the
  configured timeout or a kernel round trip, which says nothing about the service.
* **A hard per-request deadline.** httpx timeouts apply per network operation, so a
  server trickling bytes could keep a request alive far past ``timeout``. The body is
  streamed and abandoned once the deadline passes, and the tick itself stops waiting at
  the deadline, so one tick never takes much longer than ``timeout``.
* ``trust_env=False``: proxy environment variables must not reroute probes of a local
  target through some corporate proxy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from analysis.collectors.tls import client_ssl_context

__all__ = ["MEASURES", "Probe", "ProbeSample"]

MEASURES = (
    "latency_p50",
    "latency_p95",
    "latency_p99",
    "latency_mean",
    "error_rate",
    "throughput",
)

# Extra time the tick waits past the per-request deadline for threads to report back.
_GRACE = 0.05


@dataclass(frozen=True)
class ProbeSample:
    """Summary of one probe tick.

    Latencies are in milliseconds and ``None`` when no request got a response at all.
    ``error_rate`` is in 0..1 over all ``n`` requests; ``throughput`` is successful
    requests per second of the tick's wall-clock duration ``elapsed`` (seconds).
    """

    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    latency_mean: float | None
    error_rate: float
    throughput: float
    n: int
    errors: int = 0
    timeouts: int = 0
    elapsed: float = 0.0
    last_error: str | None = None

    def measure(self, name: str) -> float | None:
        """The value of one of :data:`MEASURES`, so specs can name the field they want."""
        if name not in MEASURES:
            raise ValueError(f"unknown probe measure {name!r}; expected one of {MEASURES}")
        return getattr(self, name)


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    latency_ms: float | None  # None when no response arrived
    timed_out: bool = False
    error: str | None = None


class _DeadlineExceeded(Exception):
    pass


class Probe:
    """Fires ``requests`` concurrent requests at ``url`` per :meth:`sample` call."""

    def __init__(
        self,
        url: str,
        *,
        method: str = "GET",
        timeout: float = 2.0,
        requests: int = 5,
        expect_status: Iterable[int] = (),
        headers: Mapping[str, str] | None = None,
    ):
        if requests < 1:
            raise ValueError("requests must be at least 1")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.url = url
        self.method = method.upper()
        self.timeout = float(timeout)
        self.requests = int(requests)
        self.expect_status = frozenset(int(s) for s in expect_status)
        self.headers = dict(headers or {})
        width = 2 * self.requests
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.timeout),
            limits=httpx.Limits(max_connections=width, max_keepalive_connections=width),
            follow_redirects=False,
            trust_env=False,
            verify=client_ssl_context(),
        )
        self._pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="scep-probe")
        self._closed = False
        self._lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Probe:
        """Build from a validated ``probe:`` mapping (timeouts already in seconds)."""
        return cls(
            spec["url"],
            method=spec.get("method") or "GET",
            timeout=float(spec.get("timeout") or 2.0),
            requests=int(spec.get("requests") or 5),
            expect_status=spec.get("expect_status") or (),
            headers=spec.get("headers") or {},
        )

    def _is_success(self, status: int) -> bool:
        if self.expect_status:
            return status in self.expect_status
        return 200 <= status < 400

    def _one(self, deadline: float) -> _Outcome:
        """One request, read to the end so the connection can go back to the pool."""
        start = time.perf_counter()
        try:
            with self._client.stream(self.method, self.url, headers=self.headers) as resp:
                for _ in resp.iter_raw():
                    if time.perf_counter() > deadline:
                        raise _DeadlineExceeded
                if time.perf_counter() > deadline:
                    raise _DeadlineExceeded
                latency = (time.perf_counter() - start) * 1000.0
                status = resp.status_code
        except (httpx.TimeoutException, _DeadlineExceeded):
            return _Outcome(False, None, timed_out=True, error=f"timeout after {self.timeout}s")
        except httpx.HTTPError as exc:
            return _Outcome(False, None, error=f"{type(exc).__name__}: {exc or 'no detail'}")
        if self._is_success(status):
            return _Outcome(True, latency)
        return _Outcome(False, latency, error=f"HTTP {status}")

    def sample(self) -> ProbeSample:
        """Run one tick and summarise it; never raises for target-side failures."""
        with self._lock:
            if self._closed:
                raise RuntimeError("probe is closed")
            start = time.perf_counter()
            deadline = start + self.timeout
            futures = [self._pool.submit(self._one, deadline) for _ in range(self.requests)]
        done, _pending = wait(futures, timeout=self.timeout + _GRACE)
        elapsed = time.perf_counter() - start
        outcomes: list[_Outcome] = []
        for fut in futures:
            if fut in done and fut.exception() is None:
                outcomes.append(fut.result())
            elif fut in done:
                outcomes.append(_Outcome(False, None, error=repr(fut.exception())))
            else:
                fut.cancel()
                outcomes.append(
                    _Outcome(False, None, timed_out=True, error=f"timeout after {self.timeout}s")
                )
        return _summarise(outcomes, elapsed)

    def close(self) -> None:
        """Stop the worker threads and close pooled connections."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Probe({self.method} {self.url}, requests={self.requests}, timeout={self.timeout})"


def _summarise(outcomes: list[_Outcome], elapsed: float) -> ProbeSample:
    n = len(outcomes)
    ok = sum(1 for o in outcomes if o.ok)
    lat = np.array([o.latency_ms for o in outcomes if o.latency_ms is not None], dtype=float)
    errors = n - ok
    last_error = next((o.error for o in reversed(outcomes) if o.error), None)
    if lat.size:
        p50, p95, p99 = (float(v) for v in np.percentile(lat, [50, 95, 99]))
        mean: float | None = float(lat.mean())
    else:
        p50 = p95 = p99 = mean = None
    return ProbeSample(
        latency_p50=p50,
        latency_p95=p95,
        latency_p99=p99,
        latency_mean=mean,
        error_rate=errors / n if n else 1.0,
        throughput=ok / elapsed if elapsed > 0 else 0.0,
        n=n,
        errors=errors,
        timeouts=sum(1 for o in outcomes if o.timed_out),
        elapsed=elapsed,
        last_error=last_error,
    )
