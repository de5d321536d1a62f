"""CUSUM change points: when did the fault bite, and when was the metric back?

A window comparison says *whether* the during phase differs; a chaos report also wants
*when*: seconds from injection to impact, and from revert to recovery. Tabular CUSUM
accumulates evidence of a sustained shift and forgets noise (the ``k`` allowance is
subtracted each step and the sum is floored at 0), so it reacts to a 1-sigma shift in
~10-20 points and barely ever to noise.

Thresholds (in baseline robust sigmas)
    :func:`cusum` keeps the textbook defaults ``k = 0.5``, ``h = 5``: fast, but its
    in-control run length is only ~930 points one-sided (~465 two-sided), so on 500
    points of pure noise it alarms on roughly half the runs. :func:`time_to_impact` and
    :func:`time_to_recover` therefore use ``h =`` :data:`DETECT_H` (8): the in-control
    run length becomes ~19,000 points one-sided while a 1-sigma shift is still found
    after ~16 points on average (Siegmund's approximation).

All series are in the metric's unit; ``better`` says which way is worse. Pure numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from analysis.core.stats import MAD_TO_SIGMA, clean

__all__ = [
    "DETECT_H",
    "DETECT_K",
    "RECOVERY_BAND",
    "CusumResult",
    "ImpactResult",
    "RecoveryResult",
    "cusum",
    "time_to_impact",
    "time_to_recover",
]

CusumDirection = Literal["up", "down", "both"]
Better = Literal["lower", "higher"]

#: Reference value (allowance) used by the impact and recovery helpers, in sigmas.
DETECT_K = 0.5
#: Decision threshold used by the impact and recovery helpers, in sigmas (see module doc).
DETECT_H = 8.0
#: A recovered point is at most this many robust sigmas on the worse side of the median.
RECOVERY_BAND = 3.0
#: Share of out-of-band points a recovered stretch may still contain (isolated spikes).
RECOVERY_OUTLIER_SHARE = 0.1
#: Relative floor on sigma so a constant baseline does not divide by zero.
SIGMA_FLOOR_REL = 1e-6


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class CusumResult:
    """Where the CUSUM alarmed and where the change it detected began.

    ``statistic`` is the accumulated sum per input point (for ``"both"`` the larger of the
    upper and lower sums); ``start_index`` is the first point after the statistic was
    last 0 before the alarm, i.e. the first point of the run that built up to it.
    ``direction`` says which side alarmed (``None`` without an alarm).
    """

    alarm_index: int | None
    start_index: int | None
    statistic: np.ndarray
    direction: Literal["up", "down"] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "alarm_index": self.alarm_index,
            "start_index": self.start_index,
            "statistic": [_num(v) for v in self.statistic],
            "direction": self.direction,
        }


@dataclass(frozen=True)
class ImpactResult:
    """Time from injection to the change; all ``None`` when no change was detected.

    ``change_at`` is the estimated start of the change (what ``seconds`` measures to),
    ``detected_at`` when the evidence became conclusive, and ``magnitude`` the median
    shift from the baseline median after the change start, in the metric's unit.
    """

    seconds: float | None
    detected_at: float | None
    change_at: float | None
    magnitude: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": _num(self.seconds),
            "detected_at": _num(self.detected_at),
            "change_at": _num(self.change_at),
            "magnitude": _num(self.magnitude),
        }


@dataclass(frozen=True)
class RecoveryResult:
    """Time from revert to being back to baseline, and what is left of the shift.

    ``residual_shift`` is the median minus the baseline median over the points after
    ``recovered_at``, or, when not recovered, over the last quarter of the series: how
    far off the metric still is, in its unit.
    """

    seconds: float | None
    recovered: bool
    recovered_at: float | None
    residual_shift: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": _num(self.seconds),
            "recovered": bool(self.recovered),
            "recovered_at": _num(self.recovered_at),
            "residual_shift": _num(self.residual_shift),
        }


def _centre_sigma(baseline_values: np.ndarray) -> tuple[float, float]:
    """Baseline median and robust sigma (MAD, then mean absolute deviation, then a floor)."""
    b = clean(baseline_values)
    if b.size == 0:
        raise ValueError("baseline has no finite values")
    centre = float(np.median(b))
    dev = np.abs(b - centre)
    floor = SIGMA_FLOOR_REL * max(1.0, abs(centre))
    sigma = float(np.median(dev)) * MAD_TO_SIGMA
    if sigma <= floor:
        sigma = float(np.mean(dev)) * math.sqrt(math.pi / 2.0)
    return centre, max(sigma, floor)


def cusum(
    values: np.ndarray,
    mean: float,
    sigma: float,
    *,
    k: float = 0.5,
    h: float = 5.0,
    direction: CusumDirection = "both",
) -> CusumResult:
    """Tabular CUSUM of ``(values - mean) / sigma``; stops at the first alarm.

    The statistic after the alarm is left at its alarm value (the run is over). A
    non-finite value contributes nothing: the sums carry over unchanged, so a missed
    scrape neither raises nor resets the evidence.
    """
    if direction not in ("up", "down", "both"):
        raise ValueError(f"direction must be 'up', 'down' or 'both', got {direction!r}")
    x = np.asarray(values, dtype=float).ravel()
    scale = sigma if sigma and math.isfinite(sigma) and sigma > 0 else 1.0
    z = (x - mean) / scale
    n = z.size
    stat = np.zeros(n)
    up = down = 0.0
    up_start = down_start = 0
    want_up = direction in ("up", "both")
    want_down = direction in ("down", "both")
    for i in range(n):
        zi = z[i]
        if math.isfinite(zi):
            up = max(0.0, up + zi - k)
            down = max(0.0, down - zi - k)
        if up == 0.0:
            up_start = i + 1
        if down == 0.0:
            down_start = i + 1
        stat[i] = max(up if want_up else 0.0, down if want_down else 0.0)
        # Report the stronger side when both cross on the same point.
        fired_up = want_up and up > h
        fired_down = want_down and down > h
        if fired_up or fired_down:
            side = "up" if fired_up and (not fired_down or up >= down) else "down"
            start = up_start if side == "up" else down_start
            stat[i + 1 :] = stat[i]
            return CusumResult(i, min(start, i), stat, side)
    return CusumResult(None, None, stat, None)


def _prepare(ts: np.ndarray, values: np.ndarray, since: float | None) -> tuple[np.ndarray, ...]:
    """Finite points at or after ``since``, sorted by time."""
    t = np.asarray(ts, dtype=float).ravel()
    v = np.asarray(values, dtype=float).ravel()
    n = min(t.size, v.size)
    t, v = t[:n], v[:n]
    ok = np.isfinite(t) & np.isfinite(v)
    if since is not None and math.isfinite(since):
        ok &= t >= since
    t, v = t[ok], v[ok]
    order = np.argsort(t, kind="stable")
    return t[order], v[order]


def _worse_sign(better: str) -> float:
    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher', got {better!r}")
    return 1.0 if better == "lower" else -1.0


def time_to_impact(
    ts: np.ndarray,
    values: np.ndarray,
    baseline_values: np.ndarray,
    injected_at: float | None,
    better: Better,
) -> ImpactResult:
    """Seconds from ``injected_at`` to the start of a sustained change for the worse.

    Only points at or after ``injected_at`` are read (all points when it is ``None``,
    timed from the first one). A one-sided CUSUM (``k`` = :data:`DETECT_K`, ``h`` =
    :data:`DETECT_H`) in the worse direction finds the change; its start estimate, not
    the alarm, is what is timed, because the alarm lags by the evidence it needed.
    Pass the during window: ``magnitude`` is measured from the change to the series' end.
    """
    sign = _worse_sign(better)
    t, v = _prepare(ts, values, injected_at)
    none = ImpactResult(None, None, None, None)
    if v.size == 0 or clean(baseline_values).size == 0:
        return none
    centre, sigma = _centre_sigma(baseline_values)
    res = cusum(v, centre, sigma, k=DETECT_K, h=DETECT_H, direction="up" if sign > 0 else "down")
    if res.alarm_index is None or res.start_index is None:
        return none
    start = _refine_start(sign * (v - centre) / sigma, res.start_index, res.alarm_index)
    origin = float(injected_at) if injected_at is not None else float(t[0])
    change_at = float(t[start])
    return ImpactResult(
        seconds=max(0.0, change_at - origin),
        detected_at=float(t[res.alarm_index]),
        change_at=change_at,
        magnitude=float(np.median(v[start:]) - centre),
    )


def _refine_start(z: np.ndarray, start: int, alarm: int) -> int:
    """Sharper change start: the last zero of a CUSUM whose allowance is half the shift.

    With ``k = 0.5`` noise before a large shift often keeps the sum above 0 for a few
    points, placing the start too early. The likelihood-optimal allowance for a shift of
    ``d`` sigmas is ``d / 2``; ``d`` is estimated from the points after the first start.
    """
    shift = float(np.median(z[start:]))
    k2 = shift / 2.0
    if not math.isfinite(k2) or k2 <= DETECT_K:
        return start
    total, last_zero = 0.0, start
    for i in range(start, alarm + 1):
        total = max(0.0, total + z[i] - k2)
        if total == 0.0:
            last_zero = i + 1
    return min(last_zero, alarm)


def _suffix_max_excess(z: np.ndarray, k: float) -> np.ndarray:
    """For each i, the largest sum of ``z - k`` over any run of points inside ``[i, n)``.

    A CUSUM restarted at ``i`` alarms before the end exactly when this exceeds ``h``,
    so one backward pass answers "does it stay in control from here on?" for every i.
    """
    n = z.size
    out = np.empty(n)
    best_here = 0.0  # best run starting exactly at i+1 (floored at 0)
    best_any = -math.inf
    for i in range(n - 1, -1, -1):
        run = (z[i] - k) + max(0.0, best_here)
        best_here = run
        best_any = max(best_any, run)
        out[i] = best_any
    return out


def time_to_recover(
    ts: np.ndarray,
    values: np.ndarray,
    baseline_values: np.ndarray,
    reverted_at: float | None,
    better: Better,
    *,
    hold: int = 3,
) -> RecoveryResult:
    """Seconds from ``reverted_at`` to the first point from which the metric stays back.

    A point ``i`` (at or after the revert) is the recovery when

    * it and the next ``hold - 1`` points are at most :data:`RECOVERY_BAND` robust sigmas
      on the worse side of the baseline median (better-than-baseline counts as back), and
    * from ``i`` to the end of the series a CUSUM in the worse direction would not alarm:
      a lasting residual shift is "not recovered" even if single points look fine. Each
      point's contribution is capped at a quarter of the decision threshold, so one or
      two isolated spikes (a GC pause, one slow request) cannot undo a recovery on their
      own, while a run of elevated points still does; and
    * at most :data:`RECOVERY_OUTLIER_SHARE` of the points from ``i`` on are outside the
      band, so spikes that keep coming back (flapping) are not a recovery either.

    Only the band test would let a metric stuck 3-4 sigma high "recover" on a lucky run
    of points; only the CUSUM would let a single huge spike be ignored.
    """
    sign = _worse_sign(better)
    hold = max(1, int(hold))
    t, v = _prepare(ts, values, reverted_at)
    if v.size == 0 or clean(baseline_values).size == 0:
        return RecoveryResult(None, False, None, None)
    centre, sigma = _centre_sigma(baseline_values)
    z = sign * (v - centre) / sigma
    in_band = z <= RECOVERY_BAND
    # ok_run[i]: points i .. i+hold-1 all exist and are in band.
    ok_run = np.zeros(v.size, dtype=bool)
    if v.size >= hold:
        window = np.lib.stride_tricks.sliding_window_view(in_band, hold)
        ok_run[: window.shape[0]] = window.all(axis=1)
    capped = np.minimum(z, DETECT_K + DETECT_H / 4)
    stays = _suffix_max_excess(capped, DETECT_K) <= DETECT_H
    out_after = np.cumsum((~in_band)[::-1])[::-1]  # out-of-band points from i to the end
    stays &= out_after <= RECOVERY_OUTLIER_SHARE * (v.size - np.arange(v.size))
    candidates = np.flatnonzero(ok_run & stays)
    if candidates.size == 0:
        tail = v[-max(hold, v.size // 4) :]
        return RecoveryResult(None, False, None, float(np.median(tail) - centre))
    i = int(candidates[0])
    origin = float(reverted_at) if reverted_at is not None else float(t[0])
    return RecoveryResult(
        seconds=max(0.0, float(t[i]) - origin),
        recovered=True,
        recovered_at=float(t[i]),
        residual_shift=float(np.median(v[i:]) - centre),
    )
