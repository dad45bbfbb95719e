"""The index page of a reports folder: every dated report, newest first, plus the pipeline's own."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
STYLE = ("body{font:15px/1.5 system-ui,sans-serif;color:#1f2933;max-width:50rem;margin:2rem auto;"
         "padding:0 1rem}"
         "h2{font-size:1.1rem;margin:1.4rem 0 .3rem}ul{margin:0;padding-left:1.2rem}"
         "small{color:#52606d}")


def _title(path: Path, titles: Mapping[str, str]) -> str:
    name = re.sub(r"^\d+_", "", path.stem)  # the pipeline's 03_evaluation is the evaluation report
    return titles.get(name) or name.replace("_", " ").capitalize()


def _item(path: Path, href: str, titles: Mapping[str, str]) -> str:
    stamp = datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f'<li><a href="{html.escape(href)}">{html.escape(_title(path, titles))}</a> '
            f"<small>{html.escape(path.name)}, written {stamp}</small></li>")


def index_page(out_dir: str | Path, titles: Mapping[str, str] | None = None) -> str:
    """HTML linking each ``out_dir/YYYY-MM-DD/*.html`` (newest day first) and ``out_dir/*.html``."""
    out, titles = Path(out_dir), titles or {}
    days = sorted((d for d in out.iterdir() if d.is_dir() and DAY.match(d.name)), reverse=True) \
        if out.is_dir() else []
    parts = ["<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>leadscore reports</title><style>{STYLE}</style></head><body><h1>leadscore reports</h1>"]
    pipeline = sorted(p for p in out.glob("*.html") if p.name != "index.html") if out.is_dir() else []
    if pipeline:
        parts.append("<h2>From the pipeline (latest <code>dvc repro</code>)</h2><ul>")
        parts += [_item(p, p.name, titles) for p in pipeline]
        parts.append("</ul>")
    for day in days:
        reports = sorted(day.glob("*.html"))
        if reports:
            parts.append(f'<h2 id="{day.name}">{day.name}</h2><ul>')
            parts += [_item(p, f"{day.name}/{p.name}", titles) for p in reports]
            parts.append("</ul>")
    if not pipeline and not days:
        parts.append("<p>No reports yet: run <code>leadscore report evaluation</code>.</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
