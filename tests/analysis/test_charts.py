"""The report's SVG charts: well-formed, titled, with legend, phases, instants,
anomalous points and thresholds, and robust to gaps and odd input."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from itertools import pairwise

from analysis.charts import Threshold, metric_chart

SVG = "{http://www.w3.org/2000/svg}"
T0 = 1_700_000_000.0


def series(n: int = 30):
    ts = [T0 + i for i in range(n)]
    vs = [10.0 + (50.0 if 10 <= i < 20 else 0.0) for i in range(n)]
    phases = ["baseline"] * 10 + ["during"] * 10 + ["recovery"] * (n - 20)
    return ts, vs, phases


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # raises on malformed XML


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def test_a_chart_is_valid_svg_with_title_units_phases_instants_and_legend():
    ts, vs, phases = series()
    root = parse(
        metric_chart("latency", "ms", ts, vs, phases, injected_at=T0 + 10, reverted_at=T0 + 20)
    )
    assert root.find(f"{SVG}title").text == "latency (ms)"
    words = texts(root)
    assert "latency (ms)" in words and "ms" in words  # title and y-axis unit
    assert "time since first sample (s)" in words
    bands = [r for r in root.iter(f"{SVG}rect") if "c-phase" in (r.get("class") or "")]
    assert [b.find(f"{SVG}title").text for b in bands] == ["baseline", "during", "recovery"]
    # the bands tile the axis: each starts where the previous one ends
    for a, b in pairwise(bands):
        assert abs(float(a.get("x")) + float(a.get("width")) - float(b.get("x"))) < 0.2
    classes = [el.get("class") for el in root.iter()]
    assert "c-inject" in classes and "c-revert" in classes
    for label in ("baseline", "during", "recovery", "inject", "revert", "latency"):
        assert label in words  # legend entries


def test_anomalous_points_inside_the_intervals_are_circled_and_counted():
    ts, vs, phases = series()
    root = parse(metric_chart("m", "ms", ts, vs, phases, anomalies=[(T0 + 10, T0 + 14)]))
    circles = [c for c in root.iter(f"{SVG}circle") if c.get("class") == "c-anomaly"]
    assert len(circles) == 5 + 1  # five points plus the legend symbol
    assert "anomalous (5)" in texts(root)


def test_thresholds_are_drawn_inside_the_range_and_named_when_far_outside():
    ts, vs, phases = series()
    svg = metric_chart(
        "m",
        "ms",
        ts,
        vs,
        phases,
        thresholds=[Threshold(40.0, "rule: p95 <= 40"), Threshold(1e9, "stop if > 1e9")],
    )
    root = parse(svg)
    lines = [ln for ln in root.iter(f"{SVG}line") if ln.get("class") == "c-threshold"]
    drawn = [ln for ln in lines if ln.find(f"{SVG}title") is not None]
    assert [ln.find(f"{SVG}title").text for ln in drawn] == ["rule: p95 <= 40"]
    words = texts(root)
    assert "stop if > 1e9 (above the chart)" in words and "threshold" in words


def test_gaps_break_the_line_and_empty_series_say_no_data():
    ts, vs, phases = series(6)
    vs[3] = None
    vs[4] = float("nan")
    root = parse(metric_chart("m", "", ts, vs, phases))
    path = next(p for p in root.iter(f"{SVG}path") if p.get("class") == "c-line")
    assert path.get("d").count("M") == 2
    assert "no data" in texts(parse(metric_chart("m", "", [], [])))
    assert "no data" in texts(parse(metric_chart("m", "", [T0], [None])))


def test_user_text_is_escaped():
    evil = '<script>alert("x")</script>'
    svg = metric_chart(evil, "&", [T0, T0 + 1], [1, 2])
    root = parse(svg)
    assert "<script>" not in svg and root.find(f"{SVG}title").text == f"{evil} (&)"


def test_a_constant_series_and_iso_timestamps_render():
    svg = metric_chart(
        "flat",
        "req/s",
        ["2023-11-14T22:13:20+00:00", "2023-11-14T22:13:21Z", "2023-11-14T22:13:22"],
        [5, 5, 5],
        ["baseline", "during", "recovery"],
        injected_at="2023-11-14T22:13:21+00:00",
    )
    root = parse(svg)
    assert any(el.get("class") == "c-inject" for el in root.iter())


def boxes(root: ET.Element, cls: str) -> list[tuple[str, tuple[float, float, float, float]]]:
    """Estimated boxes of the 10 px labels of class ``cls``, from the SVG's own text
    coordinates (6 px a character, 9 px above the baseline and 2 below)."""
    out = []
    for t in root.iter(f"{SVG}text"):
        if cls not in (t.get("class") or "").split():
            continue
        x, y, w = float(t.get("x")), float(t.get("y")), 6.0 * len(t.text or "")
        anchor = t.get("text-anchor") or "start"
        x0 = x - w if anchor == "end" else x - w / 2 if anchor == "middle" else x
        out.append((t.text or "", (x0, y - 9, x0 + w, y + 2)))
    return out


def overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_threshold_labels_do_not_cover_the_phase_labels_or_each_other():
    # The demo's error rate: flat at zero under a 0.01 rule, so the threshold sits at the
    # top of the range, right where the phase labels are printed.
    ts, _, phases = series()
    labels = [
        Threshold(0.01, "rule: API errors stay under 1 % 0.01"),
        Threshold(0.0099, "stop if > 0.0099"),
        Threshold(5.0, "rule: far above 5"),
    ]
    errors = [0.002 if i == 15 else 0.0 for i in range(len(ts))]
    root = parse(
        metric_chart(
            "api_error_rate",
            "ratio",
            ts,
            errors,
            phases,
            injected_at=T0 + 10,
            reverted_at=T0 + 20,
            thresholds=labels,
        )
    )
    bands = boxes(root, "c-band")
    assert {"baseline", "during", "recovery", "inject", "revert"} <= {t for t, _ in bands}
    th = boxes(root, "c-thlabel")
    assert [t for t, _ in th] == [
        "rule: API errors stay under 1 % 0.01",
        "stop if > 0.0099",
        "rule: far above 5 (above the chart)",
    ]
    width, height = float(root.get("width")), float(root.get("height"))
    for text, box in th:
        assert box[0] >= 0 and box[2] <= width and box[1] >= 0 and box[3] <= height, text
        for other, obox in bands:
            assert not overlap(box, obox), f"{text!r} covers {other!r}"
    for (a, abox), (b, bbox) in itertools.combinations(th, 2):
        assert not overlap(abox, bbox), f"{a!r} covers {b!r}"


def test_a_threshold_label_stays_next_to_its_line_when_there_is_room():
    ts, vs, phases = series()
    root = parse(metric_chart("m", "ms", ts, vs, phases, thresholds=[Threshold(35.0, "p95")]))
    line = next(ln for ln in root.iter(f"{SVG}line") if ln.get("class") == "c-threshold")
    label = next(t for t in root.iter(f"{SVG}text") if t.get("class") == "c-thlabel")
    assert label.text == "p95"
    assert abs(float(label.get("y")) + 3 - float(line.get("y1"))) < 0.2  # 3 px above it


def test_legend_entries_do_not_run_into_each_other():
    ts, vs, phases = series()
    root = parse(
        metric_chart(
            "latency",
            "ms",
            ts,
            vs,
            phases,
            injected_at=T0 + 10,
            reverted_at=T0 + 20,
            anomalies=[(T0 + 10, T0 + 19)],
            thresholds=[Threshold(40.0, "rule")],
        )
    )
    items = legend(root)
    assert [t for t, *_ in items][-2:] == ["anomalous (10)", "threshold"]
    for (text, _, end, row), (following, start, _, next_row) in pairwise(items):
        assert end < start or next_row > row, f"{text!r} runs into {following!r}"


def legend(root: ET.Element) -> list[tuple[str, float, float, float]]:
    """(text, x where the entry starts, x where its text ends, row y) per legend entry,
    in the chart's coordinates."""
    row = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "c-legendrow")
    ox, oy = map(float, row.get("transform").removeprefix("translate(")[:-1].split(","))
    items = []
    for g in row.findall(f"{SVG}g"):
        x, y = map(float, g.get("transform").removeprefix("translate(")[:-1].split(","))
        text = g.find(f"{SVG}text")
        end = ox + x + float(text.get("x")) + 6.0 * len(text.text)
        items.append((text.text, ox + x, end, oy + y))
    return items


def test_a_long_legend_wraps_inside_the_chart_which_grows_to_hold_it():
    ts, vs, phases = series()
    root = parse(
        metric_chart(
            "a_rather_long_metric_name_p95",
            "ms",
            ts,
            vs,
            phases,
            injected_at=T0 + 10,
            reverted_at=T0 + 20,
            anomalies=[(T0 + 10, T0 + 19)],
            thresholds=[Threshold(40.0, "rule")],
        )
    )
    items = legend(root)
    width, height = float(root.get("width")), float(root.get("height"))
    assert height > 270 and root.get("viewBox") == f"0 0 {width:.0f} {height:.0f}"
    assert len({row for *_, row in items}) == 2
    for text, _, end, row in items:
        assert end <= width and row + 4 <= height, text
