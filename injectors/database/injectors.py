"""Database faults: PostgreSQL backends, locks and connection slots; Redis pauses, client
kills and memory limits.

Connection settings come from the target's config, never from the fault parameters, so
an experiment spec can neither point a fault at a different server nor leak a password::

    config = {"postgres": {"dsn": "postgresql://app@db:5432/shop"},
              "redis": {"url": "redis://cache:6379/0"}}

``connection`` in the parameters names an alternative key (``"postgres_replica"`` …).
Every message an operator can see (dry run, errors) goes through :func:`redact`.

Faults that must last (``pg_lock_table``, ``pg_exhaust_connections``, repeated
``pg_terminate_backends``) or must be undone at a deadline (``redis_maxmemory``) run a
detached helper (:mod:`injectors.database.helper`) that ends by itself at ``expires_at``;
``redis_client_pause`` needs none because the server lifts the pause by itself.

Latency *to* a database is not here: put the target's TCP proxy in front of it and use
``network.latency``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import math
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

import psutil
import redis
from pydantic import Field, field_validator, model_validator

from injectors.base import (
    FieldError,
    InjectionContext,
    InjectionError,
    Injector,
    InvalidParams,
    Params,
)
from injectors.database.common import (
    HELPER_APP_PREFIX,
    LOCK_MODES,
    find_backends,
    pg_connect,
    pick_share,
    plan_exhaust,
    redact,
    redact_text,
    redis_memory_config,
    restore_maxmemory,
    terminate_backends,
)
from injectors.database.helper import MODULE as HELPER_MODULE
from injectors.process.watchdog import is_same_process, signal_if_same

__all__ = [
    "PgExhaustConnectionsInjector",
    "PgLockTableInjector",
    "PgTerminateBackendsInjector",
    "RedisClientKillInjector",
    "RedisClientPauseInjector",
    "RedisMaxmemoryInjector",
    "reap_helpers",
]

log = logging.getLogger(__name__)

#: Extra seconds to wait for a helper's readiness report beyond its own work.
HELPER_READY_TIMEOUT = 15.0

#: ``redis_maxmemory`` refuses a limit below ``used_memory`` × this factor when the policy
#: evicts keys (unless ``allow_evictions``): evicting real data is not a reversible fault.
MAXMEMORY_SAFETY_FACTOR = 1.2

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_IDENT = r"[A-Za-z_][A-Za-z0-9_$]*"
_TABLE_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})?$")

#: Helpers started by this process, kept only so finished ones can be reaped.
_helpers: list[subprocess.Popen[bytes]] = []


# --- connection settings ------------------------------------------------------------


def _conn_setting(params: dict[str, Any], config: dict[str, Any], default: str, field: str):
    key = params.get("connection") or default
    entry = (config or {}).get(key)
    value = entry.get(field) if isinstance(entry, dict) else None
    if not isinstance(value, str) or not value:
        raise InvalidParams(
            [FieldError("connection", f"target config has no {key}.{field} to connect with")]
        )
    return value


def _pg_dsn(params: dict[str, Any], config: dict[str, Any]) -> str:
    return _conn_setting(params, config, "postgres", "dsn")


def _redis_url(params: dict[str, Any], config: dict[str, Any]) -> str:
    return _conn_setting(params, config, "redis", "url")


def _fail(what: str, exc: BaseException, secret_source: str) -> InjectionError:
    """An InjectionError whose text cannot contain the connection string's password."""
    return InjectionError(redact_text(f"{what}: {exc}".strip(), secret_source))


def _redis(url: str) -> redis.Redis:
    # One dedicated connection, so CLIENT ID names the connection that later runs
    # CLIENT LIST / KILL and the injector never kills itself.
    return redis.Redis.from_url(
        url,
        socket_timeout=5,
        socket_connect_timeout=5,
        decode_responses=True,
        single_connection_client=True,
        client_name=HELPER_APP_PREFIX + "inject",
    )


