"""Score anomaly detectors the way the Numenta Anomaly Benchmark (NAB) does.

NAB does not count hits and misses; it rewards *early* detection inside a labelled
anomaly window and penalises alarms outside windows, with a smooth sigmoid so that an
alarm just after a window costs less than one far away from any anomaly. A single
threshold per detector and application profile is chosen for the whole corpus (the one
that maximises the raw score) and the raw score is normalised between the null detector
(never fires: 0) and a perfect one (fires at the start of every window: 100).

This module re-implements those rules from NAB's published description (and its
documented behaviour where the description is loose); it is deliberately independent of
any particular detector so it can score any stream of per-row anomaly scores.

Points where the write-up is ambiguous and NAB's own behaviour was followed:

* Position inside a window is ``-(right - i + 1) / width`` (``width = right - left + 1``
  rows), so the first row sits at exactly -1 and the last row at ``-1/width``, not 0.
* A true positive is worth ``A_TP * S(y) / S(-1)``: the earliest possible detection earns
  exactly ``A_TP``, which is why the perfect score is ``A_TP`` per window.
* A false positive after a window sits at ``y = (i - right) / (width - 1)`` measured with
  the preceding window's width; ``S`` is clamped to -1 for ``y >= 3`` and a false positive
  with no preceding window costs the full ``-A_FP``.
* Rows inside the probationary period are dropped from scoring altogether, but windows and
  "the preceding window" are still tracked through them. A window that lies entirely inside
  the probationary period can never be scored; NAB still counts it in the perfect score (it
  counts every label) but not in the null score. The corpora NAB ships have none.
* A row is a detection when its score is ``>= threshold``. The candidate thresholds are the
  distinct scores in the corpus plus 1.1 (nothing fires); on ties the highest threshold wins.
* Label timestamps are matched to rows by time: a window covers the rows whose timestamps
  fall inside ``[start, end]`` (NAB requires exact matches; this is the same thing when
  they match and degrades gracefully when a label falls between two rows).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "PROBATION_PERCENT",
    "PROFILES",
    "CorpusScore",
    "FileRows",
    "Profile",
    "load_windows",
    "normalised",
    "prepare_file",
    "probation_length",
    "scaled_sigmoid",
    "score_at_threshold",
    "score_corpus",
    "sweep",
]

#: Fraction of each file that is a learning period and not scored (capped, see below).
PROBATION_PERCENT = 0.15
#: NAB caps probation at ``PROBATION_PERCENT * 5000`` rows (750 for 15 %).
PROBATION_CAP_ROWS = 5000
#: Threshold that no score in [0, 1] reaches: the null detector's operating point.
NO_DETECTION_THRESHOLD = 1.1

OUTSIDE = -1  # row is scorable and outside every window (a detection is a false positive)
PROBATION = -2  # row is in the probationary period: never scored


@dataclass(frozen=True)
class Profile:
    """An application profile: how much a hit, a false alarm and a miss are worth."""

    name: str
    a_tp: float
    a_fp: float
    a_fn: float


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("standard", 1.0, 0.11, 1.0),
        Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
        Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
    )
}


def scaled_sigmoid(y: float | np.ndarray) -> np.ndarray:
    """NAB's position reward ``S(y) = 2 / (1 + e^(5y)) - 1``, pinned to -1 for ``y >= 3``.

    Positive for ``y < 0`` (inside a window, larger the earlier), negative after it.
    """
    y = np.asarray(y, dtype=float)
    # exp(5*y) overflows harmlessly to inf for large y; the clamp takes those anyway.
    with np.errstate(over="ignore"):
        s = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    return np.where(y >= 3.0, -1.0, s)


MAX_TP = float(scaled_sigmoid(-1.0))


def probation_length(n_rows: int, percent: float = PROBATION_PERCENT) -> int:
    """Number of leading rows that are not scored: 15 % of the file, at most 750 rows."""
    return int(min(math.floor(percent * n_rows), percent * PROBATION_CAP_ROWS))


def load_windows(path: str | Path) -> dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]]:
    """Read a NAB ``combined_windows.json``: relative file path -> [(start, end), ...]."""
    raw = json.loads(Path(path).read_text())
    return {
        name: sorted((pd.Timestamp(a), pd.Timestamp(b)) for a, b in spans)
        for name, spans in raw.items()
    }


@dataclass
class FileRows:
    """Per-row scoring facts of one file, independent of the detector's scores.

    ``window`` holds the window index within the file for rows inside a window, ``OUTSIDE``
    for other scorable rows and ``PROBATION`` for unscored ones. ``reward`` holds the
    unweighted value of a detection on that row: ``S(y)/S(-1)`` inside a window (so the
    window's first row is worth exactly 1) and ``S(y)`` (<= 0) outside.
    """

    name: str
    window: np.ndarray
    reward: np.ndarray
    n_windows: int
    label: np.ndarray = field(repr=False)  # 1 inside any window (probation included), else 0

    @property
    def n_rows(self) -> int:
        return int(self.window.size)


def _window_bounds(
    timestamps: np.ndarray, windows: Sequence[tuple[pd.Timestamp, pd.Timestamp]]
) -> list[tuple[int, int]]:
    """Row index ranges (inclusive) of the windows; windows matching no row are dropped."""
    bounds = []
    for start, end in windows:
        left = int(np.searchsorted(timestamps, np.datetime64(start), side="left"))
        right = int(np.searchsorted(timestamps, np.datetime64(end), side="right")) - 1
        if left <= right:
            bounds.append((left, right))
    return bounds


def prepare_file(
    name: str,
    timestamps: Sequence | np.ndarray,
    windows: Sequence[tuple[pd.Timestamp, pd.Timestamp]],
    probation_percent: float = PROBATION_PERCENT,
) -> FileRows:
    """Work out, for every row of one file, which window it is in and what a hit is worth.

    ``timestamps`` must be sorted ascending (NAB files are). Rows are walked once in order,
    so the "preceding window" of a false positive is the last window ending before it.
    """
    ts = pd.to_datetime(np.asarray(timestamps)).to_numpy(dtype="datetime64[ns]")
    n = ts.size
    bounds = _window_bounds(ts, windows)
    window = np.full(n, OUTSIDE, dtype=np.int64)
    reward = np.full(n, -1.0)  # no preceding window: full false-positive cost
    label = np.zeros(n, dtype=np.int8)
    idx = np.arange(n)

    for w, (left, right) in enumerate(bounds):
        width = right - left + 1
        rows = idx[left : right + 1]
        window[left : right + 1] = w
        label[left : right + 1] = 1
        reward[left : right + 1] = scaled_sigmoid(-(right - rows + 1) / width) / MAX_TP
        # False positives between this window and the next one are measured from its end.
        nxt = bounds[w + 1][0] if w + 1 < len(bounds) else n
        after = idx[right + 1 : nxt]
        if after.size:
            if width > 1:
                reward[right + 1 : nxt] = scaled_sigmoid((after - right) / (width - 1))
            else:
                # A one-row window gives NAB a zero denominator; treat the alarm as far away.
                reward[right + 1 : nxt] = -1.0

    window[: probation_length(n, probation_percent)] = PROBATION
    return FileRows(name=name, window=window, reward=reward, n_windows=len(bounds), label=label)


@dataclass(frozen=True)
class SweepResult:
    """Raw score of the corpus for each candidate threshold (descending thresholds)."""

    thresholds: np.ndarray
    scores: np.ndarray

    def best(self) -> tuple[float, float]:
        """(threshold, raw score) maximising the score; ties go to the highest threshold."""
        k = int(np.argmax(self.scores))  # argmax returns the first (= highest) on ties
        return float(self.thresholds[k]), float(self.scores[k])


def _stack(
    files: Sequence[FileRows], scores: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate the scorable rows of all files with corpus-unique window ids."""
    all_scores, all_window, all_reward = [], [], []
    offset = 0
    for f, s in zip(files, scores, strict=True):
        s = np.asarray(s, dtype=float)
        if s.size != f.n_rows:
            raise ValueError(f"{f.name}: {s.size} scores for {f.n_rows} rows")
        keep = f.window != PROBATION
        w = f.window[keep]
        all_window.append(np.where(w >= 0, w + offset, OUTSIDE))
        all_scores.append(np.nan_to_num(s[keep], nan=0.0))
        all_reward.append(f.reward[keep])
        offset += f.n_windows
    return np.concatenate(all_scores), np.concatenate(all_window), np.concatenate(all_reward)


def sweep(files: Sequence[FileRows], scores: Sequence[np.ndarray], profile: Profile) -> SweepResult:
    """Raw corpus score at every distinct threshold, highest threshold first.

    Lowering the threshold past a row's score turns that row into a detection: outside a
    window it adds its (negative) weighted reward; inside a window it replaces the window's
    current value (``-A_FN`` while undetected) if it is better. Because the reward decreases
    along a window, "the best detected row" is the earliest one, as NAB requires.
    """
    s, win, rew = _stack(files, scores)
    scorable_windows = np.unique(win[win >= 0])
    null = -profile.a_fn * scorable_windows.size
    if s.size == 0:
        return SweepResult(np.array([NO_DETECTION_THRESHOLD]), np.array([null]))

    order = np.argsort(-s, kind="stable")
    s, win, rew = s[order], win[order], rew[order]
    delta = np.where(win == OUTSIDE, profile.a_fp * rew, 0.0)

    inside = win >= 0
    if inside.any():
        tp_val = pd.Series(profile.a_tp * rew[inside])
        running = tp_val.groupby(win[inside]).cummax().to_numpy()
        prev = pd.Series(running).groupby(win[inside]).shift(1).fillna(-profile.a_fn).to_numpy()
        delta[inside] = running - prev

    total = null + np.cumsum(delta)
    # The score at threshold t counts every row with score >= t: the end of each tie run.
    last_of_run = np.r_[s[1:] != s[:-1], True]
    thresholds = np.r_[NO_DETECTION_THRESHOLD, s[last_of_run]]
    totals = np.r_[null, total[last_of_run]]
    return SweepResult(thresholds, totals)


def score_at_threshold(
    file: FileRows, scores: np.ndarray, threshold: float, profile: Profile
) -> float:
    """Raw score of one file when every row scoring ``>= threshold`` is a detection."""
    res = sweep([file], [scores], profile)
    # thresholds are descending; take the lowest candidate still >= threshold.
    ok = np.nonzero(res.thresholds >= threshold)[0]
    return float(res.scores[ok[-1]])


def normalised(raw: float, null: float, perfect: float) -> float:
    """``100 * (raw - null) / (perfect - null)``: 0 for the null, 100 for a perfect detector."""
    if perfect == null:
        return 0.0
    return 100.0 * (raw - null) / (perfect - null)


@dataclass(frozen=True)
class CorpusScore:
    """One profile's result: chosen threshold, raw/null/perfect scores and the normalisation."""

    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    per_file: dict[str, float]

    @property
    def score(self) -> float:
        return normalised(self.raw, self.null, self.perfect)


def score_corpus(
    files: Sequence[FileRows],
    scores: Sequence[np.ndarray],
    profiles: Mapping[str, Profile] | Iterable[Profile] = PROFILES,
) -> dict[str, CorpusScore]:
    """Sweep one corpus-wide threshold per profile and normalise, as NAB's scoreboard does."""
    profs = list(profiles.values()) if isinstance(profiles, Mapping) else list(profiles)
    out = {}
    for p in profs:
        res = sweep(files, scores, p)
        threshold, raw = res.best()
        null = float(res.scores[0])
        perfect = p.a_tp * sum(f.n_windows for f in files)
        per_file = {
            f.name: score_at_threshold(f, s, threshold, p)
            for f, s in zip(files, scores, strict=True)
        }
        out[p.name] = CorpusScore(p.name, threshold, raw, null, perfect, per_file)
    return out
