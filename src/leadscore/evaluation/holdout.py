"""What a model achieved on leads it never saw, as one JSON-safe record kept in its metadata.

The model card (and anyone reading ``leadscore models show``) reads this record: headline metrics with
bootstrap intervals, calibration bins, the threshold and tiers as they played out, and per-segment
quality. It is computed once, where the held-out predictions exist (the ``export`` stage on the test
period, ``leadscore fit`` on its validation part), so a card never needs the data again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from leadscore.core.jsonsafe import json_safe
from leadscore.data.schema import prepare_features
from leadscore.data.tables import write_table
from leadscore.evaluation.breakdown import by_segment
from leadscore.evaluation.comparison import bootstrap_ci, improvement
from leadscore.evaluation.curves import calibration_table, pr_points, roc_points
from leadscore.evaluation.metrics import classification_metrics
from leadscore.evaluation.tiers import Tier, assign_tiers, threshold_metrics

CI_METRICS = ("roc_auc", "pr_auc", "brier", "log_loss")
SEGMENT_COLUMNS = ("vertical", "source")  # the demo's segments, kept with the predictions


def score_leads(bundles: Mapping[str, Any], leads: pd.DataFrame) -> pd.DataFrame:
    """Labelled leads with one probability column per model bundle (``bundles["champion"]`` first)."""
    predictions = pd.DataFrame({"lead_id": leads["lead_id"], "created_at": leads["created_at"],
                                "label": leads["label"].astype(int).to_numpy()})
    for column in SEGMENT_COLUMNS:
        if column in leads:
            predictions[column] = leads[column]
    champion = bundles["champion"]
    prepared = prepare_features(leads, champion.schema)  # the candidates share the champion's schema
    for name, bundle in bundles.items():
        features = prepared if bundle.schema == champion.schema else prepare_features(leads, bundle.schema)
        predictions[name] = bundle.model.predict_proba(features)[:, 1]
    return predictions




def holdout_summary(y: ArrayLike, prob: ArrayLike, *, where: str, threshold: float,
                    tiers: Sequence[Tier], segments: Mapping[str, ArrayLike] | None = None,
                    n_boot: int = 500, seed: int = 42, bins: int = 10,
                    level: float = 0.95) -> dict[str, Any]:
    """Metrics with ``level`` percentile-bootstrap intervals, calibration, threshold, tiers and segments.

    Parameters
    ----------
    y, prob : held-out labels (0/1) and the model's probabilities for them.
    where : what the held-out rows are, in words ("test period 2025-06-01 to 2025-08-31").
    threshold, tiers : the model's decision threshold and tiers, applied to ``prob``.
    segments : column name -> the segment value of each row (e.g. ``{"vertical": ...}``).
    """
    labels, values = np.asarray(y, dtype=int), np.asarray(prob, dtype=float)
    metrics = classification_metrics(labels, values, bins)
    intervals = bootstrap_ci(labels, values, CI_METRICS, n_boot=n_boot, seed=seed, level=level)
    calibration = calibration_table(labels, values, min(bins, len(values)))
    flagged = threshold_metrics(values, labels, threshold)
    names, _ = assign_tiers(values, tiers)
    tier_rows = []
    for tier in tiers:
        inside = names == tier.name
        tier_rows.append({"name": tier.name, "min_probability": tier.min_probability,
                          "leads": int(inside.sum()), "share": float(inside.mean()),
                          "conversion_rate": float(labels[inside].mean()) if inside.any() else None,
                          "converters_share": float(labels[inside].sum() / max(labels.sum(), 1))})
    segment_tables = {}
    for column, values_of in (segments or {}).items():
        table = by_segment(labels, values, np.asarray(values_of, dtype=object))
        segment_tables[column] = table.reset_index().to_dict("records")
    return json_safe({
        "where": where, "rows": int(len(labels)), "positives": int(labels.sum()),
        "metrics": metrics, "ci_level": level, "n_boot": n_boot,
        "ci": {name: list(bounds) for name, bounds in intervals.items()},
        "calibration": calibration.to_dict("records"),
        "threshold": {"value": float(threshold), **{k: float(v) for k, v in flagged.items()}},
        "tiers": tier_rows, "segments": segment_tables,
    })


def measure_models(y: ArrayLike, probs: Mapping[str, ArrayLike], *, threshold: float,
                   threshold_info: Mapping[str, Any] | None = None, truth: ArrayLike | None = None,
                   bins: int = 10) -> dict[str, Any]:
    """The metrics document of held-out leads scored by several models (``probs["champion"]`` first).

    Per model: ranking and calibration metrics, precision/recall/F1 at ``threshold`` and, with
    ``truth`` (the demo's true probabilities), the mean absolute error against it; then the champion's
    improvement over the baselines present.
    """
    labels = np.asarray(y, dtype=int)
    doc: dict[str, Any] = {"test_rows": int(len(labels)), "models": {}}
    for name, prob in probs.items():
        values = np.asarray(prob, dtype=float)
        row = {**classification_metrics(labels, values, bins), **threshold_metrics(values, labels, threshold)}
        if truth is not None:
            row["mae_vs_true_probability"] = round(float(np.abs(values - np.asarray(truth, float)).mean()), 6)
        doc["models"][name] = {k: round(float(v), 6) for k, v in row.items()}
    doc["test"] = doc["models"]["champion"]
    doc["threshold"] = {"value": float(threshold), **(threshold_info or {})}
    doc["improvement_pct"] = improvement(doc["models"])
    if truth is not None:
        doc["true_probability"] = classification_metrics(labels, truth, bins)
    return doc


def write_plot_data(y: ArrayLike, prob: ArrayLike, out_dir: str | Path, *, bins: int = 10,
                    truth: ArrayLike | None = None) -> None:
    """ROC, precision-recall and calibration points of ``prob`` as CSV under ``out_dir/plots`` (DVC plots)."""
    plots = Path(out_dir) / "plots"
    write_table(roc_points(y, prob), plots / "roc.csv")
    write_table(pr_points(y, prob), plots / "pr.csv")
    write_table(calibration_table(y, prob, bins, truth), plots / "calibration.csv")
