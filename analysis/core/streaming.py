"""A streaming, causal anomaly detector for live stop conditions.

A chaos experiment has to be stopped *while* it runs, so the detector sees one sample at a
time, may only use what it has already seen, and must cost the same for the millionth
sample as for the first: every statistic here is an exponentially weighted moment or a
small fixed ring buffer, so time and memory per point are O(1).

How a point is scored, and why:

1. **Raw surprise.** Three robust z-scores against slowly adapting baselines: how far the
   value is from its long-run level (spikes, level shifts), how big the step from the
   previous value is compared with typical steps (sudden changes inside the normal range),
   and how the short-window mean and short-window volatility compare with the long run
   (a level drift, or a signal that suddenly goes flat or noisy). Baselines are updated
   with winsorised inputs, so one outlier cannot inflate the scale it is judged against.
   Everything is divided by a robust scale, so the detector is unit-free: bytes, percent
   and tweet counts behave the same.
2. **Calibration ("how unusual is this surprise *here*").** Real metrics are heavy-tailed
   and a z of 6 can be routine for one series and unheard of for another. Each raw
   surprise is therefore compared with its own history: the share of past surprises at
   least as large, from a forgetting histogram of ``log(1 + z)`` (a recurring daily
   burst stops looking rare), with a Gaussian tail on the same log scale to rank
   surprises beyond anything seen so far. The smallest of the four tail probabilities,
   Bonferroni-corrected, is the p-value, so one threshold means roughly the same thing
   on every series.
3. **Refractory period.** A real incident produces a burst of surprising points; only the
   first one is news. After a high score the output is damped for a while and the
   baselines re-learn quickly, so a level shift that becomes the new normal stops alarming.

The output is ``1 - p`` where ``p`` is that tail probability, in [0, 1]. NaN / inf values
are skipped (score 0, state untouched); timestamps are accepted for API symmetry and to
ignore samples arriving out of order, but statistics are per sample, not per second, so
irregular spacing does not break anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["DEFAULTS", "StreamingDetector", "score_series"]

#: Default parameters. They are generic (chosen for 1-minute to 1-hour metrics seen as a
#: stream of samples), never tuned per series.
DEFAULTS: dict[str, float | int] = {
    "alpha": 0.002,  # long-run baseline learning rate (memory ~ 500 samples)
    "short": 24,  # ring buffer length for the short-window mean / volatility
    "clip": 4.0,  # winsorise baseline updates at this many robust scales
    "raw_alpha": 0.002,  # learning rate of the surprise's own distribution
    "hist_alpha": 0.001,  # forgetting rate of the surprise histogram (memory ~1000)
    "prior": 30.0,  # weight (in samples) of the Gaussian tail next to the histogram
    "warmup": 150,  # samples learned before any non-zero score is emitted
    "refractory": 100,  # samples damped after an alarm
    "alarm": 0.995,  # score that starts a refractory period
    "damp": 0.5,  # p-value exponent during the refractory period
    "relearn": 10.0,  # baseline learning-rate multiplier during the refractory period
}

_SQRT1_2 = 1.0 / math.sqrt(2.0)
_TINY = 1e-12
_REL_FLOOR = 1e-4
_SOFT = 0.1  # share of an outlier's excess (beyond `clip` scales) that baselines learn
_NBINS = 80  # histogram of log(1 + surprise) over [0, 10): surprises up to ~2e4 sigma
_BINS_PER_UNIT = 8.0
_N_FEATURES = 4


class StreamingDetector:
    """Online detector; ``update(t, x)`` returns an anomaly score in [0, 1]."""

    __slots__ = (
        "_alarm_p",
        "_base_mu",
        "_base_s",
        "_bins",
        "_buf",
        "_cool",
        "_diff_s",
        "_fm",
        "_fv",
        "_hist",
        "_htot",
        "_hw",
        "_last_t",
        "_n",
        "_pos",
        "_prev",
        "_sum",
        "_sumd",
        "_vol_mu",
        "_vol_s",
        "params",
    )

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unknown parameters: {sorted(unknown)}")
        self.params = {**DEFAULTS, **params}
        w = int(self.params["short"])
        if w < 2:
            raise ValueError("short must be >= 2")
        self._alarm_p = 1.0 - float(self.params["alarm"])
        self._hist = [[0.0] * _NBINS for _ in range(_N_FEATURES)]
        self._bins = [0] * _N_FEATURES
        self._fm = [0.0] * _N_FEATURES  # EW mean of log(1 + z) per feature
        self._fv = [0.0] * _N_FEATURES  # EW variance of log(1 + z) per feature
        self._hw = 1.0
        self._htot = 0.0
        self._buf = [0.0] * w  # last w values
        self._pos = 0
        self._n = 0
        self._last_t = -math.inf
        self._prev = 0.0
        self._sum = 0.0  # sum of values in the buffer
        self._sumd = 0.0  # sum of |steps| in the buffer
        self._base_mu = 0.0
        self._base_s = 0.0  # EW mean absolute deviation of the value
        self._diff_s = 0.0  # EW mean absolute step
        self._vol_mu = 0.0  # EW mean of log short-window volatility ratio
        self._vol_s = 0.0
        self._cool = 0

    # ------------------------------------------------------------------ scoring
    def update(self, timestamp: float, value: float) -> float:
        """Feed one sample and get its anomaly score (0 = normal, 1 = certainly anomalous)."""
        x = float(value)
        if not math.isfinite(x) or timestamp < self._last_t:
            return 0.0
        self._last_t = timestamp
        p = self.params
        n = self._n + 1
        self._n = n
        w = len(self._buf)
        if n == 1:
            self._prev = x
            self._base_mu = x
            self._buf = [x] * w
            self._sum = x * w
            return 0.0

        # Short window: O(1) running sums over a ring buffer.
        buf = self._buf
        pos = self._pos
        old = buf[pos]
        old_next = buf[(pos + 1) % w]
        step = x - self._prev
        self._sum += x - old
        self._sumd += abs(step) - abs(old_next - old)
        buf[pos] = x
        pos += 1
        if pos == w:
            # Once per lap, recompute the running sums so float error cannot accumulate.
            pos = 0
            self._sum = math.fsum(buf)
            self._sumd = math.fsum(abs(buf[i] - buf[i - 1]) for i in range(1, w))
        self._pos = pos

        mu = self._base_mu
        s = self._base_s
        ds = self._diff_s
        # Scales never fall below a tiny fraction of the level: a series that sat exactly
        # still would otherwise call a one-ulp wiggle a billion-sigma event.
        floor = _REL_FLOOR * (abs(mu) + s) + _TINY
        s_eff = s if s > floor else floor
        ds_eff = ds if ds > floor else floor

        # Raw surprises: robust z-scores (1.25 * mean absolute deviation ~ one sigma).
        z_level = abs(x - mu) / (1.25 * s_eff)
        z_step = abs(step) / (1.25 * ds_eff)
        z_mean = abs(self._sum / w - mu) / (1.25 * s_eff)
        sumd = self._sumd if self._sumd > 0.0 else 0.0
        vol = math.log((sumd / (w - 1) + floor) / ds_eff)
        z_vol = abs(vol - self._vol_mu) / (1.25 * self._vol_s + 0.05)

        # Calibrate each surprise against its own history: "how often has a surprise at
        # least this big been seen before?" An exponentially forgetting histogram of
        # log(1 + z) answers that empirically (a daily spike recurs, so it stops looking
        # rare); a Gaussian tail on the same log scale ranks surprises beyond anything
        # seen so far, where the histogram has no mass left to tell them apart. Features
        # are calibrated separately so a naturally large one cannot mask the others.
        hw = self._hw
        # The Gaussian tail enters as `prior` pseudo-observations at the current weight:
        # enough that "bigger than anything in the last ~1/hist_alpha samples" is not by
        # itself a one-in-a-million event, while a surprise far beyond the learned spread
        # still is.
        prior = hw * p["prior"]
        htot = self._htot + prior
        # Surprises computed while the baselines are still forming (a handful of samples,
        # near-zero scales) would sit in the tail for a long time, so the calibration
        # starts learning only halfway through the warm-up.
        m = n - int(p["warmup"]) // 2
        settled = m > 0
        ra = max(p["raw_alpha"], 1.0 / m) if settled else 0.0
        fm = self._fm
        fv = self._fv
        pmin = 1.0
        bins = self._bins
        hists = self._hist
        zs = (z_level, z_step, z_mean, z_vol)
        for k in range(_N_FEATURES):
            lr = math.log1p(zs[k])
            rm = fm[k]
            rd = lr - rm
            pos_h = lr * _BINS_PER_UNIT
            bk = int(pos_h)
            if bk >= _NBINS:
                bk = _NBINS - 1
            bins[k] = bk
            rsd = math.sqrt(fv[k]) + 0.05
            # A surprise at or below its own average has p >= ~1/2 and, after the
            # Bonferroni factor, cannot lower the p-value: skip the tail sums (speed).
            if rd > 0.0:
                q = 0.5 * math.erfc(rd * _SQRT1_2 / rsd)
                if pos_h >= _NBINS:
                    tail = 0.0
                else:
                    hist = hists[k]
                    tail = sum(hist[bk + 1 :]) + hist[bk] * (1.0 - (pos_h - bk))
                pk = (tail + prior * q) / htot
                if pk < pmin:
                    pmin = pk
                if rd > 4.0 * rsd:
                    rd = 4.0 * rsd
            # Learn this feature's distribution (after it was used for scoring).
            fm[k] = rm + ra * rd
            fv[k] += ra * (rd * rd - fv[k])
        pval = min(1.0, pmin * _N_FEATURES)  # Bonferroni: any of the features may fire

        # Learn (after scoring, so a point never explains itself).
        cool = self._cool
        boost = p["relearn"] if cool > 0 else 1.0
        a = max(p["alpha"] * boost, 1.0 / n)
        # Soft winsorising: beyond `clip` scales only a fraction of the excess is learned,
        # so one outlier barely moves the baselines, yet a scale that collapsed to zero on
        # a mostly-constant series can still grow when the series starts moving.
        soft = _SOFT
        lim = p["clip"] * 1.25 * s_eff if n > 10 else math.inf
        dev = x - mu
        adev = abs(dev)
        if adev > lim:
            adev = lim + soft * (adev - lim)
            dev = adev if dev > 0 else -adev
        self._base_mu = mu + a * dev
        self._base_s = s + a * (adev - s)
        dlim = p["clip"] * 1.25 * ds_eff if n > 10 else math.inf
        astep = abs(step)
        if astep > dlim:
            astep = dlim + soft * (astep - dlim)
        self._diff_s = ds + a * (astep - ds)
        if n > w:
            vd = vol - self._vol_mu
            self._vol_mu += a * vd
            self._vol_s += a * (min(abs(vd), 4.0 * (self._vol_s + 0.05)) - self._vol_s)
        # Forgetting histograms: instead of shrinking every bin each step, grow the weight
        # of new observations geometrically and rescale once it gets large (amortised O(1)).
        if settled:
            for k in range(_N_FEATURES):
                self._hist[k][bins[k]] += hw
            self._htot += hw
            hw /= 1.0 - p["hist_alpha"]
        if hw > 1e150:
            for hist in self._hist:
                for i in range(_NBINS):
                    hist[i] /= hw
            self._htot /= hw
            hw = 1.0
        self._hw = hw
        self._prev = x

        if n <= p["warmup"]:
            return 0.0
        if cool > 0:
            self._cool = cool - 1
            pval = pval ** p["damp"]
        if pval <= self._alarm_p:
            self._cool = int(p["refractory"])
        return 1.0 - pval

    # ------------------------------------------------------------------ state
    def to_state(self) -> dict[str, Any]:
        """A JSON-friendly snapshot (a few dozen numbers) to persist between runs."""
        state = {k: getattr(self, k) for k in self.__slots__ if k != "params"}
        state["_buf"] = list(self._buf)
        state["_hist"] = [list(h) for h in self._hist]
        state["_fm"] = list(self._fm)
        state["_fv"] = list(self._fv)
        state["_bins"] = list(self._bins)
        state["params"] = dict(self.params)
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> StreamingDetector:
        """Rebuild a detector from :meth:`to_state`; it continues exactly where it stopped."""
        det = cls(**state["params"])
        for k in cls.__slots__:
            if k != "params":
                setattr(det, k, state[k])
        det._buf = list(state["_buf"])
        det._hist = [list(h) for h in state["_hist"]]
        det._fm = list(state["_fm"])
        det._fv = list(state["_fv"])
        det._bins = list(state["_bins"])
        return det


def score_series(
    timestamps: Sequence[float] | np.ndarray | None,
    values: Sequence[float] | np.ndarray,
    **params: Any,
) -> np.ndarray:
    """Run a fresh detector over a whole series (still strictly causal) and return scores."""
    vals = np.asarray(values, dtype=float)
    ts = np.arange(vals.size, dtype=float) if timestamps is None else np.asarray(timestamps)
    ts = ts.astype("datetime64[ns]").astype(np.int64) if ts.dtype.kind == "M" else ts
    det = StreamingDetector(**params)
    upd = det.update
    return np.fromiter(
        (upd(t, v) for t, v in zip(ts.tolist(), vals.tolist(), strict=True)),
        dtype=float,
        count=vals.size,
    )
