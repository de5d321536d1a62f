"""An asyncio HTTP/1.1 reverse proxy that can abort, drop or delay matching requests.

The TCP proxy sees bytes; many faults worth testing are about *requests*: "the payment
endpoint answers 503", "POSTs to /orders hang for two seconds". This proxy parses just
enough HTTP/1.1 to find request boundaries, so a rule can hit one request on a keep-alive
connection and leave the next one alone.

Design notes (why it is built this way):

* Messages are relayed as they arrive, never re-serialised: the head is forwarded byte
  for byte and bodies are streamed (Content-Length, chunked or until close). The proxy
  only needs the framing, so it stays transparent to whatever the application sends.
* Each request draws ``u`` uniformly once; a rule hits it iff it matches and
  ``u < rule.share``. One draw per request keeps several rules consistent with each
  other, like the per-connection draw of the TCP proxy.
* Rules carry ``expires_at`` and are filtered by it on every request, so an expired
  fault stops applying even if its revert never arrives.
* Requests sent with ``Expect: 100-continue`` are answered ``100 Continue`` by the proxy
  itself (and the header is not forwarded); otherwise the proxy would wait for a body the
  client holds back until the upstream's interim answer, which the proxy would not read
  until the body is through.
* Requests carrying both Transfer-Encoding and Content-Length are refused (400): a proxy
  and its upstream disagreeing on framing is how requests get smuggled.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import random
import socket
import string
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Literal
from urllib.parse import urlsplit

from injectors.listener import RuleListener, listen_error, total_delay
from injectors.network.proxy import ProxyError, ProxyManager, parse_address, proxy_key

__all__ = [
    "HttpFaultProxy",
    "HttpProxyManager",
    "HttpRule",
    "parse_http_upstream",
    "wanted_http_proxies",
]

HttpKind = Literal["abort", "delay"]
HTTP_KINDS: tuple[str, ...] = ("abort", "delay")

#: Largest request or response head we accept; bigger ones get 431 / 502.
HEAD_LIMIT = 64 * 1024
#: Read size while streaming bodies.
PIECE = 64 * 1024
_HEX = frozenset(string.hexdigits)
_TOKEN = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")
#: The three ways a message body can end.
Framing = Literal["none", "length", "chunked", "close"]


class _BadMessage(Exception):
    """A peer broke HTTP/1.1 framing; ``status`` is what the client should be told."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _is_token(text: str) -> bool:
    return bool(text) and all(c in _TOKEN for c in text)


@dataclass(frozen=True)
class HttpRule:
    """One fault on one HTTP proxy. Frozen, so it can be shared across threads safely.

    Matching: ``method`` (case-insensitive, None = any), ``path`` (a shell-style glob as in
    :func:`fnmatch.fnmatchcase` over the path without the query string; ``*`` also crosses
    ``/``; None = any) and ``headers`` (name → glob over the value; every pair must match
    some value of that header; names are case-insensitive).

    ``abort`` answers ``status`` with ``body`` instead of forwarding, or with ``drop``
    closes the connection without any answer; ``delay`` holds the request for
    ``delay_ms`` ± ``jitter_ms`` before it is forwarded.
    """

    id: str
    kind: HttpKind
    share: float
    expires_at: float
    method: str | None = None
    path: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    status: int = 503
    body: str = ""
    drop: bool = False
    delay_ms: float = 0.0
    jitter_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in HTTP_KINDS:
            raise ValueError(f"unknown rule kind {self.kind!r}; expected one of {HTTP_KINDS}")
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"share must be within 0..1, got {self.share}")
        if not 200 <= self.status <= 599:
            raise ValueError(f"status must be a final status 200..599, got {self.status}")
        if self.delay_ms < 0 or self.jitter_ms < 0:
            raise ValueError("delay_ms and jitter_ms must be >= 0")
        if self.kind == "delay" and self.delay_ms <= 0:
            raise ValueError("a delay rule needs delay_ms > 0")
        if self.method is not None and not _is_token(self.method):
            raise ValueError(f"method {self.method!r} is not an HTTP token")
        for name, _ in self.headers:
            if not _is_token(name):
                raise ValueError(f"header name {name!r} is not an HTTP token")

    def matches(self, head: _Head, now: float) -> bool:
        if now >= self.expires_at:
            return False
        if self.method is not None and head.method != self.method.upper():
            return False
        if self.path is not None and not fnmatchcase(head.path, self.path):
            return False
        return all(
            any(fnmatchcase(value, pattern) for value in head.values(name))
            for name, pattern in self.headers
        )


