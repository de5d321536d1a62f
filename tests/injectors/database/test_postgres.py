"""PostgreSQL faults against the real server on 127.0.0.1:5432.

Everything happens in a scratch database and a scratch non-superuser role, both named
``scep_dbfaults_<random>`` and dropped afterwards (sessions terminated first), so the
other engineers' ``test_scep*`` databases are never touched. Every fault is filtered to
the scratch database or capped to a handful of connections.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import psycopg
import pytest
from psycopg import errors, sql

from injectors.base import InjectionError, InvalidParams
from injectors.database.common import plan_exhaust
from injectors.database.injectors import (
    PgExhaustConnectionsInjector,
    PgLockTableInjector,
    PgTerminateBackendsInjector,
)
from tests.injectors.database.conftest import make_ctx, wait_no_helpers

pytestmark = pytest.mark.slow

SERVER = "postgresql://postgres@127.0.0.1:5432"


def _admin(dbname: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(f"{SERVER}/{dbname}", autocommit=True, connect_timeout=5)


@pytest.fixture(scope="module")
def scratch() -> Iterator[dict[str, str]]:
    """A scratch database with table ``victim`` and a non-superuser role; all dropped."""
    name = f"scep_dbfaults_{uuid.uuid4().hex[:10]}"
    with _admin() as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with _admin(name) as conn:
            conn.execute("CREATE TABLE victim (id int)")
            conn.execute("INSERT INTO victim VALUES (1), (2)")
            conn.execute(sql.SQL("GRANT SELECT ON victim TO {}").format(sql.Identifier(name)))
        yield {"db": name, "role": name}
    finally:
        with _admin() as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def config(scratch: dict[str, str]) -> dict[str, Any]:
    return {"postgres": {"dsn": f"{SERVER}/{scratch['db']}"}}


@pytest.fixture
def connect(scratch: dict[str, str]) -> Iterator[Callable[..., psycopg.Connection]]:
    """Open test sessions (as the scratch role unless ``superuser``); all closed after."""
    opened: list[psycopg.Connection] = []

    def _open(app: str = "scep-test", superuser: bool = False) -> psycopg.Connection:
        user = "postgres" if superuser else scratch["role"]
        conn = psycopg.connect(
            f"postgresql://{user}@127.0.0.1:5432/{scratch['db']}",
            application_name=app,
            autocommit=True,
            connect_timeout=5,
        )
        opened.append(conn)
        return conn

    yield _open
    for conn in opened:
        conn.close()


def alive(conn: psycopg.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


def can_read(conn: psycopg.Connection) -> bool:
    """SELECT from victim with a short lock_timeout: False when the table is locked."""
    conn.execute("SET lock_timeout = '200ms'")
    try:
        conn.execute("SELECT count(*) FROM victim").fetchone()
        return True
    except errors.LockNotAvailable:
        return False


def wait_until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def backend_exists(pid: int) -> bool:
    with _admin() as admin:
        row = admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return row is not None


# --- validation and redaction ----------------------------------------------------------


def test_params_need_a_filter_and_a_known_connection(config: dict[str, Any]) -> None:
    inj = PgTerminateBackendsInjector()
    with pytest.raises(InvalidParams, match="at least one"):
        inj.validate({})
    with pytest.raises(InvalidParams, match="connection"):
        inj.validate({"user": "x", "connection": "nope"}, config)
    with pytest.raises(InvalidParams, match="table"):
        PgLockTableInjector().validate({"table": "victim; DROP TABLE x"})
    assert (
        PgLockTableInjector().validate({"table": "public.victim", "mode": "share"})["mode"]
        == "SHARE"
    )


def test_dry_run_and_errors_never_show_the_password(scratch: dict[str, str]) -> None:
    # trust auth ignores the password, so this DSN really connects
    cfg = {"postgres": {"dsn": f"postgresql://postgres:hunter2@127.0.0.1:5432/{scratch['db']}"}}
    text = PgTerminateBackendsInjector().dry_run({"application_name": "nobody-*"}, make_ctx(cfg))
    assert "hunter2" not in text and "***" in text
    bad = {"postgres": {"dsn": "postgresql://postgres:hunter2@127.0.0.1:1/x"}}
    with pytest.raises(InjectionError) as info:
        PgTerminateBackendsInjector().inject({"user": "x"}, make_ctx(bad))
    assert "hunter2" not in str(info.value)


# --- pg_terminate_backends ---------------------------------------------------------------


def test_terminates_only_matching_backends(config: dict[str, Any], connect: Callable) -> None:
    app = f"scep-x-{uuid.uuid4().hex[:6]}"
    victims = [connect(app) for _ in range(3)]
    other = connect("scep-y")
    admin_x = connect(app, superuser=True)  # same name, but superusers are spared
    handle = PgTerminateBackendsInjector().inject({"application_name": app}, make_ctx(config))
    assert sorted(handle["pids"]) == sorted(c.info.backend_pid for c in victims)
    assert handle["revertible"] is False
    assert not any(alive(c) for c in victims)
    assert alive(other) and alive(admin_x)
    PgTerminateBackendsInjector().revert(handle, make_ctx(config))  # documented no-op


def test_intensity_is_the_share_of_matching_backends(
    config: dict[str, Any], connect: Callable
) -> None:
    app = f"scep-half-{uuid.uuid4().hex[:6]}"
    conns = [connect(app) for _ in range(4)]
    handle = PgTerminateBackendsInjector().inject(
        {"application_name": "scep-half-*", "database": config["postgres"]["dsn"].rsplit("/")[-1]},
        make_ctx(config, intensity=0.5),
    )
    assert len(handle["pids"]) == 2 and handle["matched"] == 4
    assert sum(alive(c) for c in conns) == 2
    with pytest.raises(InjectionError, match="no backend"):
        PgTerminateBackendsInjector().inject({"application_name": "nobody"}, make_ctx(config))


def test_repeat_keeps_terminating_until_expiry(
    config: dict[str, Any], connect: Callable, helper_guard: float
) -> None:
    app = f"scep-rep-{uuid.uuid4().hex[:6]}"
    inj = PgTerminateBackendsInjector()
    # The expiry covers the helper's start-up on a loaded host, then a late session.
    ctx = make_ctx(config, expires_in=4.0)
    handle = inj.inject({"application_name": app, "repeat_interval_ms": 100}, ctx)
    assert handle["pids"] == [] and handle["helper_pid"]
    late = connect(app)
    assert wait_until(lambda: not alive(late), 3.0)
    assert not wait_no_helpers(helper_guard, timeout=10.0)  # stops by itself at expiry
    assert time.time() >= ctx.expires_at, "the helper stopped before the expiry"
    assert alive(connect(app))
    inj.revert(handle, make_ctx(config))  # after expiry: harmless


# --- pg_lock_table -----------------------------------------------------------------------


def test_lock_blocks_readers_until_revert(
    config: dict[str, Any], connect: Callable, helper_guard: float
) -> None:
    reader = connect()
    inj = PgLockTableInjector()
    handle = inj.inject(inj.validate({"table": "victim"}), make_ctx(config))
    assert handle["mode"] == "ACCESS EXCLUSIVE" and backend_exists(handle["backend_pid"])
    assert not can_read(reader)
    inj.revert(handle, make_ctx(config))
    assert can_read(reader)
    assert not backend_exists(handle["backend_pid"])
    assert not wait_no_helpers(helper_guard)
    inj.revert(handle, make_ctx(config))  # idempotent


def test_lock_ends_by_itself_at_expiry(
    config: dict[str, Any], connect: Callable, helper_guard: float
) -> None:
    reader = connect()
    ctx = make_ctx(config, expires_in=4.0)  # longer than the helper's start-up under load
    handle = PgLockTableInjector().inject(PgLockTableInjector().validate({"table": "victim"}), ctx)
    assert not can_read(reader)
    assert wait_until(lambda: can_read(reader), 10.0)
    assert time.time() >= ctx.expires_at, "the lock was released before the expiry"
    assert not wait_no_helpers(helper_guard, timeout=5.0)
    assert not backend_exists(handle["backend_pid"])


def test_lock_released_when_helper_is_sigkilled(config: dict[str, Any], connect: Callable) -> None:
    reader = connect()
    inj = PgLockTableInjector()
    handle = inj.inject(inj.validate({"table": "victim"}), make_ctx(config))
    assert not can_read(reader)
    os.kill(handle["helper_pid"], signal.SIGKILL)
    # The server sees the socket close and rolls the transaction back.
    assert wait_until(lambda: can_read(reader), 3.0)
    inj.revert(handle, make_ctx(config))  # helper and backend already gone: no error


def test_server_ends_the_lock_when_helper_is_frozen(
    config: dict[str, Any], connect: Callable
) -> None:
    """A stopped helper keeps its socket open; idle_in_transaction_session_timeout ends it."""
    reader = connect()
    inj = PgLockTableInjector()
    handle = inj.inject(inj.validate({"table": "victim"}), make_ctx(config, expires_in=3.0))
    helper = psutil.Process(handle["helper_pid"])
    helper.suspend()  # well before its deadline, so it cannot roll back by itself
    try:
        assert not can_read(reader)
        # expiry (3 s) + grace (2 s): the server terminates the session by itself
        assert wait_until(lambda: can_read(reader), 12.0)
        assert not backend_exists(handle["backend_pid"])
    finally:
        helper.resume()
    inj.revert(handle, make_ctx(config))


def test_lock_of_a_missing_table_fails_cleanly(config: dict[str, Any]) -> None:
    inj = PgLockTableInjector()
    assert "does not exist" in inj.dry_run({"table": "nope", "mode": "SHARE"}, make_ctx(config))
    params = inj.validate({"table": "nope"})
    with pytest.raises(InjectionError, match="helper failed"):
        inj.inject(params, make_ctx(config))


# --- pg_exhaust_connections ---------------------------------------------------------------


@pytest.fixture
def conn_limit(scratch: dict[str, str]) -> Iterator[Callable[[int], None]]:
    """Set the scratch database's CONNECTION LIMIT; always reset to unlimited."""

    def _set(limit: int) -> None:
        with _admin() as admin:
            admin.execute(
                sql.SQL("ALTER DATABASE {} CONNECTION LIMIT {}").format(
                    sql.Identifier(scratch["db"]), sql.Literal(limit)
                )
            )

    yield _set
    _set(-1)


