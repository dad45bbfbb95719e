"""The ``evaluate`` stage: the untouched test period scored once by the champion and, for comparison,
by every candidate; metrics, business-threshold figures, plot data and the truth check on demo data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadscore.artifacts.bundle import load_bundle
from leadscore.data.schema import prepare_features
from leadscore.data.tables import read_table, write_table
from leadscore.evaluation.comparison import improvement
from leadscore.evaluation.curves import calibration_table, pr_points, roc_points
from leadscore.evaluation.decision import threshold_metrics
from leadscore.evaluation.metrics import classification_metrics


def _truth(test: pd.DataFrame, truth_path: str | Path | None, snapshot_days: float,
           window_days: float) -> np.ndarray | None:
    if truth_path is None or not Path(truth_path).exists():
        return None
    from leadscore.data.demo import label_probability

    p_convert = test["lead_id"].map(read_table(truth_path).set_index("lead_id")["p_convert"])
    return np.asarray(label_probability(p_convert.to_numpy(float), snapshot_days, window_days))


def evaluate_models(models_dir: str | Path, test_path: str | Path, out_dir: str | Path, *,
                    truth_path: str | Path | None = None, snapshot_days: float = 7,
                    label_window_days: float = 90, bins: int = 10) -> dict[str, Any]:
    """Score the test period; write predictions and plot data; return the metrics document."""
    models_dir, out_dir = Path(models_dir), Path(out_dir)
    test = read_table(test_path)
    y = test["label"].astype(int).to_numpy()
    champion = load_bundle(models_dir / "champion")
    bundles = {"champion": champion}
    for folder in sorted(p for p in (models_dir / "candidates").iterdir() if p.is_dir()):
        bundles[folder.name] = load_bundle(folder)
    predictions = pd.DataFrame({"lead_id": test["lead_id"], "created_at": test["created_at"], "label": y})
    for column in ("vertical", "source"):
        if column in test:
            predictions[column] = test[column]
    metrics: dict[str, Any] = {"champion": champion.metadata.get("model"), "test_rows": int(len(test)),
                               "models": {}}
    threshold = float(champion.metadata.get("threshold", {}).get("value", 0.5))
    truth = _truth(test, truth_path, snapshot_days, label_window_days)
    prepared = prepare_features(test, champion.schema)  # the candidates share the champion's schema
    for name, bundle in bundles.items():
        features = prepared if bundle.schema == champion.schema else prepare_features(test, bundle.schema)
        prob = bundle.model.predict_proba(features)[:, 1]
        predictions[name] = prob
        row = {**classification_metrics(y, prob, bins), **threshold_metrics(prob, y, threshold)}
        if truth is not None:
            row["mae_vs_true_probability"] = round(float(np.abs(prob - truth).mean()), 6)
        metrics["models"][name] = {k: round(float(v), 6) for k, v in row.items()}
    metrics["test"] = metrics["models"]["champion"]
    metrics["threshold"] = {"value": threshold, **champion.metadata.get("threshold", {})}
    metrics["improvement_pct"] = improvement(metrics["models"])
    if truth is not None:
        predictions["true_probability"] = truth
        metrics["true_probability"] = classification_metrics(y, truth, bins)
    prob = predictions["champion"].to_numpy()
    write_table(roc_points(y, prob), out_dir / "plots" / "roc.csv")
    write_table(pr_points(y, prob), out_dir / "plots" / "pr.csv")
    write_table(calibration_table(y, prob, bins, truth), out_dir / "plots" / "calibration.csv")
    write_table(predictions, out_dir / "test_predictions.parquet")
    return metrics
