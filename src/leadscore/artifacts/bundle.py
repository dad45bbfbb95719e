"""A fitted model with its schema and metadata, saved as joblib + metadata.json with a sha256 check.

Loading a joblib file runs code, so :func:`load_bundle` verifies the artifact's checksum against the
metadata before it unpickles anything. ``format_version`` in the metadata says which layout wrote the
bundle; bundles from before the subpackage layout (no ``format_version``) load through
:mod:`leadscore.artifacts.legacy`. Thread counts are never taken from the bundle: every classifier gets
this machine's (:func:`leadscore.core.threads.n_threads`) at load time.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import joblib

from leadscore.artifacts import legacy
from leadscore.artifacts.paths import METADATA_FILE, MODEL_FILE
from leadscore.core import jsonsafe
from leadscore.core.exceptions import ModelIntegrityError, ModelNotFoundError
from leadscore.core.files import atomic_write, atomic_write_text
from leadscore.core.hashing import file_sha256
from leadscore.core.threads import n_threads
from leadscore.data.schema import TableSchema
from leadscore.modeling.composite import set_threads

FORMAT_VERSION = 2  # 1 (implicit): the flat package layout; 2: subpackages, "model" payload key
TRACKED_PACKAGES = ("leadscore", "numpy", "pandas", "scikit-learn", "lightgbm", "xgboost", "catboost",
                    "pyarrow", "joblib")


@dataclass
class ModelBundle:
    """What scoring needs: the fitted scoring model, the raw-table schema and descriptive metadata.

    ``model`` is a :class:`~leadscore.modeling.ensemble.LeadModel`, a
    :class:`~leadscore.modeling.segments.SegmentedModel` or one fitted estimator: anything with
    ``predict_proba`` on prepared features (:func:`leadscore.data.schema.prepare_features`).
    """

    model: Any
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


def base_metadata(now: datetime | None = None) -> dict[str, Any]:
    """What every saved bundle records about how it was made: format, time and package versions."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC)
    return {"format_version": FORMAT_VERSION, "created_at": stamp.isoformat(timespec="seconds"),
            "packages": package_versions()}


def save_bundle(bundle: ModelBundle, out_dir: str | Path) -> Path:
    """Write ``model.joblib`` and ``metadata.json`` (with the artifact's sha256) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / MODEL_FILE
    atomic_write(model_path, lambda tmp: joblib.dump(
        {"model": bundle.model, "schema": bundle.schema}, tmp, compress=3))
    meta = {**base_metadata(), **bundle.metadata, "format_version": FORMAT_VERSION,
            "artifact": MODEL_FILE, "sha256": file_sha256(model_path)}
    bundle.metadata = meta
    atomic_write_text(out_dir / METADATA_FILE, jsonsafe.dumps(meta, indent=2) + "\n")
    return out_dir


def read_metadata(model_dir: str | Path) -> dict[str, Any]:
    """The metadata of a saved bundle, without loading the model."""
    path = Path(model_dir) / METADATA_FILE
    if not path.exists():
        raise ModelNotFoundError(f"no model at {model_dir}: {METADATA_FILE} not found")
    try:
        return dict(jsonsafe.loads(path.read_text()))
    except (ValueError, UnicodeDecodeError) as exc:
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

    Bundles of any earlier ``format_version`` load too; every classifier is set to this machine's
    thread count.

    Raises
    ------
    ModelNotFoundError
        If the folder holds no bundle.
    ModelIntegrityError
        If the artifact was changed or truncated since it was saved, or was written by a newer release.
    """
    model_dir = Path(model_dir)
    meta = read_metadata(model_dir)
    version = int(meta.get("format_version", 1))
    if version > FORMAT_VERSION:
        raise ModelIntegrityError(f"{model_dir}: bundle format {version} is newer than this release reads "
                                  f"({FORMAT_VERSION}); upgrade leadscore")
    artifact = verify_artifact(model_dir, meta)
    if version < FORMAT_VERSION:
        legacy.install()
    payload = joblib.load(artifact)
    model = payload["model"] if "model" in payload else payload["pipeline"]
    set_threads(model, n_threads())
    return ModelBundle(model, payload["schema"], meta)
