"""The ``evaluate`` stage: the untouched test period scored once by the champion and, for comparison,
by every candidate; metrics, business-threshold figures, plot data and the truth check on demo data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from leadscore.artifacts.bundle import load_bundle
from leadscore.data.tables import read_table, write_table
from leadscore.demo.truth import true_probability
from leadscore.evaluation.holdout import measure_models, score_leads, write_plot_data
from leadscore.evaluation.tiers import saved_threshold


def evaluate_models(models_dir: str | Path, test_path: str | Path, out_dir: str | Path, *,
                    truth_path: str | Path | None = None, snapshot_days: float = 7,
                    label_window_days: float = 90, bins: int = 10) -> dict[str, Any]:
    """Score the test period; write predictions and plot data; return the metrics document."""
    models_dir, out_dir = Path(models_dir), Path(out_dir)
    test = read_table(test_path)
    bundles = {"champion": load_bundle(models_dir / "champion")}
    for folder in sorted(p for p in (models_dir / "candidates").iterdir() if p.is_dir()):
        bundles[folder.name] = load_bundle(folder)
    predictions = score_leads(bundles, test)
    truth = true_probability(test, truth_path, snapshot_days, label_window_days)
    meta = bundles["champion"].metadata
    y = predictions["label"].to_numpy()
    metrics = {"champion": meta.get("model"), **measure_models(
        y, {name: predictions[name] for name in bundles},
        threshold=saved_threshold(meta),
        threshold_info=meta.get("threshold", {}), truth=truth, bins=bins)}
    if truth is not None:
        predictions["true_probability"] = truth
    write_plot_data(y, predictions["champion"], out_dir, bins=bins, truth=truth)
    write_table(predictions, out_dir / "test_predictions.parquet")
    return metrics
