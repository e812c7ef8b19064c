"""Small inline SVG charts for the CS console (server-rendered: no script). Pure.

Two shapes, enough for "Today" and the queue's header:

  bar_chart      one horizontal bar per label (open cases by type, by age, by carrier)
  stacked_bars   one horizontal bar per row, split into coloured parts with a legend (each
                 cut-off's on time / late / overdue / to go / closed)

Every text that reaches the SVG (labels, titles, part names) is XML-escaped, quotes included,
and stripped of the control characters XML 1.0 cannot carry: labels are case types and carrier
codes, which come from couriers and marketplaces. The answer is a complete <svg> element to
place in a page as is (a Jinja2 template marks it safe: it was escaped here).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

# What XML 1.0 cannot carry at all, even escaped (tab, newline and return it can).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
PALETTE = ("#2f7d32", "#c62828", "#ef6c00", "#1565c0", "#9e9e9e", "#6a1b9a")
BAR = "#1565c0"
ROW = 22  # pixels per bar
LABEL_WIDTH = 150  # pixels for the labels on the left
VALUE_WIDTH = 48  # pixels for the figure on the right
MAX_LABEL = 40  # characters of a label shown (the <title> carries it whole)


def escape(text: object) -> str:
    """Text for an XML element or a double-quoted attribute."""
    clean = _NOT_XML.sub("", str(text))
    return (clean.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#39;"))


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[:MAX_LABEL - 1] + "…"


def _open(width: int, height: int, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
            f'font-family="sans-serif" font-size="12"><title>{escape(title)}</title>')


def bar_chart(values: Mapping[str, int] | Sequence[tuple[str, int]], title: str,
              width: int = 420) -> str:
    """One bar per (label, value), in the order given, scaled to the largest value."""
    rows = list(values.items()) if isinstance(values, Mapping) else list(values)
    span = max(width - LABEL_WIDTH - VALUE_WIDTH, 10)
    top = max((value for _, value in rows), default=0) or 1
    height = max(len(rows), 1) * ROW
    parts = [_open(width, height, title)]
    for n, (label, value) in enumerate(rows):
        y = n * ROW
        length = round(span * max(value, 0) / top)
        parts.append(
            f'<g><title>{escape(label)}: {int(value)}</title>'
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 15}" text-anchor="end">'
            f'{escape(_short(label))}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y + 4}" width="{length}" height="{ROW - 8}" '
            f'fill="{BAR}"/>'
            f'<text x="{LABEL_WIDTH + length + 4}" y="{y + 15}">{int(value)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def stacked_bars(rows: Sequence[tuple[str, Sequence[tuple[str, int]]]], title: str,
                 width: int = 420) -> str:
    """One bar per (label, parts), each part (name, value) in its colour; every bar on the same
    scale (the largest total), and a legend of the part names of the first row."""
    names = [name for name, _ in rows[0][1]] if rows else []
    colour = {name: PALETTE[n % len(PALETTE)] for n, name in enumerate(names)}
    span = max(width - LABEL_WIDTH - VALUE_WIDTH, 10)
    top = max((sum(max(v, 0) for _, v in parts) for _, parts in rows), default=0) or 1
    legend_y = max(len(rows), 1) * ROW
    places, lines = _legend_places(names, width)
    height = legend_y + ROW * lines
    out = [_open(width, height, title)]
    for n, (label, parts) in enumerate(rows):
        y = n * ROW
        total = sum(max(v, 0) for _, v in parts)
        out.append(f'<g><title>{escape(label)}: ' + escape(", ".join(
            f"{name} {int(value)}" for name, value in parts)) + "</title>"
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 15}" text-anchor="end">'
            f'{escape(_short(label))}</text>')
        x = LABEL_WIDTH
        for name, value in parts:
            length = round(span * max(value, 0) / top)
            if length:
                out.append(f'<rect x="{x}" y="{y + 4}" width="{length}" height="{ROW - 8}" '
                           f'fill="{colour.get(name, PALETTE[-1])}"/>')
            x += length
        out.append(f'<text x="{x + 4}" y="{y + 15}">{total}</text></g>')
    for name, (x, line) in zip(names, places, strict=True):
        y = legend_y + line * ROW
        out.append(f'<rect x="{x}" y="{y + 6}" width="10" height="10" '
                   f'fill="{colour[name]}"/><text x="{x + 14}" y="{y + 15}">'
                   f'{escape(_short(name))}</text>')
    out.append("</svg>")
    return "".join(out)


def _text_width(text: str) -> int:
    """About how wide a label is at 12 px: a CJK character is about twice a Latin one."""
    return sum(12 if ord(c) >= 0x2E80 else 7 for c in text)


def _legend_places(names: Sequence[str], width: int) -> tuple[list[tuple[int, int]], int]:
    """Where each legend entry goes (x, line), wrapping at the chart's width; how many lines."""
    places, x, line = [], 4, 0
    for name in names:
        size = 14 + _text_width(_short(name)) + 12
        if x > 4 and x + size > width:
            x, line = 4, line + 1
        places.append((x, line))
        x += size
    return places, line + 1