@dataclass
class _Head:
    """A parsed start line and header block, plus the raw bytes to forward unchanged."""

    start: list[str]
    headers: list[tuple[str, str]]
    raw: bytes

    @property
    def method(self) -> str:
        return self.start[0]

    @property
    def version(self) -> str:
        return self.start[2] if self.is_request else self.start[0]

    @property
    def is_request(self) -> bool:
        return not self.start[0].startswith("HTTP/")

    @property
    def path(self) -> str:
        target = self.start[1]
        if "://" in target:  # absolute form, as sent to forward proxies
            return urlsplit(target).path or "/"
        return target.split("?", 1)[0]

    @property
    def status(self) -> int:
        return int(self.start[1])

    def values(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def tokens(self, name: str) -> list[str]:
        """Comma-separated list header values, lower-cased (Connection, Transfer-Encoding)."""
        return [t.strip().lower() for v in self.values(name) for t in v.split(",") if t.strip()]

    def keep_alive(self) -> bool:
        tokens = self.tokens("connection")
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens

    def without(self, name: str) -> bytes:
        """The raw head minus every line of header ``name``."""
        prefix = name.lower().encode() + b":"
        lines = self.raw.split(b"\r\n")
        return b"\r\n".join(
            line for i, line in enumerate(lines) if i == 0 or not line.lower().startswith(prefix)
        )


def _parse_head(raw: bytes) -> _Head:
    """Parse a head ending in CRLFCRLF; raise _BadMessage(400) when it is not HTTP/1.x."""
    text = raw.decode("latin-1")
    lines = text[:-4].split("\r\n")
    start = lines[0].split(" ", 2)
    if start[0].startswith("HTTP/"):  # a status line: version, code and optional reason
        if len(start) < 2 or not start[1].isdigit() or len(start[1]) != 3:
            raise _BadMessage(502, f"bad status line {lines[0]!r}")
    elif len(start) != 3 or not _is_token(start[0]) or " " in start[2]:
        raise _BadMessage(400, f"bad request line {lines[0]!r}")
    version = start[0] if start[0].startswith("HTTP/") else start[2]
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise _BadMessage(505, f"unsupported version {version!r}")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not _is_token(name):  # also refuses obsolete line folding
            raise _BadMessage(400, f"bad header line {line!r}")
        headers.append((name, value.strip(" \t")))
    return _Head(start, headers, raw)


def _request_framing(head: _Head) -> tuple[Framing, int]:
    codings = head.tokens("transfer-encoding")
    lengths = {v.strip() for value in head.values("content-length") for v in value.split(",")}
    if codings and lengths:
        raise _BadMessage(400, "both Transfer-Encoding and Content-Length")
    if codings:
        if codings[-1] != "chunked":
            raise _BadMessage(400, "a request body must end with the chunked coding")
        return "chunked", 0
    if lengths:
        (length,) = lengths if len(lengths) == 1 else (None,)
        if length is None or not length.isdigit():
            raise _BadMessage(400, "bad Content-Length")
        return ("length", int(length)) if int(length) else ("none", 0)
    return "none", 0


def _response_framing(method: str, head: _Head) -> tuple[Framing, int]:
    status = head.status
    if method == "HEAD" or status < 200 or status in (204, 304):
        return "none", 0
    codings = head.tokens("transfer-encoding")
    if codings:
        return ("chunked", 0) if codings[-1] == "chunked" else ("close", 0)
    lengths = {v.strip() for value in head.values("content-length") for v in value.split(",")}
    if lengths:
        (length,) = lengths if len(lengths) == 1 else (None,)
        if length is None or not length.isdigit():
            raise _BadMessage(502, "bad Content-Length from the upstream")
        return "length", int(length)
    return "close", 0


async def _relay_exactly(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None, n: int
) -> None:
    """Copy ``n`` body bytes (or discard them when ``writer`` is None)."""
    while n > 0:
        data = await reader.read(min(n, PIECE))
        if not data:
            raise ConnectionError("peer closed in the middle of a body")
        n -= len(data)
        if writer is not None:
            writer.write(data)
            await writer.drain()


async def _relay_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None) -> None:
    """Copy a chunked body verbatim, checking its framing so we know where it ends."""

    async def emit(data: bytes) -> None:
        if writer is not None:
            writer.write(data)
            await writer.drain()

    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line[:-2].split(b";", 1)[0].strip().decode("latin-1")
        if not size_text or not all(c in _HEX for c in size_text):
            raise _BadMessage(400, f"bad chunk size line {line[:40]!r}")
        size = int(size_text, 16)
        await emit(line)
        if size == 0:
            while True:  # optional trailer fields, then the empty line that ends the body
                trailer = await reader.readuntil(b"\r\n")
                await emit(trailer)
                if trailer == b"\r\n":
                    return
        await _relay_exactly(reader, writer, size)
        if await reader.readexactly(2) != b"\r\n":
            raise _BadMessage(400, "chunk data not followed by CRLF")
        await emit(b"\r\n")


