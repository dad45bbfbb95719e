"""The figures of issue 23: scoring by lead id from a CRM database, rescoring on change, batch features.

Writes the demo CRM of --n-leads leads into --db (`leadscore demo --db`, timed), trains a quick model
(logistic, Platt calibration, no tuning, on a 20,000-lead demo extract; or uses --registry's active
model), then runs the parts asked for (all three when none is named):

  --features-db  every lead's point-in-time row from the database: `CrmDatabase.iter_lead_batches`
                 (--batch leads at a time) and `snapshot_table` per batch as of the CRM's data end;
                 wall seconds, leads/s and the process's peak RSS (target: 1M leads in <= 120 s on
                 PostgreSQL). Runs first, so the peak RSS is mostly its own.
  --api          `leadscore serve --crm URL --crm-as-of <data end> --workers 2`, warmed up, then
                 POST /v1/leads/{id}/score?reasons=3 for random lead ids at a fixed --rate for
                 --duration s (open loop over keep-alive HTTP/1.1: latency counts from each request's
                 scheduled send time, so queueing is included); p50/p99/max and errors (target at
                 1M leads on PostgreSQL, 100/s: p50 <= 5 ms, p99 <= 15 ms). Then an in-process
                 breakdown over --breakdown random leads: the read (`CrmDatabase.read_tables([id])`),
                 the features (`snapshot_table` on the tables read, as `lead_rows` does), the scoring
                 (`Scorer.score_lead`, 3 reasons) and the write-back (`ScoreWriteBack.write`, one
                 transaction): where the time of one request goes.
  --sync         `leadscore sync --follow --from-newest --json --no-log --interval 0.1` as a
                 subprocess; one activity inserted at a time (each its own committed transaction,
                 `recorded_at` = commit time, UTC) into distinct young open leads at --sync-rate for
                 --sync-duration s, while a watcher polls `lead_scores` every 20 ms; p50/p99/max from
                 the activity's commit to its lead's new score being visible (target: p99 <= 1 s at
                 50/s). Then the kill test: inserts again for --sync-duration s, the sync process is
                 killed with SIGKILL midway and restarted at once; after the inserts stop it waits
                 for the scores and counts the missed leads (score older than their new activity, or
                 none) and the stale ones (stored probability differs from a fresh in-process score
                 of everything the CRM holds). Both must be 0.

The machine (cores, CPU model, load average at the start and end) is printed with the figures: the
benchmark shares the machine with whatever else runs there, so read the load average next to them.

examples:
  python benchmarks/bench_crm.py                                   # 20,000 leads, temporary SQLite
  python benchmarks/bench_crm.py --api --rate 50 --duration 10     # one part only
  python benchmarks/bench_crm.py --n-leads 1000000 \\
      --db postgresql+psycopg://postgres@127.0.0.1:5432/bench_crm  # issue 23's size (creates and
                                                                   # drops that database)
  python benchmarks/bench_crm.py --db postgresql+psycopg://postgres@127.0.0.1:5432/bench_crm \\
      --n-leads 1000000 --keep --api                               # reuse the CRM written before

Not a test: prints the figures (`--json`: one JSON object). tests/lifecycle/test_bench_crm.py runs it
on a tiny CRM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_features import _cpu_model, _peak_mb  # noqa: E402
from bench_service import _open_loop, free_port, http_request, settle, start_server, stop_server  # noqa: E402

from leadscore.core.config import Params, load_params  # noqa: E402
from leadscore.core.database import make_engine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LEADSCORE = [sys.executable, "-m", "leadscore.cli"]
TRAIN_LEADS = 20_000
YOUNG_DAYS = 6.0  # leads created this close to the data end are inside their snapshot window
WATCH_EVERY = 0.02
INBOUND = ("email_open", "email_click")


# --- helpers ---------------------------------------------------------------------------------------------

def _ms(seconds: list[float] | np.ndarray) -> dict[str, float]:
    values = np.asarray(seconds, dtype=float) * 1e3
    if values.size == 0:
        return {"n": 0}
    return {"n": int(values.size), "p50_ms": float(np.percentile(values, 50)),
            "p99_ms": float(np.percentile(values, 99)), "max_ms": float(values.max())}


def _fmt(stats: dict[str, float]) -> str:
    if not stats.get("n"):
        return "no samples"
    return f"p50 {stats['p50_ms']:.1f} ms, p99 {stats['p99_ms']:.1f} ms, max {stats['max_ms']:.1f} ms"


def _machine() -> dict[str, Any]:
    return {"cores": os.cpu_count(), "cpu": _cpu_model(), "load_start": list(os.getloadavg())}


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _epoch(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _project_params() -> Params:
    path = REPO / "params.yaml"
    return load_params(path) if path.exists() else Params()


# --- the database --------------------------------------------------------------------------------------

@contextlib.contextmanager
def crm_database(db: str | None, work: Path, keep: bool) -> Iterator[str]:
    """The CRM's URL: a SQLite file in ``work``, or ``db``; a PostgreSQL database is created for the run
    (if missing) and dropped afterwards unless ``keep``."""
    if db is None:
        yield f"sqlite:///{work / 'crm.db'}"
        return
    url = sa.make_url(db) if "://" in db else None
    if url is None or url.get_backend_name() != "postgresql":
        yield db
        return
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    name = url.database
    with admin.connect() as conn:
        if not conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar():
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield db
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def write_demo(url: str, n_leads: int, keep: bool) -> dict[str, Any]:
    """`leadscore demo --db URL --n-leads N --replace`, timed (skipped with ``keep`` when the CRM there
    already holds ``n_leads`` leads), then ANALYZE of the three tables."""
    result: dict[str, Any] = {"reused": False, "leads": n_leads}
    if keep:
        engine = make_engine(url)
        with contextlib.suppress(sa.exc.SQLAlchemyError), engine.connect() as conn:
            result["reused"] = conn.execute(sa.text("SELECT count(*) FROM leads")).scalar() == n_leads
        engine.dispose()
    if not result["reused"]:
        argv = [*LEADSCORE, "demo", "--db", url, "--n-leads", str(n_leads), "--replace"]
        began = time.perf_counter()
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"leadscore demo failed:\n{done.stderr[-3000:]}")
        result["write_s"] = time.perf_counter() - began
    result["analyze_s"] = analyze(url)
    return result


def analyze(url: str) -> float:
    """Planner statistics for the CRM tables, as a maintained database has them: without them (fresh
    bulk load, autovacuum off or not yet run) PostgreSQL reads a lead's activities by a sequential scan."""
    engine = make_engine(url)
    began = time.perf_counter()
    statement = "ANALYZE TABLE leads, activities, outcomes" if engine.dialect.name in ("mysql", "mariadb") \
        else "ANALYZE" if engine.dialect.name == "sqlite" else "ANALYZE leads, activities, outcomes"
    with engine.begin() as conn:
        conn.execute(sa.text(statement))
    engine.dispose()
    return time.perf_counter() - began


