"""Shared, Django-free pieces of the database faults.

Both the injectors (inside the agent) and the detached helper processes import this
module, so it deliberately depends on nothing but the standard library, psycopg and
redis-py: a helper must start fast and must not break because of app configuration.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

__all__ = [
    "HELPER_APP_PREFIX",
    "LOCK_MODES",
    "Backend",
    "ExhaustPlan",
    "find_backends",
    "pg_connect",
    "pick_share",
    "plan_exhaust",
    "redact",
    "redact_text",
    "redis_memory_config",
    "restore_maxmemory",
    "terminate_backends",
]

#: ``application_name`` prefix of every session SCEP itself opens. Such sessions are never
#: chosen by ``database.pg_terminate_backends``: killing our own lock holder would end a
#: different fault early and make the experiment measure the wrong thing.
HELPER_APP_PREFIX = "scep-fault-"

_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact(dsn: str) -> str:
    """Return ``dsn`` with any password replaced by ``***`` (URL or key=value form).

    Dry-run text and error messages end up in the audit log and the UI, where a
    credential must never appear.
    """
    if "://" in dsn:
        try:
            parts = urlsplit(dsn)
        except ValueError:
            return "<unparsable connection string>"
        if parts.password is not None:
            user = parts.username or ""
            host = parts.netloc.rsplit("@", 1)[1]
            parts = parts._replace(netloc=f"{user}:***@{host}")
        query = _KV_PASSWORD.sub(r"\1***", parts.query.replace("&", " ")).replace(" ", "&")
        return urlunsplit(parts._replace(query=query))
    return _KV_PASSWORD.sub(r"\1***", dsn)


def _secret_of(dsn: str) -> str | None:
    if "://" in dsn:
        try:
            return urlsplit(dsn).password
        except ValueError:
            return None
    match = _KV_PASSWORD.search(dsn)
    return match.group(2).strip("'") if match else None


def redact_text(text: str, dsn: str) -> str:
    """Scrub ``dsn`` and its password from an arbitrary message (e.g. a driver error)."""
    text = text.replace(dsn, redact(dsn))
    secret = _secret_of(dsn)
    if secret:
        text = text.replace(secret, "***")
    return text


def pg_connect(dsn: str, app: str, *, autocommit: bool = True, timeout: float = 5.0):
    """Open a psycopg connection tagged with ``application_name`` ``app``.

    The tag lets revert, the tests and a DBA recognise SCEP's own sessions; the short
    connect timeout keeps an unreachable server from stalling the agent.
    """
    return psycopg.connect(
        dsn, application_name=app, autocommit=autocommit, connect_timeout=max(1, int(timeout))
    )


@dataclass(frozen=True)
class Backend:
    """One client backend as seen in ``pg_stat_activity``.

    ``started`` (``backend_start`` as text) identifies the session together with the pid,
    so a pid reused by a newer backend is never terminated by mistake.
    """

    pid: int
    started: str
    user: str | None
    database: str | None
    application_name: str
    superuser: bool

    def label(self) -> str:
        return f"{self.pid} ({self.user}@{self.database} app={self.application_name!r})"


_BACKENDS_SQL = """
SELECT a.pid, a.backend_start::text, a.usename::text, a.datname::text,
       coalesce(a.application_name, ''), coalesce(r.rolsuper, false)
FROM pg_stat_activity a
LEFT JOIN pg_roles r ON r.oid = a.usesysid
WHERE a.backend_type = 'client backend'
  AND a.pid <> pg_backend_pid()
  AND a.backend_start IS NOT NULL
ORDER BY a.pid
"""


def find_backends(
    conn: Any,
    *,
    application_name: str | None = None,
    user: str | None = None,
    database: str | None = None,
    include_superusers: bool = False,
) -> list[Backend]:
    """Client backends matching every given filter (``application_name`` is a glob).

    Autovacuum, WAL senders and background workers are not ``client backend`` and are
    therefore never matched; neither is our own session nor any SCEP helper session.
    Sessions whose ``backend_start`` we may not see (insufficient privilege) are skipped
    because we could not identify them safely.
    """
    found = []
    for pid, started, usename, datname, app, superuser in conn.execute(_BACKENDS_SQL):
        if app.startswith(HELPER_APP_PREFIX):
            continue
        if superuser and not include_superusers:
            continue
        if application_name is not None and not fnmatch.fnmatchcase(app, application_name):
            continue
        if user is not None and usename != user:
            continue
        if database is not None and datname != database:
            continue
        found.append(Backend(pid, started, usename, datname, app, bool(superuser)))
    return found


def pick_share(items: list[Any], intensity: float, key: Any = None) -> list[Any]:
    """The first ``ceil(intensity * len(items))`` items (at least one if any exist).

    Mirrors the process selectors: a stable order (lowest pid / id first) makes runs
    repeatable, and the epsilon stops float noise from adding one extra victim.
    """
    if not items:
        return []
    share = min(max(float(intensity), 0.0), 1.0)
    count = max(1, math.ceil(share * len(items) - 1e-9))
    ordered = sorted(items, key=key) if key is not None else list(items)
    return ordered[: min(count, len(ordered))]


_TERMINATE_SQL = """
SELECT a.pid, pg_terminate_backend(a.pid)
FROM pg_stat_activity a
JOIN unnest(%s::int[], %s::timestamptz[]) AS t(pid, started)
  ON a.pid = t.pid AND a.backend_start = t.started