async def _relay_body(
    framing: Framing,
    length: int,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter | None,
) -> None:
    if framing == "length":
        await _relay_exactly(reader, writer, length)
    elif framing == "chunked":
        await _relay_chunked(reader, writer)
    elif framing == "close":
        while data := await reader.read(PIECE):
            if writer is not None:
                writer.write(data)
                await writer.drain()


def _simple_response(
    status: int, body: bytes, *, keep: bool, extra: str = "", head_only: bool = False
) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Injected Fault"
    head = (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{extra}"
        f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
    )
    return head.encode("latin-1") + (b"" if head_only else body)


def _set_nodelay(writer: asyncio.StreamWriter) -> None:
    """Heads and bodies are separate writes; Nagle would hold the second one for an ACK
    that delayed-ACK holds back, adding ~40 ms to responses the fault never asked for."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(PIECE):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()


class _Exchange:
    """One client connection: a loop of request → (fault | upstream) → response."""

    def __init__(self, proxy: HttpFaultProxy, reader, writer) -> None:
        self.proxy = proxy
        self.reader: asyncio.StreamReader = reader
        self.writer: asyncio.StreamWriter = writer
        self.up_reader: asyncio.StreamReader | None = None
        self.up_writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task | None = None
        #: A response head went out for the current request, so no error page may follow.
        self.responding = False

    async def run(self) -> None:
        self.task = asyncio.current_task()
        _set_nodelay(self.writer)
        try:
            while await self._one():
                pass
        except _BadMessage as exc:
            # Framing is lost, so whatever follows cannot be trusted: answer (unless a
            # response is already on its way, which an error page would corrupt) and close.
            if self.responding:
                return
            with contextlib.suppress(OSError):
                self.writer.write(_simple_response(exc.status, f"{exc}\n".encode(), keep=False))
                await self.writer.drain()
        except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a peer vanished mid-message: closing both sides is all we can do
        finally:
            self.abort(graceful=True)

    def abort(self, *, graceful: bool = False) -> None:
        for w in (self.writer, self.up_writer):
            if w is not None and not w.transport.is_closing():
                if graceful:
                    w.close()
                else:
                    w.transport.abort()

    async def _read_head(self, reader: asyncio.StreamReader) -> bytes | None:
        """The next head, or None on a clean EOF before its first byte."""
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip(b"\r\n"):
                raise _BadMessage(400, "connection closed inside a message head") from None
            return None
        except asyncio.LimitOverrunError:
            raise _BadMessage(431, "message head too large") from None
        return raw.lstrip(b"\r\n")  # RFC 9112 §2.2: ignore empty lines before a request

    async def _one(self) -> bool:
        """Handle one request; True if the client connection stays open for another."""
        self.responding = False
        raw = await self._read_head(self.reader)
        if raw is None:
            return False
        head = _parse_head(raw)
        if not head.is_request:
            raise _BadMessage(400, "expected a request")
        proxy = self.proxy
        proxy.stats["requests_total"] += 1
        framing, length = _request_framing(head)
        keep = head.keep_alive()
        expects_continue = "100-continue" in head.tokens("expect")
        abort, delay = proxy.decide(head)
        if delay:
            proxy.stats["requests_delayed"] += 1
            await asyncio.sleep(delay)
        if abort is not None:
            return await self._abort(abort, head, framing, length, keep, expects_continue)

        out = head.raw
        if expects_continue:
            self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            out = head.without("expect")
        for attempt in range(2):
            reused = self.up_reader is not None
            if not await self._connect():
                body = b"upstream unreachable\n"
                self.writer.write(_simple_response(502, body, keep=False))
                await self.writer.drain()
                return False
            assert self.up_reader is not None and self.up_writer is not None
            try:
                self.up_writer.write(out)
                await _relay_body(framing, length, self.reader, self.up_writer)
                await self.up_writer.drain()
                response = await self._read_head(self.up_reader)
            except OSError:
                response = None  # the upstream reset a reused connection: same as EOF
            if response is not None:
                break
            self._drop_upstream()
            # An idle keep-alive upstream may close just as we reuse it; a request without
            # a body can be replayed safely, once, on a fresh connection.
            if not (reused and framing == "none" and attempt == 0):
                raise ConnectionError("upstream closed before responding")
        return await self._respond(head, response, keep)

    async def _abort(
        self,
        rule: HttpRule,
        head: _Head,
        framing: Framing,
        length: int,
        keep: bool,
        expects_continue: bool,
    ) -> bool:
        if rule.drop:
            self.proxy.stats["requests_dropped"] += 1
            return False  # run() closes the connection: the client sees EOF, no status
        if expects_continue:
            keep = False  # the client may or may not send the body now; we cannot tell
        else:
            await _relay_body(framing, length, self.reader, None)  # keep framing in sync
        self.proxy.stats["requests_aborted"] += 1
        self.writer.write(
            _simple_response(
                rule.status,
                rule.body.encode(),
                keep=keep,
                extra=f"X-SCEP-Fault: {rule.id}\r\n",
                head_only=head.method == "HEAD",
            )
        )
        await self.writer.drain()
        return keep

    async def _respond(self, request: _Head, raw: bytes, keep: bool) -> bool:
        assert self.up_reader is not None and self.up_writer is not None
        while True:
            head = _parse_head(raw)
            if head.is_request:
                raise _BadMessage(502, "the upstream sent a request")
            self.responding = True
            self.writer.write(raw)
            if head.status == 101:  # protocol switch: from here on it is a byte pipe
                await self.writer.drain()
                await asyncio.gather(
                    _pipe(self.reader, self.up_writer),
                    _pipe(self.up_reader, self.writer),
                    return_exceptions=True,
                )
                return False
            if head.status >= 200:
                break
            await self.writer.drain()  # an interim 1xx: the final answer follows
            raw = await self._read_head(self.up_reader)  # type: ignore[assignment]
            if raw is None:
                raise ConnectionError("upstream closed after an interim response")
        framing, length = _response_framing(request.method, head)
        await _relay_body(framing, length, self.up_reader, self.writer)
        await self.writer.drain()
        self.proxy.stats["responses_forwarded"] += 1
        upstream_keeps = head.keep_alive() and framing != "close" and keep
        if not upstream_keeps:
            self._drop_upstream()
        return keep and head.keep_alive() and framing != "close"

    async def _connect(self) -> bool:
        if self.up_reader is not None and not self.up_reader.at_eof():
            return True
        self._drop_upstream()
        try:
            self.up_reader, self.up_writer = await asyncio.open_connection(
                *self.proxy.upstream, limit=HEAD_LIMIT
            )
        except OSError:
            self.proxy.stats["upstream_errors"] += 1
            return False
        _set_nodelay(self.up_writer)
        return True

    def _drop_upstream(self) -> None:
        if self.up_writer is not None:
            self.up_writer.close()
        self.up_reader = self.up_writer = None


class HttpFaultProxy(RuleListener[HttpRule]):
    """One listening HTTP proxy with its rules. Lives entirely on one event loop.

    Same surface as :class:`~injectors.network.proxy.FaultProxy`, so the generic
    :class:`ProxyManager` can host it.
    """

    STATS = (
        "connections_total",
        "connections_active",
        "requests_total",
        "requests_aborted",
        "requests_dropped",
        "requests_delayed",
        "responses_forwarded",
        "upstream_errors",
    )

    def __init__(
        self,
        name: str,
        listen: tuple[str, int],
        upstream: tuple[str, int],
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(name, listen, upstream, rng)
        self._server: asyncio.Server | None = None
        self._exchanges: set[_Exchange] = set()

    async def start(self) -> tuple[str, int]:
        host, port = self.listen
        try:
            self._server = await asyncio.start_server(
                self._accept, host, port, reuse_address=True, backlog=1024, limit=HEAD_LIMIT
            )
        except OSError as exc:
            raise listen_error("HTTP proxy", self.name, self.listen, exc) from None
        self.bound = self._server.sockets[0].getsockname()[:2]
        return self.bound

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [x.task for x in self._exchanges if x.task is not None]
        for exchange in list(self._exchanges):
            exchange.abort()
            if exchange.task is not None:
                exchange.task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        exchange = _Exchange(self, reader, writer)
        self._exchanges.add(exchange)
        self.stats["connections_total"] += 1
        self.stats["connections_active"] += 1
        try:
            await exchange.run()
        except asyncio.CancelledError:
            pass  # proxy shutdown: the transports are already closed
        finally:
            self._exchanges.discard(exchange)
            self.stats["connections_active"] -= 1

    # --- rules -------------------------------------------------------------------------

    def decide(self, head: _Head) -> tuple[HttpRule | None, float]:
        """The abort that hits this request (if any) and the total delay in seconds.

        Delays add up; among aborts a drop wins, then the lowest rule id, so the outcome
        never depends on the order rules were added in.
        """
        if not self._rules:
            return None, 0.0
        u = self.rng.random()
        now = time.time()
        hits = [r for r in self.rules() if u < r.share and r.matches(head, now)]
        delay = total_delay(hits, self.rng)
        aborts = sorted((r for r in hits if r.kind == "abort"), key=lambda r: (not r.drop, r.id))
        return (aborts[0] if aborts else None), delay


def parse_http_upstream(upstream: str) -> tuple[str, int]:
    """``http://host:port`` (or plain ``host:port``) → (host, port).

    TLS upstreams and path prefixes are refused rather than half-supported: the proxy
    forwards request targets unchanged and speaks plain HTTP only.
    """
    if "://" not in upstream:
        return parse_address(upstream)
    parts = urlsplit(upstream)
    if parts.scheme != "http":
        raise ProxyError(f"bad upstream {upstream!r}: only http:// upstreams are supported")
    if parts.path not in ("", "/") or parts.query or parts.fragment or not parts.hostname:
        raise ProxyError(f"bad upstream {upstream!r}; expected http://host:port")
    try:
        port = parts.port or 80
    except ValueError:
        raise ProxyError(f"bad upstream {upstream!r}; the port is not a number") from None
    return parts.hostname, port


class HttpProxyManager(ProxyManager):
    """Hosts named HttpFaultProxies on its own event loop thread (thread-safe API)."""

    server_class = HttpFaultProxy
    noun, nouns = "HTTP proxy", "HTTP proxies"
    thread_name = "scep-http-proxy-loop"

    @staticmethod
    def parse_upstream(upstream: str) -> tuple[str, int]:
        return parse_http_upstream(upstream)


def wanted_http_proxies(targets: Any) -> dict[str, tuple[str, str]]:
    """key → (listen, upstream) for every ``config.http_proxies`` entry of ``targets``.

    ``targets`` are anything with ``.name`` and ``.config`` (model rows in the agent,
    plain objects in tests). A missing field becomes "" so that hosting that entry fails,
    and is logged, visibly instead of being skipped.
    """
    wanted: dict[str, tuple[str, str]] = {}
    for target in targets:
        for proxy_name, spec in ((target.config or {}).get("http_proxies") or {}).items():
            spec = spec if isinstance(spec, dict) else {}
            key = proxy_key(target.name, proxy_name)
            wanted[key] = (spec.get("listen", ""), spec.get("upstream", ""))
    return wanted