def train_model(work: Path, seed: int) -> Path:
    """A quick model in ``work/registry``: logistic, Platt, no tuning, on the closed leads of a
    :data:`TRAIN_LEADS`-lead demo extract (another seed than the CRM's); returns the registry."""
    from leadscore.artifacts.bundle import save_bundle
    from leadscore.artifacts.registry import Registry
    from leadscore.data.crm import snapshot_table
    from leadscore.demo import generate_crm
    from leadscore.training.build import snapshot_bundle

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["model_comparison"].update(candidates=["logistic"], cv_folds=3, time_budget_seconds=0,
                                   ensemble=False, calibration=["platt"])
    raw["segments"]["min_positives"] = 10**9
    (work / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params = load_params(work / "params.yaml")
    data = generate_crm(n_leads=TRAIN_LEADS, seed=seed + 1, start=params.demo.start,
                        months=params.demo.months)
    tables = {"leads": data.leads, "activities": data.activities, "outcomes": data.outcomes}
    snaps = snapshot_table(tables, params)
    _, bundle = snapshot_bundle(snaps[snaps["status"] == "closed"].reset_index(drop=True), params)
    Registry(work / "registry").register(save_bundle(bundle, work / "model"), activate=True)
    return work / "registry"


# --- features from the database -------------------------------------------------------------------------

def run_features_db(url: str, params: Params, end: pd.Timestamp, batch: int) -> dict[str, Any]:
    """Every lead's row: ``iter_lead_batches(batch)`` and ``snapshot_table`` per batch, timed apart."""
    from leadscore.data.crm import snapshot_table
    from leadscore.data.crm_database import CrmDatabase

    rss_before = _peak_mb()
    leads = activities = 0
    read_s = features_s = 0.0
    began = time.perf_counter()
    with CrmDatabase(url) as db:
        batches = db.iter_lead_batches(batch)
        while True:
            t0 = time.perf_counter()
            tables = next(batches, None)
            t1 = time.perf_counter()
            read_s += t1 - t0
            if tables is None:
                break
            rows = snapshot_table(tables, params, as_of=end)
            features_s += time.perf_counter() - t1
            leads += len(rows)
            activities += len(tables["activities"])
    wall = time.perf_counter() - began
    return {"leads": leads, "activities": activities, "batch": batch, "wall_s": wall,
            "leads_per_s": leads / wall if wall else float("nan"), "read_s": read_s,
            "features_s": features_s, "peak_rss_mb": _peak_mb(), "rss_before_mb": rss_before}


# --- scoring by id --------------------------------------------------------------------------------------

def lead_ids(url: str) -> list[str]:
    engine = make_engine(url)
    with engine.connect() as conn:
        ids = [str(r[0]) for r in conn.execute(sa.text("SELECT lead_id FROM leads"))]
    engine.dispose()
    return ids


def _create_score_table(url: str) -> None:
    """``lead_scores`` made before the server starts: its two workers creating it at the same moment
    can collide in PostgreSQL (duplicate key in pg_type) and the server then fails to start."""
    from leadscore.scoring.writeback import ScoreWriteBack

    ScoreWriteBack(url).close()


def run_api(url: str, registry: Path, end: pd.Timestamp, ids: list[str], args: argparse.Namespace,
            work: Path) -> dict[str, Any]:
    """`leadscore serve --crm` and POST /v1/leads/{id}/score at a fixed rate (open loop)."""
    rng = np.random.default_rng(args.seed)
    chosen = [ids[i] for i in rng.integers(0, len(ids), max(1, int(args.rate * args.duration)))]
    warm = [ids[i] for i in rng.integers(0, len(ids), 200)]
    extra = ("--crm", url, "--crm-as-of", end.isoformat())
    _create_score_table(url)
    proc, base, key = start_server(registry, work, 2, free_port(), extra=extra)
    try:
        def requests(which: list[str]) -> list[bytes]:
            return [http_request(base, f"/v1/leads/{i}/score?reasons=3", key, b"") for i in which]

        asyncio.run(_open_loop(base, requests(warm), min(20.0, args.rate), 3.0, 10.0))
        settle(base)
        fixed = asyncio.run(_open_loop(base, requests(chosen), args.rate, args.duration, 30.0))
    finally:
        stop_server(proc)
    # unanswered requests count as infinitely slow; a percentile between two of them is nan: inf
    ms = {f"{q}_ms": math.inf if math.isnan(fixed[q]) else 1e3 * fixed[q] for q in ("p50", "p99", "max")}
    return {"rate": args.rate, "duration_s": args.duration, "sent": fixed["sent"], "ok": fixed["ok"],
            "errors": fixed["errors"], "throughput": fixed["throughput"], **ms,
            "server_exit": proc.returncode}


def run_breakdown(url: str, registry: Path, end: pd.Timestamp, ids: list[str], n: int,
                  seed: int) -> dict[str, Any]:
    """Median/p99 of each step of one request, in process: read, features, scoring, write-back."""
    from leadscore.data.crm import snapshot_table
    from leadscore.data.crm_database import CrmDatabase
    from leadscore.monitoring.log_rows import json_value
    from leadscore.scoring.crm_leads import model_params
    from leadscore.scoring.scorer import Scorer
    from leadscore.scoring.writeback import ScoreWriteBack

    scorer = Scorer.load(registry=registry)
    params = model_params(_project_params(), scorer)
    rng = np.random.default_rng(seed + 1)
    chosen = [ids[i] for i in rng.integers(0, len(ids), n + 20)]
    steps: dict[str, list[float]] = {"read": [], "features": [], "score": [], "write_back": []}
    with CrmDatabase(url) as db:
        sink = ScoreWriteBack(url, engine=db.engine)
        for number, lead_id in enumerate(chosen):
            t0 = time.perf_counter()
            tables = db.read_tables([lead_id])
            t1 = time.perf_counter()
            rows = snapshot_table(tables, params, as_of=end, keep_excluded=False)
            t2 = time.perf_counter()
            lead = {str(k): json_value(v) for k, v in rows.drop(columns=["label", "status"]).iloc[0].items()}
            t3 = time.perf_counter()
            result = scorer.score_lead(lead, reasons=3)
            t4 = time.perf_counter()
            sink.write([result])
            t5 = time.perf_counter()
            if number >= 20:  # the first calls warm the pool, caches and compiled statements
                for name, seconds in zip(steps, (t1 - t0, t2 - t1, t4 - t3, t5 - t4), strict=True):
                    steps[name].append(seconds)
    total = np.sum([steps[k] for k in steps], axis=0)
    return {"leads": n, **{name: _ms(values) for name, values in steps.items()}, "sum": _ms(total)}


# --- rescoring on change --------------------------------------------------------------------------------

def young_open_leads(url: str, end: pd.Timestamp) -> list[tuple[str, pd.Timestamp]]:
    """Leads created in the last :data:`YOUNG_DAYS` before ``end`` that have not converted."""
    from leadscore.demo.database import crm_metadata

    tables = crm_metadata().tables
    leads, outcomes = tables["leads"], tables["outcomes"]
    converted = sa.select(outcomes.c.lead_id).where(outcomes.c.converted == 1)
    since = (end - pd.Timedelta(days=YOUNG_DAYS)).to_pydatetime()
    query = (sa.select(leads.c.lead_id, leads.c.created_at)
             .where(leads.c.created_at > since, leads.c.created_at < end.to_pydatetime(),
                    leads.c.lead_id.not_in(converted)).order_by(leads.c.lead_id))
    engine = make_engine(url)
    with engine.connect() as conn:
        found = [(str(r[0]), pd.Timestamp(r[1])) for r in conn.execute(query)]
    engine.dispose()
    return found


def forget_mark(url: str, name: str) -> None:
    """Drop the high-water mark of sync ``name`` left by an earlier run (``--keep``)."""
    from leadscore.lifecycle.sync import state_table

    table = state_table(sa.MetaData())
    engine = make_engine(url)
    if sa.inspect(engine).has_table(table.name):
        with engine.begin() as conn:
            conn.execute(sa.delete(table).where(table.c.name == name))
    engine.dispose()


class ScoreWatcher(threading.Thread):
    """Polls ``lead_scores`` every :data:`WATCH_EVERY` s; ``seen[lead]`` lists (scored_at, seen at),
    both epoch seconds, for every new score row it saw."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        from leadscore.scoring.writeback import score_table

        self.engine = make_engine(url)
        self.table = score_table(sa.MetaData())
        self.since = datetime.now(UTC)
        self.seen: dict[str, list[tuple[float, float]]] = {}
        self.stop = threading.Event()
        self.polls = 0

    def run(self) -> None:
        known: set[tuple[str, float]] = set()
        query = sa.select(self.table.c.lead_id, self.table.c.scored_at)
        while not self.stop.is_set():
            with contextlib.suppress(sa.exc.OperationalError), self.engine.connect() as conn:
                rows = conn.execute(query.where(self.table.c.scored_at > self.since)).all()
                now = time.time()
                for lead, at in rows:
                    if (lead, stamp := _epoch(at)) not in known:
                        known.add((lead, stamp))
                        self.seen.setdefault(lead, []).append((stamp, now))
                if rows:  # one sync writes its batches in order: look back 1 s, not to the start
                    newest = max(at if at.tzinfo else at.replace(tzinfo=UTC) for _, at in rows)
                    self.since = max(self.since, newest - timedelta(seconds=1))
            self.polls += 1
            self.stop.wait(WATCH_EVERY)
        self.engine.dispose()

    def visible(self, lead: str, recorded: float) -> float | None:
        """When a score of ``lead`` scored after ``recorded`` was first seen (epoch s), or None."""
        times = [seen for scored, seen in self.seen.get(lead, []) if scored >= recorded]
        return min(times) if times else None


class SyncProcess:
    """`leadscore sync --follow` as a subprocess, stdout (JSON lines) and stderr to files."""

    def __init__(self, url: str, registry: Path, end: pd.Timestamp, work: Path) -> None:
        self.argv = [*LEADSCORE, "sync", "--crm", url, "--registry", str(registry), "--as-of",
                     end.isoformat(), "--follow", "--from-newest", "--json", "--no-log", "--interval", "0.1",
                     "--name", "bench"]
        self.work, self.runs, self.proc = work, 0, None  # type: ignore[assignment]

    def start(self, timeout: float = 180.0) -> float:
        """Start it; returns the seconds until its first pass was reported."""
        self.runs += 1
        out = self.work / f"sync-{self.runs}.jsonl"
        began = time.perf_counter()
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
        with out.open("wb") as stdout, (self.work / f"sync-{self.runs}.err").open("wb") as stderr:
            self.proc = subprocess.Popen(self.argv, cwd=REPO, stdout=stdout, stderr=stderr, env=env,
                                         start_new_session=True)
        while not out.read_bytes().strip():
            if self.proc.poll() is not None or time.perf_counter() - began > timeout:
                err = (self.work / f"sync-{self.runs}.err").read_text()[-3000:]
                raise SystemExit(f"leadscore sync did not start:\n{err}")
            time.sleep(0.02)
        return time.perf_counter() - began

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()

    def passes(self) -> list[dict[str, Any]]:
        lines = []
        for run in range(1, self.runs + 1):
            text = (self.work / f"sync-{run}.jsonl").read_text()
            lines.extend(json.loads(line) for line in text.splitlines() if line.startswith("{"))
        return lines


class ActivityWriter:
    """Inserts one activity per transaction into the demo schema; remembers each one's commit."""

    def __init__(self, url: str, end: pd.Timestamp, seed: int) -> None:
        from leadscore.demo.database import crm_metadata

        self.engine = make_engine(url)
        self.table = crm_metadata().tables["activities"]
        self.end = end
        self.rng = np.random.default_rng(seed)
        with self.engine.connect() as conn:
            newest = conn.execute(sa.select(sa.func.max(self.table.c.activity_id))).scalar()
        self.next_id = int(newest or 0) + 1
        self.done: list[tuple[str, float, float]] = []  # lead, recorded_at (epoch), commit returned

    def insert(self, lead: str, created: pd.Timestamp) -> None:
        span = (self.end - created).total_seconds()
        at = (created + pd.Timedelta(seconds=span * self.rng.uniform(0.3, 0.99))).floor("us")  # < as-of
        kind = str(self.rng.choice(INBOUND))
        with self.engine.begin() as conn:
            recorded = _utc_now()
            conn.execute(self.table.insert().values(
                activity_id=self.next_id, lead_id=lead, timestamp=at.to_pydatetime(), activity_type=kind,
                direction="inbound", duration_sec=None, page=None, note=None, recorded_at=recorded))
        self.done.append((lead, _epoch(recorded), time.time()))
        self.next_id += 1

    def run(self, leads: list[tuple[str, pd.Timestamp]], rate: float, duration: float,
            midway: Any = None) -> float:
        """Insert ``rate`` per second for ``duration`` s (cycling through ``leads``); calls ``midway()``
        once half-way. Returns the achieved rate."""
        n = max(1, int(rate * duration))
        began = time.perf_counter()
        for i in range(n):
            if midway is not None and i == n // 2:
                midway()
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self.insert(*leads[i % len(leads)])
        return n / (time.perf_counter() - began)


def _latencies(watcher: ScoreWatcher, done: list[tuple[str, float, float]], wait: float) -> dict[str, Any]:
    """Seconds from each commit to its lead's new score being seen (waiting up to ``wait`` s)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and any(watcher.visible(lead, rec) is None for lead, rec, _ in done):
        time.sleep(0.1)
    seen = [(watcher.visible(lead, rec), committed) for lead, rec, committed in done]
    latency = [v - c for v, c in seen if v is not None]
    return {"inserted": len(done), "not_seen": sum(v is None for v, _ in seen), **_ms(latency)}


def count_missed(url: str, registry: Path, end: pd.Timestamp,
                 done: list[tuple[str, float, float]]) -> dict[str, int]:
    """Leads whose stored score is older than their newest activity's ``recorded_at`` (or absent), and
    leads whose stored probability differs from a fresh in-process score of what the CRM holds now."""
    from leadscore.data.crm_database import CrmDatabase
    from leadscore.scoring.crm_leads import lead_rows, model_params
    from leadscore.scoring.scorer import Scorer
    from leadscore.scoring.writeback import score_table

    newest: dict[str, float] = {}
    for lead, recorded, _ in done:
        newest[lead] = max(newest.get(lead, 0.0), recorded)
    table = score_table(sa.MetaData())
    engine = make_engine(url)
    with engine.connect() as conn:
        stored = {str(r[0]): (_epoch(r[1]), float(r[2])) for r in conn.execute(
            sa.select(table.c.lead_id, table.c.scored_at, table.c.probability)
            .where(table.c.lead_id.in_(list(newest))))}
    engine.dispose()
    missed = sum(lead not in stored or stored[lead][0] < at for lead, at in newest.items())
    scorer = Scorer.load(registry=registry)
    with CrmDatabase(url) as db:
        rows = lead_rows(db, list(newest), model_params(_project_params(), scorer), as_of=end).open_rows()
    fresh = dict(zip(rows["lead_id"].astype(str), scorer.score_frame(rows, reasons=0)["probability"],
                     strict=True))
    stale = sum(lead not in stored or abs(stored[lead][1] - fresh.get(lead, -1.0)) > 1e-9 for lead in newest)
    return {"leads": len(newest), "missed": missed, "stale": stale}


def run_sync(url: str, registry: Path, end: pd.Timestamp, args: argparse.Namespace,
             work: Path) -> dict[str, Any]:
    """Latency at a fixed insert rate, then the kill test."""
    young = young_open_leads(url, end)
    if not young:
        raise SystemExit(f"no open lead created in the {YOUNG_DAYS:g} days before {end}")
    order = np.random.default_rng(args.seed + 2).permutation(len(young))
    young = [young[i] for i in order]
    needed = 2 * max(1, int(args.sync_rate * args.sync_duration))
    forget_mark(url, "bench")
    sync = SyncProcess(url, registry, end, work)
    watcher = ScoreWatcher(url)
    writer = ActivityWriter(url, end, args.seed + 3)
    result: dict[str, Any] = {"rate": args.sync_rate, "duration_s": args.sync_duration,
                              "young_open_leads": len(young), "leads_reused": needed > len(young)}
    try:
        result["start_s"] = sync.start()
        watcher.start()
        half = len(young) // 2 if needed > len(young) else needed // 2
        first, second = young[:half] or young, young[half:] or young
        result["achieved_rate"] = writer.run(first, args.sync_rate, args.sync_duration)
        result["latency"] = _latencies(watcher, writer.done, 30.0)
        steady = len(writer.done)
        restart: dict[str, float] = {}

        def kill_and_restart() -> None:  # the inserts go on while the sync is down
            sync.kill()
            restart["restart_s"] = sync.start()

        restarter = threading.Thread(target=kill_and_restart, daemon=True)
        writer.run(second, args.sync_rate, args.sync_duration, midway=restarter.start)
        restarter.join(300)
        killed = writer.done[steady:]
        result["kill"] = {"restart_s": restart.get("restart_s"), **_latencies(watcher, killed, 120.0),
                          **count_missed(url, registry, end, killed)}
    finally:
        watcher.stop.set()
        sync.stop()
    result["passes"] = len(sync.passes())
    result["sync_exit"] = sync.proc.returncode
    return result


# --- the run --------------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parts = parser.add_argument_group("parts (all three when none is named)")
    parts.add_argument("--api", action="store_true", help="POST /v1/leads/{id}/score at a fixed rate")
    parts.add_argument("--sync", action="store_true", help="sync --follow latency and the kill -9 test")
    parts.add_argument("--features-db", action="store_true", help="every lead's features from the database")
    parser.add_argument("--db", metavar="URL",
                        help="the CRM database (default: a SQLite file in a temporary folder); a PostgreSQL "
                             "database is created for the run and dropped afterwards unless --keep")
    parser.add_argument("--n-leads", type=int, default=20_000, help="demo leads (default: %(default)s)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the PostgreSQL database, and reuse its CRM when it holds --n-leads leads")
    parser.add_argument("--registry", type=Path,
                        help="use this registry's active model instead of training a quick one")
    parser.add_argument("--rate", type=float, default=100.0, help="api: requests/s (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=30.0, help="api: seconds (default: %(default)s)")
    parser.add_argument("--breakdown", type=int, default=500, metavar="N",
                        help="api: leads timed step by step in process (default: %(default)s; 0: skip)")
    parser.add_argument("--sync-rate", type=float, default=50.0,
                        help="sync: activities/s (default: %(default)s)")
    parser.add_argument("--sync-duration", type=float, default=30.0,
                        help="sync: seconds of inserts, for the latency and again for the kill test "
                             "(default: %(default)s)")
    parser.add_argument("--batch", type=int, default=50_000,
                        help="features-db: leads per batch (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of text (a latency with unanswered requests "
                             "behind it is Infinity)")
    return parser


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from leadscore.data.crm_database import CrmDatabase
    from leadscore.scoring.crm_leads import model_params
    from leadscore.scoring.scorer import Scorer

    every = not (args.api or args.sync or args.features_db)
    result: dict[str, Any] = {"machine": _machine()}
    with crm_database(args.db, work, args.keep) as url:
        result["demo"] = write_demo(url, args.n_leads, args.keep)
        began = time.perf_counter()
        registry = args.registry or train_model(work, args.seed)
        scorer = Scorer.load(registry=registry)
        result["model"] = {"version": scorer.version, "trained": args.registry is None,
                           "train_s": time.perf_counter() - began if args.registry is None else None}
        with CrmDatabase(url) as db:
            end = db.data_end()
            result["demo"]["dialect"] = db.engine.dialect.name
        result["demo"]["data_end"] = end.isoformat()
        if every or args.features_db:
            params = model_params(_project_params(), scorer)
            result["features_db"] = run_features_db(url, params, end, args.batch)
        if every or args.api:
            ids = lead_ids(url)
            result["api"] = run_api(url, registry, end, ids, args, work)
            if args.breakdown:
                result["breakdown"] = run_breakdown(url, registry, end, ids, args.breakdown, args.seed)
        if every or args.sync:
            result["sync"] = run_sync(url, registry, end, args, work)
    result["machine"]["load_end"] = list(os.getloadavg())
    return result


def report(result: dict[str, Any]) -> None:
    m, demo = result["machine"], result["demo"]
    print(f"machine: {m['cores']} cores, {m['cpu']}; load average "
          f"{'/'.join(f'{x:.2f}' for x in m['load_start'])} at the start, "
          f"{'/'.join(f'{x:.2f}' for x in m['load_end'])} at the end (1/5/15 min)")
    written = "reused" if demo["reused"] else f"written by `leadscore demo --db` in {demo['write_s']:.1f} s"
    written += f", ANALYZE {demo['analyze_s']:.1f} s"
    print(f"CRM: {demo['leads']:,} demo leads in {demo['dialect']}, {written}; data end {demo['data_end']}")
    model = result["model"]
    print(f"model: {model['version']}"
          + (f" (logistic, trained in {model['train_s']:.1f} s)" if model["trained"] else " (--registry)"))
    if (f := result.get("features_db")) is not None:
        print(f"features-db: {f['leads']:,} leads, {f['activities']:,} activities in {f['wall_s']:.1f} s "
              f"({f['leads_per_s']:,.0f} leads/s; read {f['read_s']:.1f} s, snapshot_table "
              f"{f['features_s']:.1f} s); peak RSS {f['peak_rss_mb']:,.0f} MB "
              f"({f['rss_before_mb']:,.0f} MB before)")
    if (a := result.get("api")) is not None:
        times = ", ".join(f"{q} " + ("timeout" if math.isinf(a[f"{q}_ms"]) else f"{a[f'{q}_ms']:.1f} ms")
                          for q in ("p50", "p99", "max"))
        print(f"api: POST /v1/leads/{{id}}/score?reasons=3 at {a['rate']:g}/s for {a['duration_s']:g} s: "
              f"{times}; {a['ok']:,} of {a['sent']:,} answered ({a['throughput']:.1f}/s), "
              f"{a['errors']} errors or unanswered")
    if (b := result.get("breakdown")) is not None:
        print(f"  in process, {b['leads']} random leads (median/p99):")
        for name in ("read", "features", "score", "write_back", "sum"):
            print(f"    {name:<11} {_fmt(b[name])}")
    if (s := result.get("sync")) is not None:
        lat, kill = s["latency"], s["kill"]
        print(f"sync: {lat['inserted']} activities at {s['achieved_rate']:.1f}/s into "
              f"{s['young_open_leads']} young open leads{' (reused)' if s['leads_reused'] else ''}: "
              f"commit -> score visible {_fmt(lat)}; {lat['not_seen']} not seen")
        print(f"  kill -9 midway and restart ({kill['restart_s']:.1f} s to the first pass): "
              f"{kill['inserted']} activities, {_fmt(kill)}; missed leads {kill['missed']}, "
              f"stale {kill['stale']} (of {kill['leads']})")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-crm-") as tmp:
        result = run(args, Path(tmp))
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        report(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
