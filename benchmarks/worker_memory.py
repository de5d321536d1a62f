"""A worker's resident memory over many runs: does it grow?

Starts one agent and one orchestrator worker (``--concurrency 8``), drives RUNS short
placebo runs through it (8 at a time, each on a free target) and samples the worker's
RSS after the warm-up and at the end. Target: no growth beyond 10 % between the RSS
after WARMUP runs and after all of them.
Usage: ``.venv/bin/python benchmarks/worker_memory.py [--runs 1000] [--warmup 100]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Processes, backend, placebo_spec, setup_django, wait

CONCURRENCY = 8


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument(
        "--malloc-arena-max",
        type=int,
        default=0,
        help="run the worker with MALLOC_ARENA_MAX=N (glibc: fewer per-thread arenas)",
    )
    args = parser.parse_args()
    var = setup_django("scep-bench-mem-")

    import psutil
    from django.db.models import Count

    from experiments.choices import RunStatus
    from experiments.models import Run
    from experiments.services.catalog import create_experiment, create_target
    from experiments.services.runs import start_run

    procs = Processes()
    try:
        url = procs.static_server(var / "www")
        targets = [
            create_target(actor="bench", source="system", name=f"mem-{i}", agent="bench", config={})
            for i in range(CONCURRENCY * 2)
        ]
        experiments = [
            create_experiment(
                placebo_spec(f"mem-{t.name}", t.name, url), actor="bench", source="system"
            )
            for t in targets
        ]
        procs.agent("bench")
        env = {"MALLOC_ARENA_MAX": str(args.malloc_arena_max)} if args.malloc_arena_max else {}
        worker = psutil.Process(procs.scep("worker", "--concurrency", str(CONCURRENCY), **env).pid)
        in_flight: dict[int, int] = {}  # experiment index -> run id
        started = done = 0
        rss: dict[int, float] = {}
        began = time.monotonic()
        while done < args.runs:
            ended = set(
                Run.objects.filter(
                    pk__in=in_flight.values(), status__in=RunStatus.terminal()
                ).values_list("pk", flat=True)
            )
            for idx, run_id in list(in_flight.items()):
                if run_id in ended:
                    del in_flight[idx]
                    done += 1
                    if done == args.warmup or done % 100 == 0 or done == args.runs:
                        time.sleep(0.5)  # let the finished run's threads wind down
                        rss[done] = worker.memory_info().rss / 2**20
            free = [i for i in range(len(experiments)) if i not in in_flight]
            while started < args.runs and len(in_flight) < CONCURRENCY and free:
                i = free.pop(0)
                in_flight[i] = start_run(experiments[i], actor="bench", source="system").pk
                started += 1
            time.sleep(0.05)
        elapsed = time.monotonic() - began
        wait(lambda: not in_flight, 1)
        statuses = dict(Run.objects.values_list("status").order_by().annotate(n=Count("id")))
    finally:
        procs.stop()

    first, last = rss[args.warmup], rss[args.runs]
    arenas = f", MALLOC_ARENA_MAX={args.malloc_arena_max}" if args.malloc_arena_max else ""
    print(f"worker memory over {args.runs} runs ({backend()}), concurrency {CONCURRENCY}{arenas}")
    print(f"runs ended: {statuses}; {args.runs / elapsed:.2f} runs/s")
    for n in sorted(rss):
        print(f"RSS after {n:>5} runs: {rss[n]:8.1f} MiB")
    growth = (last - first) / first * 100
    half = rss[max(n for n in rss if n <= args.runs // 2)]
    print(f"growth over the second half ({args.runs // 2} -> {args.runs} runs): "
          f"{(last - half) / half * 100:+.1f} %")  # fmt: skip
    verdict = "ok" if growth <= 10 else "OVER TARGET"
    print(f"growth after warm-up ({args.warmup} -> {args.runs} runs): {growth:+.1f} % "
          f"(target <= 10 %: {verdict})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
