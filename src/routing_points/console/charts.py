"""Charts drawn on the server as inline SVG: no JavaScript library, nothing to vendor.

Each chart carries a text alternative (`role="img"`, `aria-label`), a `<title>` per mark
for pointer users, and the page shows the same figures in a table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

# A palette readable on white and distinct for the common colour-vision deficiencies.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


def gauge(used: int, budget: int, label: str) -> Markup:
    """A half-circle gauge of `used` out of `budget`."""
    share = 0.0 if budget <= 0 else min(1.0, used / budget)
    radius, cx, cy = 80, 100, 95
    angle = math.pi * (1 - share)
    x, y = cx + radius * math.cos(angle), cy - radius * math.sin(angle)
    colour = "#2ca02c" if share < 0.75 else "#ff7f0e" if share < 0.95 else "#d62728"
    arc = (
        f'<path d="M {cx - radius} {cy} A {radius} {radius} 0 0 1 {x:.1f} {y:.1f}" '
        f'stroke="{colour}" stroke-width="18" fill="none" />'
        if share > 0
        else ""
    )
    text = f"{label}: {used} of {budget} used, {max(0, budget - used)} left"
    return Markup(  # noqa: S704 (every value in it is a number or escaped)
        f'<svg class="gauge" viewBox="0 0 200 120" role="img" aria-label="{escape(text)}">'
        f"<title>{escape(text)}</title>"
        f'<path d="M {cx - radius} {cy} A {radius} {radius} 0 0 1 {cx + radius} {cy}" '
        'stroke="#e3e6ea" stroke-width="18" fill="none" />'
        f"{arc}"
        f'<text x="{cx}" y="{cy - 10}" text-anchor="middle" class="gauge-value">'
        f"{round(share * 100)}%</text>"
        f'<text x="{cx}" y="{cy + 18}" text-anchor="middle" class="gauge-caption">'
        f"{used} / {budget}</text></svg>"
    )


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[int]


def stacked_bars(days: Sequence[str], series: Sequence[Series], label: str) -> Markup:
    """One bar per day, stacked by series (a token, a channel), with a legend."""
    width, height, left, bottom, top = 720, 260, 44, 36, 12
    plot_w, plot_h = width - left - 8, height - bottom - top
    totals = [sum(s.values[i] for s in series) for i in range(len(days))]
    peak = max([1, *totals])
    step = plot_w / max(1, len(days))
    bar_w = max(2.0, step * 0.7)
    marks: list[str] = []
    for i, day in enumerate(days):
        x = left + i * step + (step - bar_w) / 2
        base = float(top + plot_h)
        for index, s in enumerate(series):
            value = s.values[i]
            if value <= 0:
                continue
            h = plot_h * value / peak
            base -= h
            marks.append(
                f'<rect class="bar" data-day="{escape(day)}" data-value="{value}" '
                f'x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[index % len(PALETTE)]}">'
                f"<title>{escape(day)}: {escape(s.name)}: {value}</title></rect>"
            )
        if i % max(1, len(days) // 8) == 0 or i == len(days) - 1:
            marks.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - bottom + 16}" '
                f'text-anchor="middle" class="axis">{escape(day[5:])}</text>'
            )
    # Whole numbers only: these are counts (a peak of 1 had a tick at 0.5).
    for tick in sorted({0, peak // 2, peak}):
        y = top + plot_h * (1 - tick / peak)
        marks.append(
            f'<line x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" class="grid" />'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">'
            f"{tick}</text>"
        )
    legend = "".join(
        f'<li><span class="swatch swatch-{i % len(PALETTE)}"></span>{escape(s.name)}</li>'
        for i, s in enumerate(series)
    )
    total = sum(totals)
    if not total:
        # An empty frame looked broken: say that there is nothing yet.
        marks.insert(  # first: the day labels close the drawing, today's last
            0,
            f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" text-anchor="middle" '
            f'class="empty">Nothing in these {len(days)} days yet</text>',
        )
    alt = f"{label}: {total} in all over {len(days)} days, at most {max(totals, default=0)} a day"
    return Markup(  # noqa: S704 (every value in it is a number or escaped)
        f'<figure class="chart"><svg viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(alt)}"><title>{escape(alt)}</title>{"".join(marks)}</svg>'
        f'<figcaption><ul class="legend">{legend}</ul></figcaption></figure>'
    )
