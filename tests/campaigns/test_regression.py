"""The regression rule of the campaign report, on known numbers."""

from __future__ import annotations

from campaigns.report import flag_regressions


def test_a_drop_whose_interval_lies_wholly_below_the_previous_one_is_a_regression():
    flags = flag_regressions([(90.0, 85.0, 95.0), (70.0, 65.0, 80.0)])
    assert [f["regression"] for f in flags] == [False, True]
    assert flags[1]["drop"] == 20.0
    assert "below the previous" in flags[1]["reason"]


def test_a_drop_within_overlapping_intervals_is_noise_not_a_regression():
    flags = flag_regressions([(90.0, 80.0, 97.0), (84.0, 75.0, 88.0)])
    assert [f["regression"] for f in flags] == [False, False]
    assert flags[1]["drop"] == 6.0


def test_each_point_is_compared_with_the_one_just_before_it():
    points = [(90, 88, 92), (60, 55, 65), (62, 58, 66), (95, 93, 97), (50, 45, 55)]
    flags = flag_regressions(points)
    assert [f["regression"] for f in flags] == [False, True, False, False, True]
    assert flags[0]["drop"] is None


def test_a_rise_is_never_a_regression():
    flags = flag_regressions([(40.0, 35.0, 45.0), (90.0, 85.0, 95.0)])
    assert flags[1]["regression"] is False
    assert flags[1]["drop"] == -50.0
