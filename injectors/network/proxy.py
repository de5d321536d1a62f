"""An asyncio TCP fault proxy, and a thread-safe manager that hosts several of them.

The target application talks to its dependency through a proxy we own, so a network
fault is just a *rule* on that proxy: no root, no ``tc``, nothing to undo on the host.
Rules carry their own expiry, so a fault vanishes on time even if nobody reverts it.

Design notes (why it is built this way):

* Every accepted connection draws ``u`` uniformly once; a rule affects it iff
  ``u < rule.share``. The draw is fixed per connection, while rules are re-read for every
  chunk, so adding or removing a rule takes effect on open keep-alive connections and the
  affected set stays consistent (raising the share only ever adds connections).
* Latency never serialises: each direction has a FIFO of ``(release_time, bytes)``; a chunk
  is released at its arrival time plus its delay, so throughput is kept and order too.
* Bandwidth is a token bucket applied at write time, re-reading the rule for every slice.
* Connection-level effects (reset, blackhole close) are timed by a per-connection
  supervisor that wakes when rules change, so they also hit already-open connections.
* The write path re-reads the rules for every piece it writes, which is where slicing,
  the data limit and the bandwidth bucket all cut a chunk; ``slow_close`` only delays the
  EOF marker, and ``down`` is a reset that also greets every new affected connection.
* The manager is generic over what it hosts (``server_class``), so the HTTP proxy and the
  DNS responder reuse its thread-safe loop plumbing instead of copying it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from injectors.listener import ProxyError, RuleListener, listen_error

__all__ = ["FaultProxy", "ProxyError", "ProxyManager", "ProxyRule", "parse_address", "proxy_key"]

Kind = Literal[
    "latency", "bandwidth", "reset_peer", "blackhole", "slicer", "slow_close", "limit_data", "down"
]
Direction = Literal["downstream", "upstream", "both"]
KINDS: tuple[str, ...] = (
    "latency",
    "bandwidth",
    "reset_peer",
    "blackhole",
    "slicer",
    "slow_close",
    "limit_data",
    "down",
)
DIRECTIONS: tuple[str, ...] = ("downstream", "upstream", "both")

#: Bytes per "k" in ``rate_kbps``; rates are in kilobytes (KiB) per second.
KILOBYTE = 1024
#: Read size per chunk; small enough that a rule change applies "within one chunk".
CHUNK = 64 * 1024
#: Bytes a direction may hold in flight (delayed or rate-limited) before we stop reading;
#: this is TCP back-pressure towards the sender. 8 MiB keeps ~80 MB/s at 100 ms latency.
MAX_IN_FLIGHT = 8 * 1024 * 1024
#: Longest time an operation on the manager's loop may take before the caller gives up.
CALL_TIMEOUT = 10.0

#: Queue marker: the direction ends without forwarding EOF (a blackhole swallowed it).
_END_SILENTLY = b"<end silently>"
T = TypeVar("T")


@dataclass(frozen=True)
class ProxyRule:
    """One fault on one proxy. Frozen, so it can be shared across threads safely.

    ``direction`` names where bytes flow: *downstream* is upstream → client (responses),
    *upstream* is client → upstream (requests). ``reset_peer`` and ``down`` act on whole
    connections and ignore it. Kind-specific fields are ignored by other kinds:

    * ``slicer``: ``size_bytes`` ± ``size_variation`` per write, ``delay_us`` between writes;
    * ``slow_close``: the EOF of the direction is forwarded ``close_delay_ms`` late;
    * ``limit_data``: the connection is closed once ``limit_bytes`` have passed in the
      direction while the rule applied (counted per connection and rule).
    """

    id: str
    kind: Kind
    share: float
    expires_at: float
    direction: Direction = "downstream"
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_kbps: float | None = None
    reset_after_ms: float = 0.0
    close_after_ms: float | None = None
    size_bytes: int = 0
    size_variation: int = 0
    delay_us: float = 0.0
    close_delay_ms: float = 0.0
    limit_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown rule kind {self.kind!r}; expected one of {KINDS}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {self.direction!r}; expected one of {DIRECTIONS}")
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"share must be within 0..1, got {self.share}")
        if self.latency_ms < 0 or self.jitter_ms < 0 or self.reset_after_ms < 0:
            raise ValueError("latency_ms, jitter_ms and reset_after_ms must be >= 0")
        if self.kind == "latency" and self.latency_ms <= 0:
            raise ValueError("a latency rule needs latency_ms > 0")
        if self.kind == "bandwidth" and not (self.rate_kbps and self.rate_kbps > 0):
            raise ValueError("a bandwidth rule needs rate_kbps > 0")
        if self.close_after_ms is not None and self.close_after_ms < 0:
            raise ValueError("close_after_ms must be >= 0 or None")
        if self.kind == "slicer" and self.size_bytes <= 0:
            raise ValueError("a slicer rule needs size_bytes > 0")
        if not 0 <= self.size_variation < max(self.size_bytes, 1):
            raise ValueError("size_variation must be >= 0 and smaller than size_bytes")
        if self.delay_us < 0 or self.close_delay_ms < 0:
            raise ValueError("delay_us and close_delay_ms must be >= 0")
        if self.kind == "slow_close" and self.close_delay_ms <= 0:
            raise ValueError("a slow_close rule needs close_delay_ms > 0")
        if self.kind == "limit_data" and (self.limit_bytes is None or self.limit_bytes < 0):
            raise ValueError("a limit_data rule needs limit_bytes >= 0")

    def applies(self, u: float, direction: str, now: float) -> bool:
        """True if this rule hits a connection that drew ``u``, for bytes going ``direction``."""
        return (
            u < self.share
            and now < self.expires_at
            and (self.direction == "both" or self.direction == direction)
        )


def parse_address(address: str) -> tuple[str, int]:
    """Split ``host:port`` (or ``[v6]:port``) so config strings fail early and clearly."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ProxyError(f"bad address {address!r}; expected host:port")
    return host.strip("[]"), int(port)


