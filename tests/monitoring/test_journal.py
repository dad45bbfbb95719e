"""The prediction journal and log: group commit, adoption after kill -9, exactly-once replay, old tables."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from leadscore.monitoring.journal import Journal, JournalClosed
from leadscore.monitoring.predlog import PredictionLog, open_database


def _row(i: int) -> dict[str, Any]:
    return {"request_id": f"r{i}", "lead_id": str(i), "model_version": "v1", "probability": 0.25,
            "score": 25, "tier": "LOW", "inputs": {"source": "web", "n": i},
            "outputs": {"lead_id": str(i), "reasons": [{"text": "x", "points": 1.5}]},
            "scored_at": datetime(2026, 1, 1, tzinfo=UTC)}


def _segments(folder: Path) -> list[Path]:
    return sorted(folder.glob("segment-*.jsonl"))


def _log_request_ids(url: str, table: str = "prediction_log") -> list[str]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.text(f'SELECT request_id FROM "{table}"'))]
    engine.dispose()
    return ids


def test_group_commit_syncs_many_appends_at_once(tmp_path: Path) -> None:
    durable: list[list[dict[str, Any]]] = []
    journal = Journal(tmp_path / "j", durable.append)
    assert journal.open() == []
    futures = []
    barrier = threading.Barrier(8)

    def client(k: int) -> None:
        barrier.wait()
        for i in range(50):
            futures.append(journal.append([_row(k * 100 + i)]))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for future in futures:
        future.result(10)
    rows = [row for batch in durable for row in batch]
    assert len(rows) == 400 and len({r["entry"] for r in rows}) == 400
    assert journal.syncs < 400                       # requests shared syncs
    (segment,) = _segments(tmp_path / "j")
    assert len(segment.read_bytes().splitlines()) == 400
    assert oct(segment.stat().st_mode & 0o777) == "0o600"
    journal.shipped(rows[:399])
    journal.close()                                  # one row unshipped: the segment stays
    assert _segments(tmp_path / "j") == [segment]
    with pytest.raises(JournalClosed):
        journal.append([_row(1)])


WRITER = textwrap.dedent("""
    import sys, time
    from datetime import UTC, datetime
    from pathlib import Path
    from leadscore.monitoring.journal import Journal
    journal = Journal(Path(sys.argv[1]), lambda rows: None)
    journal.open()
    for i in range(int(sys.argv[2])):
        journal.append([{"request_id": f"r{i}", "scored_at": datetime.now(UTC)}]).result()
    print("synced", flush=True)
    time.sleep(600)
""")


def _writer(folder: Path, n: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), str(n)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "synced"
    return proc


def test_a_live_processs_segment_is_left_alone_a_killed_ones_is_adopted(tmp_path: Path) -> None:
    folder = tmp_path / "j"
    proc = _writer(folder, 30)
    try:
        other = Journal(folder, lambda rows: None)
        assert other.open() == []                     # locked by a live process
        other.close()
        assert len(_segments(folder)) == 1
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (segment,) = _segments(folder)
    with segment.open("ab") as handle:               # a write cut short by the kill: never acknowledged
        handle.write(b'{"request_id": "r30", "entr')
    heir = Journal(folder, lambda rows: None)
    recovered = heir.open()
    assert [r["request_id"] for r in recovered] == [f"r{i}" for i in range(30)]
    assert all(isinstance(r["scored_at"], datetime) for r in recovered)
    assert segment.exists()                           # adopted, not shipped yet
    heir.shipped(recovered)
    assert not segment.exists()                       # fully shipped: deleted
    heir.close()
    assert _segments(folder) == []


def test_damaged_lines_are_reported_and_the_segment_kept(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "j"
    journal = Journal(folder, lambda rows: None)
    journal.open()
    journal.append([_row(1), _row(2)]).result(5)
    (segment,) = _segments(folder)
    journal._current = None                           # let go of it as a crashed process would
    for seg in list(journal._segments.values()):
        os.close(seg.fd)
    lines = segment.read_bytes().splitlines()
    segment.write_bytes(lines[0] + b"\n" + b"\x00garbage\n" + lines[1] + b"\n")
    heir = Journal(folder, lambda rows: None)
    recovered = heir.open()
    assert [r["request_id"] for r in recovered] == ["r1", "r2"]
    assert segment.with_suffix(".damaged").exists()
    assert "1 damaged line(s)" in caplog.text
    heir.close()


KILLED_SHIPPER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from leadscore.monitoring.predlog import PredictionLog, open_database
    from test_journal import _row
    engine, table, _ = open_database(sys.argv[1], sys.argv[2], sys.argv[2] + "_outcomes")
    log = PredictionLog(engine, table, Path(sys.argv[3]), batch_size=7, flush_interval=0.01)
    log.start()
    for i in range(40):
        log.submit([_row(i)]).result()
    while log.written < 40:
        time.sleep(0.01)
    print("shipped", flush=True)
    time.sleep(600)
""")


