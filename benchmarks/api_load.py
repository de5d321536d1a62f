"""API throughput and latency: the run list and a run's report, served by gunicorn.

Seeds the database (DATABASE_URL; PostgreSQL is what the targets are for) with RUNS
finished runs plus one real run driven through a worker and an agent (so its report has
series and findings), starts ``gunicorn --preload scep.wsgi`` with WORKERS processes, and
loads it from a second process on loopback with ``wrk`` (Debian package ``wrk``) at each
concurrency — once as deployed (run-list pages and the caller's token and roles served
from the change-counter caches while nothing changes, as between two polls of a
dashboard) and once more with both caches off (``SCEP_API_LIST_CACHE=0
SCEP_API_CALLER_CACHE=0``: every request looks up its caller, counts and reads its page).
Prints requests/s and p50/p99 latency per endpoint. Targets on 2 cores: run list >= 500
req/s with p99 < 50 ms.

Usage: ``DATABASE_URL=postgres://postgres@127.0.0.1:5432/scep_bench
.venv/bin/python benchmarks/api_load.py [--workers 4] [--connections 8,32] [--seconds 10]
[--worker-class sync|gthread --threads N]`` (the database is migrated and seeded; use a
throwaway one, fresh for every run so that every run sees the same data). The web
processes inherit the environment, e.g. ``SCEP_DB_CONN_MAX_AGE=0`` for a connection per
request. The last column is each row's req/s relative to the first row.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Processes, backend, free_port, placebo_spec, setup_django, wait


def seed(runs: int, url: str, procs: Processes) -> tuple[int, str]:
    """RUNS finished runs with events, one real run; returns (real run id, a token)."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from experiments.choices import EventKind, RunStatus
    from experiments.models import Run, RunEvent
    from experiments.services.catalog import create_experiment, create_target
    from experiments.services.runs import start_run
    from scep.permissions import VIEWER, ensure_roles

    ensure_roles()
    user = get_user_model().objects.create_user(username=f"bench-{free_port()}")
    from django.contrib.auth.models import Group

    user.groups.add(Group.objects.get(name=VIEWER))
    token = Token.objects.create(user=user).key

    target = create_target(actor="bench", source="system", name=f"api-{free_port()}",
                           agent="bench-api", config={})  # fmt: skip
    experiment = create_experiment(
        placebo_spec(f"api-bench-{target.name}", target.name, url, baseline=2, duration=2,
                     recovery=2),
        actor="bench", source="system",
    )  # fmt: skip
    now = timezone.now()
    rows = Run.objects.bulk_create(
        Run(experiment=experiment, experiment_version=experiment.version, spec=experiment.spec,
            status=RunStatus.COMPLETED, status_reason="all phases completed",
            verdict="passed", started_at=now, finished_at=now)
        for _ in range(runs)
    )  # fmt: skip
    RunEvent.objects.bulk_create(
        RunEvent(run=r, kind=EventKind.TRANSITION, message="completed", phase="completed")
        for r in rows
    )
    procs.agent("bench-api")
    procs.scep("worker")
    run = start_run(experiment, actor="bench", source="system")
    wait(lambda: Run.objects.filter(pk=run.pk, status__in=RunStatus.terminal()).exists(), 120)
    return run.pk, token


LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)


def wrk(url: str, token: str, connections: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency",
         "-H", f"Authorization: Token {token}", url],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    ).stdout  # fmt: skip
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    figures = {f"p{q}": float(v) * scale[u] for q, v, u in LATENCY.findall(out)}
    figures["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    figures["non2xx"] = float(errors.group(1)) if errors else 0.0
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--connections", default="8,32")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--worker-class", default="sync", help="gunicorn worker class")
    parser.add_argument("--threads", type=int, default=1, help="gunicorn threads per worker")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2
    var = setup_django("scep-bench-api-")
    procs = Processes()
    results = []
    try:
        url = procs.static_server(var / "www")
        run_id, token = seed(args.runs, url, procs)
        endpoints = {
            "run list (50/page)": "/runs/",
            "run report": f"/runs/{run_id}/report/",
        }
        for cached in (True, False):
            port = free_port()
            gunicorn = [sys.executable, "-m", "gunicorn", "scep.wsgi", "--workers",
                        str(args.workers), "--worker-class", args.worker_class,
                        "--threads", str(args.threads), "--preload"]  # fmt: skip
            web = procs.start([*gunicorn, "--bind", f"127.0.0.1:{port}", "--log-level", "error"],
                              SCEP_API_LIST_CACHE="1" if cached else "0",
                              SCEP_API_CALLER_CACHE="1" if cached else "0")  # fmt: skip
            base = f"http://127.0.0.1:{port}/api/v1"
            import httpx

            def up(port: int = port) -> bool:
                try:
                    answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    return answer.status_code == 200
                except httpx.HTTPError:
                    return False

            wait(up, 120, 0.2)
            for name, path in endpoints.items():
                if not cached and not name.startswith("run list"):
                    continue  # the page cache is the run list's only
                label = f"{name}{'' if cached else ', caches off'}"
                endpoint = f"{base}{path}"
                headers = {"Authorization": f"Token {token}"}
                answer = httpx.get(endpoint, headers=headers, timeout=10)
                assert answer.status_code == 200, (name, answer.status_code, answer.text[:300])
                for conns in (int(c) for c in args.connections.split(",")):
                    wrk(endpoint, token, conns, 2)  # warm up every gunicorn worker
                    results.append((label, conns, wrk(endpoint, token, conns, args.seconds)))
                    time.sleep(1)
            web.terminate()
            web.wait(timeout=30)
    finally:
        procs.stop()
    print(f"API load ({backend()}), gunicorn --preload --workers {args.workers} --worker-class "
          f"{args.worker_class} --threads {args.threads}, wrk -t2 on loopback, "
          f"{args.seconds} s per row, {args.runs + 1} runs in the database")  # fmt: skip
    print(f"{'endpoint':<34}{'conns':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}"
          f"{'x row 1':>9}")  # fmt: skip
    first = results[0][2]["rps"] if results else 0.0
    for name, conns, f in results:
        ratio = f["rps"] / first if first else 0.0
        print(f"{name:<34}{conns:>6}{f['rps']:>10.0f}{f['p50']:>9.1f}{f['p99']:>9.1f}"
              f"{f['non2xx']:>9.0f}{ratio:>9.2f}")  # fmt: skip
    load = os.getloadavg()
    print(
        f"load average after the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
        f"(other work on the machine skews every figure: compare runs made together)"
    )
    for mode in ("", ", caches off"):
        rows = [f for n, _, f in results if n == f"run list (50/page){mode}"]
        best = max(rows, key=lambda f: f["rps"], default=None)
        if best is not None:
            print(f"run list{mode or ' (caches on)'}: best {best['rps']:.0f} req/s, "
                  f"p99 {best['p99']:.1f} ms there (target >= 500 req/s, p99 < 50 ms)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
