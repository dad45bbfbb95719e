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
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from leadscore.core.exceptions import ConfigError, DataValidationError, LeadscoreError
from leadscore.scoring.scorer import Scorer
from leadscore.scoring.sinks import FileSink, Sink, open_sink
from leadscore.scoring.sources import FileSource, FrameSource, Source, SqlSource, crm_source, open_source

log = logging.getLogger(__name__)

BadRowPolicy = Literal["skip", "fail"]
Hook = Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]  # (a chunk's scored rows, their scores) -> scores
MAX_REPORTED_ERRORS = 1000  # kept in the run record; the count covers all


# --- sources ---------------------------------------------------------------------------------------

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
    experiment: str | None = None  # part of the run's identity: its rows carry that experiment's arms


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


def filter_rows(chunk: pd.DataFrame, scorer: Scorer, options: BatchOptions, cutoff: pd.Timestamp | None,
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
    if options.experiment:
        parts["experiment"] = options.experiment
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _since_cutoff(options: BatchOptions, now: datetime) -> pd.Timestamp | None:
    """Check the options; the UTC creation time before which leads are filtered out (``since_days``)."""
    if options.chunk_size < 1:
        raise ConfigError(f"--chunk-size: expected an integer >= 1, got {options.chunk_size}")
    if options.on_bad_row not in ("skip", "fail"):
        raise ConfigError(f"--on-bad-row: expected skip or fail, got {options.on_bad_row!r}")
    cutoff = None if options.since_days is None else pd.Timestamp(now - timedelta(days=options.since_days))
    if cutoff is not None and cutoff.tzinfo is None:
        cutoff = cutoff.tz_localize("UTC")
    return cutoff


@dataclass
class _Run:
    """One run's fixed inputs and running state, shared by its chunks."""

    scorer: Scorer
    options: BatchOptions
    summary: RunSummary
    now: datetime
    cutoff: pd.Timestamp | None
    done_ids: set[str]
    seen: set[str] = field(default_factory=set)
    hooks: Sequence[Hook] = ()


def _score_chunk(run: _Run, chunk: pd.DataFrame) -> pd.DataFrame:
    """Scores of a chunk's good rows after the filters; bad rows reported (or the run stopped)."""
    scorer, summary = run.scorer, run.summary
    chunk = scorer.check(chunk)  # a missing required column stops the run before any work
    bad = find_bad_rows(chunk, scorer, run.seen)
    _remember_ids(chunk, scorer, run.seen)
    if (bad != "").any():
        report_bad_rows(chunk, bad, scorer, summary, run.options.on_bad_row)
        chunk = chunk.loc[bad == ""]
    todo, filtered, skipped = filter_rows(chunk, scorer, run.options, run.cutoff, run.done_ids)
    summary.rows_filtered += filtered
    summary.rows_already_scored += skipped
    scores = scorer.score_frame(todo, reasons=run.options.reasons, now=run.now, checked=True)
    scores["lead_id"] = scores["lead_id"].astype(str)
    if len(scores):
        for hook in run.hooks:
            scores = hook(todo, scores)
    scores["run_id"] = summary.run_id
    return scores


def _finish(sink: Sink, summary: RunSummary, options: BatchOptions) -> None:
    """Record the run in the sink (the output appears if it is done) and close the sink."""
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


def run_batch(scorer: Scorer, source: Source, sink: Sink, options: BatchOptions | None = None,
              *, on_chunk: Callable[[int, pd.DataFrame], None] | None = None,
              hooks: Sequence[Hook] = ()) -> RunSummary:
    """Score ``source`` into ``sink`` chunk by chunk; resumable (see the module docstring).

    Each of ``hooks`` (``hook(rows, scores)``, in turn) sees a chunk's scored rows before the chunk is
    written and returns its scores, possibly with more columns: an experiment's arms
    (:class:`~leadscore.experiments.arms.ExperimentHook`), the challenger's shadow scores
    (:class:`~leadscore.lifecycle.shadow.BatchShadow`, which logs both versions and adds nothing).
    ``on_chunk(index, scores)`` is called before each chunk is committed (tests inject failures here).

    Raises
    ------
    DataValidationError
        A required column is absent, or a bad row under ``on_bad_row="fail"``.
    StoreError
        The database failed beyond its retries; committed chunks stay, a re-run resumes.
    """
    options = options or BatchOptions()
    now = options.now or datetime.now(UTC)
    cutoff = _since_cutoff(options, now)
    if getattr(sink, "keyed_by_lead", False) and not scorer.schema.id_column:
        sink.close()
        raise ConfigError("scores go to the database keyed by lead id, but this model has no id column "
                          "(fitted without --id), so row numbers would overwrite earlier scores: refit with "
                          "--id COLUMN, or write to a file")
    key = run_key(scorer, source, options)
    info: dict[str, object] = {"model_version": scorer.version, "source": source.description,
                               "options": {k: v for k, v in asdict(options).items() if k != "progress"}}
    run_id, done = sink.begin(key + ("" if not options.refresh_all else f":{time.time_ns()}"), info)
    summary = RunSummary(run_id=run_id, chunks_resumed=len(done))
    run = _Run(scorer, options, summary, now, cutoff,
               sink.scored_ids(scorer.version) if options.incremental else set(), hooks=tuple(hooks))
    began = time.perf_counter()
    bar = tqdm(unit="rows", disable=None if options.progress else True,  # None: only on a terminal
               desc="scoring", dynamic_ncols=True)
    try:
        for index, chunk in enumerate(source.chunks(options.chunk_size)):
            summary.rows_in += len(chunk)
            bar.update(len(chunk))
            if index in done:
                _remember_ids(chunk, scorer, run.seen)
                continue
            scores = _score_chunk(run, chunk)
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
        _finish(sink, summary, options)
    return summary


def _remember_ids(chunk: pd.DataFrame, scorer: Scorer, seen: set[str]) -> None:
    column = scorer.schema.id_column
    if column and column in chunk.columns:
        seen.update(chunk[column].dropna().astype(str))


def report_bad_rows(chunk: pd.DataFrame, bad: pd.Series, scorer: Scorer, summary: RunSummary,
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


__all__ = ["BatchOptions", "FileSink", "FileSource", "FrameSource", "RunSummary", "Sink", "Source",
           "SqlSource", "crm_source", "find_bad_rows", "open_sink", "open_source", "run_batch", "run_key"]
