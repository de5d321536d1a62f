"""Placing a spec error at the line of its field in the editor's YAML text."""

from __future__ import annotations

from web.spec_lines import annotate, line_of

TEXT = """\
name: demo
fault:
  type: network.latency
  params:
    latency_ms: -5
metrics:
  - name: a
    better: lower
  - name: b
    better: sideways
hypothesis: []
"""


def test_nested_fields_and_list_items_are_found_at_their_key():
    assert line_of(TEXT, "fault.params.latency_ms") == 5
    assert line_of(TEXT, "metrics.1.better") == 10
    assert line_of(TEXT, "metrics[1].better") == 10
    assert line_of(TEXT, "metrics.0") == 7
    assert line_of(TEXT, "name") == 1


def test_a_missing_field_points_at_its_nearest_parent():
    assert line_of(TEXT, "fault.params.proxy") == 4
    assert line_of(TEXT, "metrics.7.better") == 6
    assert line_of(TEXT, "duration") == 1  # top level: the document's first line


def test_syntax_errors_use_the_parsers_line_and_unplaceable_errors_are_kept_apart():
    assert line_of("a: [1,\n", "", "not valid YAML/JSON at line 2, column 1: x") == 2
    assert line_of("a: [1,\n", "fault", "") is None
    lines, unplaced = annotate(TEXT, [("metrics.1.better", "bad"), ("", "spec is odd")])
    assert unplaced == ["spec is odd"]
    assert lines[9].errors == ["metrics.1.better: bad"]
    shown = [line.number for line in lines if line.shown]
    assert shown == [8, 9, 10]  # the error line with two lines of context
    assert not lines[7].gap_before  # the first shown line has nothing before it to skip


def test_context_windows_of_distant_errors_are_separated_by_a_gap():
    lines, _ = annotate(TEXT, [("name", "x"), ("metrics.1.better", "y")])
    assert [line.number for line in lines if line.shown] == [1, 8, 9, 10]
    assert lines[7].gap_before and not lines[8].gap_before
