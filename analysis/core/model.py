"""The data the analysis core passes around: run input, findings and JSON encoding.

These live apart from :mod:`analysis.core.engine` so that the findings, verdict, score
and recommendation modules can share them without importing the engine (which imports
them). The engine re-exports every name here, so callers keep importing from it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

import numpy as np

from analysis.core.compare import Better

__all__ = [
    "PHASES",
    "SEVERITIES",
    "Finding",
    "MetricData",
    "RunData",
    "Verdict",
    "jsonable",
]

PHASES = ("baseline", "during", "recovery")
SEVERITIES = ("info", "low", "medium", "high", "critical")
Verdict = Literal["passed", "failed", "inconclusive"]

_EMPTY = (np.empty(0), np.empty(0))


@dataclass
class MetricData:
    """One metric's samples split by phase: ``phase -> (timestamps epoch s, values)``.

    The optional fields describe the metric's place in the experiment, because the same
    shift means different things on different metrics:

    * ``targeted`` / ``component`` — a metric of a component the fault was *not* aimed at
      (``targeted=False``, or ``role="collateral"``) turns a change into collateral
      impact: the blast radius was wider than planned.
    * ``role`` — an explicit role (``latency``, ``errors``, ``throughput``,
      ``saturation``) when the name and unit do not reveal it.
    * ``ceiling`` — the hard limit of a saturation-like metric (100 for a CPU %, a pool's
      size); without it the ceiling is inferred from the unit where possible.
    """

    name: str
    better: Better
    unit: str
    phases: dict[str, tuple[np.ndarray, np.ndarray]]
    component: str = ""
    targeted: bool = True
    role: str = ""
    ceiling: float | None = None

    @property
    def collateral(self) -> bool:
        """True for a metric of a component the fault was not aimed at."""
        return (not self.targeted) or self.role == "collateral"

    def series(self, phase: str) -> tuple[np.ndarray, np.ndarray]:
        """The phase's ``(timestamps, values)``; empty arrays for a phase never collected."""
        ts, vs = self.phases.get(phase, _EMPTY)
        return np.asarray(ts, dtype=float), np.asarray(vs, dtype=float)


@dataclass
class RunData:
    """Everything the engine needs about a finished (or aborted) run.

    ``hypothesis`` holds rule mappings shaped like the spec's ``RuleSpec``;
    ``interval_s`` is the sampling interval, kept for models that need the cadence.
    ``fault`` (the spec's ``{"type", "params"}``) and ``intensity`` are optional: they
    let recommendations quote the injected magnitude ("under 300 ms of latency").
    """

    metrics: list[MetricData]
    hypothesis: list[dict]
    injected_at: float | None
    reverted_at: float | None
    interval_s: float
    aborted_reason: str = ""
    fault: dict[str, Any] | None = None
    intensity: float | None = None

    @property
    def fault_duration(self) -> float | None:
        """Seconds the fault was active, when both ends are known."""
        if self.injected_at is None or self.reverted_at is None:
            return None
        return max(0.0, float(self.reverted_at - self.injected_at))


@dataclass
class Finding:
    metric: str
    kind: str
    severity: str
    confidence: float
    title: str
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "kind": self.kind,
            "severity": self.severity,
            "confidence": round(float(self.confidence), 4),
            "title": self.title,
            "summary": self.summary,
            "evidence": jsonable(self.evidence),
        }


def jsonable(obj: Any) -> Any:
    """Plain JSON types from numpy scalars/arrays, tuples and datetimes; NaN/inf -> ``None``.

    Shared with the report renderer so stored analyses and reports agree on the encoding.
    """
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [jsonable(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if hasattr(obj, "to_dict"):
        return jsonable(obj.to_dict())
    return obj
