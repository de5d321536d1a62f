"""Forecast-band anomaly detection: "is the metric where the baseline said it would be?".

The window comparison in :mod:`compare` pools a whole phase and so cannot say *when* a
metric misbehaved, and it is fooled by a daily-cycle style seasonality (the during window
sits at another phase of the cycle than the baseline). Here a model is fitted on the
BASELINE ONLY, projected over the evaluation window, and every evaluation point is judged
against a prediction band. Runs of points outside the band become :class:`Segment`\\ s.

Model choice, from the baseline itself
    * seasonal (an autocorrelation peak, at least two full periods present): STL removes
      a per-phase-average seasonal profile, simple exponential smoothing (SES) models the
      rest, and the forecast is the SES level plus the profile at the evaluation point's
      phase (taken from its timestamp, so gaps keep the phase right). The residual sigma
      is widened by ``sqrt((c+1)/(c-1))`` for ``c`` cycles: the profile was fitted to the
      same residuals and carries its own error into every forecast;
    * otherwise SES alone. SES fitted with an estimated initial level collapses to a
      constant mean on white noise (smoothing 0) and to a random walk on a wandering
      series, so one model covers both without a model-selection step. No trend is
      extrapolated on purpose: baselines are minutes long and a trend projected over
      the evaluation window would invent most of the "anomalies";
    * robust constant (median ± z·MAD) when the baseline is short (< :data:`MIN_MODEL_POINTS`)
      or a fit fails; ``model`` and ``reason`` say so.

Band width
    ``alpha`` is the false-alarm rate for the WHOLE evaluation window, not per point: a
    run compares hundreds of points, and a per-point 1 % would flag several points of
    every healthy metric. With segments of at least ``L`` points in ``k`` points, a
    per-point rate ``q = (alpha / (L·k)) ** (1/L)`` makes a chance segment roughly
    ``alpha`` likely. The quantile is Student-t with ``0.37·(n - params)`` degrees of
    freedom (0.37 = the MAD's efficiency), because sigma is itself estimated from the
    baseline. The standard error grows with the horizon as SES's does,
    ``sigma·sqrt(1 + (h-1)·a² + 1/n)``, but never beyond :data:`MAX_WIDENING` x sigma: a
    random-walk baseline would otherwise get a band so wide that nothing is ever found.

Pure numpy/statsmodels; no Django.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats as sps
from statsmodels.tsa.holtwinters import SimpleExpSmoothing
from statsmodels.tsa.seasonal import STL
from statsmodels.tsa.stattools import acf
from threadpoolctl import threadpool_limits

from analysis.core.stats import MAD_TO_SIGMA

__all__ = [
    "MAX_WIDENING",
    "MIN_MODEL_POINTS",
    "ForecastResult",
    "Segment",
    "band_z",
    "detect_forecast",
    "detect_period",
]

Direction = Literal["above", "below"]

#: Below this many baseline points no model is fitted, a robust constant is used instead.
MIN_MODEL_POINTS = 12
#: Below this many baseline points there is nothing to judge against at all.
MIN_POINTS = 3
#: Cap on how much the prediction standard error may grow with the horizon.
MAX_WIDENING = 3.0
#: Smallest seasonal period looked for; 2 would be an alternation, not a season.
MIN_PERIOD = 3
#: An autocorrelation peak must reach this value (or 3/sqrt(n) if larger) ...
MIN_ACF_PEAK = 0.3
#: ... and stand this far above the lowest autocorrelation before it.
MIN_ACF_PROMINENCE = 0.2
#: Relative floor on sigma, so a constant baseline gives a finite (tiny) band.
SIGMA_FLOOR_REL = 1e-6
#: Asymptotic efficiency of the MAD for normal data: n residuals estimate sigma about as
#: well as 0.37·n would with the standard deviation, which sets the t quantile's df.
MAD_EFFICIENCY = 0.37


@dataclass(frozen=True)
class Segment:
    """A run of out-of-band points.

    ``n_points`` counts the anomalous points (a bridged one-point gap is not counted);
    ``peak_deviation`` is the largest ``|value - predicted|`` in residual sigmas, always
    positive (``direction`` carries the sign); ``area`` is the excess beyond the band
    edge summed over the points times the sampling interval (value units x seconds),
    a size measure that grows with both how far and how long.
    """

    start_ts: float
    end_ts: float
    n_points: int
    direction: Direction
    peak_deviation: float
    area: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_ts": _num(self.start_ts),
            "end_ts": _num(self.end_ts),
            "n_points": int(self.n_points),
            "direction": self.direction,
            "peak_deviation": _num(self.peak_deviation),
            "area": _num(self.area),
        }


@dataclass(frozen=True)
class ForecastResult:
    """Per-evaluation-point prediction and band, plus the segments found.

    Arrays are aligned with the ``eval_values`` passed in (same length and order);
    ``predicted``/``lower``/``upper`` are NaN where the timestamp was not finite or no
    model could be built, and ``anomalous`` is False where the value was not finite.
    ``anomalous`` is the raw per-point flag; ``segments`` keeps only runs of at least
    ``min_length`` points, so a lone blip can be flagged but not segmented.
    """

    model: str
    seasonal_period: int | None
    predicted: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    anomalous: np.ndarray
    segments: list[Segment]
    residual_sigma: float
    insufficient: bool
    reason: str
    z: float = field(default=float("nan"))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; NaN becomes ``None``."""
        return {
            "model": self.model,
            "seasonal_period": self.seasonal_period,
            "predicted": [_num(v) for v in self.predicted],
            "lower": [_num(v) for v in self.lower],
            "upper": [_num(v) for v in self.upper],
            "anomalous": [bool(v) for v in self.anomalous],
            "segments": [s.to_dict() for s in self.segments],
            "residual_sigma": _num(self.residual_sigma),
            "insufficient": bool(self.insufficient),
            "reason": self.reason,
            "z": _num(self.z),
        }