def test_exhaust_database_slots_then_revert_frees_them(
    config: dict[str, Any], connect: Callable, conn_limit: Callable, helper_guard: float
) -> None:
    conn_limit(6)
    inj = PgExhaustConnectionsInjector()
    params = inj.validate({"scope": "database"})
    assert "hold 6 new connection(s)" in inj.dry_run(params, make_ctx(config))
    handle = inj.inject(params, make_ctx(config))
    assert handle["held"] == 6 and len(handle["backends"]) == 6
    with pytest.raises(psycopg.OperationalError, match="too many connections"):
        connect()  # an ordinary role is refused ...
    assert alive(connect(superuser=True))  # ... while an administrator still gets in
    inj.revert(handle, make_ctx(config))
    assert not wait_no_helpers(helper_guard)
    assert alive(connect())
    assert not any(backend_exists(pid) for pid, _ in handle["backends"])
    inj.revert(handle, make_ctx(config))  # idempotent


def test_exhaust_respects_reserved_slots_and_caps(config: dict[str, Any]) -> None:
    with _admin() as conn:
        full = plan_exhaust(conn, scope="server", share=1.0, keep_free=0, max_open=10_000)
        reserved = int(conn.execute("SHOW superuser_reserved_connections").fetchone()[0])
        max_conn = int(conn.execute("SHOW max_connections").fetchone()[0])
        assert full.usable == max_conn - reserved
        assert full.in_use + full.to_open <= full.usable
        spare = plan_exhaust(conn, scope="server", share=1.0, keep_free=5, max_open=10_000)
        assert spare.in_use + spare.to_open <= full.usable - 5
        capped = plan_exhaust(conn, scope="server", share=1.0, keep_free=0, max_open=2)
        assert capped.to_open <= 2
    with pytest.raises(InjectionError, match="CONNECTION LIMIT"):
        PgExhaustConnectionsInjector().inject(
            {
                "scope": "database",
                "share": 1.0,
                "keep_free": 0,
                "max_open": 5,
                "connection": "postgres",
            },
            make_ctx(config),
        )


def test_exhaust_server_scope_holds_a_capped_share(
    config: dict[str, Any], helper_guard: float
) -> None:
    """Server scope on the shared server, capped at 3 connections to spare the others."""
    inj = PgExhaustConnectionsInjector()
    ctx = make_ctx(config, expires_in=4.0)  # longer than the helper's start-up under load
    handle = inj.inject(inj.validate({"max_open": 3}), ctx)
    assert 1 <= handle["held"] <= 3
    assert all(backend_exists(pid) for pid, _ in handle["backends"])
    assert not wait_no_helpers(helper_guard, timeout=10.0)  # released at expiry by itself
    assert time.time() >= ctx.expires_at, "the helper stopped before the expiry"
    assert wait_until(lambda: not any(backend_exists(pid) for pid, _ in handle["backends"]), 5.0)
