"""How much does the fault proxy cost, and how exact is its injected latency?

Run: ``.venv/bin/python benchmarks/proxy_latency.py`` (loopback only, < 60 s).

For 1, 10 and 100 concurrent persistent connections it measures request/response round
trips three ways: straight to an echo server, through the proxy with no rule (the proxy's
own overhead) and through the proxy with a 100 ms downstream latency rule (how far the
added latency is from 100 ms). Then throughput: each connection streams 64 KiB chunks
through the echo server and reads them back, straight and through the proxy (no rule),
and the table gives MiB/s echoed and the proxy/direct ratio. The echo server and the
proxy run in their own processes, as they would in production, so the load generator
does not steal their GIL. Every connection is opened and warmed by one untimed round
trip before the clock starts, so the figures are steady-state round trips on persistent
connections.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from injectors.network.proxy import ProxyManager, ProxyRule

PAYLOAD = b"x" * 64
CONCURRENCY = (1, 10, 100)
SECONDS = {"direct": 1.5, "proxy": 1.5, "proxy+100ms": 2.5}
LATENCY_MS = 100.0


def _echo_server(port_out: mp.connection.Connection) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=512)
        port_out.send(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


def _proxy_host(upstream_port: int, control: mp.connection.Connection) -> None:
    """Host a ProxyManager like an agent would, driven by commands over a pipe."""
    manager = ProxyManager()
    addr = manager.ensure_proxy("bench", "127.0.0.1:0", f"127.0.0.1:{upstream_port}")
    control.send(addr[1])
    while True:
        command = control.recv()
        if command == "latency":
            rule = ProxyRule("bench", "latency", 1.0, time.time() + 600, latency_ms=LATENCY_MS)
            manager.set_rule("bench", rule)
        elif command == "clear":
            manager.remove_rule("bench", "bench")
        elif command == "stop":
            manager.stop()
            return
        control.send("ok")


async def _client(port: int, go: asyncio.Event, ready: list[int], box: dict, samples: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        # One untimed round trip first: connection setup is not what this benchmark measures.
        writer.write(PAYLOAD)
        await reader.readexactly(len(PAYLOAD))
        ready.append(1)
        await go.wait()
        while time.perf_counter() < box["until"]:
            start = time.perf_counter()
            writer.write(PAYLOAD)
            await reader.readexactly(len(PAYLOAD))
            samples.append((time.perf_counter() - start) * 1000)
    finally:
        writer.close()


async def _measure(port: int, concurrency: int, seconds: float) -> tuple[list[float], float]:
    """Round-trip samples (ms) over ``seconds`` of steady state, and round trips per second."""
    samples: list[float] = []
    ready: list[int] = []
    go = asyncio.Event()
    box: dict[str, float] = {}
    clients = [
        asyncio.ensure_future(_client(port, go, ready, box, samples)) for _ in range(concurrency)
    ]
    while len(ready) < concurrency:
        await asyncio.sleep(0.01)
    start = time.perf_counter()
    box["until"] = start + seconds
    go.set()
    await asyncio.gather(*clients)
    return samples, len(samples) / (time.perf_counter() - start)


CHUNK = b"y" * 65536
STREAM_SECONDS = 2.0


async def _stream(port: int, go: asyncio.Event, ready: list[int], box: dict, got: list) -> None:
    """Write chunks as fast as the peer takes them while reading the echo back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    ready.append(1)
    await go.wait()

    async def pump() -> None:
        while time.perf_counter() < box["until"]:
            writer.write(CHUNK)
            await writer.drain()
            await asyncio.sleep(0)  # drain() does not yield while the socket takes it all

    async def drain() -> None:
        while time.perf_counter() < box["until"]:
            data = await reader.read(262144)
            if not data:
                return
            got.append(len(data))

    try:
        await asyncio.wait_for(asyncio.gather(pump(), drain()), STREAM_SECONDS + 5)
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


async def _throughput(port: int, concurrency: int) -> float:
    """MiB/s echoed back over STREAM_SECONDS with ``concurrency`` streaming connections."""
    got: list[int] = []
    ready: list[int] = []
    go = asyncio.Event()
    box: dict[str, float] = {}
    clients = [
        asyncio.ensure_future(_stream(port, go, ready, box, got)) for _ in range(concurrency)
    ]
    while len(ready) < concurrency:
        await asyncio.sleep(0.01)
    start = time.perf_counter()
    box["until"] = start + STREAM_SECONDS
    go.set()
    await asyncio.gather(*clients)
    return sum(got) / 2**20 / (time.perf_counter() - start)


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ctx = mp.get_context("spawn")
    echo_recv, echo_send = ctx.Pipe(duplex=False)
    echo = ctx.Process(target=_echo_server, args=(echo_send,), daemon=True)
    echo.start()
    echo_port = echo_recv.recv()
    control, child_end = ctx.Pipe()
    proxy = ctx.Process(target=_proxy_host, args=(echo_port, child_end), daemon=True)
    proxy.start()
    proxy_port = control.recv()

    header = f"{'conns':>5} {'mode':<12} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'rt/s':>8}  note"
    print(header)
    print("-" * len(header))
    try:
        for conc in CONCURRENCY:
            direct, direct_rate = asyncio.run(_measure(echo_port, conc, SECONDS["direct"]))
            plain, plain_rate = asyncio.run(_measure(proxy_port, conc, SECONDS["proxy"]))
            control.send("latency")
            control.recv()
            slow, slow_rate = asyncio.run(_measure(proxy_port, conc, SECONDS["proxy+100ms"]))
            control.send("clear")
            control.recv()

            d50, d99 = _pct(direct, 0.5), _pct(direct, 0.99)
            p50, p99 = _pct(plain, 0.5), _pct(plain, 0.99)
            s50, s99 = _pct(slow, 0.5), _pct(slow, 0.99)
            rows = [
                ("direct", direct, d50, d99, direct_rate, ""),
                (
                    "proxy",
                    plain,
                    p50,
                    p99,
                    plain_rate,
                    f"p50 x{p50 / d50:.2f} of direct (+{p50 - d50:.3f} ms), "
                    f"throughput x{plain_rate / direct_rate:.2f}",
                ),
                (
                    "proxy+100ms",
                    slow,
                    s50,
                    s99,
                    slow_rate,
                    f"added p50 {s50 - d50:.2f} ms (error {s50 - d50 - LATENCY_MS:+.2f}), "
                    f"added p99 {s99 - d99:.2f} ms",
                ),
            ]
            for mode, samples, q50, q99, rate, note in rows:
                print(
                    f"{conc:>5} {mode:<12} {len(samples):>6} {q50:>8.3f} {q99:>8.3f} "
                    f"{rate:>8.0f}  {note}"
                )
            spread = statistics.pstdev(slow) if len(slow) > 1 else 0.0
            print(f"{'':>5} (100 ms rule: stdev {spread:.2f} ms over {len(slow)} round trips)")
        print()
        header = f"{'conns':>5} {'direct MiB/s':>13} {'proxy MiB/s':>12}  proxy/direct"
        print(header)
        print("-" * len(header))
        for conc in CONCURRENCY:
            direct = asyncio.run(_throughput(echo_port, conc))
            proxied = asyncio.run(_throughput(proxy_port, conc))
            print(f"{conc:>5} {direct:>13.1f} {proxied:>12.1f}  x{proxied / direct:.2f}")
    finally:
        control.send("stop")
        proxy.join(5)
        echo.terminate()
        echo.join(5)


if __name__ == "__main__":
    main()
