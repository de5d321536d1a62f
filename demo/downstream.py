"""The demo's dependency: a tiny "data service" the target calls on every request.

It answers ``GET /data`` after a small fixed delay (default 5 ms) so that the target's
latency has a realistic floor, and any latency added by the fault proxy between the two
shows up clearly on top of it.

Run: ``python -m demo.downstream --port 8002 [--delay-ms 5]``
"""

from __future__ import annotations

import argparse
import itertools
import threading
import time

from demo._http import QuietHandler, announce, make_server, serve_until_signal, server_url

__all__ = ["main"]

_ITEMS = [
    {"id": 1, "name": "anvil", "stock": 12},
    {"id": 2, "name": "bellows", "stock": 3},
    {"id": 3, "name": "chisel", "stock": 40},
]


def _handler(delay: float) -> type[QuietHandler]:
    counter = itertools.count(1)
    lock = threading.Lock()

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self.send_json(200, {"status": "ok", "service": "downstream"})
            elif path == "/data":
                time.sleep(delay)
                with lock:
                    seq = next(counter)
                self.send_json(200, {"items": _ITEMS, "seq": seq})
            else:
                self.not_found()

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002, help="0 picks a free port")
    parser.add_argument("--delay-ms", type=float, default=5.0, help="delay before answering")
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port, _handler(max(0.0, args.delay_ms) / 1000.0))
    announce(server_url(server))
    serve_until_signal(server)


if __name__ == "__main__":
    main()
