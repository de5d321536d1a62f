"""The scep_flags SDK against real HTTP servers: the SCEP API on pytest-django's live
server (flags are ActiveFault rows written straight into the test database), a local
server that never answers, a closed port, and servers that answer 500 or garbage."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import requests
from django.test import RequestFactory
from django.urls import get_resolver
from django.utils import timezone
from rest_framework.authtoken.models import Token

import scep_flags
from injectors.models import ActiveFault, FaultState
from injectors.registry import get_injector
from scep_flags import FailureFlagError, failure_flag
from tests.support.processes import ROOT, free_port, wait_until

# --- servers and fixtures ---------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """A downstream for the HTTP-client hooks; counts the calls that reach it."""

    protocol_version = "HTTP/1.1"
    hits: list[str]
    status = 200
    body = b'{"real": true}'

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


def _serve(status: int = 200, body: bytes = b'{"real": true}') -> tuple[str, list[str], Any]:
    hits: list[str] = []
    handler = type("H", (_Recorder,), {"hits": hits, "status": status, "body": body})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", hits, server


@pytest.fixture
def http_server() -> Iterator[Callable[..., tuple[str, list[str]]]]:
    servers = []

    def _make(status: int = 200, body: bytes = b'{"real": true}') -> tuple[str, list[str]]:
        url, hits, server = _serve(status, body)
        servers.append(server)
        return url, hits

    yield _make
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def hanging_server() -> Iterator[str]:
    """Accepts connections and never says a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    sock.close()


#: The SDK's deadline against the live server. The default (0.5 s) is for production; a
#: loaded CI host can answer slower, and a missed deadline reads as "no faults". The
#: deadline itself is tested against a server that never answers.
LIVE_TIMEOUT_S = 5.0


def load_urlconf() -> None:
    """Import the URLconf now: the live server would import it on its first request,
    which can take seconds, and the SDK's deadline would (rightly) give up on it."""
    get_resolver().url_patterns  # noqa: B018 - the import is the point


@pytest.fixture(autouse=True)
def _unconfigured() -> Iterator[None]:
    scep_flags.reset()
    yield
    scep_flags.reset()


@pytest.fixture
def token(viewer: Any) -> str:
    return Token.objects.get_or_create(user=viewer)[0].key


@pytest.fixture
def platform(
    live_server: Any, token: str, transactional_db: None
) -> Callable[..., scep_flags.FlagsClient]:
    """``platform(cache_ttl_s=...)`` configures the SDK against the live SCEP API."""

    load_urlconf()

    def _configure(**kwargs: Any) -> scep_flags.FlagsClient:
        kwargs.setdefault("cache_ttl_s", 0.0)
        kwargs.setdefault("timeout_s", LIVE_TIMEOUT_S)
        return scep_flags.configure(live_server.url, token, **kwargs)

    return _configure


@pytest.fixture
def add_flag(target: Any) -> Callable[..., ActiveFault]:
    """Write an ACTIVE code.flag ledger row, as an agent's apply leaves it."""

    def _add(
        flag: str = "checkout.charge",
        *,
        intensity: float = 1.0,
        expires_in: float = 60,
        **params: Any,
    ) -> ActiveFault:
        params.setdefault("effect", "exception")
        return ActiveFault.objects.create(
            target=target,
            injector="code.flag",
            params=get_injector("code.flag").validate({"flag": flag, **params}),
            intensity=intensity,
            state=FaultState.ACTIVE,
            agent=target.agent,
            expires_at=timezone.now() + timedelta(seconds=expires_in),
            injected_at=timezone.now(),
        )

    return _add


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    try:
        result = fn()
    except Exception as exc:
        result = exc
    return time.perf_counter() - started, result


def charge(region: str = "eu") -> Any:
    with failure_flag("checkout.charge", labels={"region": region}) as flag:
        return flag.response if flag.has_response else "charged"


def faulted() -> bool:
    try:
        charge()
    except FailureFlagError:
        return True
    return False


# --- effects ----------------------------------------------------------------------------


def test_exception_effect_raises_the_configured_class(platform, add_flag) -> None:
    platform()
    add_flag(exception={"type": "ConnectionError", "message": "card network down"})

    with pytest.raises(ConnectionError, match="card network down") as info:
        charge()
    assert isinstance(info.value, FailureFlagError)
    assert info.value.flag == "checkout.charge"


