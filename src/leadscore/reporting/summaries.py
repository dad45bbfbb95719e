"""The few plain sentences each report opens with, built from the numbers the pipeline wrote."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from leadscore.artifacts.card import model_description
from leadscore.artifacts.registry import Registry
from leadscore.reporting.notebook import num, pct


def _window(meta: Mapping[str, Any]) -> str:
    window = meta.get("training_window") or []
    if len(window) != 2:
        return ""
    start, end = (pd.Timestamp(w).strftime("%d %b %Y") for w in window)
    return f" from {start} to {end}"


def evaluation_summary(metrics: Mapping[str, Any], meta: Mapping[str, Any],
                       previous: Mapping[str, Any] | None = None) -> list[str]:
    """3-5 sentences: the model, how well it ranks, the top tier, the threshold's catch, the change since
    ``previous`` (the metadata of the version served before, with its ``test_metrics``)."""
    test = metrics["test"]
    lines = [f"**The model** is {model_description(meta)}, trained on {num(meta.get('rows', 0))} leads"
             f"{_window(meta)}."]
    lines.append(f"**Ranking:** on {num(test['n'])} leads of the most recent period "
                 f"({pct(test['positive_rate'])} converted), it puts a random converter above a random "
                 f"non-converter {pct(test['roc_auc'])} of the time "
                 f"(ROC-AUC {num(test['roc_auc'])}; 50% is chance).")
    lines.append(f"**Top tier:** the top 10% of scores converted at {pct(test['top_decile_rate'])}, "
                 f"{num(test['top_decile_lift'], 1)}x the average rate.")
    threshold = metrics.get("threshold") or {}
    if "recall" in test and threshold:
        lines.append(f"**Capacity:** sales works the leads above the threshold "
                     f"({threshold.get('detail', 'as configured')}): "
                     f"{pct(test.get('share_flagged', float('nan')))} of all leads, holding "
                     f"{pct(test['recall'])} of the converters.")
    if previous and previous.get("test_metrics"):
        before = previous["test_metrics"]
        change = test["roc_auc"] - float(before.get("roc_auc", float("nan")))
        lines.append(f"**Since version {previous.get('version', 'before')}:** ROC-AUC "
                     f"{num(before.get('roc_auc', float('nan')))} -> {num(test['roc_auc'])} ({change:+.3f}), "
                     f"top-10% conversion {pct(before.get('top_decile_rate', float('nan')))} -> "
                     f"{pct(test['top_decile_rate'])}.")
    else:
        lines.append("**Since the last version:** no earlier version is registered to compare with.")
    return lines


def comparison_summary(table: pd.DataFrame, meta: Mapping[str, Any]) -> list[str]:
    """The champion against the best single candidate and the rule-based baseline, on validation."""
    def value(model: str, metric: str) -> float:
        return float(table[metric].astype(float).to_dict()[model])

    lines = [f"**The champion** is {model_description(meta)}, chosen on out-of-fold predictions of "
             f"{num(meta.get('rows', 0))} training leads{_window(meta)}."]
    singles = [str(m) for m in table.index if m not in ("champion", "rules")]
    if singles:
        best = max(singles, key=lambda m: value(m, "roc_auc"))
        lines.append(f"**Validation ROC-AUC** {num(value('champion', 'roc_auc'))} against "
                     f"{num(value(best, 'roc_auc'))} for the best single model ({best}); "
                     f"its top 10% convert at {pct(value('champion', 'top_decile_rate'))}.")
    if "rules" in table.index:
        lines.append(f"**Against the rule-based score** (what sales used before): ROC-AUC "
                     f"{num(value('rules', 'roc_auc'))} -> {num(value('champion', 'roc_auc'))}, top-10% "
                     f"conversion {pct(value('rules', 'top_decile_rate'))} -> "
                     f"{pct(value('champion', 'top_decile_rate'))}.")
    return lines


def eda_summary(leads: int, activities: int, status: pd.Series, conversion_rate: float,
                data_end: pd.Timestamp) -> list[str]:
    """Size of the extract, how many leads are labelled, the base conversion rate."""
    closed = int(status.get("closed", 0))
    return [f"**The extract** holds {num(leads)} leads and {num(activities)} activities, up to "
            f"{data_end:%d %b %Y}.",
            f"**Labelled leads:** {num(closed)} have their whole label window inside the data; "
            f"{pct(conversion_rate)} of them converted. The others are too young to count and are only "
            "scored."]


def previous_version(registry_dir: str | Path, meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """The metadata of the version to compare ``meta``'s model with: the registry's active version, or
    if that is this very model (same sha256), the newest other one; None if there is none."""
    root = Path(registry_dir)
    if not root.is_dir():
        return None
    registry = Registry(root)
    versions = registry.versions()
    ordered = [v for v in versions if v.active] + [v for v in versions if not v.active]
    for info in ordered:
        if info.sha256 != meta.get("sha256"):
            return registry.show(info.version)
    return None


def monitoring_summary(report: Any, backtest: pd.DataFrame, first: list[dict[str, Any]],
                       baseline: float | None) -> list[str]:
    """The opening sentences of the monitoring report: volume, overall state, what alerted first, the
    latest realized and estimated ROC-AUC, and how well past estimates held (``report`` is a
    :class:`~leadscore.monitoring.checks.CheckReport`)."""
    from leadscore.monitoring.alerts import overall_state, raised

    perf, est = report.performance, report.estimate
    leads = int(est["leads"].sum()) if not est.empty else 0
    open_leads = int(est["open"].sum()) if not est.empty else 0
    lines = [f"**As of {report.now:%d %b %Y}:** {num(leads)} leads scored over {len(est)} periods; "
             f"{num(open_leads)} of them still wait for their outcome (never counted as non-converters)."]
    shown = raised(report.states)
    lines.append(f"**State: {overall_state(report.states).upper()}** — "
                 + (", ".join(f"{s.check} `{s.subject}` {s.state}" for s in shown[:5]) if shown
                    else "every check is within its thresholds") + ".")
    if first:
        lines.append("**Drift first alerted:** " + "; ".join(
            f"`{f['feature']}` in the period of {f['period']} ({f['reason']})" for f in first[:3]) + ".")
    matured = perf[(perf["open"] == 0)].dropna(subset=["roc_auc"]) if not perf.empty and "roc_auc" in perf \
        else pd.DataFrame()
    if not matured.empty:
        last = matured.iloc[-1]
        versus = f" against {num(baseline)} on the held-out period" if baseline is not None else ""
        interval = f"{num(last['roc_auc_low'])}-{num(last['roc_auc_high'])}"
        lines.append(f"**Realized:** the latest matured period ({last['period']}) ranked at ROC-AUC "
                     f"{num(last['roc_auc'])} ({interval}){versus}; "
                     f"{pct(last['conversion_rate'])} converted.")
    if not backtest.empty:
        n = len(backtest)
        held = {name: int(backtest[f"{name}_within"].fillna(False).sum())
                for name in ("conversion_rate", "roc_auc")}
        lines.append(f"**Estimates before labels:** made when each of the {n} matured periods closed, the "
                     f"estimate's 95% interval held the realized conversion in {held['conversion_rate']} "
                     f"and the realized ROC-AUC in {held['roc_auc']} of them.")
    return lines
