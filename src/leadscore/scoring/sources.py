"""Where batch scoring reads leads: a file, a SQL query or table, a DataFrame, or the CRM tables."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from leadscore.core.exceptions import ConfigError, InputFileError
from leadscore.data.tables import read_table


class Source(Protocol):
    """Raw lead rows in deterministic chunks (the same input gives the same chunks)."""

    @property
    def description(self) -> str: ...

    def fingerprint(self) -> str: ...

    def chunks(self, chunk_size: int) -> Iterator[pd.DataFrame]: ...


@dataclass
class FileSource:
    """A CSV/TSV/Parquet/XLSX table, one row per lead."""

    path: Path

    @property
    def description(self) -> str:
        return str(self.path)

    def fingerprint(self) -> str:
        stat = Path(self.path).stat()
        return f"{Path(self.path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"

    def chunks(self, chunk_size: int) -> Iterator[pd.DataFrame]:
        frame = read_table(self.path)
        for start in range(0, len(frame), chunk_size):
            yield frame.iloc[start:start + chunk_size]


@dataclass
class SqlSource:
    """A table or SELECT query through SQLAlchemy."""

    url: str
    query: str
    order_by: str | None = None

    @property
    def description(self) -> str:
        from leadscore.core.database import safe_url

        return f"{safe_url(self.url)} {self.query}"

    def fingerprint(self) -> str:
        """The query and what its rows are now (count, ids): a changed source is a new run."""
        from leadscore.scoring.sql import content_signature

        return f"{self.description}|{content_signature(self.url, self.query, key=self.order_by)}"

    def chunks(self, chunk_size: int) -> Iterator[pd.DataFrame]:
        from leadscore.scoring.sql import read_sql_chunks

        yield from read_sql_chunks(self.url, self.query, chunk_size=chunk_size, order_by=self.order_by)


@dataclass
class FrameSource:
    """Rows already in memory (e.g. snapshots built from the CRM tables)."""

    frame: pd.DataFrame
    description: str = "in-memory table"
    key: str = ""

    def fingerprint(self) -> str:
        return self.key or hashlib.sha256(
            pd.util.hash_pandas_object(self.frame, index=False).to_numpy().tobytes()).hexdigest()

    def chunks(self, chunk_size: int) -> Iterator[pd.DataFrame]:
        for start in range(0, len(self.frame), chunk_size):
            yield self.frame.iloc[start:start + chunk_size]


# --- sinks -----------------------------------------------------------------------------------------

def open_source(input_: str, *, query: str | None = None, order_by: str | None = None) -> Source:
    """A database source when ``input_`` is a URL or SQLite file (``query``: table or SELECT), else a file."""
    from leadscore.core.database import is_sql_location

    if is_sql_location(input_):
        if not query:
            raise ConfigError(f"--input {input_} is a database: pass --query TABLE or --query 'SELECT ...'")
        return SqlSource(input_, query, order_by)
    if query:
        raise ConfigError("--query needs a database --input (a URL or a .db/.sqlite file)")
    path = Path(input_)
    if not path.exists():
        raise InputFileError(f"--input {input_}: no such file")
    return FileSource(path)


# --- bad rows --------------------------------------------------------------------------------------

@dataclass
class CrmDatabaseSource:
    """Open leads of a CRM database, read lead batch by lead batch (ordered by id) through its mapping and
    turned into snapshot rows by the training feature code, as of ``as_of`` (naive UTC)."""

    db: Any  # leadscore.data.crm_database.CrmDatabase
    params: Any
    as_of: pd.Timestamp

    @property
    def description(self) -> str:
        return f"{self.db.url} (open leads as of {self.as_of})"

    def fingerprint(self) -> str:
        """The database, the instant and the newest change it holds: new data is a new run."""
        return f"crm-db:{self.db.url}:{self.as_of.isoformat()}:{self.db.data_end().isoformat()}"

    def chunks(self, chunk_size: int) -> Iterator[pd.DataFrame]:
        from leadscore.data.crm import open_lead_rows

        for tables in self.db.iter_lead_batches(chunk_size):
            rows, _ = open_lead_rows(tables, self.params, as_of=self.as_of)
            if len(rows):
                yield rows


def crm_source(raw_dir: str | Path, params: Any, *, as_of: str | None = None,
               mapping: str | Path | None = None) -> FrameSource | CrmDatabaseSource:
    """Open leads of the CRM tables in ``raw_dir`` (a folder, or a database read through ``mapping``) as
    snapshot rows, built by the training feature code.

    Open, as ``dvc repro`` splits them: created by ``as_of`` (default: the end of the data), label window
    (``label_window_days`` after the snapshot) not yet closed, and not converted by ``as_of``. Features
    are taken at ``created_at + snapshot_days`` (the moment the model was trained to score), or at
    ``as_of`` for younger leads, exactly as ``dvc repro`` builds its rows.
    """
    from leadscore.core.database import is_sql_location
    from leadscore.core.hashing import folder_sha256
    from leadscore.data.crm import load_crm, open_lead_rows

    when = None if as_of is None else pd.Timestamp(as_of)
    if is_sql_location(str(raw_dir)):
        from leadscore.data.crm_database import CrmDatabase
        from leadscore.data.mapping import DEMO_MAPPING, load_mapping

        db = CrmDatabase(str(raw_dir), load_mapping(mapping) if mapping else DEMO_MAPPING)
        db.check()
        end = db.data_end() if when is None else when
        if end.tzinfo is not None:
            end = end.tz_convert("UTC").tz_localize(None)
        return CrmDatabaseSource(db, params, end)
    if mapping:
        raise ConfigError("--crm-map reads a CRM database: give --crm a database URL or .db file")
    snap, end = open_lead_rows(load_crm(raw_dir), params, as_of=when)
    key = f"crm:{folder_sha256(raw_dir)}:{end.isoformat()}"
    return FrameSource(snap, description=f"{raw_dir} (open leads as of {end})", key=key)
