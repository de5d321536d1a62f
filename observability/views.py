"""``/metrics``, ``/healthz`` and ``/readyz``: plain Django views, outside the REST API.

Plain views (not DRF) because probes and scrapers carry no token: these endpoints must
answer without authentication and without the API's permission classes. They expose
counts and check results only, never names of users or secrets.

* ``/healthz`` — liveness: the process answers. No database, no broker, so a database
  outage does not make the orchestrator restart every web pod.
* ``/readyz`` — readiness: the database answers a query, the broker is reachable (or,
  for the filesystem broker, its folder is writable) and, reported only, how many agents
  are online. 503 when any required check fails.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client.exposition import choose_encoder

from observability.metrics import web_registry

__all__ = ["healthz", "metrics", "readyz"]

Check = Callable[[], dict[str, Any]]


@require_GET
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """django-prometheus's and the event metrics of this process, plus SCEP's state
    gauges read from the database (content negotiation as in ``prometheus_client``)."""
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(web_registry()), content_type=content_type)


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: answering at all is the check."""
    return JsonResponse({"status": "ok", "pid": os.getpid()})


def _ready_timeout() -> float:
    """Per-check timeout; a readiness probe that hangs is worse than one that fails."""
    return float(settings.SCEP_READY_TIMEOUT_S)


def _requires_agents() -> bool:
    return bool(settings.SCEP_READY_REQUIRES_AGENTS)


def check_database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"status": "ok", "vendor": connection.vendor}


def check_broker() -> dict[str, Any]:
    url: str = settings.CELERY_BROKER_URL
    scheme = url.split("://", 1)[0]
    if scheme == "memory":
        return {"status": "ok", "transport": scheme}
    if scheme == "filesystem":
        # Publishing is a file write into the folder: prove we can write one.
        folder = Path(settings.BROKER_DIR)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".readyz-", delete=True):
            pass
        return {"status": "ok", "transport": scheme, "folder": str(folder)}
    from kombu import Connection

    timeout = _ready_timeout()
    with Connection(url, connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
    # The URL may hold a password: report only the transport.
    return {"status": "ok", "transport": scheme}


def check_agents() -> dict[str, Any]:
    from datetime import timedelta

    from django.utils import timezone

    from injectors.models import Agent

    cutoff = timezone.now() - timedelta(seconds=settings.SCEP_AGENT_OFFLINE_AFTER_S)
    online = Agent.objects.filter(last_heartbeat__gte=cutoff).count()
    required = _requires_agents()
    status = "ok" if online or not required else "fail"
    if not online and not required:
        status = "warn"  # reported, not failing: host-local faults cannot run right now
    return {"status": status, "online": online, "required": required}


def _run(check: Check) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result = check()
    except Exception as exc:
        result = {"status": "fail", "error": f"{type(exc).__name__}: {exc}"[:300]}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return result


CHECKS: dict[str, Check] = {
    "database": check_database,
    "broker": check_broker,
    "agents": check_agents,
}


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: every check runs (a report names all that fail); 503 if any fails."""
    checks = {name: _run(check) for name, check in CHECKS.items()}
    ready = all(c["status"] != "fail" for c in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "fail", "checks": checks}, status=200 if ready else 503
    )