def test_no_flag_no_fault(platform, add_flag) -> None:
    platform()
    add_flag("some.other.flag")
    assert charge() == "charged"


def test_latency_effect_delays_by_the_configured_amount(platform, add_flag) -> None:
    client = platform(cache_ttl_s=60)
    add_flag(effect="latency", latency_ms=150)
    client.flags()  # warm the cache: time the delay, not the fetch

    samples = [timed(charge) for _ in range(5)]

    assert all(result == "charged" for _, result in samples)
    elapsed = sorted(e for e, _ in samples)
    assert elapsed[0] >= 0.150, elapsed  # never early
    # The median only catches gross excess (e.g. the delay applied twice), not a stall.
    assert statistics.median(elapsed) < 0.300, elapsed


def test_response_effect_substitutes_the_value(platform, add_flag) -> None:
    platform()
    add_flag(effect="response", response={"status": "declined", "code": 51})
    assert charge() == {"status": "declined", "code": 51}


def test_a_null_response_is_still_a_substitution(platform, add_flag) -> None:
    platform()
    add_flag(effect="response", response=None)
    with failure_flag("checkout.charge") as flag:
        assert flag.has_response and flag.response is None
        assert flag.value("fallback") is None


def test_decorator_form(platform, add_flag) -> None:
    platform(cache_ttl_s=0)
    calls: list[int] = []

    @failure_flag("inventory.lookup", labels={"store": "berlin"})
    def lookup(sku: int) -> dict[str, Any]:
        calls.append(sku)
        return {"sku": sku, "stock": 7}

    assert lookup(1) == {"sku": 1, "stock": 7}
    fault = add_flag("inventory.lookup", effect="response", response={"stock": 0})
    assert lookup(2) == {"stock": 0}
    assert calls == [1]  # the substituted call never ran the function
    ActiveFault.objects.filter(pk=fault.pk).update(state=FaultState.REVERTED)
    add_flag("inventory.lookup", exception={"type": "TimeoutError"})
    with pytest.raises(TimeoutError):
        lookup(3)
    assert calls == [1]


def test_async_decorator_and_async_with(platform, add_flag) -> None:
    platform(cache_ttl_s=0)
    add_flag("pricing.quote", effect="latency", latency_ms=100)

    @failure_flag("pricing.quote")
    async def quote() -> int:
        return 42

    async def both() -> tuple[float, int]:
        started = time.perf_counter()
        async with failure_flag("pricing.quote") as flag:
            assert flag.active
        value = await quote()
        return time.perf_counter() - started, value

    elapsed, value = asyncio.run(both())
    assert value == 42
    assert elapsed >= 0.2  # two evaluations, 100 ms each


# --- matching and share -----------------------------------------------------------------


def test_labels_must_all_match_and_values_may_glob(platform, add_flag) -> None:
    platform(app_labels={"service": "checkout"})
    add_flag(labels={"region": "eu-*", "service": "checkout"})

    assert charge("us-east") == "charged"
    assert charge("eu") == "charged"  # "eu" does not match "eu-*"
    with pytest.raises(FailureFlagError):
        charge("eu-west")

    scep_flags.configure(
        scep_flags.get_client().base_url,
        scep_flags.get_client().token,
        cache_ttl_s=0,
        timeout_s=LIVE_TIMEOUT_S,
        app_labels={"service": "search"},
    )
    assert charge("eu-west") == "charged"  # the app label does not match


def test_empty_labels_match_any_call(platform, add_flag) -> None:
    platform()
    add_flag()
    for region in ("eu", "us", "ap"):
        with pytest.raises(FailureFlagError):
            charge(region)


def test_intensity_is_the_share_of_faulted_calls(platform, add_flag) -> None:
    client = platform(cache_ttl_s=60)
    add_flag(intensity=0.3)
    client.flags()
    calls = 3000
    faulted = 0
    for _ in range(calls):
        try:
            charge()
        except FailureFlagError:
            faulted += 1
    assert client.fetches == 1
    # Binomial(3000, 0.3): sd is 0.0084, so ±0.04 is beyond 4.7 sd.
    assert abs(faulted / calls - 0.3) < 0.04, faulted


# --- caching and expiry -----------------------------------------------------------------


