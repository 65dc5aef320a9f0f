"""Charts drawn on the server as inline SVG: no script, no external asset, so the page's CSP stays strict.

Each chart carries a ``<title>`` and ``<desc>`` (read by screen readers through ``aria-labelledby``)
and comes with its data as a table for anyone who cannot see it. Colours are from the Okabe-Ito
palette, which stays distinguishable under the common colour-vision deficiencies; series also differ
by position or marker, never by colour alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

# Okabe & Ito, "Color Universal Design" (2008)
BLUE, ORANGE, GREEN, VERMILLION, SKY, PURPLE, GREY = "#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#8c8c8c"
VERDICT_COLOURS = {"go": GREEN, "escalate": ORANGE, "no-go": VERMILLION, "none": GREY}

W, H = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 44


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]
    colour: str


def _svg(chart_id: str, title: str, desc: str, body: str, legend: Sequence[Series] = ()) -> str:
    items = []
    x = LEFT
    for s in legend:
        items.append(f'<rect x="{x}" y="{H - 14}" width="10" height="10" fill="{s.colour}"/>'
                     f'<text x="{x + 14}" y="{H - 5}" font-size="11">{escape(s.name)}</text>')  # fmt: skip
        x += 24 + 7 * len(s.name)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="100%" role="img" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d" class="chart" font-family="system-ui,sans-serif">'
        f'<title id="{chart_id}-t">{escape(title)}</title><desc id="{chart_id}-d">{escape(desc)}</desc>'
        f"{body}{''.join(items)}</svg>"
    )


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = float(10 ** math.floor(math.log10(value)))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _axes(y_max: float, labels: Sequence[str], fmt: Callable[[float], str], every: int = 1) -> str:
    plot_h, plot_w = H - TOP - BOTTOM, W - LEFT - RIGHT
    parts = []
    for i in range(5):
        v = y_max * i / 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d0d7de" stroke-width="1"/>'
                     f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{escape(fmt(v))}</text>')  # fmt: skip
    n = max(len(labels), 1)
    for i, label in enumerate(labels):
        if i % every:
            continue
        x = LEFT + plot_w * (i + 0.5) / n
        parts.append(f'<text x="{x:.1f}" y="{H - BOTTOM + 14}" font-size="10" text-anchor="middle">{escape(label)}</text>')
    return "".join(parts)


def stacked_bars(chart_id: str, title: str, desc: str, labels: Sequence[str], series: Sequence[Series]) -> str:
    """Bars per label, each stacked from the series (counts)."""
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(labels))]
    y_max = _nice_max(max(totals, default=0))
    plot_h, plot_w = H - TOP - BOTTOM, W - LEFT - RIGHT
    n = max(len(labels), 1)
    bar_w = plot_w / n * 0.7
    bars = []
    for i in range(len(labels)):
        x = LEFT + plot_w * (i + 0.15) / n
        base = 0.0
        for s in series:
            v = s.values[i] or 0
            if v <= 0:
                continue
            h = plot_h * v / y_max
            y = TOP + plot_h - plot_h * (base + v) / y_max
            bars.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{s.colour}">'
                        f"<title>{escape(labels[i])}: {escape(s.name)} {v:g}</title></rect>")  # fmt: skip
            base += v
    every = max(1, math.ceil(len(labels) / 12))
    return _svg(chart_id, title, desc, _axes(y_max, labels, lambda v: f"{v:g}", every) + "".join(bars), series)


def lines(chart_id: str, title: str, desc: str, labels: Sequence[str], series: Sequence[Series],
          fmt: Callable[[float], str], y_max: float | None = None) -> str:  # fmt: skip
    """One line per series over the labels; a missing value breaks the line."""
    present = [v for s in series for v in s.values if v is not None]
    top = y_max if y_max is not None else _nice_max(max(present, default=0))
    plot_h, plot_w = H - TOP - BOTTOM, W - LEFT - RIGHT
    n = max(len(labels), 1)
    markers = ("circle", "square", "diamond")
    parts = []
    for k, s in enumerate(series):
        runs: list[list[tuple[float, float]]] = [[]]
        for i, v in enumerate(s.values):
            if v is None:
                runs.append([])
                continue
            x = LEFT + plot_w * (i + 0.5) / n
            y = TOP + plot_h - plot_h * min(v, top) / top
            runs[-1].append((x, y))
            shape = markers[k % len(markers)]
            tip = f"<title>{escape(labels[i])}: {escape(s.name)} {escape(fmt(v))}</title>"
            if shape == "circle":
                parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{s.colour}">{tip}</circle>')
            elif shape == "square":
                parts.append(f'<rect x="{x - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7" fill="{s.colour}">{tip}</rect>')
            else:
                parts.append(f'<path d="M{x:.1f} {y - 4.5:.1f}l4.5 4.5-4.5 4.5-4.5-4.5z" fill="{s.colour}">{tip}</path>')
        for run in runs:
            if len(run) > 1:
                points = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                parts.insert(0, f'<polyline points="{points}" fill="none" stroke="{s.colour}" stroke-width="2"/>')
    every = max(1, math.ceil(len(labels) / 12))
    return _svg(chart_id, title, desc, _axes(top, labels, fmt, every) + "".join(parts), series)


def calibration(chart_id: str, title: str, desc: str, points: Sequence[tuple[float, float, int]]) -> str:
    """Observed against predicted failure rate (both 0..1), a dot per bin sized by its deployments."""
    size = H - TOP - BOTTOM
    x0, y0 = LEFT, TOP + size
    parts = [f'<rect x="{x0}" y="{TOP}" width="{size}" height="{size}" fill="none" stroke="#d0d7de"/>',
             (f'<line x1="{x0}" y1="{y0}" x2="{x0 + size}" y2="{TOP}" stroke="{GREY}" stroke-dasharray="4 3">'
             "<title>perfect calibration</title></line>")]  # fmt: skip
    for i in range(0, 11, 2):
        v = i / 10
        parts.append(f'<text x="{x0 + size * v:.1f}" y="{y0 + 14}" font-size="10" text-anchor="middle">{v * 100:.0f}%</text>'
                     f'<text x="{x0 - 6}" y="{y0 - size * v + 4:.1f}" font-size="10" text-anchor="end">{v * 100:.0f}%</text>')  # fmt: skip
    parts.append(f'<text x="{x0 + size / 2}" y="{H - 4}" font-size="11" text-anchor="middle">predicted risk</text>'
                 f'<text x="{x0 + size + 12}" y="{TOP + 12}" font-size="11">observed failure rate (y) per bin;</text>'
                 f'<text x="{x0 + size + 12}" y="{TOP + 28}" font-size="11">dot area: deployments in the bin</text>')  # fmt: skip
    biggest = max((n for _, _, n in points), default=1) or 1
    for predicted, observed, n in points:
        r = 3 + 9 * math.sqrt(n / biggest)
        parts.append(f'<circle cx="{x0 + size * predicted:.1f}" cy="{y0 - size * observed:.1f}" r="{r:.1f}" '
                     f'fill="{BLUE}" fill-opacity="0.7" stroke="#1f2328" stroke-width="0.5"><title>predicted '
                     f"{predicted * 100:.0f}%, observed {observed * 100:.0f}% of {n}</title></circle>")  # fmt: skip
    return _svg(chart_id, title, desc, "".join(parts))


def grouped_bars(chart_id: str, title: str, desc: str, labels: Sequence[str], series: Sequence[Series]) -> str:
    """Bars side by side per label, one per series (counts)."""
    y_max = _nice_max(max((v or 0 for s in series for v in s.values), default=0))
    plot_h, plot_w = H - TOP - BOTTOM, W - LEFT - RIGHT
    n = max(len(labels), 1)
    width = plot_w / n * 0.8 / max(len(series), 1)
    bars = []
    for i in range(len(labels)):
        for k, s in enumerate(series):
            v = s.values[i] or 0
            h = plot_h * v / y_max
            x = LEFT + plot_w * (i + 0.1) / n + k * width
            bars.append(f'<rect x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{width:.1f}" height="{h:.1f}" '
                        f'fill="{s.colour}"><title>{escape(labels[i])}: {escape(s.name)} {v:g}</title></rect>')  # fmt: skip
    return _svg(chart_id, title, desc, _axes(y_max, labels, lambda v: f"{v:g}") + "".join(bars), series)


def data_table(caption: str, headings: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """The chart's numbers as a table, folded away under the chart."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headings)
    body = "".join("<tr>" + "".join(f"<td>{escape('' if c is None else str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return (f"<details><summary>{escape(caption)} as a table</summary><table><caption>{escape(caption)}</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></details>")  # fmt: skip