"""


def terminate_backends(conn: Any, backends: list[tuple[int, str]]) -> list[int]:
    """``pg_terminate_backend`` each (pid, backend_start) that still exists; return pids.

    Matching on the start time inside the same statement closes the window in which a
    pid could be recycled between listing and terminating.
    """
    if not backends:
        return []
    pids = [int(pid) for pid, _ in backends]
    starts = [str(started) for _, started in backends]
    rows = conn.execute(_TERMINATE_SQL, (pids, starts)).fetchall()
    return sorted(int(pid) for pid, ok in rows if ok)


def _setting(conn: Any, name: str) -> int | None:
    row = conn.execute("SELECT setting FROM pg_settings WHERE name = %s", (name,)).fetchone()
    return int(row[0]) if row else None


@dataclass(frozen=True)
class ExhaustPlan:
    """How many connections ``database.pg_exhaust_connections`` would hold, and why."""

    scope: str
    usable: int
    in_use: int
    target_total: int
    ceiling_total: int
    to_open: int

    def describe(self) -> str:
        where = "the server" if self.scope == "server" else "the database"
        return (
            f"{where} has {self.usable} usable slot(s), {self.in_use} in use; target "
            f"{self.target_total} in use (ceiling {self.ceiling_total}) -> hold "
            f"{self.to_open} new connection(s)"
        )


def plan_exhaust(
    conn: Any, *, scope: str, share: float, keep_free: int, max_open: int
) -> ExhaustPlan:
    """Work out how many connections to open so ``share`` of the usable slots are taken.

    *Usable* excludes ``superuser_reserved_connections`` (and ``reserved_connections`` on
    PostgreSQL 16+): those exist so an administrator can still log in to repair things,
    and the fault must never take them even if its own role is a superuser (superusers
    may use reserved slots, so the ceiling has to be enforced here, not by the server).
    ``keep_free`` slots are additionally never taken, and the own session is not counted.
    In ``database`` scope the database's ``CONNECTION LIMIT`` is the pool, but the server
    ceiling applies as well.
    """
    max_conn = _setting(conn, "max_connections") or 0
    reserved = (_setting(conn, "superuser_reserved_connections") or 0) + (
        _setting(conn, "reserved_connections") or 0
    )
    server_usable = max_conn - reserved
    server_in_use = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
        "AND pid <> pg_backend_pid()"
    ).fetchone()[0]
    server_room = server_usable - keep_free - server_in_use
    if scope == "server":
        usable, in_use = server_usable, server_in_use
    else:
        limit = conn.execute(
            "SELECT datconnlimit FROM pg_database WHERE datname = current_database()"
        ).fetchone()[0]
        if limit is None or limit < 0:
            raise ValueError("the database has no CONNECTION LIMIT; use scope 'server' or set one")
        usable = int(limit)
        in_use = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]
    target_total = math.floor(min(max(share, 0.0), 1.0) * usable + 1e-9)
    ceiling_total = usable - keep_free
    want = min(target_total, ceiling_total) - in_use
    to_open = max(0, min(want, server_room, max_open))
    return ExhaustPlan(scope, usable, int(in_use), target_total, ceiling_total, to_open)


#: The lock modes ``LOCK TABLE`` accepts, exactly as they are spliced into the statement.
LOCK_MODES = (
    "ACCESS SHARE",
    "ROW SHARE",
    "ROW EXCLUSIVE",
    "SHARE UPDATE EXCLUSIVE",
    "SHARE",
    "SHARE ROW EXCLUSIVE",
    "EXCLUSIVE",
    "ACCESS EXCLUSIVE",
)


def redis_memory_config(client: Any) -> tuple[int, str]:
    """Current ``(maxmemory bytes, maxmemory-policy)``."""
    got = client.config_get("maxmemory")
    got.update(client.config_get("maxmemory-policy"))
    as_text = {(k.decode() if isinstance(k, bytes) else k): v for k, v in got.items()}
    policy = as_text["maxmemory-policy"]
    policy = policy.decode() if isinstance(policy, bytes) else str(policy)
    return int(as_text["maxmemory"]), policy


def restore_maxmemory(client: Any, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Put back each setting we changed, but only where our value is still in force.

    This compare-and-set keeps revert idempotent (a second call finds the old value and
    does nothing) and keeps a late revert or the expiry helper from undoing a change an
    operator made in the meantime. Returns a note per setting for the caller to log.
    """
    notes = []
    memory, policy = redis_memory_config(client)
    if memory == int(new["maxmemory"]):
        client.config_set("maxmemory", int(old["maxmemory"]))
        notes.append(f"maxmemory restored to {old['maxmemory']}")
    elif memory != int(old["maxmemory"]):
        notes.append(f"maxmemory left at {memory}: changed by someone else since injection")
    if new.get("policy") is not None:
        if policy == new["policy"]:
            client.config_set("maxmemory-policy", old["policy"])
            notes.append(f"maxmemory-policy restored to {old['policy']}")
        elif policy != old["policy"]:
            notes.append(f"maxmemory-policy left at {policy}: changed by someone else")
    return notes
