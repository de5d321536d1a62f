"""What does collection cost? 50 targets, each probed and scraped every second.

Fifty run samplers — what fifty concurrent runs hold in their workers — each with two
metrics at a 1 s interval: an HTTP probe of the target and a scrape of its Prometheus
endpoint (a real exposition of ~60 series with counters and a histogram). The targets
are served by a separate process, so only the collection side is measured: the CPU time
this process spends (psutil), as a share of one core and of the whole machine, and how
close to 1 s each sampler's ticks stay. Samples are flushed to the database as in a run.
Usage: ``.venv/bin/python benchmarks/collection_cost.py [--targets 50] [--seconds 30]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Processes, backend, setup_django


def exposition(target: int) -> str:
    lines = ["# TYPE demo_requests counter"]
    for route in range(10):
        for code in ("200", "500"):
            lines.append(
                f'demo_requests_total{{route="/r{route}",code="{code}"}} {1000 * target + route}'
            )
    lines.append("# TYPE demo_latency_seconds histogram")
    for le in ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "+Inf"):
        count = 1000 if le == "+Inf" else int(float(le) * 1000)
        lines.append(f'demo_latency_seconds_bucket{{le="{le}"}} {count}')
    lines += ["demo_latency_seconds_sum 12.5", "demo_latency_seconds_count 1000"]
    lines.append("# TYPE demo_inflight gauge")
    lines += [f'demo_inflight{{pool="p{i}"}} {i}' for i in range(20)]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    var = setup_django("scep-bench-collect-")

    import psutil
    from django.utils import timezone

    from experiments.choices import RunStatus
    from experiments.models import Experiment, Run, Target
    from experiments.services.collection import RunSampler

    procs = Processes()
    www = var / "www"
    www.mkdir(parents=True, exist_ok=True)
    for i in range(args.targets):
        (www / f"metrics-{i}").write_text(exposition(i))
    url = procs.static_server(www)  # .../index.html
    base = url.rsplit("/", 1)[0]

    target = Target.objects.create(name="collect", agent="none", config={})
    experiment = Experiment.objects.create(name="collect", target=target, spec={}, version=1)
    runs = Run.objects.bulk_create(
        Run(experiment=experiment, experiment_version=1, spec={}, status=RunStatus.DURING,
            started_at=timezone.now())
        for _ in range(args.targets)
    )  # fmt: skip
    samplers = []
    for i, run in enumerate(runs):
        metrics = [
            {"name": "latency", "better": "lower", "measure": "latency_p50",
             "probe": {"url": f"{base}/index.html?t={i}", "requests": 1, "timeout": 2.0}},
            {"name": "requests", "better": "higher",
             "scrape": {"url": f"{base}/metrics-{i}", "metric": "demo_requests",
                        "aggregate": "sum", "counter": "rate", "timeout": 2.0}},
        ]  # fmt: skip
        samplers.append(RunSampler(run.pk, metrics, 1.0))
    me = psutil.Process(os.getpid())
    try:
        for sampler in samplers:
            sampler.start("during")
        time.sleep(3)  # connections opened, first scrapes parsed
        cpu0, wall0 = me.cpu_times(), time.monotonic()
        ticks0 = [s.ticks for s in samplers]
        time.sleep(args.seconds)
        cpu1, wall1 = me.cpu_times(), time.monotonic()
        ticks1 = [s.ticks for s in samplers]
    finally:
        for sampler in samplers:
            sampler.stop()
        procs.stop()
    wall = wall1 - wall0
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    rates = [(b - a) / wall for a, b in zip(ticks0, ticks1, strict=True)]
    cores = psutil.cpu_count() or 1
    print(f"collection cost ({backend()}): {args.targets} targets x (1 probe + 1 scrape) "
          f"every 1 s, {wall:.0f} s measured")  # fmt: skip
    print(f"CPU: {cpu:.2f} s over {wall:.1f} s = {cpu / wall * 100:.1f} % of one core, "
          f"{cpu / wall / cores * 100:.1f} % of this {cores}-core machine")  # fmt: skip
    ticks = sum(t1 - t0 for t0, t1 in zip(ticks0, ticks1, strict=True))
    print(f"CPU per target per tick: {cpu / ticks * 1000:.2f} ms over {ticks} ticks")
    print(f"ticks/s per sampler: median {statistics.median(rates):.2f}, min {min(rates):.2f} "
          "(1.00 = every tick on time)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
