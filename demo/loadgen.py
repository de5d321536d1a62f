"""Background traffic for the demo, so the target's own metrics have something to count.

The schedule is *open-loop-ish*: a dispatcher emits one ticket every ``1/rps`` seconds
regardless of how fast answers come back, and a few workers send a request per ticket.
When every worker is stuck (the fault made the target slow) tickets are dropped and
counted instead of piling up, so the generator neither hides slowness by slowing down
(closed-loop) nor explodes into unbounded concurrency when the target stalls.

It is deliberately bounded: loopback URLs only, at most 500 rps, 32 workers, 24 hours.

Run: ``python -m demo.loadgen --url http://127.0.0.1:8001/api/items --rps 20 --duration 60``
(``--duration 0`` runs until SIGTERM/SIGINT). With ``--status-port`` it also serves
``/healthz`` and ``/stats`` (JSON counters) so a supervisor can see that it is running.
"""

from __future__ import annotations

import argparse
import queue
import signal
import ssl
import threading
import time
from collections import deque

import httpx

from demo._http import (
    QuietHandler,
    announce,
    ensure_loopback_url,
    make_server,
    server_url,
)

__all__ = ["LoadStats", "main"]

MAX_RPS = 500.0
MAX_WORKERS = 32
MAX_DURATION = 24 * 3600.0


class LoadStats:
    """Thread-safe counters and a bounded window of latencies for the summary."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent = self.ok = self.errors = self.dropped = 0
        self.latencies_ms: deque[float] = deque(maxlen=100_000)
        self.started = time.monotonic()
        self.stopped: float | None = None

    def record(self, ok: bool, latency_ms: float | None) -> None:
        with self._lock:
            self.sent += 1
            if ok:
                self.ok += 1
            else:
                self.errors += 1
            if latency_ms is not None:
                self.latencies_ms.append(latency_ms)

    def drop(self) -> None:
        with self._lock:
            self.dropped += 1

    def snapshot(self) -> dict[str, float | int | None]:
        with self._lock:
            lat = sorted(self.latencies_ms)
            elapsed = (self.stopped or time.monotonic()) - self.started
            return {
                "elapsed_s": round(elapsed, 3),
                "sent": self.sent,
                "ok": self.ok,
                "errors": self.errors,
                "dropped": self.dropped,
                "achieved_rps": round(self.sent / elapsed, 2) if elapsed > 0 else 0.0,
                "p50_ms": _quantile(lat, 0.50),
                "p95_ms": _quantile(lat, 0.95),
            }


def _quantile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def _worker(
    client: httpx.Client,
    url: str,
    tickets: queue.Queue[int],
    stop: threading.Event,
    stats: LoadStats,
) -> None:
    with client:
        while not stop.is_set():
            try:
                tickets.get(timeout=0.2)
            except queue.Empty:
                continue
            start = time.perf_counter()
            try:
                resp = client.get(url)
            except httpx.HTTPError:
                stats.record(False, None)
                continue
            stats.record(resp.status_code < 400, (time.perf_counter() - start) * 1000.0)


def run(
    url: str,
    rps: float,
    duration: float,
    workers: int,
    timeout: float,
    stop: threading.Event,
    stats: LoadStats | None = None,
) -> LoadStats:
    """Generate load until ``duration`` elapses (0: until ``stop`` is set)."""
    stats = stats or LoadStats()
    tickets: queue.Queue[int] = queue.Queue(maxsize=workers * 2)
    # One keep-alive client per worker, built before the clock starts (client creation
    # is slow enough to cause drops in the first second otherwise).
    ssl_context = ssl.create_default_context()
    threads = [
        threading.Thread(
            target=_worker,
            args=(
                httpx.Client(timeout=httpx.Timeout(timeout), verify=ssl_context, trust_env=False),
                url,
                tickets,
                stop,
                stats,
            ),
            daemon=True,
            name=f"w{i}",
        )
        for i in range(workers)
    ]
    for t in threads:
        t.start()
    start = stats.started = time.monotonic()
    end = start + duration if duration > 0 else float("inf")
    n = 0
    while not stop.is_set():
        due = start + n / rps
        if due >= end:
            break
        if stop.wait(max(0.0, due - time.monotonic())):
            break
        try:
            tickets.put_nowait(n)
        except queue.Full:
            stats.drop()
        n += 1
    stop.set()
    for t in threads:
        t.join(timeout=timeout + 1.0)
    stats.stopped = time.monotonic()
    return stats


def _status_handler(stats: LoadStats) -> type[QuietHandler]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self.send_json(200, {"status": "ok", "service": "loadgen"})
            elif path == "/stats":
                self.send_json(200, stats.snapshot())
            else:
                self.not_found()

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="loopback URL to load")
    parser.add_argument("--rps", type=float, default=20.0, help=f"requests/s (<= {MAX_RPS:g})")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds; 0 = until signal")
    parser.add_argument("--workers", type=int, default=4, help=f"threads (<= {MAX_WORKERS})")
    parser.add_argument("--timeout", type=float, default=2.0, help="per-request timeout (s)")
    parser.add_argument("--status-port", type=int, default=None, help="serve /healthz, /stats")
    args = parser.parse_args(argv)
    url = ensure_loopback_url(args.url)
    if not 0 < args.rps <= MAX_RPS:
        parser.error(f"--rps must be in (0, {MAX_RPS:g}]")
    if not 0 <= args.duration <= MAX_DURATION:
        parser.error(f"--duration must be in [0, {MAX_DURATION:g}]")
    if not 1 <= args.workers <= MAX_WORKERS:
        parser.error(f"--workers must be in [1, {MAX_WORKERS}]")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")

    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    stats = LoadStats()
    status = None
    if args.status_port is not None:
        status = make_server("127.0.0.1", args.status_port, _status_handler(stats))
        threading.Thread(target=status.serve_forever, args=(0.2,), daemon=True).start()
        announce(server_url(status))
    else:
        announce(url)
    run(url, args.rps, args.duration, args.workers, args.timeout, stop, stats)
    if status is not None:
        status.shutdown()
        status.server_close()
    s = stats.snapshot()
    print(
        f"loadgen: url={url} rps_target={args.rps:g} elapsed={s['elapsed_s']}s sent={s['sent']} "
        f"ok={s['ok']} errors={s['errors']} dropped={s['dropped']} "
        f"achieved_rps={s['achieved_rps']} p50_ms={s['p50_ms']} p95_ms={s['p95_ms']}",
        flush=True,
    )


if __name__ == "__main__":
    main()
