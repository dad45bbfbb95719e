"""A fitted model with its schema and metadata, saved as joblib + metadata.json with a sha256 check.

Loading a joblib file runs code, so :func:`load_bundle` verifies the artifact's checksum against the
metadata before it unpickles anything. ``format_version`` in the metadata says which layout wrote the
bundle; bundles from before the subpackage layout (no ``format_version``) load through
:mod:`leadscore.artifacts.legacy`. Thread counts are never taken from the bundle: every classifier gets
this machine's (:func:`leadscore.core.threads.n_threads`) at load time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib

from leadscore.artifacts import legacy, signing
from leadscore.artifacts.metadata import (
    FORMAT_VERSION,
    base_metadata,
    package_versions,
    read_metadata,
    verify_artifact,
)
from leadscore.artifacts.paths import METADATA_FILE, MODEL_FILE
from leadscore.core import jsonsafe
from leadscore.core.exceptions import ConfigError, ModelIntegrityError
from leadscore.core.files import atomic_write, atomic_write_text
from leadscore.core.hashing import file_sha256
from leadscore.core.threads import n_threads
from leadscore.data.schema import TableSchema
from leadscore.modeling.composite import set_threads


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


def save_bundle(bundle: ModelBundle, out_dir: str | Path) -> Path:
    """Write ``model.joblib`` and ``metadata.json`` (with the artifact's sha256) into ``out_dir``."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"cannot save a model to {out_dir}: it is a file, not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / MODEL_FILE
    atomic_write(model_path, lambda tmp: joblib.dump(
        {"model": bundle.model, "schema": bundle.schema}, tmp, compress=3))
    meta = jsonsafe.json_safe({**base_metadata(), **bundle.metadata, "format_version": FORMAT_VERSION,
                               "artifact": MODEL_FILE, "sha256": file_sha256(model_path)})
    meta[signing.SIGNATURE] = signing.sign(meta)  # covers the metadata and, through sha256, the model
    bundle.metadata = meta
    atomic_write_text(out_dir / METADATA_FILE, jsonsafe.dumps(meta, indent=2) + "\n")
    return out_dir


def load_bundle(model_dir: str | Path, *, trust: bool = False) -> ModelBundle:
    """Load a bundle after checking its signature and the artifact's sha256 against its metadata.

    Nothing is unpickled unless the metadata's signature matches this machine's signing key
    (:mod:`leadscore.artifacts.signing`); ``trust`` skips that check, for bundles the user made (e.g.
    saved before signing existed). Bundles of any earlier ``format_version`` load too; every classifier
    is set to this machine's thread count.

    Raises
    ------
    ModelNotFoundError
        If the folder holds no bundle.
    ModelIntegrityError
        If the bundle is unsigned or signed with another key (without ``trust``), the artifact was changed
        or truncated since it was saved, or it was written by a newer release.
    """
    model_dir = Path(model_dir)
    meta = read_metadata(model_dir)
    version = int(meta.get("format_version", 1))
    if version > FORMAT_VERSION:
        raise ModelIntegrityError(f"{model_dir}: bundle format {version} is newer than this release reads "
                                  f"({FORMAT_VERSION}); upgrade leadscore")
    signing.verify(meta, model_dir, trust=trust)
    artifact = verify_artifact(model_dir, meta)
    if version < FORMAT_VERSION:
        legacy.install()
    payload = joblib.load(artifact)
    model = payload["model"] if "model" in payload else payload["pipeline"]
    set_threads(model, n_threads())
    return ModelBundle(model, payload["schema"], meta)


__all__ = ["FORMAT_VERSION", "METADATA_FILE", "MODEL_FILE", "ModelBundle", "base_metadata", "load_bundle",
           "package_versions", "read_metadata", "save_bundle", "verify_artifact"]
