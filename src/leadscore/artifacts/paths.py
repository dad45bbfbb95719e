"""Every artifact path leadscore reads or writes, named once.

Bundle files, the registry's layout, the ``train`` stage's output folders and the service's default
prediction log. DVC stage paths are passed on the command line (``dvc.yaml``); these are the names
*inside* those folders.
"""

from __future__ import annotations

from pathlib import Path

# a model bundle folder
MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
CARD_MARKDOWN = "model_card.md"  # written at registration
CARD_HTML = "model_card.html"

# a registry root
REGISTRY_ENV = "LEADSCORE_REGISTRY"
DEFAULT_REGISTRY = Path("registry")
REGISTRY_VERSIONS = "versions"
REGISTRY_ACTIVE = "ACTIVE"
REGISTRY_LOCK = ".lock"

# the train stage's output folder (artifacts/models)
CHAMPION_DIR = "champion"
CANDIDATES_DIR = "candidates"
SELECTION_DIR = "selection"

# the scoring service: prediction log next to the registry folder
PREDICTION_LOG_FILE = "predictions.db"
LOG_TABLE = "prediction_log"   # the store's prediction log table: `serve` writes it, every command reads it
OUTCOMES_TABLE = "outcomes"      # the store's outcomes table


def default_store_url(registry: str | Path) -> str:
    """The store the API and monitoring share by default: SQLite ``predictions.db`` beside the registry."""
    return f"sqlite:///{Path(registry).resolve().parent / PREDICTION_LOG_FILE}"


def train_outputs(models_dir: str | Path) -> dict[str, Path]:
    """The champion bundle, candidate bundles and selection folders under the train stage's output."""
    models_dir = Path(models_dir)
    return {name: models_dir / name for name in (CHAMPION_DIR, CANDIDATES_DIR, SELECTION_DIR)}
