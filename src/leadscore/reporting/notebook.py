"""Presentation helpers for the report notebooks: figures embedded in the page, numbers people read.

A report notebook calls :func:`setup` once, shows each figure with :func:`show` (the PNG goes inside the
executed notebook, so the HTML export is one self-contained file; a copy is saved for DVC plots), and
shows tables through :func:`readable` (formatted numbers, readable headers).
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

HEADERS: dict[str, str] = {
    "roc_auc": "ROC-AUC", "roc_auc_ci": "ROC-AUC 95% CI", "pr_auc": "PR-AUC", "pr_auc_ci": "PR-AUC 95% CI",
    "brier": "Brier", "log_loss": "Log loss", "ece": "Calibration error (ECE)", "f1": "F1",
    "top_decile_rate": "Top-10% conversion", "top_decile_lift": "Top-10% lift", "cv_seconds": "CV seconds",
    "mae_vs_true_probability": "Mean gap to true probability", "n": "Leads", "positive_rate": "Conversion",
    "conversion_rate": "Conversion", "share_flagged": "Share flagged",
}
PERCENT = {"positive_rate", "conversion_rate", "top_decile_rate", "precision", "recall", "accuracy",
           "share_flagged", "ece", "share", "share_of_converters", "catch_rate"}


def setup() -> None:
    """Quiet, tidy output for an executed report: no progress bars, warnings or library chatter."""
    os.environ["TQDM_DISABLE"] = "1"  # tqdm.auto otherwise prints an IProgress warning without widgets
    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.ERROR)
    pd.set_option("display.max_columns", 50)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_colwidth", 300)  # reasons and alert texts are read whole


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def figure_alt(fig: Figure) -> str:
    """Alternative text for a figure: its overall title, else its panels' titles."""
    suptitle = fig.get_suptitle() if hasattr(fig, "get_suptitle") else ""
    titles = [suptitle] if suptitle else []
    titles = [t for t in titles if t] or [ax.get_title() for ax in fig.axes if ax.get_title()]
    return "; ".join(titles) or "chart"


def show(fig: Figure, path: str | Path | None = None, dpi: int = 110, alt: str | None = None) -> None:
    """Display ``fig`` inside the notebook output (embedded PNG with alternative text: ``alt``, else the
    figure's titles), save it to ``path`` too, close it."""
    import matplotlib.pyplot as plt
    from IPython.display import Image, display

    png = figure_png(fig, dpi)
    if path is not None:
        Path(path).write_bytes(png)
    text = alt or figure_alt(fig)
    plt.close(fig)
    display(Image(data=png, format="png", alt=text))


def header(name: object) -> str:
    """A readable column header: ``roc_auc`` -> ``ROC-AUC``, ``cv_seconds`` -> ``CV seconds``."""
    text = str(name)
    if text in HEADERS:
        return HEADERS[text]
    words = text.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def pct(value: float, digits: int = 1) -> str:
    """``0.1234`` -> ``12.3%``; missing -> an em dash."""
    return "—" if value is None or not np.isfinite(value) else f"{100 * value:.{digits}f}%"


def num(value: float, digits: int = 3) -> str:
    """At most ``digits`` decimals, thousands separated; missing -> an em dash."""
    if value is None or not np.isfinite(value):
        return "—"
    if float(value).is_integer() and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:,.{digits}f}"


def _cell(column: str, value: object, percent: bool) -> object:
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
        return value
    return pct(float(value)) if percent else num(float(value))


def readable(table: pd.DataFrame | Mapping[str, Mapping[str, object]], *, percent: set[str] | None = None,
             index: str | None = None) -> pd.DataFrame:
    """``table`` with formatted numbers (rates as percentages, others at most 3 decimals) and headers.

    ``percent`` adds columns shown as percentages to :data:`PERCENT`; ``index`` names the index.
    """
    frame = pd.DataFrame(table).copy()
    as_percent = PERCENT | (percent or set())
    out = pd.DataFrame({header(c): [_cell(str(c), v, str(c) in as_percent) for v in frame[c]]
                        for c in frame.columns}, index=frame.index)
    out.index.name = header(index) if index else (header(frame.index.name) if frame.index.name else None)
    return out
