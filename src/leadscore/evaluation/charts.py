"""Matplotlib figures used by the notebooks and reports. Each returns the figure it drew."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")  # reports are rendered headless; notebooks display the returned figures
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def roc_pr_calibration(y: np.ndarray, probs: Mapping[str, np.ndarray], bins: int = 10,
                       truth: np.ndarray | None = None) -> Figure:
    """ROC, precision-recall and reliability curves of several models side by side."""
    from leadscore.evaluation.curves import calibration_table, pr_points, roc_points

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    top = 0.05
    for name, prob in probs.items():
        roc, pr = roc_points(y, prob), pr_points(y, prob)
        cal = calibration_table(y, prob, bins)
        axes[0].plot(roc["fpr"], roc["tpr"], label=name)
        axes[1].plot(pr["recall"], pr["precision"], label=name)
        axes[2].plot(cal["predicted"], cal["observed"], marker="o", label=name)
        top = max(top, float(cal["predicted"].max()), float(cal["observed"].max()))
    if truth is not None:
        cal = calibration_table(y, truth, bins)
        axes[2].plot(cal["predicted"], cal["observed"], ls=":", marker=".", c="grey",
                     label="true probability")
    axes[0].plot([0, 1], [0, 1], ls="--", c="lightgrey")
    axes[1].axhline(float(np.mean(y)), ls="--", c="lightgrey", label="base rate")
    axes[2].plot([0, top], [0, top], ls="--", c="lightgrey", label="perfect")
    axes[2].set(xlim=(0, top * 1.05), ylim=(0, min(1.0, top * 1.3)))
    titles = [("ROC", "false positive rate", "true positive rate"),
              ("Precision-recall", "recall", "precision"),
              ("Calibration", "predicted probability", "observed conversion rate")]
    for ax, (title, xlabel, ylabel) in zip(axes, titles, strict=True):
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def score_distribution(prob: np.ndarray, y: np.ndarray) -> Figure:
    """Histogram of scores (0-100) for converted and not converted leads."""
    fig, ax = plt.subplots(figsize=(7, 4))
    scores = np.asarray(prob) * 100
    bins = np.linspace(0, max(5.0, float(scores.max()) + 1), 40).tolist()
    ax.hist(scores[np.asarray(y) == 0], bins=bins, alpha=0.6, density=True, label="not converted")
    ax.hist(scores[np.asarray(y) == 1], bins=bins, alpha=0.6, density=True, label="converted")
    ax.set(title="Score distribution by outcome", xlabel="score (0-100)", ylabel="density")
    ax.legend()
    fig.tight_layout()
    return fig


def gains_table(prob: np.ndarray, y: np.ndarray, groups: int = 10) -> pd.DataFrame:
    """Per score decile (1 = highest): leads, conversion rate, lift, cumulative share of conversions."""
    frame = pd.DataFrame({"p": prob, "y": np.asarray(y, int)})
    frame["decile"] = groups - pd.qcut(frame["p"].rank(method="first"), groups, labels=False)
    table = frame.groupby("decile").agg(leads=("y", "size"), conversions=("y", "sum"),
                                        mean_probability=("p", "mean"))
    table["conversion_rate"] = table["conversions"] / table["leads"]
    table["lift"] = table["conversion_rate"] / frame["y"].mean()
    table["cumulative_share_of_conversions"] = table["conversions"].cumsum() / frame["y"].sum()
    return table.round(4)


def decile_conversion(prob: np.ndarray, y: np.ndarray, groups: int = 10) -> Figure:
    """Conversion rate per score decile (1 = highest scores) against the average rate."""
    table = gains_table(prob, y, groups)
    fig, ax = plt.subplots(figsize=(8, 4))
    bars = ax.bar(table.index.astype(str), 100 * table["conversion_rate"], color="steelblue")
    average = 100 * float(np.mean(y))
    ax.axhline(average, color="darkorange", linestyle="--", label=f"average {average:.1f}%")
    ax.bar_label(bars, labels=[f"{100 * v:.0f}%" for v in table["conversion_rate"]], fontsize=8)
    ax.set(title="Conversion rate by score decile", xlabel="score decile (1 = highest scores)",
           ylabel="converted (%)")
    ax.legend()
    fig.tight_layout()
    return fig


def segment_performance(table: pd.DataFrame, title: str) -> Figure:
    """Predicted vs observed conversion per segment (rows of :func:`evaluation.breakdown.by_segment`)."""
    fig, ax = plt.subplots(figsize=(8, max(3.0, 0.45 * len(table))))
    positions = np.arange(len(table))
    ax.barh(positions + 0.2, 100 * table["conversion_rate"], height=0.4, label="observed")
    ax.barh(positions - 0.2, 100 * table["mean_probability"], height=0.4, label="predicted")
    ax.set_yticks(positions, [str(v) for v in table.index])
    ax.invert_yaxis()
    ax.set(title=title, xlabel="conversion (%)")
    ax.legend()
    fig.tight_layout()
    return fig


def bar(series: pd.Series, title: str, xlabel: str = "") -> Figure:
    """A horizontal bar chart of a Series, first item on top."""
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.3 * len(series))))
    series[::-1].plot.barh(ax=ax)
    ax.set(title=title, xlabel=xlabel)
    fig.tight_layout()
    return fig


def monthly_chart(table: pd.DataFrame) -> Figure:
    """Leads per creation month (bars) and the conversion rate of labelled leads (line)."""
    fig, ax = plt.subplots(figsize=(10, 4))
    months = pd.to_datetime(table.index.get_level_values(0))
    ax.bar(months, table["leads"], width=20, color="lightsteelblue", label="leads")
    ax.set(ylabel="leads created", title="Leads and conversion rate by month")
    rate = ax.twinx()
    rate.plot(months, table["conversion_rate"], color="darkorange", marker="o", label="conversion")
    rate.set_ylabel("conversion rate (closed leads)")
    fig.legend(loc="upper left")
    fig.tight_layout()
    return fig


def stacked_share(shares: pd.DataFrame, title: str) -> Figure:
    """Stacked area of category shares per period (rows sum to 1)."""
    fig, ax = plt.subplots(figsize=(10, 4))
    shares.index = shares.index.astype(str)
    shares.plot.area(ax=ax, stacked=True, linewidth=0)
    ax.set(title=title, ylabel="share of leads", ylim=(0, 1))
    ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize=8)
    fig.tight_layout()
    return fig


def gains_and_lift(y: np.ndarray, probs: Mapping[str, np.ndarray]) -> Figure:
    """Cumulative gains (share of converters caught) and lift by share of leads contacted."""
    fig, (gain_ax, lift_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    y = np.asarray(y, int)
    share = np.arange(1, len(y) + 1) / len(y)
    for name, prob in probs.items():
        caught = np.cumsum(y[np.argsort(-np.asarray(prob), kind="stable")]) / max(1, y.sum())
        gain_ax.plot(share, caught, label=name)
        lift_ax.plot(share[len(y) // 100:], (caught / share)[len(y) // 100:], label=name)
    gain_ax.plot([0, 1], [0, 1], ls="--", c="lightgrey", label="random")
    lift_ax.axhline(1, ls="--", c="lightgrey")
    gain_ax.set(title="Cumulative gains", xlabel="share of leads contacted (highest scores first)",
                ylabel="share of conversions caught")
    lift_ax.set(title="Lift", xlabel="share of leads contacted", ylabel="conversion rate / average")
    gain_ax.legend(fontsize=8)
    lift_ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def radar(values: Mapping[str, Mapping[str, float]], title: str = "Main metrics") -> Figure:
    """Radar chart: one polygon per model over metrics already scaled to [0, 1] (higher is better)."""
    labels = list(next(iter(values.values())))
    angles = np.linspace(0, 2 * np.pi, len(labels), endpoint=False).tolist()
    fig, ax = plt.subplots(figsize=(6, 6), subplot_kw={"polar": True})
    for name, row in values.items():
        points = [row[k] for k in labels]
        ax.plot(angles + angles[:1], points + points[:1], label=name)
        ax.fill(angles + angles[:1], points + points[:1], alpha=0.1)
    ax.set_xticks(angles)
    ax.set_xticklabels(labels)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="lower right", bbox_to_anchor=(1.25, -0.05), fontsize=8)
    fig.tight_layout()
    return fig


def shap_summary(points: pd.DataFrame, X: pd.DataFrame) -> Figure:  # noqa: N803
    """Beeswarm of per-lead contributions in score points (rows of ``points`` align with ``X``).

    ``points`` is, e.g., ``100 * leadscore.scoring.explain.contributions(model, X).values``: the exact
    contributions of the whole served model. Category colours follow the category codes (alphabetical).
    """
    import shap

    shown = X.copy()
    for column in shown.columns:
        if not pd.api.types.is_numeric_dtype(shown[column]):
            codes = shown[column].astype("category").cat.codes.astype(float)
            shown[column] = codes.where(codes >= 0)
    plt.figure()
    shap.summary_plot(points.to_numpy(float), shown.to_numpy(float), feature_names=list(X.columns),
                      max_display=20, show=False)
    fig = plt.gcf()
    fig.suptitle("Exact contributions of the served model (score points)")
    fig.tight_layout()
    return fig
