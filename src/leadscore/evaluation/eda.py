"""Tables behind the EDA notebook: volumes, conversion by segment and month, data quality."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from leadscore.data.tables import clean_placeholders


def conversion_by(frame: pd.DataFrame, column: str, label: str = "label") -> pd.DataFrame:
    """Leads, conversions and conversion rate per value of ``column`` (labelled rows only)."""
    labelled = frame[frame[label].notna()]
    grouped = labelled.groupby(labelled[column].fillna("(missing)"), observed=True)[label]
    table = pd.DataFrame({"leads": grouped.size(), "conversions": grouped.sum().astype(int)})
    table["conversion_rate"] = (table["conversions"] / table["leads"]).round(4)
    return table.sort_values("leads", ascending=False)


def monthly(frame: pd.DataFrame, time_column: str = "created_at", label: str = "label",
            by: str | None = None) -> pd.DataFrame:
    """Per creation month: leads, labelled leads, conversion rate (optionally split by ``by``)."""
    month = frame[time_column].dt.to_period("M").dt.to_timestamp()
    keys = [month] if by is None else [month, frame[by].fillna("(missing)")]
    grouped = frame.groupby(keys, observed=True)[label]
    table = pd.DataFrame({"leads": grouped.size(), "labelled": grouped.count(),
                          "conversion_rate": grouped.mean().astype(float).round(4)})
    table.index = table.index.set_names(["month"] if by is None else ["month", by])
    return table


def quality_table(leads: pd.DataFrame, placeholders: Iterable[str]) -> pd.DataFrame:
    """Per raw lead column: share missing, share placeholder text, distinct raw vs cleaned values."""
    rows = []
    for column in leads.columns:
        raw = leads[column]
        cleaned = clean_placeholders(raw, placeholders)
        text = raw.dropna().astype(str)
        rows.append({
            "column": column,
            "missing": round(float(raw.isna().mean()), 4),
            "placeholder": round(float((cleaned.isna() & raw.notna()).mean()), 4),
            "distinct_raw": int(text.nunique()),
            "distinct_clean": int(cleaned.dropna().astype(str).str.strip().str.casefold().nunique()),
        })
    return pd.DataFrame(rows).set_index("column")


def univariate_auc(frame: pd.DataFrame, columns: Iterable[str], label: str = "label") -> pd.Series:
    """ROC-AUC of each numeric feature alone (0.5 = no signal; below 0.5 = inverse signal)."""
    labelled = frame[frame[label].notna()]
    y = labelled[label].astype(int)
    scores = {}
    for column in columns:
        values = labelled[column]
        if not pd.api.types.is_numeric_dtype(values) or values.nunique() < 2:
            continue
        filled = values.fillna(values.median() if values.notna().any() else 0)
        scores[column] = float(roc_auc_score(y, filled))
    result = pd.Series(scores, name="roc_auc").sort_values(key=lambda s: -np.abs(s - 0.5))
    return result.round(4)
