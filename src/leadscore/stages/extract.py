"""The ``extract`` stage: the CRM tables the pipeline reads, from files or from a database, as Parquet.

A database is read through its mapping (:class:`~leadscore.data.crm_database.CrmDatabase`) and written
sorted, so the same database content always gives the same bytes: the stage runs on every ``dvc repro``
(a database has no file hash DVC could watch), and the stages after it rerun only when the extract really
changed. The manifest records each table's row count and newest timestamp, so a run says what it read.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from leadscore.core.database import is_sql_location, safe_url
from leadscore.core.exceptions import ConfigError, InputFileError
from leadscore.core.files import atomic_write, atomic_write_text
from leadscore.core.hashing import file_sha256
from leadscore.core.jsonsafe import dumps
from leadscore.data.crm import CRM_TABLES, load_crm
from leadscore.data.tables import write_table

FILES = "files"
ENV_PREFIX = "env:"
TIME_COLUMNS = {"leads": "created_at", "activities": "timestamp", "outcomes": "converted_at"}
SORT_KEYS = {"leads": ["lead_id"], "activities": ["lead_id", "timestamp"], "outcomes": ["lead_id"]}


def resolve_source(source: str) -> str:
    """``files``, a database URL, or ``env:NAME`` (the URL in that environment variable, so a password
    never sits in params.yaml).

    Raises
    ------
    ConfigError
        If the variable is unset or the source is neither files nor a database.
    """
    source = str(source).strip()
    if source.startswith(ENV_PREFIX):
        name = source[len(ENV_PREFIX):]
        value = os.environ.get(name)
        if not value:
            raise ConfigError(f"crm.source: environment variable {name} is not set")
        source = value
    if source != FILES and not is_sql_location(source):
        raise ConfigError(f"crm.source: expected 'files', a database URL or env:NAME, "
                          f"got {safe_url(source)!r}")
    return source


def _copier(source: Path) -> Callable[[Path], object]:
    return lambda tmp: shutil.copyfile(source, tmp)


def _describe(tables: dict[str, pd.DataFrame]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, frame in tables.items():
        stamps = pd.to_datetime(frame[TIME_COLUMNS[name]], errors="coerce")
        out[name] = {"rows": int(len(frame)),
                     "newest": None if stamps.isna().all() else stamps.max().isoformat()}
    return out


def extract_crm(source: str, out_dir: str | Path, *, raw_dir: str | Path = "data/raw",
                mapping: str | Path | None = None) -> dict[str, Any]:
    """Write ``leads``, ``activities`` and ``outcomes`` (Parquet) to ``out_dir``; return the manifest.

    ``source`` is ``files`` (the tables of ``raw_dir``, copied byte for byte) or a database read
    through ``mapping`` (default: the demo schema).
    """
    out = Path(out_dir)
    resolved = resolve_source(source)
    if resolved == FILES:
        if mapping:
            raise ConfigError("crm.mapping is for a database source; crm.source is files")
        tables = load_crm(raw_dir)
        for name in CRM_TABLES:
            found = next(p for p in (Path(raw_dir) / f"{name}.parquet", Path(raw_dir) / f"{name}.csv")
                         if p.exists())
            if found.suffix == ".parquet":
                atomic_write(out / f"{name}.parquet", _copier(found))
            else:
                write_table(tables[name], out / f"{name}.parquet")
        where = str(raw_dir)
    else:
        from leadscore.data.crm_database import CrmDatabase
        from leadscore.data.mapping import DEMO_MAPPING, load_mapping

        if mapping and not Path(mapping).exists():
            raise InputFileError(f"crm.mapping: no such file {mapping}")
        with CrmDatabase(resolved, load_mapping(mapping) if mapping else DEMO_MAPPING) as db:
            db.check()
            tables = db.read_tables()
        for name in CRM_TABLES:
            keys = [k for k in SORT_KEYS[name] if k in tables[name].columns]
            tables[name] = tables[name].sort_values(keys, kind="stable").reset_index(drop=True)
            write_table(tables[name], out / f"{name}.parquet")
        where = safe_url(resolved)
    manifest = {"source": where, "tables": _describe(tables),
                "sha256": {name: file_sha256(out / f"{name}.parquet") for name in CRM_TABLES}}
    return manifest


def write_manifest(manifest: dict[str, Any], path: str | Path) -> None:
    """The manifest as JSON (a DVC metric)."""
    atomic_write_text(path, dumps(manifest, indent=2) + "\n")