def _set_nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _abort_with_rst(writer: asyncio.StreamWriter | None) -> None:
    """Close so the peer sees ECONNRESET: SO_LINGER 0 makes close() send a RST."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class _TokenBucket:
    """Debt-style bucket: spend first, then sleep off any debt, so pacing is exact."""

    def __init__(self) -> None:
        self.rate = 0.0
        self.tokens = 0.0
        self.stamp = 0.0

    def burst(self, rate: float) -> float:
        # ~10 ms of traffic, at least one segment: small bursts keep short transfers honest.
        return max(1460.0, rate * 0.01)

    async def spend(self, n: int, rate: float, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        if rate != self.rate:
            self.rate, self.tokens, self.stamp = rate, self.burst(rate), now
        self.tokens = min(self.burst(rate), self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        self.tokens -= n
        if self.tokens < 0:
            await asyncio.sleep(-self.tokens / rate)


class _Direction:
    """One half of a connection: read from ``src``, queue with release times, write to ``dst``."""

    def __init__(self, conn: _Connection, name: str, src, dst) -> None:
        self.conn = conn
        self.name = name
        self.src: asyncio.StreamReader = src
        self.dst: asyncio.StreamWriter = dst
        self.queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self.in_flight = 0
        self.space = asyncio.Event()
        self.space.set()
        self.last_release = 0.0
        self.busy = False  # the writer holds a dequeued chunk not yet fully written
        self.bucket = _TokenBucket()
        #: Bytes written while each limit_data rule applied, by rule id.
        self.counted: dict[str, int] = {}

    async def read_loop(self) -> None:
        proxy, loop = self.conn.proxy, self.conn.loop
        while True:
            data = await self.src.read(CHUNK)
            now = loop.time()
            rules = proxy.active_rules(self.conn.u, self.name)
            if any(r.kind == "blackhole" for r in rules):
                # Swallow bytes and EOF alike: the far side must see silence, not a close.
                proxy.stats["bytes_dropped"] += len(data)
                if not data:
                    self.queue.put_nowait((now, _END_SILENTLY))
                    return
                continue
            delay = 0.0
            for r in rules:
                if r.kind == "latency":
                    jitter = proxy.rng.uniform(-r.jitter_ms, r.jitter_ms) if r.jitter_ms else 0.0
                    delay += max(0.0, r.latency_ms + jitter) / 1000.0
                elif r.kind == "slow_close" and not data:
                    # Only the EOF waits: the data before it flows on time, the close is late.
                    delay += r.close_delay_ms / 1000.0
            if data and not rules and not self.busy and self.queue.empty():
                # Fast path: nothing to delay or pace and nothing queued ahead of us, so skip
                # the hop through the writer task (it halves the proxy's own overhead).
                self.dst.write(data)
                proxy.stats[f"bytes_{self.name}"] += len(data)
                await self.dst.drain()
                continue
            release = max(now + delay, self.last_release)
            self.last_release = release
            self.queue.put_nowait((release, data))
            if not data:
                return
            self.in_flight += len(data)
            if self.in_flight > MAX_IN_FLIGHT:
                self.space.clear()
                await self.space.wait()

    async def write_loop(self) -> None:
        proxy, loop = self.conn.proxy, self.conn.loop
        while True:
            release, data = await self.queue.get()
            self.busy = True
            wait = release - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is _END_SILENTLY:
                return
            if not data:
                if self.dst.can_write_eof():
                    self.dst.write_eof()
                return
            view = memoryview(data)
            while view:
                rules = proxy.active_rules(self.conn.u, self.name)
                size = len(view)
                slicer = next((r for r in rules if r.kind == "slicer"), None)
                if slicer is not None:
                    spread = slicer.size_variation
                    size = min(size, slicer.size_bytes + proxy.rng.randint(-spread, spread))
                limits = [r for r in rules if r.kind == "limit_data"]
                allowance = min(
                    ((r.limit_bytes or 0) - self.counted.get(r.id, 0) for r in limits),
                    default=None,
                )
                if allowance is not None:
                    size = min(size, max(allowance, 0))
                rate = proxy.rate_limit(self.conn.u, self.name)
                if rate is not None:
                    size = min(size, int(self.bucket.burst(rate)))
                piece, view = view[:size], view[size:]
                if piece:
                    if rate is not None:
                        await self.bucket.spend(len(piece), rate, loop)
                    self.dst.write(piece)
                    await self.dst.drain()
                    proxy.stats[f"bytes_{self.name}"] += len(piece)
                    for r in limits:
                        self.counted[r.id] = self.counted.get(r.id, 0) + len(piece)
                if allowance is not None and allowance <= len(piece):
                    # The limit is reached: what was allowed got through, the rest never will.
                    proxy.stats["bytes_dropped"] += len(view)
                    self.conn.close_by_fault()
                    return
                if slicer is not None and view and slicer.delay_us:
                    await asyncio.sleep(slicer.delay_us / 1_000_000)
            self.busy = False
            self.in_flight -= len(data)
            if self.in_flight <= MAX_IN_FLIGHT:
                self.space.set()

    async def run(self) -> None:
        # A TaskGroup so that a failure on either side cancels the other instead of leaking.
        async with asyncio.TaskGroup() as group:
            group.create_task(self.read_loop())
            group.create_task(self.write_loop())


class _Connection:
    """One client connection and its upstream, with a supervisor for timed effects."""

    def __init__(self, proxy: FaultProxy, reader, writer) -> None:
        self.proxy = proxy
        self.loop = asyncio.get_running_loop()
        self.client_reader: asyncio.StreamReader = reader
        self.client_writer: asyncio.StreamWriter = writer
        self.upstream_writer: asyncio.StreamWriter | None = None
        self.u = proxy.rng.random()
        self.rules_changed = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def run(self) -> None:
        self.task = asyncio.current_task()
        if any(r.kind == "down" for r in self.proxy.active_rules(self.u, None)):
            # The service is "down" for this connection: greet it with a RST and never dial
            # the upstream, which is what a crashed or firewalled dependency looks like.
            self.proxy.stats["connections_refused"] += 1
            _abort_with_rst(self.client_writer)
            return
        supervisor = asyncio.ensure_future(self.supervise())
        try:
            await self._proxy()
        except* OSError:
            # A peer vanished mid-stream: pass the failure on to the other side as a reset.
            self._abort()
        finally:
            supervisor.cancel()
            for w in (self.client_writer, self.upstream_writer):
                if w is not None and not w.transport.is_closing():
                    w.close()

    async def _proxy(self) -> None:
        _set_nodelay(self.client_writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.proxy.upstream)
        except OSError:
            # Unreachable upstream: a clean close tells the client without hanging it.
            self.proxy.stats["upstream_errors"] += 1
            return
        self.upstream_writer = up_writer
        _set_nodelay(up_writer)
        async with asyncio.TaskGroup() as group:
            group.create_task(_Direction(self, "upstream", self.client_reader, up_writer).run())
            group.create_task(_Direction(self, "downstream", up_reader, self.client_writer).run())

    def _abort(self) -> None:
        _abort_with_rst(self.client_writer)
        if self.upstream_writer is not None:
            self.upstream_writer.transport.abort()

    async def supervise(self) -> None:
        """Fire resets and blackhole closes when due; re-plan whenever rules change."""
        reset_at: float | None = None
        close_at: float | None = None
        while True:
            self.rules_changed.clear()
            now = self.loop.time()
            rules = self.proxy.active_rules(self.u, None)
            resets = [r.reset_after_ms for r in rules if r.kind == "reset_peer"]
            resets += [0.0 for r in rules if r.kind == "down"]
            closes = [
                r.close_after_ms
                for r in rules
                if r.kind == "blackhole" and r.close_after_ms is not None
            ]
            reset_at = (reset_at or now + min(resets) / 1000.0) if resets else None
            close_at = (close_at or now + min(closes) / 1000.0) if closes else None
            if reset_at is not None and now >= reset_at:
                self.proxy.stats["connections_reset"] += 1
                self._abort()
                self._cancel_main()
                return
            if close_at is not None and now >= close_at:
                self.close_by_fault()
                return
            deadlines = [d for d in (reset_at, close_at) if d is not None]
            # Without deadlines only a rule change matters; with one, also wake to re-check
            # (the rule may have expired meanwhile, which cancels the pending effect).
            timeout = min(deadlines) - now if deadlines else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.rules_changed.wait(), timeout)

    def close_by_fault(self) -> None:
        """Close both sides with a FIN (not a RST) and stop proxying: a fault, not a crash."""
        self.proxy.stats["connections_closed_by_fault"] += 1
        self._cancel_main()
        for w in (self.client_writer, self.upstream_writer):
            if w is not None:
                w.close()

    def _cancel_main(self) -> None:
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()


class FaultProxy(RuleListener[ProxyRule]):
    """One listening TCP proxy with its rules. Lives entirely on one event loop."""

    STATS = (
        "connections_total",
        "connections_active",
        "connections_reset",
        "connections_closed_by_fault",
        "connections_refused",
        "upstream_errors",
        "bytes_upstream",
        "bytes_downstream",
        "bytes_dropped",
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
        self._connections: set[_Connection] = set()

    async def start(self) -> tuple[str, int]:
        host, port = self.listen
        try:
            # A deep backlog: bursts of connects must not overflow the accept queue, which
            # would cost clients a 200 ms retransmit the fault never asked for.
            self._server = await asyncio.start_server(
                self._accept, host, port, reuse_address=True, backlog=1024
            )
        except OSError as exc:
            raise listen_error("proxy", self.name, self.listen, exc) from None
        self.bound = self._server.sockets[0].getsockname()[:2]
        return self.bound

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [c.task for c in self._connections if c.task is not None]
        for conn in list(self._connections):
            conn._abort()
            conn._cancel_main()
        if tasks:
            # Let cancelled connections unwind so nothing is left pending on the loop.
            await asyncio.wait(tasks, timeout=CALL_TIMEOUT / 2)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(self, reader, writer)
        self._connections.add(conn)
        self.stats["connections_total"] += 1
        self.stats["connections_active"] += 1
        try:
            await conn.run()
        except asyncio.CancelledError:
            pass  # reset / fault close / proxy shutdown: the transports are already closed
        finally:
            self._connections.discard(conn)
            self.stats["connections_active"] -= 1

    # --- rules -------------------------------------------------------------------------

    def rules_changed(self) -> None:
        # Connections wait on their event to re-read the rules (a reset, a new latency).
        for conn in self._connections:
            conn.rules_changed.set()

    def active_rules(self, u: float, direction: str | None) -> list[ProxyRule]:
        """Rules hitting a connection with draw ``u``; ``direction=None`` means any."""
        if not self._rules:
            return []
        now = time.time()
        self.purge(now)
        if direction is None:
            return [r for r in self._rules.values() if u < r.share]
        return [r for r in self._rules.values() if r.applies(u, direction, now)]

    def rate_limit(self, u: float, direction: str) -> float | None:
        """Bytes/s allowed for this connection and direction, or None when unlimited."""
        rates = [
            r.rate_kbps * KILOBYTE
            for r in self.active_rules(u, direction)
            if r.kind == "bandwidth" and r.rate_kbps
        ]
        return min(rates) if rates else None


class ProxyManager:
    """Hosts named FaultProxies on a private event loop in a daemon thread.

    The agent calls it from Celery worker threads, so every public method is thread-safe:
    each one hops onto the loop and waits for the result. ``ensure_proxy`` starts the loop
    on first use, so callers need not remember to call ``start``.
    """

    #: What the manager hosts; subclasses host other servers with the same interface
    #: (``start``/``close``/``set_rule``/``remove_rule``/``rules``/``stats``, ``bound``).
    server_class: Any = FaultProxy
    #: What error messages call one hosted server, and several.
    noun, nouns = "proxy", "proxies"
    thread_name = "scep-proxy-loop"

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng
        self._lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._proxies: dict[str, Any] = {}

    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()
                # Unwind whatever is still running so the loop closes without warnings.
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.close()

            self._thread = threading.Thread(target=run, name=self.thread_name, daemon=True)
            self._loop = loop
            self._thread.start()
            ready.wait(CALL_TIMEOUT)

    def stop(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return

            async def close_all() -> None:
                for proxy in list(self._proxies.values()):
                    await proxy.close()
                self._proxies.clear()

            with contextlib.suppress(Exception):
                self._call(close_all())
            loop.call_soon_threadsafe(loop.stop)
            thread.join(CALL_TIMEOUT)
            self._loop = self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._loop
        if loop is None:
            coro.close()
            raise ProxyError("proxy manager is not running")
        if self._thread is threading.current_thread():
            coro.close()
            raise ProxyError("ProxyManager methods block; do not call them from its own loop")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(CALL_TIMEOUT)

    def ensure_proxy(self, name: str, listen: str, upstream: str) -> tuple[str, int]:
        """Make proxy ``name`` listen on ``listen`` → ``upstream``; return the bound address.

        Idempotent: the same definition is a no-op; a changed one restarts the proxy
        (its rules are kept). Listening has begun when this returns.
        """
        listen_addr, upstream_addr = parse_address(listen), self.parse_upstream(upstream)
        with self._lock:
            self.start()

            async def ensure() -> tuple[str, int]:
                current = self._proxies.get(name)
                if current is not None:
                    same_listen = current.listen == listen_addr or current.bound == listen_addr
                    if same_listen and current.upstream == upstream_addr:
                        return current.bound  # type: ignore[return-value]
                    await current.close()
                    del self._proxies[name]
                proxy = self.server_class(name, listen_addr, upstream_addr, self._rng)
                if current is not None:
                    for rule in current.rules():
                        proxy.set_rule(rule)
                bound = await proxy.start()
                self._proxies[name] = proxy
                return bound

            return self._call(ensure())

    def remove_proxy(self, name: str) -> bool:
        """Stop listening and drop open connections; False if there was no such proxy."""
        with self._lock:
            if not self.running:
                return False

            async def remove() -> bool:
                proxy = self._proxies.pop(name, None)
                if proxy is None:
                    return False
                await proxy.close()
                return True

            return self._call(remove())

    @staticmethod
    def parse_upstream(upstream: str) -> Any:
        """Turn the configured upstream into what ``server_class`` expects."""
        return parse_address(upstream)

    def sync(self, wanted: dict[str, tuple[str, str]]) -> dict[str, str]:
        """Host exactly ``wanted`` (key → (listen, upstream)); return key → error.

        One bad entry (a port taken) must not stop the others, so errors are collected,
        not raised; servers no longer wanted are stopped.
        """
        errors: dict[str, str] = {}
        for key, (listen, upstream) in wanted.items():
            try:
                self.ensure_proxy(key, listen, upstream)
            except Exception as exc:
                errors[key] = str(exc)
        for key in set(self.proxy_names()) - set(wanted):
            self.remove_proxy(key)
        return errors

    def proxy_names(self) -> list[str]:
        with self._lock:
            return sorted(self._proxies)

    def address(self, name: str) -> tuple[str, int]:
        """The address proxy ``name`` actually listens on (useful after binding port 0)."""
        return self._get(name).bound  # type: ignore[return-value]

    def set_rule(self, proxy_name: str, rule: ProxyRule) -> None:
        """Add ``rule`` to a proxy, replacing any rule with the same id."""
        proxy = self._get(proxy_name)
        self._call(self._on_loop(proxy.set_rule, rule))

    def remove_rule(self, proxy_name: str, rule_id: str) -> bool:
        """Remove a rule; False (not an error) if the proxy or the rule is already gone."""
        with self._lock:
            proxy = self._proxies.get(proxy_name)
            if proxy is None or not self.running:
                return False
            return self._call(self._on_loop(proxy.remove_rule, rule_id))

    def rules(self, proxy_name: str) -> list[ProxyRule]:
        """Live (unexpired) rules of a proxy."""
        proxy = self._get(proxy_name)
        return self._call(self._on_loop(proxy.rules))

    def stats(self, proxy_name: str) -> dict[str, Any]:
        """Counters plus the proxy's addresses and live rule count, for observability."""
        proxy = self._get(proxy_name)

        def snapshot() -> dict[str, Any]:
            return {
                **proxy.stats,
                "rules": len(proxy.rules()),
                "listen": f"{proxy.bound[0]}:{proxy.bound[1]}" if proxy.bound else None,
                "upstream": f"{proxy.upstream[0]}:{proxy.upstream[1]}",
            }

        return self._call(self._on_loop(snapshot))

    def _get(self, name: str) -> Any:
        with self._lock:
            proxy = self._proxies.get(name)
        if proxy is None:
            known = ", ".join(sorted(self._proxies)) or "none"
            raise ProxyError(f"no {self.noun} named {name!r}; running {self.nouns}: {known}")
        return proxy

    @staticmethod
    async def _on_loop(fn, *args):
        # Rules and stats are owned by the loop thread; touching them there avoids locks.
        return fn(*args)


def proxy_key(target_name: str, proxy_name: str) -> str:
    """Proxies are keyed per target so two targets may both call theirs 'downstream'."""
    return f"{target_name}/{proxy_name}"
