"""Detached, self-expiring helper processes for the database faults.

Some database faults only exist while a session is held open (a table lock, a pile of
idle connections) or must be undone at a deadline even if the agent dies (a lowered
Redis ``maxmemory``). The agent therefore starts ``python -m injectors.database.helper
KIND`` as its own session leader, like :mod:`injectors.process.watchdog`.

Protocol: the agent writes one JSON object to the helper's stdin and closes it. Secrets
travel this way, never on the command line, where ``ps`` would show them to every user
of the host. Once the helper has applied (or armed) its part it writes one JSON line to
stdout (``{"ok": true, ...}`` or ``{"ok": false, "error": ...}``) and then points stdout
at ``/dev/null``, so the agent may go away without the helper dying of SIGPIPE.

Every helper ends by itself at ``expires_at``. SIGTERM means "revert has taken over": a
session holder closes its sessions (which *is* the revert), the maxmemory guard exits
without restoring (revert restores itself). Server-side timeouts on the held sessions
end them shortly after expiry even when the helper is frozen or its host vanishes.

Like the process watchdog, this module imports nothing from Django.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from injectors.database.common import (
    HELPER_APP_PREFIX,
    LOCK_MODES,
    find_backends,
    pg_connect,
    pick_share,
    plan_exhaust,
    redact_text,
    restore_maxmemory,
    terminate_backends,
)

__all__ = ["KINDS", "MODULE", "main"]

MODULE = "injectors.database.helper"

#: Longest single sleep, so the deadline is noticed promptly even after clock jumps.
_MAX_NAP = 0.25

#: Upper bound of PostgreSQL's millisecond timeout settings (INT_MAX).
_PG_MAX_MS = 2_147_483_647


def _ms_until(deadline: float, grace_s: float = 0.0) -> int:
    return max(1, min(_PG_MAX_MS, int((deadline - time.time() + grace_s) * 1000)))


def _sleep_until(deadline: float, stop: Callable[[], bool] | None = None) -> None:
    while (remaining := deadline - time.time()) > 0:
        if stop is not None and stop():
            return
        time.sleep(min(remaining, _MAX_NAP))


def _report(message: dict[str, Any]) -> None:
    """Send the one-line readiness report, then detach stdout from the agent's pipe."""
    with contextlib.suppress(OSError):
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def _backend_identity(conn: Any) -> tuple[int, str]:
    row = conn.execute(
        "SELECT pid, backend_start::text FROM pg_stat_activity WHERE pid = pg_backend_pid()"
    ).fetchone()
    return int(row[0]), str(row[1])


def _lock(cfg: dict[str, Any]) -> None:
    """Hold a table lock in an open transaction until the deadline, then roll back."""
    from psycopg import sql

    if cfg["mode"] not in LOCK_MODES:
        raise ValueError(f"unknown lock mode {cfg['mode']!r}")
    conn = pg_connect(cfg["dsn"], HELPER_APP_PREFIX + "lock")
    try:
        wait_ms = int(cfg["lock_wait_ms"])
        # Bounded waiting: an ACCESS EXCLUSIVE request queued behind a long transaction
        # blocks everybody queued after it, which must not outlive the fault.
        conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(wait_ms)))
        conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(wait_ms + 1000)))
        conn.execute("BEGIN")
        table = sql.Identifier(*cfg["table"])
        conn.execute(sql.SQL("LOCK TABLE {} IN {} MODE").format(table, sql.SQL(cfg["mode"])))
        backend_pid, backend_start = _backend_identity(conn)
        # The last statement before idling: the server starts this timer now and ends the
        # session (rolling back, releasing the lock) shortly after the deadline, even if
        # we are SIGSTOPped or our host drops off the network without closing the socket.
        grace = float(cfg.get("grace_s", 2.0))
        conn.execute(
            sql.SQL("SET idle_in_transaction_session_timeout = {}").format(
                sql.Literal(_ms_until(cfg["expires_at"], grace))
            )
        )
        _report({"ok": True, "backend_pid": backend_pid, "backend_start": backend_start})
        # No statement while holding: any query would restart the server-side timer.
        _sleep_until(cfg["expires_at"])
        with contextlib.suppress(Exception):
            conn.execute("ROLLBACK")
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def _exhaust(cfg: dict[str, Any]) -> None:
    """Open the planned number of idle sessions and hold them until the deadline."""
    dsn, deadline = cfg["dsn"], cfg["expires_at"]
    grace = float(cfg.get("grace_s", 2.0))
    app = HELPER_APP_PREFIX + "exhaust"
    held: list[Any] = []
    try:
        first = pg_connect(dsn, app)
        held.append(first)
        plan = plan_exhaust(
            first,
            scope=cfg["scope"],
            share=float(cfg["share"]),
            keep_free=int(cfg["keep_free"]),
            max_open=int(cfg["max_open"]),
        )
        if plan.to_open < 1:
            _report({"ok": False, "error": "nothing to hold: " + plan.describe()})
            return
        idle_timeout = first.info.server_version >= 140000
        stopped_early = None
        for i in range(plan.to_open):
            if i > 0:
                try:
                    held.append(pg_connect(dsn, app))
                except Exception as exc:  # the server refused: it is full, which is the point
                    stopped_early = redact_text(str(exc).strip(), dsn)
                    break
        backends = []
        for conn in held:
            backends.append(list(_backend_identity(conn)))
            if idle_timeout:
                # Ends the session server-side shortly after expiry if we cannot.
                conn.execute(f"SET idle_session_timeout = {_ms_until(deadline, grace)}")
        _report(
            {
                "ok": True,
                "held": len(held),
                "backends": backends,
                "plan": plan.describe(),
                "stopped_early": stopped_early,
            }
        )
        _sleep_until(deadline)
    finally:
        for conn in held:
            with contextlib.suppress(Exception):
                conn.close()


