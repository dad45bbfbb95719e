"""The ``export`` stage: the champion bundle with its test metrics and the raw data's fingerprint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from leadscore.artifacts.bundle import load_bundle, save_bundle
from leadscore.core.hashing import folder_sha256


def export_model(model_dir: str | Path, metrics_path: str | Path, raw_dir: str | Path,
                 out_dir: str | Path) -> Path:
    """Copy the champion bundle with its test metrics and the raw-data fingerprint in the metadata."""
    bundle = load_bundle(model_dir)
    metrics = json.loads(Path(metrics_path).read_text())
    bundle.metadata.update({
        "test_metrics": metrics.get("test"),
        "data_sha256": folder_sha256(raw_dir),
    })
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    return save_bundle(bundle, out_dir)
