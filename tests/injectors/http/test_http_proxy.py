"""The HTTP fault proxy and its two injectors, over real loopback sockets.

The upstream is a real threaded HTTP/1.1 server (keep-alive, Content-Length and chunked
bodies) and the client is ``http.client`` on one persistent connection, because what
matters here is framing and connection reuse, which mocks would only pretend to have.
"""

from __future__ import annotations

import http.client
import itertools
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest

from injectors.base import InjectionContext, InvalidParams
from injectors.http.injectors import AbortInjector, DelayInjector
from injectors.http.proxy import HttpProxyManager, HttpRule, parse_http_upstream
from injectors.network.proxy import ProxyError
from injectors.registry import get_injector
from tests.support.processes import wait_until

CHUNKS = [b"alpha-", b"beta-", b"gamma"]


class _Upstream(BaseHTTPRequestHandler):
    """Echoes method, path and body size; /chunked answers with a chunked body."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1  # type: ignore[attr-defined]

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                data += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            return data
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self) -> None:
        body = self._body()
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in CHUNKS:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        payload = f"{self.command} {self.path} {len(body)}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer


@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    server.daemon_threads = True
    server.connections = 0  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def manager() -> Iterator[HttpProxyManager]:
    mgr = HttpProxyManager()
    mgr.start()
    yield mgr
    mgr.stop()


_names = itertools.count()


@pytest.fixture
def proxy(manager: HttpProxyManager, upstream) -> Iterator[tuple[str, tuple[str, int]]]:
    name = f"h{next(_names)}"
    host, port = upstream.server_address[:2]
    addr = manager.ensure_proxy(name, "127.0.0.1:0", f"http://{host}:{port}")
    yield name, addr
    manager.remove_proxy(name)


def rule(kind: str, rule_id: str = "r", ttl: float = 60.0, **fields: Any) -> HttpRule:
    fields.setdefault("share", 1.0)
    return HttpRule(id=rule_id, kind=kind, expires_at=time.time() + ttl, **fields)  # type: ignore[arg-type]


def client(addr: tuple[str, int]) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection(*addr, timeout=3)
    conn.connect()
    return conn


def call(
    conn: http.client.HTTPConnection, method: str = "GET", path: str = "/", **kw: Any
) -> tuple[int, bytes]:
    conn.request(method, path, **kw)
    resp = conn.getresponse()
    return resp.status, resp.read()


def read_response(sock: socket.socket) -> bytes:
    """One whole Content-Length response from a raw socket (heads and bodies may split)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(4096)
    return head + b"\r\n\r\n" + body


def test_forwarding_keeps_both_sides_alive_across_many_requests(manager, proxy, upstream):
    name, addr = proxy
    before = upstream.connections
    conn = client(addr)
    local = conn.sock.getsockname()
    for i in range(20):
        assert call(conn, "POST", f"/items/{i}", body=b"x" * i) == (
            200,
            f"POST /items/{i} {i}".encode(),
        )
        assert conn.sock is not None and conn.sock.getsockname() == local
    conn.close()
    assert upstream.connections - before == 1  # one upstream connection for all 20
    stats = manager.stats(name)
    assert stats["requests_total"] == stats["responses_forwarded"] == 20


def test_chunked_bodies_pass_through_both_ways(proxy):
    _, addr = proxy
    conn = client(addr)
    status, body = call(conn, "GET", "/chunked")
    assert (status, body) == (200, b"".join(CHUNKS))
    # A chunked request body (an iterator makes http.client chunk it), then more requests.
    status, body = call(conn, "PUT", "/up", body=iter([b"abc", b"defg"]), encode_chunked=True)
    assert (status, body) == (200, b"PUT /up 7")
    assert call(conn, "HEAD", "/h") == (200, b"")
    assert call(conn, "GET", "/chunked") == (200, b"".join(CHUNKS))
    conn.close()


def test_abort_hits_only_requests_matching_method_path_and_headers(manager, proxy):
    name, addr = proxy
    manager.set_rule(
        name,
        rule(
            "abort",
            method="post",
            path="/api/*/orders",
            headers=(("X-Tenant", "beta-*"),),
            body="injected",
        ),
    )
    conn = client(addr)
    hit = {"headers": {"x-tenant": "beta-7"}, "body": b"{}"}
    assert call(conn, "POST", "/api/v1/orders", **hit) == (503, b"injected")
    assert call(conn, "POST", "/api/v1/orders?x=1", **hit)[0] == 503  # query ignored
    assert call(conn, "GET", "/api/v1/orders", headers=hit["headers"])[0] == 200
    assert call(conn, "POST", "/api/v1/users", **hit)[0] == 200
    assert call(conn, "POST", "/api/v1/orders", headers={"X-Tenant": "alpha"}, body=b"")[0] == 200
    assert call(conn, "POST", "/api/v1/orders", body=b"")[0] == 200
    conn.close()
    assert manager.stats(name)["requests_aborted"] == 2


