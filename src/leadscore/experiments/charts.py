"""Charts of the experiment report: conversion per arm with Wilson intervals, and the lift as it was read
day by day with the fixed-horizon interval (valid for one planned look) and the always-valid sequential
interval (valid at every look)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from leadscore.experiments.proportions import ArmRate

ARM_COLORS = {"control": "#7f7f7f", "treatment": "#1f77b4"}
FIXED, SEQUENTIAL = "#ff7f0e", "#2ca02c"


def arm_conversion(arms: Sequence[ArmRate], labels: dict[str, str] | None = None) -> Figure:
    """Bars of each arm's conversion with its 95% Wilson interval and the counts on top."""
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    names = [a.arm for a in arms]
    rates = np.array([a.rate for a in arms], dtype=float)
    low = np.array([a.low for a in arms], dtype=float)
    high = np.array([a.high for a in arms], dtype=float)
    x = np.arange(len(arms))
    ax.bar(x, rates, color=[ARM_COLORS.get(n, "#1f77b4") for n in names], width=0.55)
    ax.errorbar(x, rates, yerr=[rates - low, high - rates], fmt="none", ecolor="black", capsize=6)
    for i, arm in enumerate(arms):
        if np.isfinite(rates[i]):
            ax.annotate(f"{rates[i]:.1%}\n{arm.conversions:,} / {arm.n:,}", (x[i], high[i]),
                        textcoords="offset points", xytext=(0, 4), ha="center", fontsize=9)
    ax.set_xticks(x, [(labels or {}).get(n, n) for n in names])
    ax.set_ylabel("conversion within the window")
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.set_ylim(0, max(float(np.nanmax(high)) if np.isfinite(high).any() else 0.1, 0.01) * 1.3)
    ax.set_title("Conversion per arm (95% Wilson intervals)")
    fig.tight_layout()
    return fig


def cumulative_lift(looks: pd.DataFrame, *, true_lift: float | None = None) -> Figure:
    """The absolute lift read on every day's cumulative matured leads, with the fixed-horizon 95%
    interval (which a daily reader would misuse) and the always-valid sequential interval."""
    fig = Figure(figsize=(10, 4.5))
    ax = fig.subplots()
    if not looks.empty:
        x = pd.DatetimeIndex(pd.to_datetime(looks["day"]))
        ax.plot(x, looks["diff"], color="black", lw=1.5, label="observed lift (treatment - control)")
        ax.fill_between(x, looks["fixed_low"], looks["fixed_high"], color=FIXED, alpha=0.25,
                        label="fixed-horizon 95% interval (one planned look)")
        low, high = (looks[c].replace([np.inf, -np.inf], np.nan) for c in ("seq_low", "seq_high"))
        ax.plot(x, low, color=SEQUENTIAL, lw=1.2, ls="--", label="always-valid 95% interval (any look)")
        ax.plot(x, high, color=SEQUENTIAL, lw=1.2, ls="--")
    ax.axhline(0, color="#555555", lw=1)
    if true_lift is not None:
        ax.axhline(true_lift, color="#d62728", lw=1, ls=":", label=f"true lift {true_lift:+.2%}")
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:+.1%}")
    ax.set_ylabel("absolute lift in conversion")
    ax.set_title("Lift as read each day: it has only crossed zero for good when the dashed band does")
    ax.legend(loc="best", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig
