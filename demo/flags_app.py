"""A sample application that uses the ``scep_flags`` SDK around a payment "charge" call.

``GET /checkout?region=eu`` charges an order through :func:`charge`, wrapped in the
failure flag ``checkout.charge`` (labels ``region`` and the configured app labels):

* no flag active → 200 with a receipt from the real (simulated) payment provider;
* an ``exception`` flag → the charge fails as the provider failing would, and the app
  answers 502 ``{"error": ...}`` — exactly the path a real outage exercises;
* a ``latency`` flag → the charge, and so the request, is slower by that much;
* a ``response`` flag → its value replaces the provider's answer (e.g. a declined card).

``GET /healthz`` never touches a flag. Run:
``python -m demo.flags_app --port 8003 --scep-url http://127.0.0.1:8000 --token TOKEN``
(or set ``SCEP_FLAGS_URL`` / ``SCEP_FLAGS_TOKEN``).
"""

from __future__ import annotations

import argparse
import itertools
import os
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import scep_flags
from demo._http import QuietHandler, announce, make_server, serve_until_signal, server_url
from scep_flags import FailureFlagError, failure_flag

__all__ = ["FLAG", "charge", "main", "make_app_server"]

FLAG = "checkout.charge"
#: The simulated provider's own latency, so an injected delay shows on top of a floor.
PROVIDER_DELAY_S = 0.002

_receipts = itertools.count(1)
_receipts_lock = threading.Lock()


def charge(amount_cents: int, region: str) -> dict[str, Any]:
    """The real call the flag wraps: a stand-in for a payment provider's API."""
    time.sleep(PROVIDER_DELAY_S)
    with _receipts_lock:
        number = next(_receipts)
    return {"status": "charged", "receipt": f"r-{number}", "amount": amount_cents, "region": region}


def checkout(amount_cents: int, region: str) -> tuple[int, dict[str, Any]]:
    """One checkout: the flag decides whether the charge is faulted, then we answer."""
    try:
        with failure_flag(FLAG, labels={"region": region}) as flag:
            result = flag.response if flag.has_response else charge(amount_cents, region)
    except FailureFlagError as exc:
        # The same handling a genuine provider failure gets: the fault tests *this* path.
        return 502, {"error": f"payment provider failed: {exc}", "injected": True}
    if isinstance(result, dict) and result.get("status") == "declined":
        return 402, result
    return 200, result


class Handler(QuietHandler):
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/healthz":
            self.send_json(200, {"status": "ok", "service": "flags-app"})
            return
        if url.path != "/checkout":
            self.not_found()
            return
        query = parse_qs(url.query)
        region = query.get("region", ["eu"])[0]
        try:
            amount = int(query.get("amount", ["1999"])[0])
        except ValueError:
            self.send_json(400, {"error": "amount must be an integer (cents)"})
            return
        status, payload = checkout(amount, region)
        self.send_json(status, payload)


def make_app_server(host: str = "127.0.0.1", port: int = 0) -> Any:
    """The HTTP server (not yet serving); tests run ``serve_forever`` in a thread."""
    return make_server(host, port, Handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8003)
    parser.add_argument("--scep-url", default=os.environ.get("SCEP_FLAGS_URL", ""))
    parser.add_argument("--token", default=os.environ.get("SCEP_FLAGS_TOKEN", ""))
    parser.add_argument("--target", default=os.environ.get("SCEP_FLAGS_TARGET") or None)
    parser.add_argument("--cache-ttl", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.scep_url:
        scep_flags.configure(
            args.scep_url,
            args.token or None,
            cache_ttl_s=args.cache_ttl,
            app_labels={"service": "flags-app"},
            target=args.target,
        )
    server = make_app_server(args.host, args.port)
    announce(server_url(server))
    serve_until_signal(server)


if __name__ == "__main__":
    main()
