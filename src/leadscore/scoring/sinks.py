"""Where batch scoring writes scores: a file written only when complete, or a database (``store``)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from leadscore.core.exceptions import ConfigError
from leadscore.core.files import FileLock, atomic_write_text
from leadscore.data.tables import read_table, write_table
from leadscore.scoring.scorer import OUTPUT_COLUMNS

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where scores go: one atomic commit per chunk, resumable by run key."""

    def begin(self, run_key: str, info: dict[str, object]) -> tuple[str, set[int]]: ...

    def write(self, chunk_index: int, scores: pd.DataFrame) -> None: ...

    def scored_ids(self, model_version: str) -> set[str]: ...

    def finish(self, status: str, summary: dict[str, object]) -> None: ...

    def close(self) -> None: ...


class FileSink:
    """Scores into a CSV or Parquet file, via committed part files in ``<output>.partial/``.

    The output is assembled and renamed into place only when the run is done; a failed run keeps its
    parts for the next run with the same key (a run that failed before committing any chunk leaves
    nothing behind). A run record goes to ``<output>.run.json``. One run at a time writes an output:
    ``<output>.lock`` is held (and removed) by the running one; a second gets a one-line error.
    """

    keyed_by_lead = False  # one file per run: row numbers as ids overwrite nothing

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in (".csv", ".parquet"):
            raise ConfigError(f"--output {self.path}: expected a .csv or .parquet file or a database URL")
        self.parts = self.path.with_name(self.path.name + ".partial")
        self.record = self.path.with_name(self.path.name + ".run.json")
        self._run: dict[str, Any] = {}
        self._lock = FileLock(self.path.with_name(self.path.name + ".lock"),
                              f"another run is writing {self.path} right now: wait for it to finish or "
                              "choose another --output")

    def begin(self, run_key: str, info: dict[str, object]) -> tuple[str, set[int]]:
        self._lock.acquire()
        manifest = self.parts / "run.json"
        if manifest.exists():
            try:
                previous = json.loads(manifest.read_text())
            except (OSError, json.JSONDecodeError):
                previous = {}
            if previous.get("run_key") == run_key:
                done = {int(p.stem.split("-")[1]) for p in self.parts.glob("part-*.parquet")}
                self._run = previous
                log.info("resuming run %s: %d chunk(s) already done", previous["run_id"], len(done))
                return str(previous["run_id"]), done
        if self.parts.exists():
            shutil.rmtree(self.parts)
        self.parts.mkdir(parents=True)
        run_id = hashlib.sha256(f"{run_key}{time.time_ns()}".encode()).hexdigest()[:32]
        self._run = {"run_id": run_id, "run_key": run_key,
                     "started_at": datetime.now(UTC).isoformat(timespec="seconds"), **info}
        atomic_write_text(manifest, json.dumps(self._run, default=str))
        return run_id, set()

    def write(self, chunk_index: int, scores: pd.DataFrame) -> None:
        target = self.parts / f"part-{chunk_index:06d}.parquet"
        tmp = self.parts / f".tmp-{chunk_index:06d}.parquet"
        scores.to_parquet(tmp, index=False)
        os.replace(tmp, target)

    def scored_ids(self, model_version: str) -> set[str]:
        if not self.path.exists():
            return set()
        old = read_table(self.path)
        if "model_version" not in old.columns or "lead_id" not in old.columns:
            return set()
        return set(old.loc[old["model_version"].astype(str) == model_version, "lead_id"].astype(str))

    def finish(self, status: str, summary: dict[str, object]) -> None:
        record = {**self._run, **summary, "status": status,
                  "finished_at": datetime.now(UTC).isoformat(timespec="seconds")}
        if status == "done":
            parts = sorted(self.parts.glob("part-*.parquet"))
            frames = [pd.read_parquet(p) for p in parts]
            new = pd.concat(frames, ignore_index=True) if frames else _empty_scores()
            if summary.get("incremental") and self.path.exists():
                new = _upsert(read_table(self.path), new)
            write_table(new, self.path)
            shutil.rmtree(self.parts)
        elif not any(self.parts.glob("part-*.parquet")):
            shutil.rmtree(self.parts, ignore_errors=True)  # failed before any work: nothing to resume
            return
        atomic_write_text(self.record, json.dumps(record, indent=2, default=str) + "\n")

    def close(self) -> None:
        self._lock.release()


def _empty_scores() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in OUTPUT_COLUMNS})


def _upsert(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``old`` whose (lead_id, model_version) is not in ``new``, then ``new``."""
    key_new = set(zip(new["lead_id"].astype(str), new["model_version"].astype(str), strict=True))
    keys_old = zip(old["lead_id"].astype(str), old["model_version"].astype(str), strict=True)
    keep = np.array([k not in key_new for k in keys_old], dtype=bool)
    old = old.loc[keep]
    if "scored_at" in old.columns:
        old = old.assign(scored_at=pd.to_datetime(old["scored_at"], utc=True))
    return pd.concat([old, new], ignore_index=True)


def _database_id(location: str) -> str:
    """A SQLite database's resolved file, else the URL itself: equal for the same database."""
    import sqlalchemy as sa

    if "://" not in location:
        return str(Path(location).resolve())
    url = sa.make_url(location)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return str(Path(str(url.database)).resolve())
    return url.render_as_string(hide_password=False)


def check_not_input(output: str, *, table: str = "lead_scores", input_: str | None = None,
                    query: str | None = None) -> None:
    """Refuse an output that is the input: scoring a file into itself would destroy the leads.

    Raises
    ------
    ConfigError
        If ``output`` is the same file as ``input_`` (paths compared after resolving links), or the same
        SQLite file and table.
    """
    from leadscore.core.database import is_sql_location, safe_url

    if not input_:
        return
    if is_sql_location(output) or is_sql_location(input_):
        same_db = _database_id(output) == _database_id(input_)
        if same_db and query is not None and query.strip() == table:
            raise ConfigError(f"--table {table} is the table the leads are read from ({safe_url(input_)}): "
                              "write the scores to another table")
        return
    if Path(output).resolve() == Path(input_).resolve():
        raise ConfigError(f"--output is the input file ({input_}): refusing to overwrite the leads being "
                          "scored; write the scores to another file")


def open_sink(output: str, *, table: str = "lead_scores") -> Sink:
    """A :class:`FileSink` for a .csv/.parquet path, else a database sink for a URL or SQLite file."""
    from leadscore.core.database import is_sql_location
    from leadscore.scoring.sql import SqlScoreSink

    if is_sql_location(output):
        return SqlScoreSink(output, table)
    return FileSink(output)
