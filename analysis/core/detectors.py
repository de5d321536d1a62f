"""One doorway to the time-series detectors, so the engine never depends on their shape.

The forecast, multivariate and change-point detectors are written separately
(``analysis/core/forecast.py``, ``multivariate.py``, ``changepoints.py``). This module
imports whichever exist and turns their results into plain dicts. Two reasons:

* an analysis must finish even when a detector is missing or raises on odd data — the
  window comparison alone still gives a verdict, so a detector failure becomes an
  ``error`` entry in the evidence rather than a lost analysis;
* time-to-impact and time-to-recover feed the verdict and the score, so when
  ``changepoints`` is absent a small built-in CUSUM stands in (``source: "fallback"``).

HOOK: :data:`DETECTORS` tells which real detectors were found; to plug in another
implementation, replace the names below.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from analysis.core.stats import MAD_TO_SIGMA

try:  # pragma: no cover - depends on what has been merged
    from analysis.core.forecast import detect_forecast as _detect_forecast
except ImportError:  # pragma: no cover
    _detect_forecast = None
try:  # pragma: no cover
    from analysis.core.multivariate import detect_multivariate as _detect_multivariate
except ImportError:  # pragma: no cover
    _detect_multivariate = None
try:  # pragma: no cover
    from analysis.core.changepoints import time_to_impact as _time_to_impact
    from analysis.core.changepoints import time_to_recover as _time_to_recover
except ImportError:  # pragma: no cover
    _time_to_impact = None
    _time_to_recover = None

__all__ = [
    "DETECTORS",
    "forecast",
    "impact",
    "multivariate",
    "recovery",
]

#: Which external detectors are installed (the rest are skipped or use the fallback).
DETECTORS = {
    "forecast": _detect_forecast is not None,
    "multivariate": _detect_multivariate is not None,
    "changepoints": _time_to_impact is not None,
}

#: CUSUM reference value and decision threshold, in baseline robust sigmas.
CUSUM_K = 0.5
CUSUM_H = 5.0


def _plain(result: Any) -> dict[str, Any]:
    """A detector result as a dict, whatever it is (``to_dict``, dataclass or mapping)."""
    if result is None:
        return {}
    if hasattr(result, "to_dict"):
        return dict(result.to_dict())
    if dataclasses.is_dataclass(result):
        return dataclasses.asdict(result)
    if isinstance(result, dict):
        return dict(result)
    return {"value": result}


def _error(exc: Exception) -> dict[str, Any]:
    return {"error": f"{type(exc).__name__}: {exc}"}


# --- fallback change-point detection ---------------------------------------------------


def _centre_scale(baseline: np.ndarray) -> tuple[float, float]:
    """Baseline median and a robust sigma that is never zero (a flat baseline is common)."""
    m = float(np.median(baseline))
    s = float(np.median(np.abs(baseline - m))) * MAD_TO_SIGMA
    return m, max(s, 0.01 * abs(m), 1e-9)


def _fallback_impact(
    ts: np.ndarray, vs: np.ndarray, baseline: np.ndarray, injected_at: float | None, sign: float
) -> dict[str, Any]:
    """One-sided CUSUM in the "worse" direction; ``change_at`` is where the sum left 0."""
    m, s = _centre_scale(baseline)
    z = sign * (vs - m) / s
    total, last_zero = 0.0, 0
    for i, zi in enumerate(z):
        total = max(0.0, total + zi - CUSUM_K)
        if total == 0.0:
            last_zero = i + 1
        elif total > CUSUM_H:
            change = min(last_zero, i)
            start = injected_at if injected_at is not None else float(ts[0])
            return {
                "seconds": max(0.0, float(ts[change]) - start),
                "detected_at": float(ts[i]),
                "change_at": float(ts[change]),
                "magnitude": float(np.median(vs[change:]) - m),
                "source": "fallback",
            }
    return {
        "seconds": None,
        "detected_at": None,
        "change_at": None,
        "magnitude": 0.0,
        "source": "fallback",
    }


def _fallback_recovery(
    ts: np.ndarray,
    vs: np.ndarray,
    baseline: np.ndarray,
    reverted_at: float | None,
    sign: float,
    hold: int,
) -> dict[str, Any]:
    """First run of ``hold`` consecutive samples back within the baseline's noise band.

    The band is the larger of 2 robust sigmas and 10 % of the median — the same
    materiality idea as :mod:`compare` — but only on the "worse" side: overshooting
    into better-than-baseline counts as recovered.
    """
    m, s = _centre_scale(baseline)
    band = max(2.0 * s, 0.10 * abs(m))
    ok = sign * (vs - m) <= band
    run = 0
    for i, good in enumerate(ok):
        run = run + 1 if good else 0
        if run >= hold:
            first = i - hold + 1
            start = reverted_at if reverted_at is not None else float(ts[0])
            return {
                "seconds": max(0.0, float(ts[first]) - start),
                "recovered": True,
                "recovered_at": float(ts[first]),
                "residual_shift": float(np.median(vs[first:]) - m),
                "source": "fallback",
            }
    return {
        "seconds": None,
        "recovered": False,
        "recovered_at": None,
        "residual_shift": float(np.median(vs) - m) if vs.size else None,
        "source": "fallback",
    }


# --- public wrappers ---------------------------------------------------------------------


def _sign(better: str) -> float:
    return 1.0 if better == "lower" else -1.0


def impact(
    ts: np.ndarray,
    vs: np.ndarray,
    baseline: np.ndarray,
    injected_at: float | None,
    better: str,
) -> dict[str, Any]:
    """Time from injection to the change: ``{seconds, detected_at, change_at, magnitude}``."""
    if vs.size == 0 or baseline.size == 0:
        return {"seconds": None, "source": "none"}
    if _time_to_impact is not None:
        try:
            out = _plain(_time_to_impact(ts, vs, baseline, injected_at, better))
            out.setdefault("source", "changepoints")
            return out
        except Exception as exc:  # a detector bug must not lose the analysis
            return _error(exc)
    return _fallback_impact(ts, vs, baseline, injected_at, _sign(better))


def recovery(
    ts: np.ndarray,
    vs: np.ndarray,
    baseline: np.ndarray,
    reverted_at: float | None,
    better: str,
    *,
    hold: int = 3,
) -> dict[str, Any]:
    """Time from revert to being back: ``{seconds, recovered, recovered_at, residual_shift}``."""
    if vs.size == 0 or baseline.size == 0:
        return {"seconds": None, "recovered": None, "source": "none"}
    if _time_to_recover is not None:
        try:
            out = _plain(_time_to_recover(ts, vs, baseline, reverted_at, better, hold=hold))
            out.setdefault("source", "changepoints")
            return out
        except Exception as exc:
            return _error(exc)
    return _fallback_recovery(ts, vs, baseline, reverted_at, _sign(better), hold)


def forecast(
    base_ts: np.ndarray,
    base_vs: np.ndarray,
    eval_ts: np.ndarray,
    eval_vs: np.ndarray,
    *,
    alpha: float,
    interval_s: float | None,
) -> dict[str, Any] | None:
    """Forecast-band anomalies (``None`` when the detector is not installed).

    The predicted/lower/upper arrays are dropped: findings only need the model, the
    segments and the residual sigma, and the arrays would bloat the stored analysis.
    """
    if _detect_forecast is None:
        return None
    try:
        res = _detect_forecast(
            base_ts, base_vs, eval_ts, eval_vs, alpha=alpha, interval_s=interval_s
        )
    except Exception as exc:
        return _error(exc)
    out = _plain(res)
    for key in ("predicted", "lower", "upper"):
        out.pop(key, None)
    # ``anomalous`` is a per-point mask in the detector; findings need only its count.
    mask = out.pop("anomalous", None)
    if isinstance(mask, bool | np.bool_):
        out["anomalous"] = bool(mask)
    else:
        count = int(np.sum(np.asarray(mask if mask is not None else [], dtype=bool)))
        out["n_anomalous"] = count
        out["anomalous"] = count > 0
    out["segments"] = [_plain(s) for s in out.get("segments") or []]
    return out


def multivariate(
    baseline: np.ndarray, evaluation: np.ndarray, names: list[str]
) -> dict[str, Any] | None:
    """Isolation-forest style joint anomaly (``None`` when not installed)."""
    if _detect_multivariate is None:
        return None
    try:
        res = _detect_multivariate(baseline, evaluation, names)
    except Exception as exc:
        return _error(exc)
    out = _plain(res)
    scores = out.pop("scores", None)
    if scores is not None:
        out["n_scored"] = len(scores)
    contributions = out.get("contributions") or {}
    out["contributions"] = {
        str(k): float(v) for k, v in contributions.items() if v is not None and math.isfinite(v)
    }
    return out
