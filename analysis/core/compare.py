"""Compare a window of one metric against its baseline and classify the change.

A change is reported only when it is both *real* and *material*:

* real — the two-sided Mann-Whitney p-value is below ``alpha`` (0.01 by default, strict
  because a run compares many metrics and a false alarm costs an engineer's afternoon);
* material — the Hodges-Lehmann shift exceeds a tolerance, the larger of a relative part
  (10 % of the baseline median) and an absolute floor from the baseline's own noise
  (1 x MAD·1.4826). The floor keeps flat-but-noisy metrics around zero from flapping,
  where 10 % of a tiny median would be meaningless.

The direction of "worse" comes from the metric's ``better`` attribute: with
``better="lower"`` (latency, errors) an increase is a degradation; with
``better="higher"`` (throughput, success ratio) a decrease is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from numpy.typing import ArrayLike

from analysis.core.stats import (
    MAD_TO_SIGMA,
    ShiftEstimate,
    Summary,
    clean,
    hodges_lehmann,
    mann_whitney,
    summarize,
)

__all__ = [
    "Better",
    "CompareConfig",
    "Comparison",
    "Outcome",
    "compare_windows",
]

Better = Literal["lower", "higher"]
Outcome = Literal["ok", "degraded", "improved", "insufficient"]


@dataclass(frozen=True)
class CompareConfig:
    """Thresholds for :func:`compare_windows`; one object so callers can tune them together."""

    alpha: float = 0.01
    rel_tolerance: float = 0.10
    #: Absolute floor in units of the baseline's robust sigma (MAD·1.4826).
    noise_floor_sigmas: float = 1.0
    #: Extra absolute floor in the metric's unit, for metrics with a known resolution.
    abs_tolerance: float = 0.0
    min_points: int = 5
    confidence: float = 0.95


@dataclass(frozen=True)
class Comparison:
    """Everything learnt from one baseline-vs-window comparison.

    ``shift`` is ``window - baseline`` in the metric's unit (positive = went up), and
    ``relative_effect`` is that shift over ``|baseline median|``; it is ``None`` when the
    baseline median is practically zero and a ratio would be meaningless.
    """

    better: Better
    baseline: Summary
    window: Summary
    outcome: Outcome
    p_value: float | None
    shift: ShiftEstimate | None
    relative_effect: float | None
    tolerance: float | None
    significant: bool
    material: bool
    config: CompareConfig = field(default_factory=CompareConfig, repr=False)

    @property
    def n(self) -> int:
        """The smaller window size: what limits the strength of the evidence."""
        return min(self.baseline.n, self.window.n)

    @property
    def within_tolerance(self) -> bool:
        """True when the whole shift interval lies inside ±tolerance: evidence of no impact."""
        if self.shift is None or self.tolerance is None:
            return False
        return -self.tolerance <= self.shift.low and self.shift.high <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, for storage and reports."""
        return {
            "outcome": self.outcome,
            "better": self.better,
            "baseline": self.baseline.to_dict(),
            "window": self.window.to_dict(),
            "p_value": self.p_value,
            "shift": None if self.shift is None else self.shift.to_dict(),
            "relative_effect": self.relative_effect,
            "tolerance": self.tolerance,
            "significant": self.significant,
            "material": self.material,
            "alpha": self.config.alpha,
        }


def relative_effect(shift: float, baseline_median: float, scale: float) -> float | None:
    """``shift / |baseline median|``, or ``None`` when the median is ~0 next to ``scale``.

    ``scale`` is the largest magnitude seen in either window; a median that small relative
    to it (e.g. an error rate of exactly 0) cannot anchor a percentage.
    """
    if not (math.isfinite(shift) and math.isfinite(baseline_median)):
        return None
    if abs(baseline_median) <= 1e-9 * max(1.0, scale):
        return None
    return shift / abs(baseline_median)


def compare_windows(
    baseline: ArrayLike,
    window: ArrayLike,
    better: Better = "lower",
    config: CompareConfig | None = None,
) -> Comparison:
    """Classify ``window`` against ``baseline`` as ok, degraded, improved or insufficient."""
    cfg = config or CompareConfig()
    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher', got {better!r}")
    a, b = clean(baseline), clean(window)
    sa, sb = summarize(a), summarize(b)
    if a.size < cfg.min_points or b.size < cfg.min_points:
        return Comparison(
            better=better,
            baseline=sa,
            window=sb,
            outcome="insufficient",
            p_value=None,
            shift=None,
            relative_effect=None,
            tolerance=None,
            significant=False,
            material=False,
            config=cfg,
        )

    p_value = mann_whitney(a, b).p_value
    est = hodges_lehmann(a, b, confidence=cfg.confidence)
    tolerance = max(
        cfg.rel_tolerance * abs(sa.p50),
        cfg.noise_floor_sigmas * sa.mad * MAD_TO_SIGMA,
        cfg.abs_tolerance,
    )
    significant = p_value < cfg.alpha
    # Strict ">" so that with a zero tolerance (constant baseline at 0) a zero shift
    # is never material.
    material = abs(est.shift) > tolerance
    scale = float(max(abs(a).max(), abs(b).max()))
    rel = relative_effect(est.shift, sa.p50, scale)

    outcome: Outcome = "ok"
    if significant and material:
        worse = est.shift > 0 if better == "lower" else est.shift < 0
        outcome = "degraded" if worse else "improved"
    return Comparison(
        better=better,
        baseline=sa,
        window=sb,
        outcome=outcome,
        p_value=p_value,
        shift=est,
        relative_effect=rel,
        tolerance=float(tolerance),
        significant=significant,
        material=material,
        config=cfg,
    )
