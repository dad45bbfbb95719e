"""Estimated performance before labels mature, from the calibrated probabilities (confidence-based).

When a model is calibrated, a lead scored ``p`` converts with probability ``p``. A period's conversion,
ROC-AUC and top-tier precision are then random variables whose distribution follows from the scores
alone (Poisson-binomial labels): this module draws the open leads' labels ``n_sim`` times and reports the
mean as the estimate and the central ``level`` share of the draws as its interval. Labels already final
(a conversion, an explicit loss, an expired window) enter as they are; when every label is final the
interval closes on the realized value.

An open lead that has not converted ``e`` days after scoring is less likely to convert than its score
says: with ``F`` the share of conversions that happen within ``e`` days, its probability becomes
``p (1 - F(e)) / (1 - p F(e))`` (Bayes). ``F`` is measured on matured production leads
(:func:`conversion_delay_cdf`). Without it the conversions seen so far cannot be weighed against the
leads still waiting, so a period with open leads is estimated from its scores alone (every label
drawn), which stays unbiased.

The estimate assumes the model is still calibrated on the new leads; drift (:mod:`.drift`) says when
that assumption is doubtful, and :func:`backtest_estimates` measures how often it held.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from leadscore.monitoring.labels import label_scores
from leadscore.monitoring.performance import period_of, top_tier_mask, top_tier_outcome

MIN_DELAYS = 50          # converters needed before the delay distribution is trusted
SIM_BLOCK = 64           # label draws simulated at once (bounds memory on large periods)
ESTIMATED = ("conversion_rate", "roc_auc", "top_tier_rate")


@dataclass(frozen=True)
class DelayCDF:
    """The empirical distribution of days from scoring to conversion, among converters in the window."""

    days: np.ndarray     # sorted

    def __call__(self, elapsed: np.ndarray) -> np.ndarray:
        """Share of conversions that happen within ``elapsed`` days."""
        return np.searchsorted(self.days, np.asarray(elapsed, float), side="right") / len(self.days)


def conversion_delay_cdf(labelled: pd.DataFrame, *, window_days: float,
                         now: pd.Timestamp) -> DelayCDF | None:
    """Delays of the converters among leads whose window had closed by ``now`` (so that slow conversions
    are not missing), or None with fewer than :data:`MIN_DELAYS` of them."""
    matured = labelled["matures_at"] <= now
    hit = matured & labelled["label"].eq(1.0) & labelled["converted_at"].notna()
    delays = (labelled.loc[hit, "converted_at"] - labelled.loc[hit, "scored_at"]).dt.total_seconds() / 86400
    days = delays[(delays >= 0) & (delays <= window_days)].to_numpy(float)
    return DelayCDF(np.sort(days)) if len(days) >= MIN_DELAYS else None


def open_probability(probability: np.ndarray, elapsed_days: np.ndarray,
                     delay: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
    """Probability that an open lead still converts in its window, given it has not converted yet."""
    p = np.clip(np.asarray(probability, float), 0.0, 1.0)
    if delay is None:
        return p
    f = np.clip(delay(np.maximum(np.asarray(elapsed_days, float), 0.0)), 0.0, 1.0)
    return p * (1 - f) / np.maximum(1 - p * f, 1e-12)


def _auc_from_ranks(labels: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """ROC-AUC of each row of a 0/1 label matrix for one score vector (Mann-Whitney with mid-ranks)."""
    n1 = labels.sum(axis=1)
    n0 = labels.shape[1] - n1
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (labels @ ranks - n1 * (n1 + 1) / 2) / (n1 * n0)
    return np.where((n1 > 0) & (n0 > 0), auc, np.nan)


def simulate_period(probability: np.ndarray, known: np.ndarray, q_open: np.ndarray,
                    top: np.ndarray | None, *, n_sim: int = 400, level: float = 0.95,
                    seed: int = 42) -> dict[str, float]:
    """Estimate and interval of conversion, ROC-AUC and top-tier precision of one period.

    ``known`` holds final labels (NaN where open); ``q_open`` the open leads' conversion probability.
    """
    rng = np.random.default_rng(seed)
    known = np.asarray(known, float)
    is_open = np.isnan(known)
    fixed = np.where(is_open, 0.0, known)
    q = np.asarray(q_open, float)[is_open]
    ranks = rankdata(np.asarray(probability, float))
    draws: dict[str, list[np.ndarray]] = {name: [] for name in ESTIMATED}
    for start in range(0, n_sim, SIM_BLOCK):
        size = min(SIM_BLOCK, n_sim - start)
        labels = np.broadcast_to(fixed, (size, len(fixed))).copy()
        labels[:, is_open] = rng.random((size, len(q))) < q
        draws["conversion_rate"].append(labels.mean(axis=1))
        draws["roc_auc"].append(_auc_from_ranks(labels, ranks))
        if top is not None and top.any():
            draws["top_tier_rate"].append(labels[:, top].mean(axis=1))
    tail = (1 - level) / 2 * 100
    out: dict[str, float] = {}
    for name, parts in draws.items():
        values = np.concatenate(parts) if parts else np.array([])
        values = values[~np.isnan(values)]
        if len(values) == 0:
            out.update({f"est_{name}": np.nan, f"est_{name}_low": np.nan, f"est_{name}_high": np.nan})
            continue
        out.update({f"est_{name}": float(values.mean()),
                    f"est_{name}_low": float(np.percentile(values, tail)),
                    f"est_{name}_high": float(np.percentile(values, 100 - tail))})
    return out


def estimate_performance(labelled: pd.DataFrame, *, now: pd.Timestamp, by: str = "month",
                         delay: Callable[[np.ndarray], np.ndarray] | None = None,
                         top_tier: str | None = None, n_sim: int = 400, level: float = 0.95,
                         seed: int = 42) -> pd.DataFrame:
    """One row per model version and period: leads, open leads, and each estimate with its interval.

    ``labelled`` comes from :func:`leadscore.monitoring.labels.label_scores` as of ``now``.
    """
    frame = labelled.assign(period=period_of(labelled["scored_at"], by))
    elapsed = (pd.Timestamp(now) - frame["scored_at"]).dt.total_seconds().to_numpy(float) / 86400
    frame["q_open"] = open_probability(frame["probability"].to_numpy(float), elapsed, delay)
    rows = []
    for (version, period), part in frame.groupby(["model_version", "period"], sort=True):
        mask = top_tier_mask(part, top_tier)
        top = None if mask is None else mask.to_numpy()
        row: dict[str, Any] = {"model_version": version, "period": period, "leads": len(part),
                               "open": int(part["label"].isna().sum())}
        known = part["label"].to_numpy(float)
        if delay is None and np.isnan(known).any():
            known = np.full(len(part), np.nan)  # scores alone: see the module docstring
        row.update(simulate_period(part["probability"].to_numpy(float), known,
                                   part["q_open"].to_numpy(float), top, n_sim=n_sim, level=level,
                                   seed=seed))
        rows.append(row)
    return pd.DataFrame(rows)


def realized_values(labelled: pd.DataFrame, *, by: str, top_tier: str | None) -> pd.DataFrame:
    """Realized conversion, ROC-AUC and top-tier precision per version and period, on final labels."""
    from sklearn.metrics import roc_auc_score

    frame = labelled.assign(period=period_of(labelled["scored_at"], by))
    rows = []
    for (version, period), part in frame.groupby(["model_version", "period"], sort=True):
        done = part[part["label"].notna()]
        y = done["label"].to_numpy(int)
        row: dict[str, Any] = {"model_version": version, "period": period, "labelled": len(done),
                               "open": len(part) - len(done),
                               "conversion_rate": float(y.mean()) if len(y) else np.nan,
                               "roc_auc": float(roc_auc_score(y, done["probability"]))
                               if len(np.unique(y)) == 2 else np.nan, "top_tier_rate": np.nan}
        top = top_tier_outcome(done, top_tier)
        if top is not None:
            row["top_tier_rate"] = top[1]
        rows.append(row)
    return pd.DataFrame(rows)


def backtest_estimates(scores: pd.DataFrame, outcomes: pd.DataFrame, *, window_days: float,
                       now: pd.Timestamp, by: str = "week", lag_days: float = 0.0,
                       top_tier: str | None = None, n_sim: int = 400, level: float = 0.95,
                       seed: int = 42) -> pd.DataFrame:
    """For every period whose labels have all matured by ``now``: the estimate made ``lag_days`` after
    the period ended (with only the outcomes known then), the realized value as of ``now``, and whether
    the realized value lies in the estimate's interval, per metric.

    Outcomes count from the day they were known (:func:`leadscore.monitoring.labels.known_by`).
    """
    final = label_scores(scores, outcomes, window_days=window_days, now=now)
    final["period"] = period_of(final["scored_at"], by)
    realized = realized_values(final, by=by, top_tier=top_tier)
    rows = []
    for real in realized[realized["open"] == 0].to_dict("records"):
        version, period = str(real["model_version"]), str(real["period"])
        part = final[(final["model_version"] == version) & (final["period"] == period)]
        step = pd.offsets.Week(1) if by == "week" else pd.offsets.MonthBegin(1)
        as_of = pd.Timestamp(period, tz="UTC") + step + pd.Timedelta(days=lag_days)
        history = label_scores(scores, outcomes, window_days=window_days, now=as_of)
        delay = conversion_delay_cdf(history, window_days=window_days, now=as_of)
        then_part = history[history["lead_id"].isin(part["lead_id"])
                            & (history["model_version"] == version)]
        est = estimate_performance(then_part, now=as_of, by=by, delay=delay, top_tier=top_tier,
                                   n_sim=n_sim, level=level, seed=seed).iloc[0]
        row: dict[str, Any] = {"model_version": version, "period": period,
                               "estimated_on": f"{as_of:%Y-%m-%d}", "leads": int(est["leads"]),
                               "open_then": int(est["open"])}
        for name in ESTIMATED:
            value = float(real[name])
            low, high = est[f"est_{name}_low"], est[f"est_{name}_high"]
            row.update({f"est_{name}": est[f"est_{name}"], f"{name}_low": low, f"{name}_high": high,
                        f"real_{name}": value,
                        f"{name}_within": bool(low <= value <= high) if not np.isnan(value) else None})
        rows.append(row)
    return pd.DataFrame(rows)


def estimate_history(backtest: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """The estimate as it was known at the time: for matured periods the one made when they were open
    (``backtest``), for open periods today's (``current``); columns as :func:`estimate_performance`."""
    renamed = backtest.rename(columns={f"{name}_{end}": f"est_{name}_{end}"
                                       for name in ESTIMATED for end in ("low", "high")})
    past = renamed.assign(open=0)[["model_version", "period", "leads", "open",
                                   *[f"est_{n}{e}" for n in ESTIMATED for e in ("", "_low", "_high")]]] \
        if not backtest.empty else pd.DataFrame()
    keep = current[current["open"] > 0] if not current.empty else current
    return pd.concat([past, keep], ignore_index=True).sort_values(["model_version", "period"],
                                                                   ignore_index=True)
