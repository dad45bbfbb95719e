"""Charts of the monitoring report: performance over time (realized and estimated), a drift heatmap per
feature and period, the score distribution against training, and calibration per matured period."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure

from leadscore.core.config import MonitoringParams

REALIZED, ESTIMATED, REFERENCE = "#1f77b4", "#ff7f0e", "#555555"


def _dates(periods: pd.Series) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(periods))


def performance_timeline(performance: pd.DataFrame, estimate: pd.DataFrame, *, baseline: float | None,
                         settings: MonitoringParams) -> Figure:
    """ROC-AUC and conversion per period: realized values of matured periods (ROC-AUC with its bootstrap
    interval), the estimate from the calibrated scores with its interval, and the alert lines."""
    fig = Figure(figsize=(11, 6.5))
    auc_ax, conv_ax = fig.subplots(2, 1, sharex=True)
    if not estimate.empty:
        x = _dates(estimate["period"])
        for ax, name in ((auc_ax, "roc_auc"), (conv_ax, "conversion_rate")):
            ax.plot(x, estimate[f"est_{name}"], color=ESTIMATED, marker=".",
                    label="estimated (calibrated scores)")
            ax.fill_between(x, estimate[f"est_{name}_low"], estimate[f"est_{name}_high"], color=ESTIMATED,
                            alpha=0.2, label="estimate's 95% interval")
    matured = performance[performance["open"] == 0] if not performance.empty else performance
    if not matured.empty and "roc_auc" in matured:
        x = _dates(matured["period"])
        auc = matured["roc_auc"].astype(float)
        auc_ax.errorbar(x, auc, yerr=[auc - matured["roc_auc_low"], matured["roc_auc_high"] - auc],
                        fmt="o", color=REALIZED, capsize=3, label="realized (matured labels, 95% CI)")
        conv_ax.plot(x, matured["conversion_rate"], "o", color=REALIZED, label="realized (matured labels)")
    if baseline is not None:
        auc_ax.axhline(baseline, color=REFERENCE, lw=1, label=f"held out {baseline:.3f}")
        auc_ax.axhline(baseline * (1 - settings.auc_drop_warn), color="#e6b800", lw=1, ls="--",
                       label=f"warn (-{settings.auc_drop_warn:.0%})")
        auc_ax.axhline(baseline * (1 - settings.auc_drop_alert), color="#d62728", lw=1, ls="--",
                       label=f"alert (-{settings.auc_drop_alert:.0%})")
    auc_ax.set_ylabel("ROC-AUC")
    conv_ax.set_ylabel("conversion")
    conv_ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    auc_ax.set_title("Performance by week of scoring: realized once labels mature, estimated before")
    for ax in (auc_ax, conv_ax):
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8, ncols=3)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def drift_matrix(drift: Sequence[Mapping[str, Any]], top: int = 15) -> pd.DataFrame:
    """PSI per feature (rows: the ``top`` with the highest PSI in any period, and the score) and period."""
    rows = [{"period": r["period"], "feature": f["feature"], "psi": f.get("psi")}
            for r in drift for f in [*r["features"], r["score"]] if f.get("psi") is not None]
    if not rows:
        return pd.DataFrame()
    matrix = pd.DataFrame(rows).pivot_table(index="feature", columns="period", values="psi", aggfunc="max")
    order = matrix.max(axis=1).sort_values(ascending=False)
    keep = [f for f in order.index if f != "(score)"][:top]
    return matrix.loc[[*keep, *(["(score)"] if "(score)" in matrix.index else [])]]


def drift_heatmap(drift: Sequence[Mapping[str, Any]], settings: MonitoringParams, top: int = 15) -> Figure:
    """PSI of the most drifted features (and the score) per period, coloured by state."""
    matrix = drift_matrix(drift, top)
    fig = Figure(figsize=(11, 0.4 * max(len(matrix), 4) + 1.8))
    ax = fig.subplots()
    if matrix.empty:
        ax.text(0.5, 0.5, "no period with enough leads to judge", ha="center", va="center")
        ax.set_axis_off()
        return fig
    cmap = ListedColormap(["#e8f5e9", "#fff3b0", "#f4a3a3"])
    norm = BoundaryNorm([0, settings.psi_warn, settings.psi_alert, 1e9], cmap.N)
    values = matrix.to_numpy(float)
    ax.imshow(np.nan_to_num(values, nan=0.0), cmap=cmap, norm=norm, aspect="auto")
    for (i, j), value in np.ndenumerate(values):
        if not np.isnan(value):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7)
    ax.set_yticks(range(len(matrix)), [str(f) for f in matrix.index], fontsize=8)
    ax.set_xticks(range(matrix.shape[1]), [str(p)[5:] for p in matrix.columns], rotation=90, fontsize=7)
    ax.set_title(f"PSI against the training profile (green < {settings.psi_warn:g} <= yellow "
                 f"< {settings.psi_alert:g} <= red)")
    fig.tight_layout()
    return fig


def score_shift(scores: pd.DataFrame, reference: Mapping[str, Any], by: str = "month") -> Figure:
    """The score distribution of each period (median, 10th-90th percentile) against training's."""
    from leadscore.monitoring.performance import period_of

    fig = Figure(figsize=(11, 4))
    ax = fig.subplots()
    grouped = scores.assign(period=period_of(scores["scored_at"], by)).groupby("period")["probability"]
    stats = grouped.quantile(np.array([0.1, 0.5, 0.9])).unstack()
    x = _dates(pd.Series(stats.index))
    ax.fill_between(x, stats[0.1], stats[0.9], color=REALIZED, alpha=0.2,
                    label="scored: 10th-90th percentile")
    ax.plot(x, stats[0.5], color=REALIZED, marker="o", label="scored: median")
    quantiles = np.asarray(reference.get("quantiles") or [], float)
    if len(quantiles) >= 3:
        levels = np.linspace(0, 1, len(quantiles))
        low, mid, high = (float(np.interp(q, levels, quantiles)) for q in (0.1, 0.5, 0.9))
        ax.axhspan(low, high, color=REFERENCE, alpha=0.1, label="training: 10th-90th percentile")
        ax.axhline(mid, color=REFERENCE, ls="--", label="training: median")
    ax.set_ylabel("conversion probability")
    ax.set_title(f"Score distribution by {by} against the training period")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def calibration_curves(curves: pd.DataFrame) -> Figure:
    """Predicted against observed conversion per bin, one line per matured period."""
    fig = Figure(figsize=(6, 5.5))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ls=":", color=REFERENCE, label="perfect calibration")
    periods = sorted(curves["period"].unique()) if not curves.empty else []
    colours = [pd.Timestamp(p).value for p in periods]
    span = (min(colours), max(colours)) if colours else (0, 1)
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    for period, colour in zip(periods, colours, strict=True):
        part = curves[curves["period"] == period]
        shade = 0.0 if span[1] == span[0] else (colour - span[0]) / (span[1] - span[0])
        ax.plot(part["predicted"], part["observed"], marker=".", color=cmap(shade), label=str(period))
    top = float(max(curves[["predicted", "observed"]].max().max(), 0.1)) if not curves.empty else 1.0
    ax.set(xlim=(0, top * 1.05), ylim=(0, top * 1.05), xlabel="predicted conversion",
           ylabel="observed conversion", title="Calibration per matured period")
    ax.grid(alpha=0.3)
    if periods:
        ax.legend(fontsize=7, ncols=2, title="period", title_fontsize=8)
    fig.tight_layout()
    return fig
