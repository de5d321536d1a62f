"""Report page render time for a run with 50 metrics x ~1,000 points each.

Builds the run in a throwaway SQLite database (a fresh data folder), analyses it with the
real engine, then requests the web report page (``/runs/<id>/report/``) through Django's
test client — the whole server side: session, role check, loading the series, the
report dict, 50 SVG charts, the template — many times, and prints p50 / p95 / max along
with the split between building the report data and rendering it. The budget is 300 ms.

Usage: ``.venv/bin/python benchmarks/report_render.py [--metrics 50] [--points 1000]
[--repeat 30]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BUDGET_MS = 300.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", type=int, default=50)
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    var = tempfile.mkdtemp(prefix="scep-bench-report-")
    os.environ["SCEP_VAR_DIR"] = var
    os.environ.pop("DATABASE_URL", None)  # always the throwaway SQLite file
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scep.settings")
    import django

    django.setup()
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", interactive=False, verbosity=0)

    from analysis.report import render_body
    from analysis.services import build_report
    from experiments.services.catalog import create_experiment, create_target
    from scep.permissions import VIEWER, ensure_roles
    from tests.support.reports import judged_run, metric_spec

    target = create_target(actor="bench", source="system", name="bench", config={})
    spec = {
        "name": "report-bench",
        "target": target.name,
        "fault": {"type": "control.placebo", "params": {}},
        "duration": 60,
        "baseline": 60,
        "recovery": 60,
        "metrics": [metric_spec(i) for i in range(args.metrics)],
        "hypothesis": [
            {"metric": "metric_00", "aggregate": "p95", "operator": "<=", "threshold": 30},
        ],
    }
    experiment = create_experiment(spec, actor="bench", source="system")
    started = time.perf_counter()
    run = judged_run(experiment, points=args.points)
    setup_s = time.perf_counter() - started
    n_points = sum(len(v["values"]) for v in build_report(run)["series"].values())

    ensure_roles()
    user = User.objects.create_user("bench-viewer")
    user.groups.add(Group.objects.get(name=VIEWER))
    client = Client()
    client.force_login(user)
    url = f"/runs/{run.pk}/report/"

    first = client.get(url)  # warm-up: template loading, imports
    assert first.status_code == 200, first.status_code
    charts = first.content.count(b"<svg")
    page_ms, data_ms, body_ms = [], [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        response = client.get(url)
        page_ms.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200
        t0 = time.perf_counter()
        report = build_report(run, refresh=False)
        data_ms.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        render_body(report)
        body_ms.append((time.perf_counter() - t0) * 1000)

    p50, p95 = statistics.median(page_ms), percentile(page_ms, 0.95)
    print(
        f"report page, {args.metrics} metrics x {args.points} points "
        f"({n_points} points stored, {charts} charts, {len(first.content) / 1e6:.2f} MB HTML)"
    )
    print(f"  set-up (store + analyse the run): {setup_s:.1f} s")
    print(
        f"  page (server side, {args.repeat} requests): p50 {p50:.1f} ms  p95 {p95:.1f} ms  "
        f"max {max(page_ms):.1f} ms"
    )
    print(
        f"  of which: report data p50 {statistics.median(data_ms):.1f} ms, "
        f"sections + charts p50 {statistics.median(body_ms):.1f} ms"
    )
    verdict = "within" if p95 < BUDGET_MS else "OVER"
    print(f"  budget {BUDGET_MS:.0f} ms: p95 {verdict} budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