def _terminate(cfg: dict[str, Any]) -> None:
    """Terminate matching backends every ``interval_ms`` until the deadline."""
    dsn, deadline = cfg["dsn"], cfg["expires_at"]
    interval = max(0.05, float(cfg["interval_ms"]) / 1000.0)
    conn = pg_connect(dsn, HELPER_APP_PREFIX + "terminate")
    _report({"ok": True})
    try:
        while time.time() < deadline:
            try:
                if conn.closed:
                    conn = pg_connect(dsn, HELPER_APP_PREFIX + "terminate")
                found = find_backends(conn, **cfg["filters"])
                chosen = pick_share(found, float(cfg["intensity"]), key=lambda b: b.pid)
                terminate_backends(conn, [(b.pid, b.started) for b in chosen])
            except Exception:
                # A restarting server is exactly what this fault provokes; try again later.
                with contextlib.suppress(Exception):
                    conn.close()
            _sleep_until(min(deadline, time.time() + interval))
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def _maxmemory(cfg: dict[str, Any]) -> None:
    """At the deadline, put back the old ``maxmemory``/policy if ours is still in force."""
    import redis

    client = redis.Redis.from_url(
        cfg["url"], socket_timeout=5, socket_connect_timeout=5, decode_responses=True
    )
    client.ping()
    _report({"ok": True})
    _sleep_until(cfg["expires_at"])
    # The server may be briefly unreachable (it may even be what the experiment broke):
    # keep trying for a while rather than leave the lowered limit in place.
    give_up = time.time() + float(cfg.get("retry_s", 60.0))
    while True:
        try:
            restore_maxmemory(client, cfg["old"], cfg["new"])
            return
        except redis.RedisError:
            if time.time() > give_up:
                raise
            time.sleep(1.0)


KINDS: dict[str, Callable[[dict[str, Any]], None]] = {
    "pg-lock": _lock,
    "pg-exhaust": _exhaust,
    "pg-terminate": _terminate,
    "redis-maxmemory": _maxmemory,
}


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m injectors.database.helper KIND`` with JSON on stdin."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0] not in KINDS:
        sys.stderr.write(f"usage: python -m {MODULE} {{{','.join(KINDS)}}}\n")
        return 2
    signal.signal(signal.SIGTERM, _stop)
    for name in ("SIGINT", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    cfg = json.loads(sys.stdin.read())
    secret_source = str(cfg.get("dsn") or cfg.get("url") or "")
    try:
        KINDS[args[0]](cfg)
    except SystemExit:
        raise
    except Exception as exc:
        # Only reaches the agent if we fail before reporting; afterwards stdout is /dev/null.
        message = redact_text(f"{type(exc).__name__}: {exc}".strip(), secret_source)
        _report({"ok": False, "error": message})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