def test_cache_ttl_is_respected(platform, add_flag) -> None:
    # The TTL must outlast a fetch plus a ledger write on a loaded host.
    client = platform(cache_ttl_s=2.0)
    assert charge() == "charged"  # fetch #1: nothing active
    fault = add_flag()
    assert charge() == "charged"  # still cached: the new flag is not seen yet
    assert client.fetches == 1

    wait_until(lambda: not client.is_fresh(), 10, "the cache to go stale")
    with pytest.raises(FailureFlagError):
        charge()  # fetch #2 sees it
    assert client.fetches == 2

    ActiveFault.objects.filter(pk=fault.pk).update(state=FaultState.REVERTED)
    with pytest.raises(FailureFlagError):
        charge()  # reverted, but the cache still holds it for the TTL
    wait_until(lambda: not client.is_fresh(), 10, "the cache to go stale")
    assert charge() == "charged"
    assert client.fetches == 3


def test_a_flag_expires_on_time_even_while_cached(platform, add_flag) -> None:
    client = platform(cache_ttl_s=60)
    fault = add_flag(expires_in=3)  # longer than a fetch on a loaded host
    fetch_s, result = timed(charge)
    assert isinstance(result, FailureFlagError)
    wait_until(lambda: not faulted(), 10, "the flag to expire")
    assert client.fetches == 1  # it left the cache by itself
    # Not before its expiry: the client counts from the fetch's start, so at most the
    # fetch's duration early (plus the feed's 1 ms rounding).
    assert timezone.now() >= fault.expires_at - timedelta(seconds=fetch_s + 0.002)


# --- failing safe -----------------------------------------------------------------------


def test_a_server_that_never_answers_means_no_fault_within_the_timeout(
    hanging_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = scep_flags.configure(hanging_server, "t", timeout_s=0.3, cache_ttl_s=0)
    caplog.set_level(logging.WARNING, logger="scep_flags")

    # It gives up at the deadline; the slack is for a busy host, and far below waiting
    # for an answer (forever).
    elapsed, result = timed(charge)
    assert result == "charged"
    assert elapsed < 0.3 + 2.0, elapsed

    elapsed, result = timed(charge)  # the warning is rate limited, the timeout is not
    assert result == "charged"
    assert elapsed < 0.3 + 2.0, elapsed
    assert client.fetches == 2
    warnings = [r for r in caplog.records if r.name == "scep_flags"]
    assert len(warnings) == 1
    assert "injecting no faults" in warnings[0].getMessage()


def test_an_unreachable_platform_means_no_fault() -> None:
    scep_flags.configure(
        f"http://127.0.0.1:{free_port()}", "t", cache_ttl_s=0, timeout_s=LIVE_TIMEOUT_S
    )
    elapsed, result = timed(charge)
    assert result == "charged"
    assert elapsed < LIVE_TIMEOUT_S / 2  # a refused connection does not wait for the deadline


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b'{"flags": []}'),
        (200, b"<html>not json</html>"),
        (200, b'{"no": "flags key"}'),
        (200, b'{"flags": [{"flag": "checkout.charge"}]}'),  # entry without effect
    ],
)
def test_errors_and_bad_answers_mean_no_fault(http_server, status: int, body: bytes) -> None:
    url, hits = http_server(status, body)
    scep_flags.configure(url, "t", cache_ttl_s=0, timeout_s=LIVE_TIMEOUT_S)
    assert charge() == "charged"
    assert hits  # it did ask


def test_a_rejected_token_means_no_fault(live_server, transactional_db, add_flag) -> None:
    load_urlconf()
    add_flag()
    scep_flags.configure(live_server.url, "not-a-token", cache_ttl_s=0, timeout_s=LIVE_TIMEOUT_S)
    assert charge() == "charged"