def test_abort_response_is_well_framed_and_carries_the_fault_id(manager, proxy):
    name, addr = proxy
    manager.set_rule(name, rule("abort", rule_id="fault-9", status=429, path="/limited"))
    conn = client(addr)
    conn.request("POST", "/limited", body=b"a body the proxy must consume")
    resp = conn.getresponse()
    assert (resp.status, resp.getheader("X-SCEP-Fault"), resp.read()) == (429, "fault-9", b"")
    assert call(conn, "GET", "/next") == (200, b"GET /next 0")  # framing kept in sync
    conn.close()


def test_share_half_aborts_about_half_of_400_requests(manager, proxy):
    name, addr = proxy
    manager.set_rule(name, rule("abort", share=0.5))
    conn = client(addr)
    aborted = sum(call(conn)[0] == 503 for _ in range(400))
    conn.close()
    # Binomial(400, 0.5): sd = 10, so ±4 sd is [160, 240].
    assert 160 <= aborted <= 240, aborted


def test_delay_of_100ms_adds_100ms_within_10ms(manager, proxy):
    name, addr = proxy
    conn = client(addr)

    def ms() -> float:
        start = time.perf_counter()
        assert call(conn, "GET", "/slow")[0] == 200
        return (time.perf_counter() - start) * 1000

    base = statistics.median(ms() for _ in range(20))
    manager.set_rule(name, rule("delay", delay_ms=100, path="/slow"))
    added = statistics.median(ms() for _ in range(15)) - base
    assert abs(added - 100) <= 10, f"added {added:.1f} ms"
    assert call(conn, "GET", "/fast")[0] == 200
    conn.close()


def test_rules_toggled_between_requests_on_one_keepalive_connection(manager, proxy):
    name, addr = proxy
    conn = client(addr)
    local = conn.sock.getsockname()
    for _ in range(3):
        assert call(conn)[0] == 200
        manager.set_rule(name, rule("abort", status=500))
        assert call(conn)[0] == 500
        assert manager.remove_rule(name, "r")
        assert call(conn)[0] == 200
        manager.set_rule(name, rule("delay", delay_ms=30))
        start = time.perf_counter()
        assert call(conn)[0] == 200
        assert time.perf_counter() - start >= 0.029
        manager.remove_rule(name, "r")
    assert conn.sock.getsockname() == local  # never reconnected
    conn.close()


def test_drop_closes_the_connection_without_a_response(manager, proxy):
    name, addr = proxy
    manager.set_rule(name, rule("abort", drop=True, path="/gone"))
    with socket.create_connection(addr, timeout=2) as sock:
        sock.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /gone HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096) == b""  # EOF, not a status line
    assert manager.stats(name)["requests_dropped"] == 1


def test_an_expired_rule_stops_applying_without_a_revert(manager, proxy):
    name, addr = proxy
    manager.set_rule(name, rule("abort", rule_id="past", ttl=-1))
    short = rule("abort", rule_id="short", ttl=2.0, status=502)
    manager.set_rule(name, short)
    conn = client(addr)
    assert call(conn)[0] == 502
    wait_until(lambda: call(conn)[0] == 200, 10, "the rule to expire")
    assert time.time() >= short.expires_at  # not before its expiry
    conn.close()
    assert manager.rules(name) == []


def test_expect_100_continue_and_bad_requests(proxy):
    _, addr = proxy
    with socket.create_connection(addr, timeout=2) as sock:
        sock.sendall(
            b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"abc")
        assert read_response(sock).endswith(b"POST /e 3")
    with socket.create_connection(addr, timeout=2) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 400 ")


def test_an_unreachable_upstream_answers_502(manager):
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        dead = spare.getsockname()[1]
    addr = manager.ensure_proxy("dead", "127.0.0.1:0", f"http://127.0.0.1:{dead}")
    try:
        assert call(client(addr))[0] == 502
    finally:
        manager.remove_proxy("dead")


