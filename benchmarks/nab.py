"""Score the streaming detector on a NAB-format corpus, exactly as NAB scores detectors.

Run: ``.venv/bin/python benchmarks/nab.py [DATA_DIR] [LABELS_JSON] [--out DIR]``

Defaults to the shared development split (``../shared/datasets/nab/data`` and
``labels/combined_windows.json`` beside it). Every ``*.csv`` under DATA_DIR
(``timestamp,value``) is streamed through a fresh :class:`StreamingDetector` with the same
parameters, the rows are scored with :mod:`benchmarks.nab_scoring`, and the normalised
standard / reward_low_FP_rate / reward_low_FN_rate scores are printed together with the
detector's throughput. Files are processed in parallel (one process per core, at most
``--jobs``); throughput is measured inside each worker over the detector calls only.

``--out DIR`` writes NAB's results format, one CSV per data file at the same relative path:
``timestamp,value,anomaly_score,label``. ``--set key=value`` overrides a detector
parameter for every file (for experiments; the defaults are what is reported).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.core.streaming import DEFAULTS, StreamingDetector
from benchmarks.nab_scoring import (
    PROFILES,
    load_windows,
    prepare_file,
    score_corpus,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "nab" / "data"


def _default_labels(data_dir: Path) -> Path:
    """NAB keeps ``labels/combined_windows.json`` next to ``data/``."""
    return data_dir.parent / "labels" / "combined_windows.json"


def _run_file(
    job: tuple[str, str, dict],
) -> tuple[str, np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Stream one CSV through a fresh detector; returns scores and detector-only CPU and
    wall seconds (CPU time is the honest cost when other jobs share the cores)."""
    rel, path, params = job
    df = pd.read_csv(path)
    ts = pd.to_datetime(df["timestamp"]).to_numpy(dtype="datetime64[ns]")
    seconds = (ts.astype(np.int64) / 1e9).tolist()
    values = pd.to_numeric(df["value"], errors="coerce").to_numpy(dtype=float)
    det = StreamingDetector(**params)
    upd = det.update
    vals = values.tolist()
    c0, t0 = time.process_time(), time.perf_counter()
    scores = [upd(t, v) for t, v in zip(seconds, vals, strict=True)]
    cpu, elapsed = time.process_time() - c0, time.perf_counter() - t0
    return rel, ts, values, np.asarray(scores, dtype=float), cpu, elapsed


def _parse_value(text: str) -> float | int:
    try:
        return int(text)
    except ValueError:
        return float(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", nargs="?", type=Path, default=DEFAULT_DATA)
    ap.add_argument("labels", nargs="?", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="write NAB results CSVs here")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--per-file", action="store_true", help="print each file's raw score")
    args = ap.parse_args(argv)

    data_dir: Path = args.data_dir.resolve()
    labels_path: Path = (args.labels or _default_labels(data_dir)).resolve()
    params: dict = {}
    for item in args.set:
        key, _, val = item.partition("=")
        if key not in DEFAULTS:
            ap.error(f"unknown detector parameter {key!r}; known: {sorted(DEFAULTS)}")
        params[key] = _parse_value(val)

    windows = load_windows(labels_path)
    csvs = sorted(p for p in data_dir.rglob("*.csv"))
    if not csvs:
        ap.error(f"no CSV files under {data_dir}")
    jobs = [(p.relative_to(data_dir).as_posix(), str(p), params) for p in csvs]
    missing = [rel for rel, _, _ in jobs if rel not in windows]
    if missing:
        print(f"warning: {len(missing)} files have no labels entry (treated as no windows)")

    results = {}
    busy = 0.0
    cpu = 0.0
    n_points = 0
    wall = time.perf_counter()
    with mp.get_context("spawn").Pool(max(1, args.jobs)) as pool:
        for k, (rel, ts, values, scores, used, elapsed) in enumerate(
            pool.imap_unordered(_run_file, jobs), start=1
        ):
            results[rel] = (ts, values, scores)
            busy += elapsed
            cpu += used
            n_points += scores.size
            print(f"\r[{k}/{len(jobs)}] {rel:<60.60}", end="", flush=True)
    wall = time.perf_counter() - wall
    print()

    names = [rel for rel, _, _ in jobs]
    files = [prepare_file(rel, results[rel][0], windows.get(rel, [])) for rel in names]
    scores = [results[rel][2] for rel in names]
    board = score_corpus(files, scores, PROFILES)

    if args.out:
        for f, rel in zip(files, names, strict=True):
            ts, values, sc = results[rel]
            dest = args.out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(
                {
                    "timestamp": pd.to_datetime(ts).strftime("%Y-%m-%d %H:%M:%S"),
                    "value": values,
                    "anomaly_score": sc,
                    "label": f.label,
                }
            ).to_csv(dest, index=False)

    if args.per_file:
        std = board["standard"]
        for rel in names:
            print(f"  {std.per_file[rel]:8.3f}  {rel}")
    n_windows = sum(f.n_windows for f in files)
    print(
        f"{len(files)} files, {n_points} rows, {n_windows} windows; params {params or 'defaults'}"
    )
    for name, res in board.items():
        print(
            f"{name:<20} score {res.score:6.1f}   (threshold {res.threshold:.6g}, "
            f"raw {res.raw:.2f}, null {res.null:.2f}, perfect {res.perfect:.2f})"
        )
    print(
        f"detector throughput {n_points / cpu:,.0f} points/s per process on CPU time "
        f"({n_points / busy:,.0f} on wall-clock time; load average "
        f"{os.getloadavg()[0]:.1f}; {wall:.1f} s wall on {args.jobs} processes)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
