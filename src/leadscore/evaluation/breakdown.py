"""Model quality per segment (vertical, source...): what a sales manager asks after the headline."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score


def by_segment(y: np.ndarray, prob: np.ndarray, segment: pd.Series | np.ndarray, *,
               min_leads: int = 30) -> pd.DataFrame:
    """Per segment value: leads, conversion rate, mean predicted probability, ROC-AUC, top-10% conversion.

    ROC-AUC is NaN where a segment has one class only; segments with fewer than ``min_leads`` leads are
    pooled as ``(other)``. Sorted by leads, largest first.
    """
    values = pd.Series(np.asarray(segment, dtype=object)).fillna("(missing)").astype(str)
    frame = pd.DataFrame({"y": np.asarray(y, int), "p": np.asarray(prob, float), "segment": values})
    counts = frame["segment"].value_counts()
    frame.loc[frame["segment"].isin(counts[counts < min_leads].index), "segment"] = "(other)"
    cut = np.quantile(frame["p"], 0.9)
    rows = {}
    for name, part in frame.groupby("segment"):
        both = part["y"].nunique() == 2
        top = part[part["p"] >= cut]
        rows[name] = {"leads": len(part), "conversion_rate": part["y"].mean(),
                      "mean_probability": part["p"].mean(),
                      "roc_auc": roc_auc_score(part["y"], part["p"]) if both else np.nan,
                      "top_decile_rate": top["y"].mean() if len(top) else np.nan}
    table = pd.DataFrame.from_dict(rows, orient="index").sort_values("leads", ascending=False)
    table.index.name = "segment"
    return table