def _remaining(ctx: InjectionContext) -> float:
    remaining = ctx.expires_at - time.time()
    if remaining <= 0:
        raise InjectionError("the fault's expiry has already passed; nothing to inject")
    return remaining


# --- detached helpers ---------------------------------------------------------------


def reap_helpers() -> None:
    """Collect exit statuses of finished helpers (else they linger as zombies)."""
    _helpers[:] = [p for p in _helpers if p.poll() is None]


def _read_report(stream: Any, timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    data = b""
    fd = stream.fileno()
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    try:
        return json.loads(data.split(b"\n", 1)[0])
    except ValueError:
        return None


def _spawn_helper(
    kind: str, payload: dict[str, Any], work_timeout: float, secret_source: str
) -> tuple[int, float, dict[str, Any]]:
    """Start a helper, hand it ``payload`` on stdin, and wait for its readiness report.

    Returns (pid, create_time, report). A helper that reports failure or stays silent is
    killed, so no half-started helper outlives a failed inject.
    """
    reap_helpers()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
    try:
        popen = subprocess.Popen(
            [sys.executable, "-m", HELPER_MODULE, kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            start_new_session=True,  # no terminal or process-group signal reaches it
            cwd="/",
            env=env,
        )
    except OSError as exc:
        raise InjectionError(f"could not start the {kind} helper: {exc}") from exc
    assert popen.stdin is not None and popen.stdout is not None
    try:
        popen.stdin.write(json.dumps(payload).encode())
        popen.stdin.close()
        report = _read_report(popen.stdout, work_timeout + HELPER_READY_TIMEOUT)
    except (OSError, ValueError):
        report = None
    finally:
        popen.stdout.close()
    if not report or not report.get("ok"):
        with contextlib.suppress(OSError):
            popen.kill()
        popen.wait()
        reason = (report or {}).get("error") or "it did not report readiness in time"
        raise InjectionError(redact_text(f"the {kind} helper failed: {reason}", secret_source))
    _helpers.append(popen)
    try:
        create_time = psutil.Process(popen.pid).create_time()
    except psutil.NoSuchProcess:
        raise InjectionError(f"the {kind} helper exited right after starting") from None
    return popen.pid, create_time, report


def _is_our_helper(pid: int, create_time: float) -> bool:
    if not is_same_process(pid, create_time):
        return False
    try:
        return HELPER_MODULE in psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _stop_helper(pid: Any, create_time: Any, timeout: float = 5.0) -> None:
    """SIGTERM the helper if it is still ours; SIGKILL it if it does not exit in time."""
    if pid and create_time is not None and _is_our_helper(int(pid), float(create_time)):
        pid, create_time = int(pid), float(create_time)
        try:
            signal_if_same(pid, create_time, signal.SIGTERM)
            _wait_gone(pid, create_time, timeout)
        except psutil.TimeoutExpired:
            with contextlib.suppress(OSError):
                signal_if_same(pid, create_time, signal.SIGKILL)
        except (psutil.NoSuchProcess, ProcessLookupError, PermissionError):
            pass
    reap_helpers()


def _wait_gone(pid: int, create_time: float, timeout: float) -> None:
    for popen in _helpers:
        if popen.pid == pid:
            try:
                popen.wait(timeout)
            except subprocess.TimeoutExpired:
                raise psutil.TimeoutExpired(timeout, pid) from None
            return
    psutil.Process(pid).wait(timeout=timeout)


def _helper_handle(pid: int, create_time: float) -> dict[str, Any]:
    return {"helper_pid": pid, "helper_create_time": create_time}


# --- PostgreSQL -----------------------------------------------------------------------


class PgParams(Params):
    """Which target-config entry holds the DSN (``config[connection]["dsn"]``)."""

    connection: str = Field(default="postgres", min_length=1)


class PgTerminateParams(PgParams):
    """Backend filters (all given ones must match) and the optional repeat interval."""

    application_name: str | None = Field(default=None, min_length=1)
    user: str | None = Field(default=None, min_length=1)
    database: str | None = Field(default=None, min_length=1)
    include_superusers: bool = False
    repeat_interval_ms: int | None = Field(default=None, ge=100, le=3_600_000)

    @model_validator(mode="after")
    def _needs_a_filter(self) -> PgTerminateParams:
        if self.application_name is None and self.user is None and self.database is None:
            raise ValueError("give at least one of application_name, user, database")
        return self


def _filters(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "application_name": params.get("application_name"),
        "user": params.get("user"),
        "database": params.get("database"),
        "include_superusers": bool(params.get("include_superusers")),
    }


def _describe_filters(params: dict[str, Any]) -> str:
    keys = ("application_name", "user", "database")
    parts = [f"{k}={params[k]!r}" for k in keys if params.get(k)]
    if not params.get("include_superusers"):
        parts.append("superusers excluded")
    return ", ".join(parts)


class _DatabaseInjector(Injector):
    """Database faults find their server in the target config (``postgres.dsn`` or
    ``redis.url``, or a named entry of ``connections``); this is where they look."""

    family = "database"
    #: reads the connection string from (params, target config), or raises InvalidParams
    locate: ClassVar[Callable[[dict[str, Any], dict[str, Any]], str]]

    def check_target(self, params: dict[str, Any], target_config: dict[str, Any]) -> None:
        self.locate(params, target_config)

    def address(self, params: dict[str, Any], ctx: InjectionContext) -> str:
        """The connection string, or an InjectionError saying which setting is missing."""
        try:
            return self.locate(params, ctx.target_config)
        except InvalidParams as exc:
            raise InjectionError(str(exc)) from None


class PgTerminateBackendsInjector(_DatabaseInjector):
    """``pg_terminate_backend`` a share of the client backends matching the filters."""

    name = "database.pg_terminate_backends"
    locate = staticmethod(_pg_dsn)
    summary = "Terminate matching PostgreSQL backends (optionally again and again); no revert."
    params_model = PgTerminateParams

    def dry_run(self, params: dict[str, Any], ctx: InjectionContext) -> str:
        try:
            dsn = self.address(params, ctx)
        except InjectionError as exc:
            return f"{self.name}: inject would fail: {exc}"
        try:
            with pg_connect(dsn, HELPER_APP_PREFIX + "dryrun") as conn:
                found = find_backends(conn, **_filters(params))
        except Exception as exc:
            return f"{self.name}: inject would fail: {_fail('cannot query', exc, dsn)}"
        chosen = pick_share(found, ctx.intensity, key=lambda b: b.pid)
        text = (
            f"{self.name}: on {redact(dsn)} would terminate {len(chosen)} of {len(found)} "
            f"backend(s) matching {_describe_filters(params)}"
        )
        if chosen:
            text += ": " + ", ".join(b.label() for b in chosen)
        if params.get("repeat_interval_ms"):
            text += (
                f"; then every {params['repeat_interval_ms']} ms until expiry (a detached helper)"
            )
        return text + "; not revertible"

    def inject(self, params: dict[str, Any], ctx: InjectionContext) -> dict[str, Any]:
        dsn = self.address(params, ctx)
        repeat = params.get("repeat_interval_ms")
        if repeat:
            _remaining(ctx)
        try:
            with pg_connect(dsn, HELPER_APP_PREFIX + "inject") as conn:
                found = find_backends(conn, **_filters(params))
                chosen = pick_share(found, ctx.intensity, key=lambda b: b.pid)
                done = set(terminate_backends(conn, [(b.pid, b.started) for b in chosen]))
        except Exception as exc:
            raise _fail("could not terminate backends", exc, dsn) from None
        if not done and not repeat:
            raise InjectionError(
                f"no backend matching {_describe_filters(params)} could be terminated "
                f"({len(found)} matched)"
            )
        handle: dict[str, Any] = {
            "pids": sorted(done),
            "backends": [
                {"pid": b.pid, "user": b.user, "database": b.database, "app": b.application_name}
                for b in chosen
                if b.pid in done
            ],
            "matched": len(found),
            "revertible": False,
            "note": "terminated sessions cannot be restored; revert only stops repeating",
        }
        if repeat:
            payload = {
                "dsn": dsn,
                "expires_at": float(ctx.expires_at),
                "interval_ms": int(repeat),
                "filters": _filters(params),
                "intensity": float(ctx.intensity),
            }
            pid, ctime, _ = _spawn_helper("pg-terminate", payload, 5.0, dsn)
            handle.update(_helper_handle(pid, ctime))
            handle["repeat_interval_ms"] = int(repeat)
        return handle

    def revert(self, handle: dict[str, Any], ctx: InjectionContext) -> None:
        """Terminated sessions stay terminated; a repeating helper is stopped."""
        _stop_helper(handle.get("helper_pid"), handle.get("helper_create_time"))


class PgLockParams(PgParams):
    """The table to lock (``name`` or ``schema.name``), the lock mode and wait bound."""

    table: str
    mode: Literal[LOCK_MODES] = "ACCESS EXCLUSIVE"  # type: ignore[valid-type]
    lock_wait_ms: int = Field(default=5000, ge=1, le=600_000)

    @field_validator("mode", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return " ".join(value.upper().replace("_", " ").split())

    @field_validator("table")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not _TABLE_RE.match(value):
            raise ValueError("expected table or schema.table (letters, digits, _ and $)")
        return value


def _terminate_recorded(dsn: str, backends: list[tuple[int, str]], helper_gone: bool) -> None:
    """Belt and braces after stopping a helper: end its sessions server-side too.

    If the server is unreachable but the helper is confirmed gone, the sessions died with
    it (the server closes a dead client's session), so that is not an error.
    """
    if not backends:
        return
    try:
        with pg_connect(dsn, HELPER_APP_PREFIX + "revert") as conn:
            terminate_backends(conn, backends)
    except Exception as exc:
        if not helper_gone:
            raise _fail("could not terminate the fault's sessions", exc, dsn) from None
        log.warning("revert: %s", redact_text(str(exc), dsn))


def _helper_gone(handle: dict[str, Any]) -> bool:
    pid, ctime = handle.get("helper_pid"), handle.get("helper_create_time")
    return not (pid and ctime is not None and _is_our_helper(int(pid), float(ctime)))


class PgLockTableInjector(_DatabaseInjector):
    """Hold a table lock (ACCESS EXCLUSIVE by default) until revert or expiry."""

    name = "database.pg_lock_table"
    locate = staticmethod(_pg_dsn)
    summary = "Hold a lock on a PostgreSQL table; a detached helper holds it until expiry."
    params_model = PgLockParams

    def dry_run(self, params: dict[str, Any], ctx: InjectionContext) -> str:
        try:
            dsn = self.address(params, ctx)
            with pg_connect(dsn, HELPER_APP_PREFIX + "dryrun") as conn:
                exists = conn.execute("SELECT to_regclass(%s)", (params["table"],)).fetchone()[0]
        except InjectionError as exc:
            return f"{self.name}: inject would fail: {exc}"
        except Exception as exc:
            return f"{self.name}: inject would fail: {_fail('cannot query', exc, dsn)}"
        if exists is None:
            return f"{self.name}: inject would fail: table {params['table']!r} does not exist"
        return (
            f"{self.name}: on {redact(dsn)} would LOCK TABLE {params['table']} IN "
            f"{params['mode']} MODE (waiting at most {params['lock_wait_ms']} ms) and hold it "
            f"for {max(0.0, ctx.expires_at - time.time()):.1f} s in a detached helper; the "
            "server also ends that session shortly after expiry"
        )

    def inject(self, params: dict[str, Any], ctx: InjectionContext) -> dict[str, Any]:
        dsn = self.address(params, ctx)
        _remaining(ctx)
        payload = {
            "dsn": dsn,
            "expires_at": float(ctx.expires_at),
            "table": params["table"].split("."),
            "mode": params["mode"],
            "lock_wait_ms": int(params["lock_wait_ms"]),
        }
        pid, ctime, report = _spawn_helper(
            "pg-lock", payload, params["lock_wait_ms"] / 1000.0 + 5.0, dsn
        )
        return {
            **_helper_handle(pid, ctime),
            "backend_pid": report["backend_pid"],
            "backend_start": report["backend_start"],
            "table": params["table"],
            "mode": params["mode"],
            "connection": params["connection"],
            "expires_at": float(ctx.expires_at),
        }

    def revert(self, handle: dict[str, Any], ctx: InjectionContext) -> None:
        """Stop the helper (it rolls back), then terminate its backend if still there."""
        _stop_helper(handle.get("helper_pid"), handle.get("helper_create_time"))
        if handle.get("backend_pid"):
            dsn = self.address({"connection": handle.get("connection")}, ctx)
            backend = [(int(handle["backend_pid"]), str(handle["backend_start"]))]
            _terminate_recorded(dsn, backend, _helper_gone(handle))


class PgExhaustParams(PgParams):
    """Share of the usable slots to occupy, and the safety limits."""

    share: float = Field(default=1.0, gt=0.0, le=1.0)
    scope: Literal["server", "database"] = "server"
    keep_free: int = Field(default=0, ge=0)
    max_open: int = Field(default=200, ge=1, le=5000)


class PgExhaustConnectionsInjector(_DatabaseInjector):
    """Hold idle connections until ``share`` × intensity of the usable slots are taken."""

    name = "database.pg_exhaust_connections"
    locate = staticmethod(_pg_dsn)
    summary = "Occupy PostgreSQL connection slots (server or database) until expiry."
    params_model = PgExhaustParams

    @staticmethod
    def _share(params: dict[str, Any], ctx: InjectionContext) -> float:
        return float(params["share"]) * min(max(float(ctx.intensity), 0.0), 1.0)

    def dry_run(self, params: dict[str, Any], ctx: InjectionContext) -> str:
        try:
            dsn = self.address(params, ctx)
            with pg_connect(dsn, HELPER_APP_PREFIX + "dryrun") as conn:
                plan = plan_exhaust(
                    conn,
                    scope=params["scope"],
                    share=self._share(params, ctx),
                    keep_free=params["keep_free"],
                    max_open=params["max_open"],
                )
        except InjectionError as exc:
            return f"{self.name}: inject would fail: {exc}"
        except Exception as exc:
            return f"{self.name}: inject would fail: {_fail('cannot plan', exc, dsn)}"
        return (
            f"{self.name}: on {redact(dsn)}: {plan.describe()}, held by a detached helper "
            f"for {max(0.0, ctx.expires_at - time.time()):.1f} s"
        )

    def inject(self, params: dict[str, Any], ctx: InjectionContext) -> dict[str, Any]:
        dsn = self.address(params, ctx)
        _remaining(ctx)
        payload = {
            "dsn": dsn,
            "expires_at": float(ctx.expires_at),
            "scope": params["scope"],
            "share": self._share(params, ctx),
            "keep_free": int(params["keep_free"]),
            "max_open": int(params["max_open"]),
        }
        # Opening connections takes a few ms each; allow for slow servers.
        work = 5.0 + 0.1 * int(params["max_open"])
        pid, ctime, report = _spawn_helper("pg-exhaust", payload, work, dsn)
        return {
            **_helper_handle(pid, ctime),
            "held": report["held"],
            "backends": report["backends"],
            "plan": report["plan"],
            "stopped_early": report.get("stopped_early"),
            "scope": params["scope"],
            "connection": params["connection"],
            "expires_at": float(ctx.expires_at),
        }

    def revert(self, handle: dict[str, Any], ctx: InjectionContext) -> None:
        """Stop the helper (closing its sessions), then terminate any that survived."""
        _stop_helper(handle.get("helper_pid"), handle.get("helper_create_time"))
        backends = [(int(p), str(s)) for p, s in handle.get("backends") or []]
        if backends:
            dsn = self.address({"connection": handle.get("connection")}, ctx)
            _terminate_recorded(dsn, backends, _helper_gone(handle))


# --- Redis ----------------------------------------------------------------------------


class RedisParams(Params):
    """Which target-config entry holds the URL (``config[connection]["url"]``)."""

    connection: str = Field(default="redis", min_length=1)


def _redis_version(client: redis.Redis) -> tuple[int, ...]:
    text = str(client.info("server").get("redis_version", "0"))
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


class RedisPauseParams(RedisParams):
    """``WRITE`` blocks writes only (reads go on); ``ALL`` blocks every command."""

    mode: Literal["WRITE", "ALL"] = "WRITE"

    @field_validator("mode", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class RedisClientPauseInjector(_DatabaseInjector):
    """``CLIENT PAUSE`` for the time left until expiry: the server lifts it by itself."""

    name = "database.redis_client_pause"
    locate = staticmethod(_redis_url)
    summary = "Pause Redis clients (writes or all commands) until expiry; server-side expiry."
    params_model = RedisPauseParams

    def dry_run(self, params: dict[str, Any], ctx: InjectionContext) -> str:
        try:
            url = self.address(params, ctx)
        except InjectionError as exc:
            return f"{self.name}: inject would fail: {exc}"
        ms = max(0, math.ceil((ctx.expires_at - time.time()) * 1000))
        return (
            f"{self.name}: on {redact(url)} would run CLIENT PAUSE {ms} {params['mode']}; the "
            "server resumes clients at expiry by itself; revert runs CLIENT UNPAUSE"
        )

    def inject(self, params: dict[str, Any], ctx: InjectionContext) -> dict[str, Any]:
        url = self.address(params, ctx)
        ms = math.ceil(_remaining(ctx) * 1000)
        try:
            with _redis(url) as client:
                if _redis_version(client) < (6, 2):
                    raise InjectionError("CLIENT PAUSE WRITE / UNPAUSE need Redis 6.2 or newer")
                client.execute_command("CLIENT", "PAUSE", ms, params["mode"])
        except redis.RedisError as exc:
            raise _fail("CLIENT PAUSE failed", exc, url) from None
        return {
            "mode": params["mode"],
            "paused_ms": ms,
            "until": time.time() + ms / 1000.0,
            "connection": params["connection"],
        }

    def revert(self, handle: dict[str, Any], ctx: InjectionContext) -> None:
        """``CLIENT UNPAUSE``, unless the pause has already run out by itself.

        Skipping it after ``until`` keeps a late revert from lifting a pause somebody else
        set since. Before ``until`` UNPAUSE also ends any overlapping pause, which Redis
        cannot tell apart from ours.
        """
        if time.time() >= float(handle.get("until") or 0):
            return
        url = self.address({"connection": handle.get("connection")}, ctx)
        try:
            with _redis(url) as client:
                client.execute_command("CLIENT", "UNPAUSE")
        except redis.RedisError as exc:
            raise _fail("CLIENT UNPAUSE failed", exc, url) from None


class RedisKillParams(RedisParams):
    """Client filters; every given one must match, and at least one is required."""

    type: Literal["normal", "pubsub", "replica", "master"] | None = None
    addr: str | None = Field(default=None, min_length=1)
    laddr: str | None = Field(default=None, min_length=1)
    name: str | None = Field(default=None, min_length=1, description="glob on CLIENT SETNAME")
    db: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _needs_a_filter(self) -> RedisKillParams:
        if all(getattr(self, f) is None for f in ("type", "addr", "laddr", "name", "db")):
            raise ValueError("give at least one of type, addr, laddr, name, db")
        return self


def _matching_clients(client: redis.Redis, params: dict[str, Any]) -> list[dict[str, Any]]:
    own = int(client.client_id())
    kind = params.get("type")
    listed = client.client_list(_type=kind) if kind else client.client_list()
    found = []
    for entry in listed:
        if int(entry["id"]) == own:
            continue
        if str(entry.get("name", "")).startswith(HELPER_APP_PREFIX):
            continue  # our own helpers and injector connections
        if params.get("addr") and entry.get("addr") != params["addr"]:
            continue
        if params.get("laddr") and entry.get("laddr") != params["laddr"]:
            continue
        if params.get("name") and not fnmatch.fnmatchcase(entry.get("name", ""), params["name"]):
            continue
        if params.get("db") is not None and int(entry.get("db", -1)) != params["db"]:
            continue
        found.append(entry)
    return found


def _describe_client_filters(params: dict[str, Any]) -> str:
    keys = ("type", "addr", "laddr", "name", "db")
    return ", ".join(f"{k}={params[k]!r}" for k in keys if params.get(k) is not None)


class RedisClientKillInjector(_DatabaseInjector):
    """``CLIENT KILL ID`` a share of the matching clients; never the injector's own."""

    name = "database.redis_client_kill"
    locate = staticmethod(_redis_url)
    summary = "Disconnect matching Redis clients (by type, address, name, db); no revert."
    params_model = RedisKillParams

    def dry_run(self, params: dict[str, Any], ctx: InjectionContext) -> str:
        try:
            url = self.address(params, ctx)
            with _redis(url) as client:
                found = _matching_clients(client, params)
        except InjectionError as exc:
            return f"{self.name}: inject would fail: {exc}"
        except redis.RedisError as exc:
            return f"{self.name}: inject would fail: {_fail('cannot list clients', exc, url)}"
        chosen = pick_share(found, ctx.intensity, key=lambda e: int(e["id"]))
        listed = ", ".join(f"id {e['id']} ({e.get('addr')})" for e in chosen)
        return (
            f"{self.name}: on {redact(url)} would kill {len(chosen)} of {len(found)} client(s) "
            f"matching {_describe_client_filters(params)}{': ' + listed if listed else ''}; "
            "not revertible"
        )

    def inject(self, params: dict[str, Any], ctx: InjectionContext) -> dict[str, Any]:
        url = self.address(params, ctx)
        killed = []
        try:
            with _redis(url) as client:
                found = _matching_clients(client, params)
                chosen = pick_share(found, ctx.intensity, key=lambda e: int(e["id"]))
                for entry in chosen:
                    # By id: exact, and a no-op if the client disconnected meanwhile.
                    if client.client_kill_filter(_id=entry["id"]):
                        killed.append(
                            {
                                "id": int(entry["id"]),
                                "addr": entry.get("addr"),
                                "name": entry.get("name", ""),
                            }
                        )
        except redis.RedisError as exc:
            raise _fail("CLIENT KILL failed", exc, url) from None
        if not killed:
            raise InjectionError(
                f"no client matching {_describe_client_filters(params)} could be killed "
                f"({len(found)} matched)"
            )
        return {
            "killed": killed,
            "matched": len(found),
            "revertible": False,
            "note": "clients reconnect by themselves or not at all; revert does nothing",
        }

    def revert(self, handle: dict[str, Any], ctx: InjectionContext) -> None:
        """Nothing to undo: reconnecting is the clients' job."""
        return None


_POLICIES = (
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
)


class RedisMaxmemoryParams(RedisParams):
    """New limit in MiB, optional policy, and the explicit opt-in to evicting data."""

    mib: int = Field(ge=1, le=16 * 1024 * 1024)
    policy: Literal[_POLICIES] | None = None  # type: ignore[valid-type]
    allow_evictions: bool = False


class RedisMaxmemoryInjector(_DatabaseInjector):
    """Lower ``maxmemory`` (and maybe the policy); restore the exact old values later.

    Refusal rule: if the effective policy evicts keys (anything but ``noeviction``) and
    the new limit is below ``used_memory`` × :data:`MAXMEMORY_SAFETY_FACTOR`, inject is
    refused unless ``allow_evictions`` is true, because evicted keys are lost data that no
    revert brings back. Under ``noeviction`` a tight limit only makes writes fail with
    OOM errors, which is the intended, fully reversible fault.
    """

    name = "database.redis_maxmemory"
    locate = staticmethod(_redis_url)
    summary = "Lower Redis maxmemory (and policy) until expiry; the old values are restored."
    params_model = RedisMaxmemoryParams

    @staticmethod
    def _plan(client: redis.Redis, params: dict[str, Any]) -> tuple[dict, dict, int, str | None]:
        old_mem, old_policy = redis_memory_config(client)
        used = int(client.info("memory")["used_memory"])
        new = {"maxmemory": int(params["mib"]) * 1024 * 1024, "policy": params.get("policy")}
        effective = new["policy"] or old_policy
        refusal = None
        floor = int(used * MAXMEMORY_SAFETY_FACTOR)
        if effective != "noeviction" and new["maxmemory"] < floor and not params["allow_evictions"]:
            refusal = (
                f"{params['mib']} MiB is below used_memory ({used} bytes) x "
                f"{MAXMEMORY_SAFETY_FACTOR} under policy {effective!r}, which would evict "
                "keys; set allow_evictions: true to accept data loss"
            )
        return {"maxmemory": old_mem, "policy": old_policy}, new, used, refusal

    def dry_run(self, params: dict[str, Any], ctx: InjectionContext) -> str:
        try:
            url = self.address(params, ctx)
            with _redis(url) as client:
                old, new, used, refusal = self._plan(client, params)
        except InjectionError as exc:
            return f"{self.name}: inject would fail: {exc}"
        except redis.RedisError as exc:
            return f"{self.name}: inject would fail: {_fail('cannot read config', exc, url)}"
        if refusal:
            return f"{self.name}: inject would be refused: {refusal}"
        policy = f", maxmemory-policy {old['policy']} -> {new['policy']}" if new["policy"] else ""
        return (
            f"{self.name}: on {redact(url)} would set maxmemory {old['maxmemory']} -> "
            f"{new['maxmemory']} bytes (used {used}){policy}; a detached helper restores the "
            "old values at expiry if revert does not come first"
        )

    def inject(self, params: dict[str, Any], ctx: InjectionContext) -> dict[str, Any]:
        url = self.address(params, ctx)
        _remaining(ctx)
        try:
            with _redis(url) as client:
                old, new, used, refusal = self._plan(client, params)
                if refusal:
                    raise InjectionError(refusal)
                # Arm the restorer before changing anything, as process.pause does.
                payload = {"url": url, "expires_at": float(ctx.expires_at), "old": old, "new": new}
                pid, ctime, _ = _spawn_helper("redis-maxmemory", payload, 5.0, url)
                try:
                    if new["policy"] is not None:
                        client.config_set("maxmemory-policy", new["policy"])
                    client.config_set("maxmemory", new["maxmemory"])
                except BaseException:
                    with contextlib.suppress(redis.RedisError):
                        restore_maxmemory(client, old, new)
                    _stop_helper(pid, ctime)
                    raise
        except redis.RedisError as exc:
            raise _fail("could not change maxmemory", exc, url) from None
        return {
            "old": old,
            "new": new,
            "used_memory": used,
            "connection": params["connection"],
            **_helper_handle(pid, ctime),
            "expires_at": float(ctx.expires_at),
        }

    def revert(self, handle: dict[str, Any], ctx: InjectionContext) -> None:
        """Restore first, retire the helper second: a failed restore leaves it armed."""
        if "old" not in handle or "new" not in handle:
            raise InjectionError("malformed handle: old/new settings missing")
        url = self.address({"connection": handle.get("connection")}, ctx)
        try:
            with _redis(url) as client:
                for note in restore_maxmemory(client, handle["old"], handle["new"]):
                    log.info("redis_maxmemory revert: %s", note)
        except redis.RedisError as exc:
            raise _fail(
                "could not restore maxmemory (the helper will retry at expiry)", exc, url
            ) from None
        _stop_helper(handle.get("helper_pid"), handle.get("helper_create_time"))
