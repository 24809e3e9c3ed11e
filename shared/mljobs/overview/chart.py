"""An inline SVG line chart of one metric across a model's versions, the aliases marked on the
versions they point to. Text in it is escaped like any HTML."""

from __future__ import annotations

from html import escape
from typing import Mapping, Sequence

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 48, 40, 36
ALIAS_COLOURS = {"production": "#1a7f37", "latest": "#3b6ea5"}
OTHER_ALIAS = "#8250df"


def metric_chart(metric: str, points: Sequence[tuple[str, float | None, bool]], aliases: Mapping[str, str]) -> str:
    """`points`: (version, value or None, verified) oldest first; `aliases`: alias -> version."""
    valued = [(v, y) for v, y, _ in points if y is not None]
    if not valued:
        return f'<p class="no-chart">No version has a {escape(metric)} to plot.</p>'
    low, high = min(y for _, y in valued), max(y for _, y in valued)
    pad = (high - low) * 0.1 or abs(high) * 0.05 or 0.05
    low, high = low - pad, high + pad
    span_x = WIDTH - LEFT - RIGHT
    step = span_x / max(len(points) - 1, 1)

    def x(i: int) -> float:
        return LEFT + (i * step if len(points) > 1 else span_x / 2)

    def y(value: float) -> float:
        return TOP + (high - value) / (high - low) * (HEIGHT - TOP - BOTTOM)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(metric)} across versions">',
             f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}" stroke="#bbb"/>',
             f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}" stroke="#bbb"/>']
    for tick in (low + pad, high - pad):
        parts.append(f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" font-size="11" fill="#555">{tick:.4g}</text>')
    line = " ".join(f"{x(i):.1f},{y(value):.1f}" for i, (_, value, _) in enumerate(points) if value is not None)
    parts.append(f'<polyline points="{line}" fill="none" stroke="#3b6ea5" stroke-width="2"/>')
    by_version: dict[str, list[str]] = {}
    for alias, version in sorted(aliases.items()):
        by_version.setdefault(version, []).append(alias)
    for i, (version, value, verified) in enumerate(points):
        parts.append(f'<text x="{x(i):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" font-size="11" fill="#555">'
                     f'v{escape(version)}</text>')
        if value is None:
            continue
        fill, stroke = ("#3b6ea5", "#3b6ea5") if verified else ("#fff", "#b42318")
        label = f"version {version}: {metric} {value:.4f}" + ("" if verified else " (UNVERIFIED)")
        parts.append(f'<circle cx="{x(i):.1f}" cy="{y(value):.1f}" r="5" fill="{fill}" stroke="{stroke}" stroke-width="2">'
                     f"<title>{escape(label)}</title></circle>")
        for row, alias in enumerate(by_version.get(version, [])):
            colour = ALIAS_COLOURS.get(alias, OTHER_ALIAS)
            top = y(value) - 12 - 13 * row
            parts.append(f'<text class="alias-mark" x="{x(i):.1f}" y="{top:.1f}" text-anchor="middle" font-size="11" '
                         f'font-weight="bold" fill="{colour}">{escape(alias)}</text>')
    parts.append(f'<text x="{LEFT}" y="16" font-size="12" fill="#222">{escape(metric)} (held-out) by version</text></svg>')
    return "".join(parts)