def _num(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


# --- helpers -------------------------------------------------------------------------


def _robust_sigma(x: np.ndarray, level: float) -> float:
    """MAD-based sigma, falling back to the mean absolute deviation, then to a tiny floor.

    Quantised metrics (mostly 0, sometimes 1) have MAD 0 but are not constant; the mean
    absolute deviation still sees their spread. A truly constant series gets the floor.
    """
    floor = SIGMA_FLOOR_REL * max(1.0, abs(level))
    if x.size == 0:
        return floor
    centre = float(np.median(x))
    dev = np.abs(x - centre)
    sigma = float(np.median(dev)) * MAD_TO_SIGMA
    if sigma <= floor:
        sigma = float(np.mean(dev)) * math.sqrt(math.pi / 2.0)
    return max(sigma, floor)


def _finite_pairs(ts: np.ndarray, vs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points with both a finite timestamp and a finite value, sorted by time."""
    ts = np.asarray(ts, dtype=float).ravel()
    vs = np.asarray(vs, dtype=float).ravel()
    n = min(ts.size, vs.size)
    ts, vs = ts[:n], vs[:n]
    ok = np.isfinite(ts) & np.isfinite(vs)
    ts, vs = ts[ok], vs[ok]
    order = np.argsort(ts, kind="stable")
    return ts[order], vs[order]


def _infer_interval(base_ts: np.ndarray, eval_ts: np.ndarray) -> float:
    for ts in (base_ts, eval_ts):
        t = np.sort(ts[np.isfinite(ts)])
        if t.size >= 2:
            d = np.diff(t)
            d = d[d > 0]
            if d.size:
                return float(np.median(d))
    return 1.0


def band_z(alpha: float, n_eval: int, min_length: int, df: float | None = None) -> float:
    """Two-sided quantile making a chance segment in ``n_eval`` points ~``alpha`` likely.

    With ``df`` it is a Student-t quantile: sigma is estimated from the baseline, and
    with a short baseline that estimate is loose enough to matter (a normal quantile let
    ~10x too many points out on a 100-point seasonal baseline).
    """
    k = max(1, n_eval)
    length = max(1, min_length)
    q = (alpha / (length * k)) ** (1.0 / length)
    q = min(max(q, 1e-12), 0.5)
    if df is None or not math.isfinite(df):
        return float(sps.norm.isf(q / 2.0))
    return float(sps.t.isf(q / 2.0, max(df, 2.0)))


def detect_period(values: np.ndarray) -> int | None:
    """Seasonal period of a (roughly evenly sampled) series, or ``None``.

    The autocorrelation of the linearly detrended series must show a local peak that is
    both high and prominent; only lags up to n/2 are searched, so at least two full
    periods are present. Of several peaks the highest wins, which picks the fundamental
    over its multiples (the biased ACF estimate shrinks with the lag).
    """
    x = np.asarray(values, dtype=float)
    n = x.size
    max_lag = n // 2
    if max_lag < MIN_PERIOD + 1:
        return None
    t = np.arange(n, dtype=float)
    slope, intercept = np.polyfit(t, x, 1)
    resid = x - (slope * t + intercept)
    if np.ptp(resid) <= 0:
        return None
    r = acf(resid, nlags=max_lag, fft=True)
    need = max(MIN_ACF_PEAK, 3.0 / math.sqrt(n))
    best_lag, best_val = None, -math.inf
    for lag in range(MIN_PERIOD, max_lag):
        val = r[lag]
        if val < need or val < r[lag - 1] or val < r[lag + 1]:
            continue
        if val - float(np.min(r[1:lag])) < MIN_ACF_PROMINENCE:
            continue
        if val > best_val:
            best_lag, best_val = lag, float(val)
    if best_lag is None:
        return None
    return _refine_period(resid, best_lag, max_lag)


def _refine_period(x: np.ndarray, lag: int, max_lag: int) -> int:
    """The neighbour of ``lag`` whose per-phase means explain the most variance.

    With only a few cycles the ACF peak is often one lag off, and a forecast with a
    period off by one drifts out of phase over a long evaluation window.
    """
    best, best_var = lag, math.inf
    for p in (lag - 1, lag, lag + 1):
        if p < MIN_PERIOD or p > max_lag:
            continue
        phase = np.arange(x.size) % p
        means = np.bincount(phase, x, p) / np.bincount(phase, None, p)
        # Mean squared within-phase residual, per degree of freedom left.
        var = float(np.sum((x - means[phase]) ** 2)) / (x.size - p)
        if var < best_var:
            best, best_var = p, var
    return best


@dataclass(frozen=True)
class _Fit:
    """What a fitted baseline model contributes to the forecast."""

    model: str
    level: float
    smoothing: float
    sigma: float
    n: int
    period: int | None = None
    profile: np.ndarray | None = None
    reason: str = ""
    n_params: int = 1

    @property
    def df(self) -> float:
        """Effective degrees of freedom of the MAD-based sigma."""
        return MAD_EFFICIENCY * max(1, self.n - self.n_params)


def _fit_ses(x: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Final level, smoothing weight and one-step residuals of SES fitted on ``x``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = SimpleExpSmoothing(x, initialization_method="estimated").fit(use_brute=False)
    smoothing = float(res.params["smoothing_level"])
    level = float(res.level[-1])
    resid = x - np.asarray(res.fittedvalues, dtype=float)
    if not (math.isfinite(smoothing) and math.isfinite(level)):
        raise ValueError("SES returned non-finite parameters")
    return level, min(max(smoothing, 0.0), 1.0), resid


def _fit_constant(x: np.ndarray, reason: str) -> _Fit:
    level = float(np.median(x))
    return _Fit("robust_constant", level, 0.0, _robust_sigma(x, level), x.size, reason=reason)


def _fit_baseline(x: np.ndarray) -> _Fit:
    if x.size < MIN_MODEL_POINTS:
        return _fit_constant(x, f"baseline has {x.size} points (< {MIN_MODEL_POINTS})")
    if np.ptp(x) == 0:
        return _fit_constant(x, "constant baseline")
    try:
        period = detect_period(x)
        if period is None:
            level, smoothing, resid = _fit_ses(x)
            sigma = _robust_sigma(resid, level)
            return _Fit("ses", level, smoothing, sigma, x.size, reason="no seasonality found")
        cycles = x.size / period
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # A seasonal smoother spanning every cycle with degree 0 makes the season a
            # per-phase average: with the few cycles a baseline holds, letting it vary
            # from cycle to cycle just fits the noise (and the forecast inherits it).
            # Not STL's robust mode: its weights made the residual MAD ~10 % too small
            # (bands too narrow); robustness comes from the MAD of the residuals instead.
            window = max(7, 2 * math.ceil(cycles) + 1)
            dec = STL(x, period=period, seasonal=window, seasonal_deg=0).fit()
        seasonal = np.asarray(dec.seasonal, dtype=float)
        adjusted = x - seasonal
        level, smoothing, resid = _fit_ses(adjusted)
        phase = np.arange(x.size) % period
        profile = np.bincount(phase, seasonal, period) / np.bincount(phase, None, period)
        # In-sample residuals are too small by about sqrt(1 - 1/cycles) (the profile was
        # fitted to them), and the forecast adds the profile's own error, sqrt(1 + 1/cycles).
        honest = math.sqrt((cycles + 1.0) / (cycles - 1.0))
        sigma = _robust_sigma(resid, level) * honest
        reason = f"seasonal period {period} from the autocorrelation"
        return _Fit("stl+ses", level, smoothing, sigma, x.size, period, profile, reason, period + 1)
    except Exception as exc:  # statsmodels raises on odd inputs; never lose the metric
        return _fit_constant(x, f"model fit failed ({type(exc).__name__}: {exc})")


def _segments(
    ts: np.ndarray,
    vs: np.ndarray,
    pred: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    flags: np.ndarray,
    sigma: float,
    interval_s: float,
    min_length: int,
    max_gap: int,
) -> list[Segment]:
    """Group flagged points (time-ordered, all finite) into same-direction runs."""
    out: list[Segment] = []
    current: list[int] = []
    cur_dir: str | None = None
    gap = 0

    def close() -> None:
        if len(current) >= min_length and cur_dir is not None:
            idx = np.asarray(current)
            excess = vs[idx] - upper[idx] if cur_dir == "above" else lower[idx] - vs[idx]
            dev = np.abs(vs[idx] - pred[idx]) / sigma
            out.append(
                Segment(
                    start_ts=float(ts[idx[0]]),
                    end_ts=float(ts[idx[-1]]),
                    n_points=int(idx.size),
                    direction="above" if cur_dir == "above" else "below",
                    peak_deviation=float(dev.max()),
                    area=float(np.sum(np.maximum(excess, 0.0)) * interval_s),
                )
            )

    for i in range(ts.size):
        if not flags[i]:
            if current:
                gap += 1
                if gap > max_gap:
                    close()
                    current, cur_dir, gap = [], None, 0
            continue
        direction = "above" if vs[i] > upper[i] else "below"
        if current and direction != cur_dir:
            close()
            current = []
        current.append(i)
        cur_dir, gap = direction, 0
    if current:
        close()
    return out


def _empty(n: int, model: str, reason: str, sigma: float = float("nan")) -> ForecastResult:
    nan = np.full(n, np.nan)
    return ForecastResult(
        model=model,
        seasonal_period=None,
        predicted=nan,
        lower=nan.copy(),
        upper=nan.copy(),
        anomalous=np.zeros(n, dtype=bool),
        segments=[],
        residual_sigma=sigma,
        insufficient=True,
        reason=reason,
    )


def detect_forecast(
    baseline_ts: np.ndarray,
    baseline_values: np.ndarray,
    eval_ts: np.ndarray,
    eval_values: np.ndarray,
    *,
    alpha: float = 0.01,
    interval_s: float | None = None,
    min_length: int = 2,
    max_gap: int = 1,
) -> ForecastResult:
    """Fit a model on the baseline, project it over the evaluation points, find segments.

    ``alpha`` is the chance of any false segment in the whole evaluation window (see the
    module docstring); ``min_length`` anomalous points make a segment and up to
    ``max_gap`` in-band points may sit inside one. ``interval_s`` defaults to the median
    baseline spacing; it sets the forecast horizon and the time unit of ``area``.
    """
    e_ts = np.asarray(eval_ts, dtype=float).ravel()
    e_vs = np.asarray(eval_values, dtype=float).ravel()
    if e_ts.size != e_vs.size:
        raise ValueError(f"eval_ts has {e_ts.size} points but eval_values has {e_vs.size}")
    n_eval = e_vs.size
    b_ts, b_vs = _finite_pairs(baseline_ts, baseline_values)
    if b_vs.size < MIN_POINTS:
        return _empty(n_eval, "none", f"baseline has {b_vs.size} finite points (< {MIN_POINTS})")
    if n_eval == 0:
        return _empty(0, "none", "no evaluation points")

    # One BLAS thread: the fits are tiny, and on a busy host OpenBLAS threads spinning
    # against each other made a 10 ms fit take 150 ms.
    with threadpool_limits(limits=1):
        return _detect(b_ts, b_vs, e_ts, e_vs, alpha, interval_s, min_length, max_gap)


def _detect(
    b_ts: np.ndarray,
    b_vs: np.ndarray,
    e_ts: np.ndarray,
    e_vs: np.ndarray,
    alpha: float,
    interval_s: float | None,
    min_length: int,
    max_gap: int,
) -> ForecastResult:
    n_eval = e_vs.size
    step = float(interval_s) if interval_s and interval_s > 0 else _infer_interval(b_ts, e_ts)
    fit = _fit_baseline(b_vs)

    # Forecast on every finite timestamp; the horizon counts sampling steps past the
    # last baseline point, so a pause between the phases is accounted for.
    pred = np.full(n_eval, np.nan)
    se = np.full(n_eval, np.nan)
    has_ts = np.isfinite(e_ts)
    h = np.maximum(1.0, np.round((e_ts[has_ts] - b_ts[-1]) / step))
    pred[has_ts] = fit.level
    if fit.profile is not None and fit.period:
        phase = np.round((e_ts[has_ts] - b_ts[0]) / step).astype(np.int64) % fit.period
        pred[has_ts] += fit.profile[phase]
    widen = np.sqrt(1.0 + (h - 1.0) * fit.smoothing**2 + 1.0 / fit.n)
    se[has_ts] = fit.sigma * np.minimum(widen, MAX_WIDENING)

    usable = has_ts & np.isfinite(e_vs)
    min_len = max(1, min(min_length, int(usable.sum())))
    z = band_z(alpha, int(usable.sum()), min_len, fit.df)
    lower, upper = pred - z * se, pred + z * se
    anomalous = np.zeros(n_eval, dtype=bool)
    anomalous[usable] = (e_vs[usable] > upper[usable]) | (e_vs[usable] < lower[usable])

    idx = np.flatnonzero(usable)
    idx = idx[np.argsort(e_ts[idx], kind="stable")]
    segments = _segments(
        e_ts[idx],
        e_vs[idx],
        pred[idx],
        lower[idx],
        upper[idx],
        anomalous[idx],
        fit.sigma,
        step,
        min_len,
        max_gap,
    )
    return ForecastResult(
        model=fit.model,
        seasonal_period=fit.period,
        predicted=pred,
        lower=lower,
        upper=upper,
        anomalous=anomalous,
        segments=segments,
        residual_sigma=float(fit.sigma),
        insufficient=False,
        reason=fit.reason,
        z=z,
    )