def test_unconfigured_sdk_is_inert(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCEP_FLAGS_URL", raising=False)
    assert scep_flags.get_client() is None
    assert charge() == "charged"


def test_configuration_from_the_environment(
    live_server, transactional_db, token, add_flag, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_urlconf()
    monkeypatch.setenv("SCEP_FLAGS_URL", live_server.url)
    monkeypatch.setenv("SCEP_FLAGS_TOKEN", token)
    add_flag()
    client = scep_flags.get_client()
    assert (client.base_url, client.token) == (live_server.url, token)
    client.timeout_s = LIVE_TIMEOUT_S  # no variable sets it; see LIVE_TIMEOUT_S
    with pytest.raises(FailureFlagError):
        charge()


def test_the_sdk_imports_without_django() -> None:
    code = (
        "import sys, scep_flags; from scep_flags import failure_flag\n"
        "with failure_flag('x') as f: pass\n"
        "assert 'django' not in sys.modules and 'rest_framework' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=30)


# --- integrations -----------------------------------------------------------------------


def test_requests_adapter(platform, add_flag, http_server) -> None:
    from scep_flags.requests import instrument_requests

    platform()
    url, hits = http_server()
    session = instrument_requests(requests.Session())

    assert session.get(f"{url}/pay").json() == {"real": True}

    fault = add_flag(
        "http.client",
        labels={"host": "127.0.0.1", "path": "/pay"},
        exception={"type": "ConnectionError", "message": "reset"},
    )
    with pytest.raises(requests.ConnectionError) as info:
        session.get(f"{url}/pay")
    assert isinstance(info.value.__cause__, FailureFlagError)
    assert session.get(f"{url}/other").status_code == 200  # path label does not match

    ActiveFault.objects.filter(pk=fault.pk).update(state=FaultState.REVERTED)
    add_flag(
        "http.client",
        labels={"method": "GET"},
        effect="response",
        response={"status": 503, "body": {"error": "overloaded"}},
    )
    response = session.get(f"{url}/pay")
    assert response.status_code == 503
    assert response.json() == {"error": "overloaded"}
    assert hits == ["/pay", "/other"]  # faulted calls never reached the server


def test_httpx_hook_and_transport(platform, add_flag, http_server) -> None:
    from scep_flags.httpx import FailureFlagTransport, instrument_httpx

    platform()
    url, hits = http_server()
    fault = add_flag("http.client", labels={"path": "/slow"}, effect="latency", latency_ms=120)
    with instrument_httpx(httpx.Client()) as client:
        elapsed, response = timed(lambda: client.get(f"{url}/slow"))
        assert response.status_code == 200 and elapsed >= 0.12
        ActiveFault.objects.filter(pk=fault.pk).update(state=FaultState.REVERTED)
        fault = add_flag("http.client", exception={"type": "TimeoutError"})
        with pytest.raises(httpx.ReadTimeout):
            client.get(f"{url}/slow")

    ActiveFault.objects.filter(pk=fault.pk).update(state=FaultState.REVERTED)
    add_flag("http.client", labels={"host": "127.0.0.1"}, effect="response", response=[1, 2])
    with httpx.Client(transport=FailureFlagTransport()) as client:
        response = client.get(f"{url}/list")
        assert response.status_code == 200 and response.json() == [1, 2]
    assert hits == ["/slow"]


def test_httpx_async_hook(platform, add_flag, http_server) -> None:
    from scep_flags.httpx import instrument_httpx

    platform()
    url, _ = http_server()
    add_flag("http.client", exception={"type": "ConnectionError"})

    async def call() -> None:
        async with instrument_httpx(httpx.AsyncClient()) as client:
            await client.get(f"{url}/x")

    with pytest.raises(httpx.ConnectError):
        asyncio.run(call())


def test_django_middleware(platform, add_flag) -> None:
    from django.http import HttpResponse

    from scep_flags.django import FailureFlagMiddleware

    platform()
    middleware = FailureFlagMiddleware(lambda request: HttpResponse("view"))
    factory = RequestFactory()

    assert middleware(factory.get("/api/orders")).content == b"view"
    fault = add_flag(
        "http.request",
        labels={"method": "POST", "path": "/api/*"},
        effect="response",
        response={"status": 503, "body": "try later"},
    )
    assert middleware(factory.get("/api/orders")).content == b"view"  # GET: no match
    response = middleware(factory.post("/api/orders"))
    assert response.status_code == 503
    assert response.content == b"try later"
    assert response["X-SCEP-Failure-Flag"] == "http.request"

    ActiveFault.objects.filter(pk=fault.pk).update(state=FaultState.REVERTED)
    add_flag("http.request", labels={"path": "/api/*"})
    with pytest.raises(FailureFlagError):
        middleware(factory.get("/api/orders"))
    assert middleware(factory.get("/healthz")).content == b"view"


def test_flags_feed_shape_is_what_the_sdk_parses(platform, add_flag) -> None:
    client = platform()
    add_flag(effect="latency", latency_ms=5, labels={"region": "eu"}, intensity=0.5)
    (flag,) = client.flags()
    assert (flag.flag, flag.effect, flag.latency_ms, flag.intensity) == (
        "checkout.charge",
        "latency",
        5.0,
        0.5,
    )
    assert flag.labels == {"region": "eu"}
    assert json.dumps(flag.raw)  # JSON round-trips
