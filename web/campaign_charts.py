"""The campaign report's chart: a target's resilience scores over time, as inline SVG.

Built on the primitives of ``analysis.charts`` (its stylesheet, tick placement, number
formatting and escaping) rather than a JavaScript library, for the same reasons as the
run report's charts: it renders in a millisecond on the server, works without scripts and
prints. Each scored run is a dot with its 95 % interval as a vertical bar; the runs of
one experiment are joined by a line (scores are compared within an experiment only, see
``campaigns.report``), and a flagged regression gets a red ring and a "regression" label
so it reads in black-and-white print too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from analysis.charts import _SVG_CSS, _e, _fmt, _nice_ticks, to_epoch

__all__ = ["score_trend_chart"]

# One colour per experiment, in the order experiments first appear.
_SERIES = ("#1f4e9c", "#c76b00", "#1d7a3a", "#7b1fa2", "#00838f", "#6d4c41")
_TREND_CSS = (
    ".c-bar{stroke-width:1.5}.c-regression{fill:none;stroke:#b3261e;stroke-width:2}"
    ".c-reglabel{font-size:10px;fill:#b3261e;font-weight:600}"
)


def _time_label(epoch: float, span: float, step: float) -> str:
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    if step >= 86400:
        return moment.strftime("%Y-%m-%d")
    return moment.strftime("%H:%M" if span < 86400 else "%m-%d %H:%M")


_TIME_STEPS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400)


def _time_ticks(t0: float, t1: float, count: int = 6) -> list[float]:
    """Tick instants on round UTC times (whole minutes, hours, days), about ``count``."""
    span = t1 - t0
    step = next((s for s in _TIME_STEPS if span / s <= count), None)
    if step is None:
        step = _TIME_STEPS[-1] * math.ceil(span / (_TIME_STEPS[-1] * count))
    first = math.ceil(t0 / step) * step
    return [float(t) for t in range(int(first), int(t1) + 1, int(step))]


def score_trend_chart(
    target: str,
    points: Sequence[dict[str, Any]],
    *,
    width: int = 720,
    height: int = 280,
) -> str:
    """Scores of one target over time (``campaigns.report`` points) as an SVG chart.

    Each point needs ``finished_at``, ``score``, ``low``, ``high``, ``experiment`` and
    ``regression``; points without a time or score are left out. The y axis is the
    0-100 score scale, so charts of different targets compare at a glance.
    """
    left, right, top, bottom = 56, 16, 40, 62
    plot_w, plot_h = width - left - right, height - top - bottom
    title = f"resilience score of {target} (0-100, 95 % interval)"
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart score-trend" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{_e(title)}" data-target="{_e(target)}"><title>{_e(title)}</title>'
        f"<style>{_SVG_CSS}{_TREND_CSS}</style>"
        f'<text x="{left}" y="16" class="c-title">{_e(title)}</text>'
    )
    usable = [
        (t, p)
        for p in points
        if (t := to_epoch(p.get("finished_at"))) is not None and p.get("score") is not None
    ]
    if not usable:
        return (
            f'{head}<text x="{width / 2}" y="{height / 2}" text-anchor="middle" '
            f'class="c-muted">no scored runs yet</text></svg>'
        )
    usable.sort(key=lambda item: item[0])
    t0, t1 = usable[0][0], usable[-1][0]
    pad_t = (t1 - t0) * 0.05 or 60.0
    t0, t1 = t0 - pad_t, t1 + pad_t
    v0, v1 = 0.0, 100.0

    def x(t: float) -> float:
        return left + (t - t0) * plot_w / (t1 - t0)

    def y(v: float) -> float:
        return top + plot_h - (min(max(v, v0), v1) - v0) * plot_h / (v1 - v0)

    parts = [
        head,
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" class="c-axis"/>'
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'class="c-axis"/>',
    ]
    for v in _nice_ticks(v0, v1):
        parts.append(
            f'<line x1="{left - 4}" y1="{y(v):.1f}" x2="{left + plot_w}" y2="{y(v):.1f}" '
            f'class="c-grid"/><text x="{left - 6}" y="{y(v) + 3.5:.1f}" text-anchor="end" '
            f'class="c-tick">{_fmt(v)}</text>'
        )
    span = t1 - t0
    ticks = _time_ticks(t0, t1)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else span
    for t in ticks:
        parts.append(
            f'<text x="{x(t):.1f}" y="{top + plot_h + 13}" text-anchor="middle" '
            f'class="c-tick">{_time_label(t, span, step)}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{top + plot_h + 27}" text-anchor="middle" '
        'class="c-axislabel">run finished (UTC)</text>'
        f'<text x="13" y="{top + plot_h / 2}" text-anchor="middle" class="c-axislabel" '
        f'transform="rotate(-90 13 {top + plot_h / 2})">score</text>'
    )
    colours: dict[str, str] = {}
    for _, p in usable:
        colours.setdefault(str(p.get("experiment", "")), _SERIES[len(colours) % len(_SERIES)])
    for experiment, colour in colours.items():
        series = [(t, p) for t, p in usable if str(p.get("experiment", "")) == experiment]
        if len(series) > 1:
            path = " ".join(f"{x(t):.1f},{y(float(p['score'])):.1f}" for t, p in series)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.5">'
                f"<title>{_e(experiment)}</title></polyline>"
            )
    regressions = 0
    for t, p in usable:
        colour = colours[str(p.get("experiment", ""))]
        score = float(p["score"])
        low = p.get("low")
        high = p.get("high")
        tip = f"run {p.get('run')}: {p.get('experiment')} score {score:.1f}"
        if low is not None and high is not None:
            tip += f" [{float(low):.1f}, {float(high):.1f}]"
            parts.append(
                f'<line x1="{x(t):.1f}" y1="{y(float(low)):.1f}" x2="{x(t):.1f}" '
                f'y2="{y(float(high)):.1f}" stroke="{colour}" class="c-bar"/>'
                f'<line x1="{x(t) - 4:.1f}" y1="{y(float(low)):.1f}" x2="{x(t) + 4:.1f}" '
                f'y2="{y(float(low)):.1f}" stroke="{colour}"/>'
                f'<line x1="{x(t) - 4:.1f}" y1="{y(float(high)):.1f}" x2="{x(t) + 4:.1f}" '
                f'y2="{y(float(high)):.1f}" stroke="{colour}"/>'
            )
        parts.append(
            f'<circle cx="{x(t):.1f}" cy="{y(score):.1f}" r="3.5" fill="{colour}" '
            f'data-run="{_e(p.get("run"))}"><title>{_e(tip)}</title></circle>'
        )
        if p.get("regression"):
            regressions += 1
            parts.append(
                f'<circle cx="{x(t):.1f}" cy="{y(score):.1f}" r="8" class="c-regression" '
                f'data-regression="{_e(p.get("run"))}"><title>{_e(p.get("reason", ""))}'
                f"</title></circle>"
                + (
                    f'<text x="{x(t) + 10:.1f}" y="{y(score) + 4:.1f}" class="c-reglabel">'
                    if x(t) < left + plot_w - 70
                    else f'<text x="{x(t) - 10:.1f}" y="{y(score) + 4:.1f}" '
                    'text-anchor="end" class="c-reglabel">'
                )
                + "regression</text>"
            )
    items, lx = [], 0.0
    for experiment, colour in colours.items():
        items.append(
            f'<g transform="translate({lx:.0f},0)"><line x1="0" y1="0" x2="16" y2="0" '
            f'stroke="{colour}" stroke-width="1.5"/><circle cx="8" cy="0" r="3" '
            f'fill="{colour}"/><text x="20" y="4" class="c-legend">{_e(experiment[:28])}</text></g>'
        )
        lx += 40 + 6 * min(len(experiment), 28)
    items.append(
        f'<g transform="translate({lx:.0f},0)"><line x1="8" y1="-6" x2="8" y2="6" '
        'stroke="#555" stroke-width="1.5"/><text x="20" y="4" class="c-legend">'
        "95 % interval</text></g>"
    )
    lx += 100
    if regressions:
        items.append(
            f'<g transform="translate({lx:.0f},0)"><circle cx="8" cy="0" r="6" '
            f'class="c-regression"/><text x="20" y="4" class="c-legend">regression '
            f"({regressions})</text></g>"
        )
    parts.append(
        f'<g class="c-legendrow" transform="translate({left},{height - 10})">{"".join(items)}</g>'
    )
    parts.append("</svg>")
    return "".join(parts)