def test_upstream_parsing_refuses_what_the_proxy_cannot_do():
    assert parse_http_upstream("http://127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_http_upstream("http://localhost/") == ("localhost", 80)
    assert parse_http_upstream("127.0.0.1:9") == ("127.0.0.1", 9)
    for bad in ("https://x:1", "http://x:1/prefix", "http://x:port"):
        with pytest.raises(ProxyError):
            parse_http_upstream(bad)


def test_rule_validation():
    with pytest.raises(ValueError, match="status"):
        rule("abort", status=99)
    with pytest.raises(ValueError, match="delay_ms"):
        rule("delay")
    with pytest.raises(ValueError, match="kind"):
        rule("teapot")


# --- injectors -------------------------------------------------------------------------


@pytest.fixture
def runtime() -> Iterator[SimpleNamespace]:
    mgr = HttpProxyManager()
    yield SimpleNamespace(http_proxies=mgr)
    mgr.stop()


@pytest.fixture
def target_config(upstream) -> dict[str, Any]:
    host, port = upstream.server_address[:2]
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        free = spare.getsockname()[1]
    return {
        "http_proxies": {
            "api": {"listen": f"127.0.0.1:{free}", "upstream": f"http://{host}:{port}"},
            "auth": {"listen": "127.0.0.1:9301", "upstream": "http://127.0.0.1:9300"},
        }
    }


def make_ctx(target_config: dict[str, Any], runtime: Any = None, **kw: Any) -> InjectionContext:
    kw.setdefault("fault_id", 5)
    kw.setdefault("intensity", 1.0)
    kw.setdefault("expires_at", time.time() + 60)
    return InjectionContext(target_name="shop", target_config=target_config, runtime=runtime, **kw)


def test_registry_and_validation_name_the_field(target_config):
    assert isinstance(get_injector("http.abort"), AbortInjector)
    assert isinstance(get_injector("http.delay"), DelayInjector)
    cases = [
        (AbortInjector, {"proxy": "api", "status": 700}, "status"),
        (AbortInjector, {"proxy": "api", "method": "GE T"}, "method"),
        (AbortInjector, {"proxy": "api", "headers": {"bad name": "x"}}, "headers"),
        (AbortInjector, {"proxy": "api", "colour": "red"}, "colour"),
        (DelayInjector, {"proxy": "api"}, "delay_ms"),
        (DelayInjector, {"proxy": "api", "delay_ms": 5, "jitter_ms": -1}, "jitter_ms"),
    ]
    for cls, params, path in cases:
        with pytest.raises(InvalidParams) as exc:
            cls().validate(params)
        assert [e.path for e in exc.value.errors] == [path], params
    with pytest.raises(InvalidParams) as exc:
        AbortInjector().validate({"proxy": "nope"}, target_config)
    (error,) = exc.value.errors
    assert error.path == "proxy" and error.reason.endswith("the target defines: api, auth")
    with pytest.raises(InvalidParams, match=r"config\.http_proxies"):
        AbortInjector().validate({"proxy": "api"}, {"proxies": {}})
    assert AbortInjector().validate({"proxy": "api", "method": "get"})["method"] == "GET"


def test_dry_run_sentences(target_config):
    ctx = make_ctx(target_config, intensity=0.25, expires_at=1_700_000_030)
    text = AbortInjector().dry_run(
        {"proxy": "auth", "method": "post", "path": "/login*", "headers": {"X-A": "1"}}, ctx
    )
    assert text == (
        "answer HTTP 503 without forwarding for 25% of POST requests whose path matches "
        "the glob '/login*' and whose header X-A matches '1' on HTTP proxy 'auth' "
        "(127.0.0.1:9301 → http://127.0.0.1:9300) until 22:13:50 UTC"
    )
    assert "without any response" in AbortInjector().dry_run({"proxy": "a", "drop": True}, ctx)
    text = DelayInjector().dry_run({"proxy": "auth", "delay_ms": 250, "jitter_ms": 50}, ctx)
    assert text.startswith(
        "hold the request 250 ms (±50 ms) before forwarding it for 25% of requests"
    )


def test_inject_revert_and_expiry_through_a_real_proxy(target_config, runtime):
    listen = target_config["http_proxies"]["api"]["listen"]
    host, port = listen.split(":")
    handle = AbortInjector().inject(
        {"proxy": "api", "status": 500, "path": "/x"}, make_ctx(target_config, runtime)
    )
    assert handle == {"proxy": "shop/api", "rule_id": "fault-5"}
    conn = client((host, int(port)))
    assert call(conn, "GET", "/x")[0] == 500
    assert call(conn, "GET", "/y")[0] == 200
    AbortInjector().revert(handle, make_ctx(target_config, runtime))
    AbortInjector().revert(handle, make_ctx(target_config, runtime))  # idempotent
    assert call(conn, "GET", "/x")[0] == 200
    # Expiry with no revert at all.
    ctx = make_ctx(target_config, runtime, fault_id=6, expires_at=time.time() + 2.0)
    DelayInjector().inject({"proxy": "api", "delay_ms": 150}, ctx)

    def call_s() -> float:
        start = time.perf_counter()
        assert call(conn)[0] == 200
        return time.perf_counter() - start

    assert call_s() >= 0.14
    # A call faster than the delay (which is never early) is one no longer delayed.
    wait_until(lambda: call_s() < 0.14, 10, "the delay to expire")
    assert time.time() >= ctx.expires_at  # not before its expiry
    conn.close()
    runtime.http_proxies.remove_proxy("shop/api")
    AbortInjector().revert(handle, make_ctx(target_config, runtime))  # proxy gone: fine
