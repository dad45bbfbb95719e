"""Batch scoring: leads from a file, a database or the CRM tables, scores into a file or a database.

The work is done chunk by chunk. Each chunk is committed on its own (a part file renamed into place, or
one database transaction), and a run is keyed by its input, model version and options, so a run that
stopped (crash, dropped connection, Ctrl-C) resumes at the first chunk not committed. A file output
appears only when every chunk is done: never half a file.

Bad rows (no id, a duplicated id, a number that is not finite or not a number) are reported with their id
and reason and skipped, or stop the run with ``on_bad_row="fail"``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from leadscore.core.exceptions import ConfigError, DataValidationError, InputFileError, LeadscoreError
from leadscore.core.files import atomic_write_text
from leadscore.data.tables import read_table, write_table
from leadscore.scoring.scorer import OUTPUT_COLUMNS, Scorer

log = logging.getLogger(__name__)

BadRowPolicy = Literal["skip", "fail"]
MAX_REPORTED_ERRORS = 1000  # kept in the run record; the count covers all


# --- sources ---------------------------------------------------------------------------------------

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
        from leadscore.scoring.store import safe_url

        return f"{safe_url(self.url)} {self.query}"

    def fingerprint(self) -> str:
        return self.description

    def chunks(self, chunk_size: int) -> Iterator[pd.DataFrame]:
        from leadscore.scoring.store import read_sql_chunks

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
    parts for the next run with the same key. A run record goes to ``<output>.run.json``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in (".csv", ".parquet"):
            raise ConfigError(f"--output {self.path}: expected a .csv or .parquet file or a database URL")
        self.parts = self.path.with_name(self.path.name + ".partial")
        self.record = self.path.with_name(self.path.name + ".run.json")
        self._run: dict[str, Any] = {}

    def begin(self, run_key: str, info: dict[str, object]) -> tuple[str, set[int]]:
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
        atomic_write_text(self.record, json.dumps(record, indent=2, default=str) + "\n")

    def close(self) -> None:
        pass


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


def open_sink(output: str, *, table: str = "lead_scores") -> Sink:
    """A :class:`FileSink` for a .csv/.parquet path, else a database sink for a URL or SQLite file."""
    from leadscore.scoring.store import SqlScoreSink, is_sql_location

    if is_sql_location(output):
        return SqlScoreSink(output, table)
    return FileSink(output)


def open_source(input_: str, *, query: str | None = None, order_by: str | None = None) -> Source:
    """A database source when ``input_`` is a URL or SQLite file (``query``: table or SELECT), else a file."""
    from leadscore.scoring.store import is_sql_location

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

def find_bad_rows(frame: pd.DataFrame, scorer: Scorer, seen: set[str] | None = None) -> pd.Series:
    """Reason per bad row (empty string: fine), indexed like ``frame``.

    Bad: no id; an id already seen (in this chunk or, via ``seen``, an earlier one); an infinite number
    in a numeric field. Text that is not a number is not a bad row: it is scored as missing and logged,
    as in training (:func:`~leadscore.data.schema.prepare_features`).
    """
    reasons = np.full(len(frame), "", dtype=object)
    id_column = scorer.schema.id_column
    if id_column and id_column in frame.columns:
        ids = frame[id_column]
        empty = ids.isna().to_numpy()
        reasons[empty] = f"{id_column} is empty"
        text = ids.astype(str)
        dup = text.duplicated().to_numpy()
        if seen:  # a lookup per id: isin() would copy the whole (growing) set for every chunk
            dup = dup | np.fromiter((t in seen for t in text), dtype=bool, count=len(text))
        reasons[dup & ~empty] = f"{id_column} appears more than once"
    for spec in scorer.schema.columns:
        if spec.kind != "numeric" or spec.name not in frame.columns:
            continue
        raw = frame[spec.name]
        if pd.api.types.is_float_dtype(raw):
            infinite = np.isinf(raw.to_numpy(dtype="float64", na_value=np.nan))
        elif pd.api.types.is_object_dtype(raw) or pd.api.types.is_string_dtype(raw):
            numbers = pd.to_numeric(raw, errors="coerce")  # "inf", "-Infinity", float("inf")
            infinite = np.isinf(numbers.to_numpy(dtype="float64", na_value=np.nan))
        else:
            continue
        hit = infinite & (reasons == "")
        if hit.any():
            reasons[hit] = [f"{spec.name} {value!r} is not finite" for value in raw[hit]]
    return pd.Series(reasons, index=frame.index, dtype="object")


# --- the run ---------------------------------------------------------------------------------------

@dataclass
class BatchOptions:
    """What to score and how (the ``leadscore score`` options)."""

    reasons: int = 3
    chunk_size: int = 50_000
    since_days: float | None = None
    segment: str | None = None
    segment_column: str | None = None
    incremental: bool = False
    refresh_all: bool = False
    on_bad_row: BadRowPolicy = "skip"
    now: datetime | None = None
    progress: bool = True


@dataclass
class RunSummary:
    """Counts, time and errors of a batch run (also stored as the run record)."""

    run_id: str = ""
    status: str = "running"
    rows_in: int = 0
    rows_scored: int = 0
    rows_filtered: int = 0
    rows_already_scored: int = 0
    rows_bad: int = 0
    chunks_resumed: int = 0
    seconds: float = 0.0
    errors: list[dict[str, str]] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows_scored / self.seconds if self.seconds > 0 else 0.0


def _filter(chunk: pd.DataFrame, scorer: Scorer, options: BatchOptions, cutoff: pd.Timestamp | None,
            done_ids: set[str]) -> tuple[pd.DataFrame, int, int]:
    """(rows to score, rows filtered out by --since/--segment, rows skipped by --incremental)."""
    keep = pd.Series(True, index=chunk.index)
    if cutoff is not None:
        column = scorer.schema.time_column
        if not column or column not in chunk.columns:
            raise DataValidationError(f"--since: the model has no creation time column in the input "
                                      f"(expected {column or 'a time column'})")
        created = pd.to_datetime(chunk[column], errors="coerce", utc=True, format="mixed")
        keep &= (created >= cutoff).fillna(False)
    if options.segment is not None:
        column = options.segment_column
        if not column or column not in chunk.columns:
            raise DataValidationError(f"--segment: expected a column {column!r} in the input")
        keep &= chunk[column].astype(str).str.strip().str.casefold() == options.segment.strip().casefold()
    filtered = int((~keep).sum())
    skipped = 0
    if done_ids and scorer.schema.id_column in chunk.columns:
        already = chunk[scorer.schema.id_column].astype(str).isin(done_ids) & keep
        skipped = int(already.sum())
        keep &= ~already
    return chunk.loc[keep], filtered, skipped


def run_key(scorer: Scorer, source: Source, options: BatchOptions) -> str:
    """Identifies a run for resuming: input, model version and every option that changes the output."""
    parts = {"source": source.fingerprint(), "model": scorer.version, "chunk": options.chunk_size,
             "reasons": options.reasons, "since": options.since_days, "segment": options.segment,
             "incremental": options.incremental, "bad": options.on_bad_row}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def run_batch(scorer: Scorer, source: Source, sink: Sink, options: BatchOptions | None = None,
              *, on_chunk: Callable[[int, pd.DataFrame], None] | None = None) -> RunSummary:
    """Score ``source`` into ``sink`` chunk by chunk; resumable (see the module docstring).

    ``on_chunk(index, scores)`` is called before each chunk is committed (tests inject failures here).

    Raises
    ------
    DataValidationError
        A required column is absent, or a bad row under ``on_bad_row="fail"``.
    StoreError
        The database failed beyond its retries; committed chunks stay, a re-run resumes.
    """
    options = options or BatchOptions()
    if options.chunk_size < 1:
        raise ConfigError(f"--chunk-size: expected an integer >= 1, got {options.chunk_size}")
    if options.on_bad_row not in ("skip", "fail"):
        raise ConfigError(f"--on-bad-row: expected skip or fail, got {options.on_bad_row!r}")
    now = options.now or datetime.now(UTC)
    cutoff = None if options.since_days is None else pd.Timestamp(now - timedelta(days=options.since_days))
    if cutoff is not None and cutoff.tzinfo is None:
        cutoff = cutoff.tz_localize("UTC")
    key = run_key(scorer, source, options)
    info: dict[str, object] = {"model_version": scorer.version, "source": source.description,
                               "options": {k: v for k, v in asdict(options).items() if k != "progress"}}
    if options.refresh_all and isinstance(sink, FileSink) and sink.parts.exists():
        shutil.rmtree(sink.parts)
    run_id, done = sink.begin(key + ("" if not options.refresh_all else f":{time.time_ns()}"), info)
    summary = RunSummary(run_id=run_id, chunks_resumed=len(done))
    done_ids = sink.scored_ids(scorer.version) if options.incremental else set()
    seen: set[str] = set()
    began = time.perf_counter()
    bar = tqdm(unit="rows", disable=None if options.progress else True,  # None: only on a terminal
               desc="scoring", dynamic_ncols=True)
    try:
        for index, chunk in enumerate(source.chunks(options.chunk_size)):
            summary.rows_in += len(chunk)
            bar.update(len(chunk))
            if index in done:
                _remember_ids(chunk, scorer, seen)
                continue
            chunk = scorer.check(chunk)  # a missing required column stops the run before any work
            bad = find_bad_rows(chunk, scorer, seen)
            _remember_ids(chunk, scorer, seen)
            if (bad != "").any():
                _report_bad(chunk, bad, scorer, summary, options.on_bad_row)
                chunk = chunk.loc[bad == ""]
            todo, filtered, skipped = _filter(chunk, scorer, options, cutoff, done_ids)
            summary.rows_filtered += filtered
            summary.rows_already_scored += skipped
            scores = scorer.score_frame(todo, reasons=options.reasons, now=now)
            scores["lead_id"] = scores["lead_id"].astype(str)
            scores["run_id"] = run_id
            if on_chunk is not None:
                on_chunk(index, scores)
            sink.write(index, scores)
            summary.rows_scored += len(scores)
            bar.set_postfix_str(f"{summary.rows_scored:,} scored")
        summary.status = "done"
    except BaseException as exc:
        summary.status = "failed"
        summary.errors.append({"lead_id": "", "reason": f"run stopped: {type(exc).__name__}: {exc}"})
        raise
    finally:
        bar.close()
        summary.seconds = round(time.perf_counter() - began, 3)
        record = {k: v for k, v in asdict(summary).items() if k != "status"}
        record["incremental"] = options.incremental
        try:
            sink.finish(summary.status, record)
        except LeadscoreError as exc:
            if summary.status == "done":
                raise
            log.warning("could not record the failed run: %s", exc)  # keep the error that stopped it
        finally:
            sink.close()
    return summary


def _remember_ids(chunk: pd.DataFrame, scorer: Scorer, seen: set[str]) -> None:
    column = scorer.schema.id_column
    if column and column in chunk.columns:
        seen.update(chunk[column].dropna().astype(str))


def _report_bad(chunk: pd.DataFrame, bad: pd.Series, scorer: Scorer, summary: RunSummary,
                policy: BadRowPolicy) -> None:
    column = scorer.schema.id_column
    rows = bad[bad != ""]
    for idx, reason in rows.items():
        lead = chunk.at[idx, column] if column and column in chunk.columns else idx
        if policy == "fail":
            raise DataValidationError(f"bad row (lead {lead}): {reason}; pass --on-bad-row skip to "
                                      "score the other rows and report it")
        summary.rows_bad += 1
        if len(summary.errors) < MAX_REPORTED_ERRORS:
            missing = lead is None or (isinstance(lead, float) and np.isnan(lead))
            summary.errors.append({"lead_id": "" if missing else str(lead), "reason": str(reason)})
        log.warning("skipped lead %s: %s", lead, reason)


def crm_source(raw_dir: str | Path, params: Any, *, as_of: str | None = None) -> FrameSource:
    """Open leads of the CRM tables in ``raw_dir`` as snapshot rows, built by the training feature code.

    Open, as ``dvc repro`` splits them: created by ``as_of`` (default: the end of the data), label window
    (``label_window_days`` after the snapshot) not yet closed, and not converted by ``as_of``. Features
    are taken at ``created_at + snapshot_days`` (the moment the model was trained to score), or at
    ``as_of`` for younger leads, exactly as ``dvc repro`` builds its rows.
    """
    from leadscore.core.hashing import folder_sha256
    from leadscore.data.crm import load_crm, open_lead_rows

    snap, end = open_lead_rows(load_crm(raw_dir), params, as_of=None if as_of is None else pd.Timestamp(as_of))
    key = f"crm:{folder_sha256(raw_dir)}:{end.isoformat()}"
    return FrameSource(snap, description=f"{raw_dir} (open leads as of {end})", key=key)
