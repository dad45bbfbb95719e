"""The ``export`` stage: the champion bundle with its test metrics, what it achieved on the test period
(the record its model card reads) and the raw data's fingerprint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from leadscore.artifacts.bundle import load_bundle, save_bundle
from leadscore.core.hashing import folder_sha256
from leadscore.data.tables import read_table
from leadscore.evaluation.holdout import SEGMENT_COLUMNS, holdout_summary
from leadscore.evaluation.tiers import saved_threshold, saved_tiers


def test_period_summary(predictions_path: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    """:func:`holdout_summary` of the champion's test-period predictions (``evaluate`` stage output)."""
    predictions = read_table(predictions_path)
    created = pd.to_datetime(predictions["created_at"])
    where = (f"test period: the {len(predictions):,} most recent closed leads, created "
             f"{created.min():%Y-%m-%d} to {created.max():%Y-%m-%d}, never seen in training")
    return holdout_summary(
        predictions["label"], predictions["champion"], where=where,
        threshold=saved_threshold(meta), tiers=saved_tiers(meta),
        segments={c: predictions[c] for c in SEGMENT_COLUMNS if c in predictions},
        seed=int(meta.get("seed", 42)))


def export_model(model_dir: str | Path, metrics_path: str | Path, raw_dir: str | Path,
                 out_dir: str | Path, predictions_path: str | Path | None = None) -> Path:
    """Copy the champion bundle with its test metrics, its test-period summary (when
    ``predictions_path`` is given) and the raw-data fingerprint in the metadata."""
    bundle = load_bundle(model_dir)
    metrics = json.loads(Path(metrics_path).read_text())
    bundle.metadata.update({
        "test_metrics": metrics.get("test"),
        "data_sha256": folder_sha256(raw_dir),
    })
    if predictions_path is not None:
        bundle.metadata["holdout"] = test_period_summary(predictions_path, bundle.metadata)
        created = pd.to_datetime(read_table(predictions_path)["created_at"])
        bundle.metadata["labelled_until"] = created.max().isoformat()  # judged on leads up to here
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    return save_bundle(bundle, out_dir)
