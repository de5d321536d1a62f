"""Known-answer tests for the NAB scorer: every rule is checked on a hand-made corpus."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from benchmarks.nab_scoring import (
    PROFILES,
    load_windows,
    prepare_file,
    probation_length,
    scaled_sigmoid,
    score_corpus,
    sweep,
)

STD = PROFILES["standard"]
N = 1000  # rows per file; probation = 150 rows


def _file(name: str, windows: list[tuple[int, int]], n: int = N):
    """A file of ``n`` 5-minute rows with windows given as inclusive row ranges."""
    ts = pd.date_range("2020-01-01", periods=n, freq="5min")
    spans = [(ts[a], ts[b]) for a, b in windows]
    return prepare_file(name, ts, spans)


def _scores(n: int, hits: list[int], level: float = 1.0) -> np.ndarray:
    s = np.zeros(n)
    s[hits] = level
    return s


def _corpus():
    return [_file("a.csv", [(400, 499)]), _file("b.csv", [(300, 349), (700, 749)])]


def test_probation_is_15_percent_capped_at_750():
    assert probation_length(1000) == 150
    assert probation_length(4032) == 604
    assert probation_length(15902) == 750


def test_sigmoid_known_values():
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.0) == -1.0


def test_null_detector_scores_zero_and_perfect_scores_hundred():
    files = _corpus()
    null = [np.zeros(N), np.zeros(N)]
    perfect = [_scores(N, [400]), _scores(N, [300, 700])]
    for prof in PROFILES.values():
        assert score_corpus(files, null, [prof])[prof.name].score == pytest.approx(0.0)
        res = score_corpus(files, perfect, [prof])[prof.name]
        assert res.score == pytest.approx(100.0)
        assert res.null == pytest.approx(-prof.a_fn * 3)
        assert res.perfect == pytest.approx(prof.a_tp * 3)


def test_late_detection_earns_less_than_early_and_only_first_counts():
    f = [_file("a.csv", [(400, 499)])]
    early = sweep(f, [_scores(N, [410])], STD).best()[1]
    late = sweep(f, [_scores(N, [490])], STD).best()[1]
    assert 0 < late < early < 1.0
    # Position -(499 - 410 + 1) / 100 = -0.9, normalised by S(-1).
    assert early == pytest.approx(float(scaled_sigmoid(-0.9) / scaled_sigmoid(-1.0)))
    # A second, later detection in the same window changes nothing.
    both = sweep(f, [_scores(N, [410, 490])], STD).best()[1]
    assert both == pytest.approx(early)


def test_false_positive_right_after_window_is_penalised_less():
    f = [_file("a.csv", [(400, 499)])]
    base = 1.0  # detection at the window start
    near = sweep(f, [_scores(N, [400, 510])], STD).best()[1] - base
    far = sweep(f, [_scores(N, [400, 900])], STD).best()[1] - base
    # y = (510 - 499) / (100 - 1) after the window.
    assert near == pytest.approx(STD.a_fp * float(scaled_sigmoid(11 / 99)))
    assert far == pytest.approx(-STD.a_fp)  # y >= 3: the full cost
    assert far < near < 0


def test_false_positive_before_any_window_costs_full_weight():
    f = [_file("a.csv", [(400, 499)])]
    got = sweep(f, [_scores(N, [200, 400])], STD).best()
    # The sweep may prefer a threshold that excludes nothing; both rows share the score.
    assert got[1] == pytest.approx(1.0 - STD.a_fp)


def test_detections_in_probation_are_ignored():
    f = [_file("a.csv", [(400, 499)])]
    with_probation_alarms = _scores(N, [10, 50, 149, 400])
    assert sweep(f, [with_probation_alarms], STD).best()[1] == pytest.approx(1.0)


def test_threshold_sweep_picks_the_best_threshold():
    f = [_file("a.csv", [(400, 499)])]
    s = np.zeros(N)
    s[400] = 0.7  # the hit
    s[[200, 250, 800, 850, 900]] = 0.9  # five far false positives, higher score
    res = sweep(f, [s], STD)
    # Candidates: 1.1 (null, -1), 0.9 (five FPs, -1.55), 0.7 (hit too: 1 - 0.55 = 0.45).
    assert res.thresholds.tolist() == [1.1, 0.9, 0.7, 0.0]
    threshold, best = res.best()
    assert threshold == 0.7
    assert best == pytest.approx(1.0 - 5 * STD.a_fp)
    # With a much costlier false positive the null threshold wins.
    prof = type(STD)("costly", 1.0, 1.0, 1.0)
    assert sweep(f, [s], prof).best()[0] == 1.1


def test_sweep_is_corpus_wide():
    files = _corpus()
    scores = [_scores(N, [400], 0.6), _scores(N, [300, 700], 0.8)]
    res = score_corpus(files, scores, [STD])["standard"]
    assert res.threshold == 0.6  # one threshold for all files, low enough for both
    assert res.score == pytest.approx(100.0)
    assert sum(res.per_file.values()) == pytest.approx(res.raw)


def test_reward_low_fn_profile_doubles_miss_cost():
    files = _corpus()
    scores = [np.zeros(N), _scores(N, [300, 700])]
    res = score_corpus(files, scores, PROFILES)
    low_fn = res["reward_low_FN_rate"]
    assert low_fn.raw == pytest.approx(2.0 - 2.0)
    assert low_fn.score == pytest.approx(100 * (0 + 6) / (3 + 6))
    assert res["standard"].score == pytest.approx(100 * (1 + 3) / (3 + 3))


def test_load_windows_roundtrip(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(
        json.dumps({"x/a.csv": [["2020-01-01 00:10:00.000000", "2020-01-01 00:20:00.000000"]]})
    )
    w = load_windows(path)
    f = prepare_file("x/a.csv", pd.date_range("2020-01-01", periods=10, freq="5min"), w["x/a.csv"])
    assert f.window.tolist()[:6] == [-2, -1, 0, 0, 0, -1]  # probation = 1 row
    assert f.label.tolist()[:6] == [0, 0, 1, 1, 1, 0]
    assert math.isclose(f.reward[2], 1.0)
