"""A fitted model with its schema and metadata, saved as joblib + metadata.json with a sha256 check.

Loading a joblib file runs code, so :func:`load_bundle` verifies the artifact's checksum against the
metadata before it unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import tempfile
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.pipeline import Pipeline

from leadscore.exceptions import ModelIntegrityError, ModelNotFoundError
from leadscore.schema import TableSchema

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
TRACKED_PACKAGES = ("leadscore", "numpy", "pandas", "scikit-learn", "lightgbm", "pyarrow", "joblib")


@dataclass
class ModelBundle:
    """What scoring needs: the fitted pipeline, the raw-table schema and descriptive metadata."""

    pipeline: Pipeline
    schema: TableSchema
    metadata: dict[str, Any] = field(default_factory=dict)


def package_versions() -> dict[str, str]:
    """Versions of the packages that a saved model depends on."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write_bytes(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null: metadata.json stays strict JSON."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def save_bundle(bundle: ModelBundle, out_dir: str | Path) -> Path:
    """Write ``model.joblib`` and ``metadata.json`` (with the artifact's sha256) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / MODEL_FILE
    _atomic_write_bytes(model_path, lambda tmp: joblib.dump(
        {"pipeline": bundle.pipeline, "schema": bundle.schema}, tmp, compress=3))
    meta = {**bundle.metadata, "artifact": MODEL_FILE, "sha256": file_sha256(model_path),
            "packages": bundle.metadata.get("packages") or package_versions()}
    bundle.metadata = meta
    text = json.dumps(_json_safe(meta), indent=2, sort_keys=True, default=str, allow_nan=False) + "\n"
    _atomic_write_bytes(out_dir / METADATA_FILE, lambda tmp: tmp.write_text(text))
    return out_dir


def read_metadata(model_dir: str | Path) -> dict[str, Any]:
    """The metadata of a saved bundle, without loading the model."""
    path = Path(model_dir) / METADATA_FILE
    if not path.exists():
        raise ModelNotFoundError(f"no model at {model_dir}: {METADATA_FILE} not found")
    try:
        return dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelIntegrityError(f"{path} is not valid JSON: {exc}") from exc


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


def load_bundle(model_dir: str | Path) -> ModelBundle:
    """Load a bundle after checking the artifact's sha256 against its metadata.

    Raises
    ------
    ModelNotFoundError
        If the folder holds no bundle.
    ModelIntegrityError
        If the artifact was changed or truncated since it was saved.
    """
    model_dir = Path(model_dir)
    meta = read_metadata(model_dir)
    payload = joblib.load(verify_artifact(model_dir, meta))
    return ModelBundle(payload["pipeline"], payload["schema"], meta)
