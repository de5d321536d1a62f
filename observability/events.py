"""Event counters: incremented where things happen, one call per place.

The call sites (``injectors/execution.py``, ``experiments/services/reaper.py``,
``analysis/services.py``) stay one-liners so the safety-critical code around them is
unchanged; everything about labels and bucketing lives here.

These metrics are **process-local** (plain ``prometheus_client`` objects in the default
registry). Each process exposes its own: the web process through ``/metrics``, Celery
workers and agents through a small HTTP server started by :func:`start_metrics_server`
when ``SCEP_METRICS_PORT`` is set (see ``docs/observability.md`` for why we do not use
``prometheus_client``'s multiprocess mode). Prometheus sums them with
``sum by (...) (rate(...))``.

A telemetry failure must never break an injection or a revert, so every public function
here swallows and logs its own errors.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

from prometheus_client import Counter, Histogram, start_http_server

__all__ = [
    "ANALYSIS_DURATION",
    "INJECTIONS",
    "REAPER_ACTIONS",
    "REVERTS",
    "analysis_timed",
    "fault_injected",
    "fault_reverted",
    "reaper_pass",
    "reason_kind",
    "start_metrics_server",
]

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

INJECTIONS = Counter(
    "scep_injections",
    "Ledger rows taken out of 'pending' by an apply attempt, by injector and outcome "
    "(applied, failed, expired = closed before it could be applied).",
    ["injector", "outcome"],
)
REVERTS = Counter(
    "scep_reverts",
    "Open ledger rows closed by a revert, by injector and the kind of reason that won.",
    ["injector", "reason_kind"],
)
REAPER_ACTIONS = Counter(
    "scep_reaper_actions",
    "What the reaper did: runs_failed (worker lost, or analysis never finished), "
    "faults_reverted (revert requested for an orphaned or expired fault), faults_expired "
    "(closed while its agent was down), analyses_requeued (a lost analysis queued again).",
    ["action"],
)
ANALYSIS_DURATION = Histogram(
    "scep_analysis_duration_seconds",
    "Wall-clock time of one analysis of a run (statistics, findings and suggestions).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, float("inf")),
)

# Revert reasons are free text (and may contain user input); metrics need a small, fixed
# label set, so the reason is reduced to its kind. First match wins.
_REASON_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("reaper", re.compile(r"^reaper\b", re.I)),
    ("kill_switch", re.compile(r"kill switch", re.I)),
    ("stop_condition", re.compile(r"stop condition", re.I)),
    ("completed", re.compile(r"duration elapsed", re.I)),
    ("expired", re.compile(r"expire", re.I)),
    ("agent_restart", re.compile(r"agent restarted", re.I)),
    ("abort", re.compile(r"abort|ended elsewhere", re.I)),
    ("error", re.compile(r"^\w*(Error|Exception)\b|could not|failed", re.I)),
)


def reason_kind(reason: str) -> str:
    """Map a free-text revert reason to one of a few stable label values."""
    for kind, pattern in _REASON_KINDS:
        if pattern.search(reason or ""):
            return kind
    return "other"


def fault_injected(injector: str, outcome: str) -> None:
    """Count one apply attempt that changed a ledger row (duplicates are not counted)."""
    try:
        INJECTIONS.labels(injector=injector, outcome=outcome).inc()
    except Exception:  # telemetry must never break an injection
        log.exception("metrics: could not count injection")


def fault_reverted(injector: str, reason: str) -> None:
    """Count one ledger row closed by a revert."""
    try:
        REVERTS.labels(injector=injector, reason_kind=reason_kind(reason)).inc()
    except Exception:
        log.exception("metrics: could not count revert")


def reaper_pass(counts: Mapping[str, int]) -> None:
    """Add one reaper pass's counts (the dict ``reap()`` returns) to the counter."""
    try:
        for action, n in counts.items():
            if n:
                REAPER_ACTIONS.labels(action=action).inc(n)
    except Exception:
        log.exception("metrics: could not count reaper actions")


def analysis_timed(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator observing the wrapped call's duration, also when it raises.

    A decorator rather than a ``with`` block so the analysis code keeps its shape.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        started = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            try:
                ANALYSIS_DURATION.observe(time.perf_counter() - started)
            except Exception:
                log.exception("metrics: could not observe analysis duration")

    return wrapper


_server_lock = threading.Lock()
_server_port: int | None = None


def start_metrics_server(port: int | None = None, addr: str | None = None) -> int | None:
    """Serve this process's metrics on ``port`` (default: ``SCEP_METRICS_PORT``).

    For the non-web processes (``scep worker``, ``scep agent``): their counters exist only
    in their memory, so they must be scraped themselves. Does nothing when no port is
    configured; idempotent within a process. Returns the port served, if any.
    """
    global _server_port
    if port is None:
        raw = os.environ.get("SCEP_METRICS_PORT", "").strip()
        if not raw:
            return None
        try:
            port = int(raw)
        except ValueError:
            log.error("SCEP_METRICS_PORT=%r: expected a port number; not serving metrics", raw)
            return None
    addr = addr if addr is not None else os.environ.get("SCEP_METRICS_ADDR", "0.0.0.0")
    with _server_lock:
        if _server_port is not None:
            return _server_port
        start_http_server(port, addr=addr)
        _server_port = port
        log.info("metrics: serving this process's counters on %s:%s/metrics", addr, port)
        return port


def _on_worker_init(**_: Any) -> None:
    """Celery ``worker_init`` receiver: both ``scep worker`` and ``scep agent`` are Celery
    workers, so this is the one place that covers them without touching the CLI."""
    try:
        start_metrics_server()
    except OSError as exc:  # port taken: run on without metrics rather than not at all
        log.error("metrics: could not serve on SCEP_METRICS_PORT: %s", exc)
