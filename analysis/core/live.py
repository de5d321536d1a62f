"""Statistical stop conditions: sequential tests that watch a metric while a fault is on
and say, as early as the evidence allows, that it has left its baseline in the bad
direction — instead of waiting for a fixed threshold someone had to guess.

* ``cusum`` — a one-sided tabular CUSUM in robust-sigma units of the baseline (median,
  1.4826 x MAD, floored at 1 % of the level so a flat baseline does not make every
  wiggle an alarm). ``threshold`` is the decision interval h; with k = 0.5 a shift of
  one sigma is found after about 2h/1 points, a shift of 5 sigma after 1-2 points.
* ``streaming`` — the causal streaming detector (``analysis.core.streaming``), primed
  with the baseline; ``threshold`` is the anomaly score (0..1) that counts as a breach,
  and only deviations in the bad direction count.

Both are O(1) per point. ``consecutive`` points beyond the limit are needed to breach.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analysis.core.stats import clean

__all__ = ["LiveDetector", "make_live_detector"]

K = 0.5
MIN_BASELINE = 5


@dataclass
class LiveDetector:
    kind: str
    threshold: float
    better: str
    consecutive: int = 1
    center: float = 0.0
    sigma: float = 1.0
    statistic: float = 0.0
    streak: int = 0
    n: int = 0
    _stream: Any = field(default=None, repr=False)

    @property
    def sign(self) -> float:
        """+1 when higher is worse."""
        return 1.0 if self.better == "lower" else -1.0

    def prime(self, baseline_ts: list[float], baseline: list[float]) -> bool:
        """Fit on the baseline; False when it is too short to judge anything."""
        values = clean(np.asarray(baseline, dtype=float))
        if values.size < MIN_BASELINE:
            return False
        self.center = float(np.median(values))
        mad = float(np.median(np.abs(values - self.center))) * 1.4826
        self.sigma = max(mad, 0.01 * abs(self.center), 1e-9)
        if self.kind == "streaming":
            from analysis.core.streaming import StreamingDetector

            self._stream = StreamingDetector(warmup=max(MIN_BASELINE, values.size - 1), period=0)
            for t, v in zip(baseline_ts, baseline, strict=False):
                self._stream.update(t, v)
        return True

    def update(self, ts: float, value: float) -> dict[str, Any] | None:
        """Feed one sample; the evidence of a breach, or None."""
        if value != value:
            return None
        self.n += 1
        z = self.sign * (value - self.center) / self.sigma
        if self.kind == "cusum":
            self.statistic = max(0.0, self.statistic + z - K)
            beyond = self.statistic > self.threshold
        else:
            self.statistic = self._stream.update(ts, value)
            beyond = self.statistic >= self.threshold and z > 0
        self.streak = self.streak + 1 if beyond else 0
        if self.streak < self.consecutive:
            return None
        return {
            "detector": self.kind,
            "statistic": round(self.statistic, 6),
            "threshold": self.threshold,
            "observed": value,
            "baseline_median": self.center,
            "baseline_sigma": self.sigma,
            "z": round(z, 3),
            "points_during": self.n,
            "passed": True,
        }


def make_live_detector(rule: dict[str, Any], better: str) -> LiveDetector:
    return LiveDetector(
        kind=rule["detector"],
        threshold=float(rule["threshold"]),
        better=better,
        consecutive=int(rule.get("consecutive") or 1),
    )
