"""``python -m scep.cli.services check PG_URL REDIS_URL [--require]``: are they reachable?

Used by the Makefile to decide whether the PostgreSQL + Redis test pass can run
(``make test`` skips it, saying so; ``make ci`` requires it).
"""

from __future__ import annotations

import socket
import sys
from urllib.parse import urlparse


def reachable(url: str, default_port: int, timeout: float = 2.0) -> tuple[bool, str]:
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or default_port
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, f"{host}:{port}"
    except OSError as exc:
        return False, f"{host}:{port} ({exc.strerror or exc})"


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] != "check":
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    require = "--require" in argv
    ok_pg, where_pg = reachable(argv[1], 5432)
    ok_redis, where_redis = reachable(argv[2], 6379)
    for ok, what, where in ((ok_pg, "PostgreSQL", where_pg), (ok_redis, "Redis", where_redis)):
        if not ok:
            level = "ERROR" if require else "note"
            print(f"{level}: {what} not reachable at {where}", file=sys.stderr)
    return 0 if ok_pg and ok_redis else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