@pytest.fixture(params=["sqlite", "postgresql"])
def destination(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLite file, or the PostgreSQL test server (skipped with the reason if unreachable)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_replay_after_kill_stores_each_row_once(destination: str, tmp_path: Path) -> None:
    """Rows shipped before the kill are in the journal too: replaying them adds nothing twice."""
    table = f"predlog_{os.getpid()}_{time.monotonic_ns() % 10**9}"
    folder = tmp_path / "journal"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_SHIPPER, destination, table, str(folder)],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "shipped"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len(_segments(folder)) == 1                # killed before it could delete its segment
    engine, predictions, _ = open_database(destination, table, table + "_outcomes")
    try:
        with engine.begin() as conn:                  # lose the last 5 rows, as if never shipped
            conn.execute(sa.delete(predictions).where(predictions.c.request_id.in_(
                [f"r{i}" for i in range(35, 40)])))
        log = PredictionLog(engine, predictions, folder, flush_interval=0.01)
        log.start()
        assert log.replayed == 40
        log.submit([_row(40)]).result(5)
        log.close()
        assert sorted(_log_request_ids(destination, table)) == sorted(f"r{i}" for i in range(41))
        assert _segments(folder) == []
    finally:
        with engine.begin() as conn:
            predictions.drop(conn)
        engine.dispose()


def test_a_log_table_from_an_earlier_release_gets_the_entry_column(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE TABLE prediction_log (id INTEGER PRIMARY KEY, request_id TEXT NOT NULL, lead_id TEXT, "
            "model_version TEXT NOT NULL, probability FLOAT NOT NULL, score INTEGER NOT NULL, tier TEXT, "
            "inputs JSON NOT NULL, outputs JSON NOT NULL, scored_at DATETIME NOT NULL)"))
        conn.execute(sa.text("INSERT INTO prediction_log (request_id, model_version, probability, score, "
                             "inputs, outputs, scored_at) VALUES ('old', 'v0', 0.1, 10, '{}', '{}', "
                             "'2025-01-01 00:00:00')"))
    engine.dispose()
    engine, predictions, _ = open_database(url, "prediction_log", "outcomes")
    log = PredictionLog(engine, predictions, tmp_path / "journal", flush_interval=0.01)
    log.start()
    log.submit([_row(1)]).result(5)
    log.close()
    engine.dispose()
    assert sorted(_log_request_ids(url)) == ["old", "r1"]


def test_full_segments_rotate_and_are_deleted_once_shipped(tmp_path: Path) -> None:
    durable: list[dict[str, Any]] = []
    journal = Journal(tmp_path / "j", durable.extend, segment_bytes=600)
    journal.open()
    for i in range(12):
        journal.append([_row(i)]).result(5)
    assert len(_segments(tmp_path / "j")) >= 3               # ~300 bytes a row: a new segment every 2
    journal.shipped(durable[:-1])
    assert len(_segments(tmp_path / "j")) == 1               # only the segment being written is left
    assert journal.unshipped == 1
    journal.shipped(durable[-1:])
    journal.close()
    assert _segments(tmp_path / "j") == []
