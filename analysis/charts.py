"""Server-rendered SVG charts of a run's metrics, written by hand.

Why our own SVG writer rather than matplotlib or a JavaScript chart library: a report
page with 50 metrics must render in well under 300 ms of server time, and matplotlib
needs tens of milliseconds per figure; a JS library would make the exported report
depend on script execution and on an asset that must travel with the file. Strings of
SVG cost about a millisecond per chart, print crisply at any size, work in the
self-contained HTML export and in e-mail, and need nothing at build time.

Each chart carries its own title, axis units and a legend, and marks:

* the baseline / during / recovery phases as shaded bands, each labelled with its name
  so the phases stay readable in black-and-white print,
* the injection and revert instants as dashed vertical lines,
* anomalous points (the forecast detector's out-of-band segments) as hollow circles,
* thresholds (hypothesis rules and stop conditions on the metric) as horizontal lines.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

import numpy as np

__all__ = ["PHASE_COLOURS", "Threshold", "metric_chart", "to_epoch"]

PHASE_COLOURS = {"baseline": "#e3ecfa", "during": "#fbe3e1", "recovery": "#e2f4e6"}

# Carried inside every chart so an SVG copied out of the page still draws correctly.
# Classes are prefixed ``c-`` so the host page's CSS cannot collide with them.
_SVG_CSS = (
    "text{font-family:system-ui,sans-serif}"
    ".c-axis{stroke:#555;stroke-width:1}.c-grid{stroke:#e6e8ec;stroke-width:1}"
    ".c-tick{font-size:10px;fill:#444}.c-title{font-size:13px;font-weight:600;fill:#1d2330}"
    ".c-axislabel{font-size:11px;fill:#333}.c-band{font-size:10px;fill:#555}"
    ".c-line{fill:none;stroke:#1f4e9c;stroke-width:1.5}.c-dot{fill:#1f4e9c}"
    ".c-inject{stroke:#b3261e;stroke-width:1.5;stroke-dasharray:5 3}"
    ".c-revert{stroke:#1d7a3a;stroke-width:1.5;stroke-dasharray:2 2}"
    ".c-anomaly{fill:none;stroke:#d35400;stroke-width:1.5}"
    ".c-threshold{stroke:#7b1fa2;stroke-width:1.2;stroke-dasharray:8 3 2 3}"
    ".c-thlabel{font-size:10px;fill:#7b1fa2}.c-legend{font-size:10px;fill:#333}"
    # A halo in the background colour keeps labels legible where a line crosses them.
    ".c-band,.c-thlabel{paint-order:stroke;stroke-width:3px;stroke-linejoin:round}"
    ".c-thlabel{stroke:#fff;stroke-opacity:.85}"
    ".c-muted{fill:#6b7383}"
)


@dataclass(frozen=True)
class Threshold:
    """A horizontal line: a rule's effective threshold or a stop condition's limit."""

    value: float
    label: str


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def to_epoch(value: Any) -> float | None:
    """Epoch seconds from a number, an ISO-8601 string or a datetime; None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _arrays(
    timestamps: Sequence[Any], values: Sequence[Any], phases: Sequence[Any] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Timestamps and values as float arrays (NaN where missing or unreadable) and phases
    as a string array, all of the shorter length. Plain numbers take the fast path; ISO
    strings and datetimes are converted one by one."""
    n = min(len(timestamps or ()), len(values or ()))
    try:
        ts = np.asarray(list(timestamps)[:n], dtype=float)
    except (TypeError, ValueError):
        ts = np.array([_nan(to_epoch(t)) for t in list(timestamps)[:n]], dtype=float)
    try:
        vs = np.asarray(list(values)[:n], dtype=float)
    except (TypeError, ValueError):
        vs = np.array([_nan(_finite(v)) for v in list(values)[:n]], dtype=float)
    labels = [str(p) for p in list(phases or ())[:n]]
    labels += [""] * (n - len(labels))
    return ts, vs, np.asarray(labels, dtype=object)


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k steps) covering [lo, hi]."""
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    ticks, t = [], first
    while t <= hi + step * 1e-9:
        ticks.append(0.0 if abs(t) < step * 1e-9 else t)
        t += step
    return ticks


def _fmt(v: float) -> str:
    return f"{v:.4g}"


#: Height of a legend row; a legend that wraps makes the chart this much taller per row.
_LEGEND_ROW = 14

#: Text of the 10 px labels is estimated at this many pixels per character (a little
#: wider than system-ui's average, so an estimate errs towards keeping labels apart).
_CHAR_W = 6.2


def _text_box(text: str, x: float, y: float, anchor: str) -> tuple[float, float, float, float]:
    """The (x0, y0, x1, y1) box a 10 px label at baseline ``y`` covers, estimated."""
    w = _CHAR_W * len(text)
    x0 = x - w if anchor == "end" else x - w / 2 if anchor == "middle" else x
    return (x0, y - 9.0, x0 + w, y + 2.0)


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _place_label(
    text: str,
    wanted: Sequence[float],
    taken: list[tuple[float, float, float, float]],
    left: float,
    top: float,
    plot_w: float,
    plot_h: float,
) -> tuple[float, float, str]:
    """Where a threshold label goes: the first baseline of ``wanted`` (then lanes under
    the phase labels) at the plot's right or left end whose box stays inside the plot and
    clear of every label in ``taken``. Why: a threshold near the top of the range used to
    print its label over the "recovery" phase label. The chosen box is added to ``taken``
    so several thresholds do not stack on each other either."""
    lanes = [*wanted, *(top + 24 + 12 * k for k in range(int(plot_h // 12)))]
    first = None
    for ty in lanes:
        if ty - 9 < top or ty + 2 > top + plot_h:
            continue
        for tx, anchor in ((left + plot_w - 4, "end"), (left + 4, "start")):
            box = _text_box(text, tx, ty, anchor)
            first = first or (tx, ty, anchor, box)
            if not any(_overlaps(box, other) for other in taken):
                taken.append(box)
                return tx, ty, anchor
    tx, ty, anchor, box = first or (left + plot_w - 4, top + plot_h - 4, "end", None)
    if box is not None:
        taken.append(box)
    return tx, ty, anchor


def _legend(items: Iterable[str], x: float, y: float) -> str:
    return f'<g class="c-legendrow" transform="translate({x:.0f},{y:.0f})">{"".join(items)}</g>'


def metric_chart(
    name: str,
    unit: str,
    timestamps: Sequence[Any],
    values: Sequence[Any],
    phases: Sequence[Any] | None = None,
    *,
    injected_at: Any = None,
    reverted_at: Any = None,
    anomalies: Sequence[tuple[float, float]] = (),
    thresholds: Sequence[Threshold] = (),
    width: int = 720,
    height: int = 270,
) -> str:
    """One metric as an inline SVG line chart (see the module docstring for the marks).

    ``anomalies`` are closed time intervals (epoch seconds); every sample inside one is
    circled. The x axis is seconds since the first sample; missing values break the line.
    """
    left, right, top, bottom = 64, 16, 40, 58
    plot_w, plot_h = width - left - right, height - top - bottom
    label = f"{name} ({unit})" if unit else str(name)

    def svg_head(h: int) -> str:
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" '
            f'height="{h}" viewBox="0 0 {width} {h}" role="img" '
            f'aria-label="{_e(label)}" data-metric="{_e(name)}"><title>{_e(label)}</title>'
            f"<style>{_SVG_CSS}</style>"
            f'<text x="{left}" y="16" class="c-title">{_e(label)}</text>'
        )

    head = svg_head(height)
    ts, vs, ph = _arrays(timestamps, values, phases)
    ok = np.isfinite(ts) & np.isfinite(vs)
    if not ok.any():
        return (
            f'{head}<text x="{width / 2}" y="{height / 2}" text-anchor="middle" '
            f'class="c-muted">no data</text></svg>'
        )

    t0, t1 = float(ts[ok].min()), float(ts[ok].max())
    data_lo, data_hi = float(vs[ok].min()), float(vs[ok].max())
    v0, v1 = data_lo, data_hi
    data_span = v1 - v0
    shown = [th for th in thresholds if _finite(th.value) is not None]
    for th in shown:
        # Pull a threshold into view unless it is far off the data's scale.
        if data_span <= 0 or abs(th.value - (v0 + v1) / 2) <= 5 * max(data_span, abs(v1)):
            v0, v1 = min(v0, th.value), max(v1, th.value)
    if t1 == t0:
        t1 = t0 + 1.0
    pad = (v1 - v0) * 0.06 if v1 > v0 else max(abs(v0) * 0.1, 1.0)
    v0, v1 = v0 - pad, v1 + pad
    if data_lo >= 0 > v0:
        v0 = 0.0  # a non-negative metric keeps a zero floor rather than a negative axis
    xs = plot_w / (t1 - t0)
    ys = plot_h / (v1 - v0)

    def x(t: float) -> float:
        return left + (t - t0) * xs

    def y(v: float) -> float:
        return top + plot_h - (v - v0) * ys

    parts = [head]
    # Phase bands tile the time axis: each runs to the next phase's first sample.
    spans: dict[str, list[float]] = {}
    has_t = np.isfinite(ts)
    for phase in PHASE_COLOURS:
        mask = has_t & (ph == phase)
        if mask.any():
            spans[phase] = [float(ts[mask].min()), float(ts[mask].max())]
    ordered = sorted(spans.items(), key=lambda item: item[1][0])
    taken: list[tuple[float, float, float, float]] = []  # label boxes inside the plot
    for i, (phase, (lo, hi)) in enumerate(ordered):
        end = ordered[i + 1][1][0] if i + 1 < len(ordered) else hi
        xa, xb = x(lo), x(max(hi, end))
        taken.append(_text_box(phase, xa + 3, top + 11, "start"))
        parts.append(
            f'<rect class="c-phase c-phase-{_e(phase)}" x="{xa:.1f}" y="{top}" '
            f'width="{max(xb - xa, 1.0):.1f}" height="{plot_h}" fill="{PHASE_COLOURS[phase]}">'
            f"<title>{_e(phase)}</title></rect>"
            f'<text x="{xa + 3:.1f}" y="{top + 11}" class="c-band" '
            f'stroke="{PHASE_COLOURS[phase]}">{_e(phase)}</text>'
        )
    # Axes, grid, ticks, labels.
    parts.append(
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" class="c-axis"/>'
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'class="c-axis"/>'
    )
    for v in _nice_ticks(v0, v1):
        yv = y(v)
        parts.append(
            f'<line x1="{left - 4}" y1="{yv:.1f}" x2="{left + plot_w}" y2="{yv:.1f}" '
            f'class="c-grid"/><text x="{left - 6}" y="{yv + 3.5:.1f}" text-anchor="end" '
            f'class="c-tick">{_fmt(v)}</text>'
        )
    for s in _nice_ticks(0.0, t1 - t0, 7):
        parts.append(
            f'<text x="{x(t0 + s):.1f}" y="{top + plot_h + 13}" text-anchor="middle" '
            f'class="c-tick">{_fmt(s)}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{top + plot_h + 27}" text-anchor="middle" '
        'class="c-axislabel">time since first sample (s)</text>'
        f'<text x="13" y="{top + plot_h / 2}" text-anchor="middle" class="c-axislabel" '
        f'transform="rotate(-90 13 {top + plot_h / 2})">{_e(unit or "value")}</text>'
    )
    # Thresholds: the line spans the plot; its label goes where it hides no other label.
    for th in shown:
        if v0 <= th.value <= v1:
            yv = y(th.value)
            parts.append(
                f'<line x1="{left}" y1="{yv:.1f}" x2="{left + plot_w}" y2="{yv:.1f}" '
                f'class="c-threshold"><title>{_e(th.label)}</title></line>'
            )
            text, wanted = th.label, (yv - 3, yv + 12)
        else:
            where = "above" if th.value > v1 else "below"
            text = f"{th.label} ({where} the chart)"
            wanted = (top + 10,) if where == "above" else (top + plot_h - 4,)
        tx, ty, anchor = _place_label(text, wanted, taken, left, top, plot_w, plot_h)
        parts.append(
            f'<text x="{tx:.1f}" y="{ty:.1f}" text-anchor="{anchor}" '
            f'class="c-thlabel">{_e(text)}</text>'
        )
    # Injection and revert instants.
    for when, cls, text in ((injected_at, "inject", "inject"), (reverted_at, "revert", "revert")):
        t = to_epoch(when)
        if t is not None and t0 <= t <= t1:
            parts.append(
                f'<line x1="{x(t):.1f}" y1="{top - 4}" x2="{x(t):.1f}" y2="{top + plot_h}" '
                f'class="c-{cls}"/><text x="{x(t) + 3:.1f}" y="{top - 6}" '
                f'class="c-{cls}label c-band">{text}</text>'
            )
    # The series, broken at gaps: a point after a gap starts a new subpath. Coordinates
    # are written as integers in tenths of a pixel under scale(0.1): formatting integers
    # is several times cheaper than floats, which counts for 50 charts of 1,000 points.
    idx = np.flatnonzero(ok)
    px = left + (ts - t0) * xs
    py = top + plot_h - (vs - v0) * ys
    qx = np.rint(px[idx] * 10).astype(np.int64)
    qy = np.rint(py[idx] * 10).astype(np.int64)
    breaks = [0, *(np.flatnonzero(np.diff(idx) > 1) + 1).tolist(), len(idx)]
    subpaths = []
    for a, b in itertools.pairwise(breaks):
        pairs = np.empty(2 * (b - a), dtype=np.int64)
        pairs[0::2], pairs[1::2] = qx[a:b], qy[a:b]
        subpaths.append("M" + " ".join(map(str, pairs.tolist())))
    parts.append(
        f'<path d="{"".join(subpaths)}" class="c-line" transform="scale(0.1)" '
        'vector-effect="non-scaling-stroke"/>'
    )
    if len(idx) == 1:
        parts.append(f'<circle cx="{px[idx[0]]:.1f}" cy="{py[idx[0]]:.1f}" r="2.5" class="c-dot"/>')
    # Anomalous points.
    marked = 0
    if anomalies:
        inside = np.zeros(len(ts), dtype=bool)
        for a, b in anomalies:
            inside |= (ts >= float(a)) & (ts <= float(b))
        inside &= ok
        marked = int(inside.sum())
        parts.extend(
            f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3.5" class="c-anomaly"/>'
            for a, b in zip(px[inside].tolist(), py[inside].tolist(), strict=True)
        )
    # Legend: every mark drawn is named, in rows under the axis label; an entry that
    # would run past the right edge starts a new row and the chart grows to hold it.
    items, lx, ly = [], 0.0, 0

    def add(symbol: str, text: str, w: float) -> None:
        nonlocal lx, ly
        if lx > 0 and lx + 20 + _CHAR_W * len(text) > width - left - 4:
            lx, ly = 0.0, ly + _LEGEND_ROW
        items.append(
            f'<g transform="translate({lx:.0f},{ly})">{symbol}'
            f'<text x="20" y="4" class="c-legend">{_e(text)}</text></g>'
        )
        lx += w

    add(
        '<line x1="0" y1="0" x2="16" y2="0" class="c-line"/>',
        str(name)[:28],
        40 + 6 * min(len(str(name)), 28),
    )
    for phase, _ in ordered:
        add(
            f'<rect x="2" y="-5" width="12" height="10" fill="{PHASE_COLOURS[phase]}" '
            'stroke="#999" stroke-width="0.5"/>',
            phase,
            30 + 6 * len(phase),
        )
    if to_epoch(injected_at) is not None:
        add('<line x1="8" y1="-6" x2="8" y2="6" class="c-inject"/>', "inject", 62)
    if to_epoch(reverted_at) is not None:
        add('<line x1="8" y1="-6" x2="8" y2="6" class="c-revert"/>', "revert", 62)
    if marked:
        text = f"anomalous ({marked})"
        add('<circle cx="8" cy="0" r="3.5" class="c-anomaly"/>', text, 34 + 6 * len(text))
    if shown:
        add('<line x1="0" y1="0" x2="16" y2="0" class="c-threshold"/>', "threshold", 75)
    parts.append(_legend(items, left, height - 10))
    parts.append("</svg>")
    if ly:
        parts[0] = svg_head(height + ly)
    return "".join(parts)
