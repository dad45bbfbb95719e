"""A :class:`~leadscore.artifacts.card.ModelCard` as Markdown, or as one self-contained HTML page.

The HTML has no script and loads nothing: styles are inline and the reliability diagram is an inline
SVG, so the page opens offline, from a mail attachment or from the registry folder.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from leadscore.artifacts.card import Block, Chart, ModelCard, Table, build_card
from leadscore.artifacts.paths import CARD_HTML, CARD_MARKDOWN
from leadscore.core.files import atomic_write_text

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2933; max-width: 60rem;
       margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .3rem; } h2 { font-size: 1.2rem; margin-top: 2rem;
     border-bottom: 1px solid #d9e2ec; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .6rem 0; font-size: 14px; }
th, td { border: 1px solid #d9e2ec; padding: .25rem .6rem; text-align: left; }
th { background: #f0f4f8; } td:not(:first-child) { font-variant-numeric: tabular-nums; }
code { background: #f0f4f8; padding: 0 .2rem; border-radius: 3px; }
.summary { font-size: 1.05rem; background: #f0f4f8; padding: .8rem 1rem; border-radius: 6px; }
figure { margin: .8rem 0; } figcaption { font-size: 13px; color: #52606d; }
"""


def _md_table(table: Table) -> str:
    def row(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
    return "\n".join([row(table.headers), "|" + "---|" * len(table.headers), *map(row, table.rows)])


def _md_block(block: Block) -> str:
    if isinstance(block, str):
        return block
    if isinstance(block, list):
        return "\n".join(f"- {line}" for line in block)
    if isinstance(block, Table):
        return _md_table(block)
    return f"*{block.caption}* The HTML card draws it; the table below holds the same figures."


def to_markdown(card: ModelCard) -> str:
    """The card as Markdown (GitHub-flavoured tables)."""
    parts = [f"# {card.title}", card.summary]
    for section in card.sections:
        parts.append(f"## {section.title}")
        parts.extend(_md_block(b) for b in section.blocks)
    return "\n\n".join(parts) + "\n"


def _inline(text: str) -> str:
    """Escaped text with `code` and **bold** marked up."""
    escaped = html.escape(text)
    return _BOLD.sub(r"<strong>\1</strong>", _CODE.sub(r"<code>\1</code>", escaped))


def reliability_svg(chart: Chart, size: int = 320) -> str:
    """An inline SVG reliability diagram: the diagonal, and one dot per bin (area ~ leads)."""
    pad, span = 52, size - 72
    top = max([0.05, *(max(p, o) for p, o, _ in chart.points)])
    top = min(1.0, round(top * 1.1 + 0.005, 2))

    def x(v: float) -> float:
        return pad + span * v / top

    def y(v: float) -> float:
        return pad - 20 + span * (1 - v / top)

    most = max(n for _, _, n in chart.points) or 1
    dots = "".join(f'<circle cx="{x(p):.1f}" cy="{y(o):.1f}" r="{3 + 4 * (n / most) ** 0.5:.1f}" '
                   f'fill="#2f6fbe" fill-opacity="0.8"><title>predicted {p:.1%}, observed {o:.1%}, '
                   f'{n:,} leads</title></circle>' for p, o, n in chart.points)
    line = " ".join(f"{x(p):.1f},{y(o):.1f}" for p, o, _ in chart.points)
    ticks = "".join(f'<text x="{x(t):.1f}" y="{size - 22}" text-anchor="middle">{t:.0%}</text>'
                    f'<text x="{pad - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:.0%}</text>'
                    for t in (0, top / 2, top))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{size}" height="{size}" '
            f'viewBox="0 0 {size} {size}" font-size="11" fill="#52606d">'
            f'<title>{html.escape(chart.caption)}</title>'
            f'<rect x="{pad}" y="{pad - 20}" width="{span}" height="{span}" fill="none" stroke="#bcccdc"/>'
            f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(top)}" y2="{y(top)}" stroke="#9aa5b1" '
            f'stroke-dasharray="4 3"/><polyline points="{line}" fill="none" stroke="#2f6fbe"/>{dots}{ticks}'
            f'<text x="{pad + span / 2}" y="{size - 6}" text-anchor="middle">mean predicted</text>'
            f'<text x="12" y="{pad - 20 + span / 2}" text-anchor="middle" '
            f'transform="rotate(-90 12 {pad - 20 + span / 2})">observed conversion</text></svg>')


def _html_block(block: Block) -> str:
    if isinstance(block, str):
        return f"<p>{_inline(block)}</p>"
    if isinstance(block, list):
        return "<ul>" + "".join(f"<li>{_inline(line)}</li>" for line in block) + "</ul>"
    if isinstance(block, Table):
        head = "".join(f"<th>{_inline(h)}</th>" for h in block.headers)
        body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                       for row in block.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return (f'<figure class="chart">{reliability_svg(block)}'
            f"<figcaption>{_inline(block.caption)}</figcaption></figure>")


def to_html(card: ModelCard) -> str:
    """The card as one self-contained HTML page (no script, nothing loaded from elsewhere)."""
    body = [f"<h1>{_inline(card.title)}</h1>", f'<p class="summary">{_inline(card.summary)}</p>']
    for section in card.sections:
        body.append(f"<section><h2>{_inline(section.title)}</h2>")
        body.extend(_html_block(b) for b in section.blocks)
        body.append("</section>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_inline(card.title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_card(folder: str | Path, meta: Mapping[str, Any], version: str | None = None) -> tuple[Path, Path]:
    """Write the card of ``meta`` as ``model_card.md`` and ``model_card.html`` into ``folder``."""
    card = build_card(meta, version)
    folder = Path(folder)
    markdown, page = folder / CARD_MARKDOWN, folder / CARD_HTML
    atomic_write_text(markdown, to_markdown(card))
    atomic_write_text(page, to_html(card))
    return markdown, page
