"""A bundle's ``metadata.json``: what every bundle records, reading it, and checking the artifact's sha256.

Light on purpose (no scikit-learn, no joblib): listing or verifying registry versions imports only this.
"""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from leadscore.artifacts.paths import METADATA_FILE, MODEL_FILE
from leadscore.core.exceptions import ModelIntegrityError, ModelNotFoundError
from leadscore.core.hashing import file_sha256

FORMAT_VERSION = 2  # 1 (implicit): the flat package layout; 2: subpackages, "model" payload key
TRACKED_PACKAGES = ("leadscore", "numpy", "pandas", "scikit-learn", "lightgbm", "xgboost", "catboost",
                    "pyarrow", "joblib")


def package_versions() -> dict[str, str]:
    """Versions of the packages that a saved model depends on."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def base_metadata(now: datetime | None = None) -> dict[str, Any]:
    """What every saved bundle records about how it was made: format, time and package versions."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC)
    return {"format_version": FORMAT_VERSION, "created_at": stamp.isoformat(timespec="seconds"),
            "packages": package_versions()}


def read_metadata(model_dir: str | Path) -> dict[str, Any]:
    """The metadata of a saved bundle, without loading the model."""
    path = Path(model_dir) / METADATA_FILE
    if not path.exists():
        raise ModelNotFoundError(f"no model at {model_dir}: {METADATA_FILE} not found")
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelIntegrityError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise ModelIntegrityError(f"{path}: expected a JSON object, got a JSON {type(meta).__name__}")
    return meta


def verify_artifact(model_dir: str | Path, meta: dict[str, Any]) -> Path:
    """The bundle's artifact path, after checking that it exists and matches the sha256 in ``meta``.

    Raises
    ------
    ModelNotFoundError
        If the artifact is missing.
    ModelIntegrityError
        If it was changed or truncated since it was saved.
    """
    artifact = Path(model_dir) / str(meta.get("artifact", MODEL_FILE))
    if not artifact.is_file():
        raise ModelNotFoundError(f"no model artifact at {artifact}")
    actual = file_sha256(artifact)
    if actual != meta.get("sha256"):
        raise ModelIntegrityError(
            f"refusing to load {artifact}: expected sha256 {str(meta.get('sha256'))[:12]}..., "
            f"got {actual[:12]}... (file changed or truncated)"
        )
    return artifact
