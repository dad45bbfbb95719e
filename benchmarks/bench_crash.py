"""kill -9 under load: how many acknowledged predictions reach the prediction log (issue 15 figures).

Starts `leadscore serve` (2 workers) on the registry's active model, drives POST /v1/score?reasons=3 from
an asyncio HTTP/1.1 client (each request carries its own X-Request-ID), and after --before seconds
sends SIGKILL to

  * worker: one worker process; uvicorn starts a replacement and the load goes on for --after seconds;
  * server: the whole process group (supervisor and workers, as the OOM killer or a power cut would);
    then `leadscore serve` is started again on the same log.

The server is then stopped gracefully and every request id answered with 200 is looked up in the log.
Prints, per database and victim: requests/s, acknowledged, logged, lost (acknowledged, not logged) and
stored twice. The PostgreSQL case uses a throw-away database on --pg (dropped afterwards).

    python benchmarks/bench_crash.py --registry registry --leads artifacts/split/open.parquet
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
from bench_service import free_port, load_leads, start_server, stop_server  # noqa: E402

from leadscore.artifacts.registry import Registry  # noqa: E402


class Load:
    """``connections`` closed-loop clients in a background thread; records the ids answered with 200."""

    def __init__(self, url: str, key: str, bodies: list[bytes], connections: int) -> None:
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        self.host, self.port, self.key = host, int(port), key
        self.bodies, self.connections = bodies, connections
        self.acknowledged: list[str] = []
        self.failed = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self) -> None:
        self.started = time.monotonic()
        self.thread.start()

    def finish(self) -> float:
        """Stop the clients; requests per second answered with 200."""
        self.stop.set()
        self.thread.join(60)
        return len(self.acknowledged) / (time.monotonic() - self.started)

    async def _client(self, index: int) -> None:
        i = index
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while not self.stop.is_set():
            rid = uuid.uuid4().hex
            body = self.bodies[i % len(self.bodies)]
            i += self.connections
            request = (f"POST /v1/score?reasons=3 HTTP/1.1\r\nHost: {self.host}\r\nX-API-Key: {self.key}\r\n"
                       f"X-Request-ID: {rid}\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(self.host, self.port)
                assert reader is not None
                writer.write(request)
                status = int((await reader.readline()).split()[1])
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                self.failed += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                await asyncio.sleep(0.01)
                continue
            if status == 200:
                self.acknowledged.append(rid)
            else:
                self.failed += 1

    async def _main(self) -> None:
        await asyncio.gather(*(self._client(k) for k in range(self.connections)))


def worker_pids(url: str) -> set[int]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {int(line.split('pid="')[1].split('"')[0]) for line in text.splitlines()
            if line.startswith("leadscore_model_loaded{") and line.endswith(" 1.0")}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busiest(pids: set[int], seconds: float = 1.0) -> int:
    """The process that used the most CPU over the next ``seconds``: the worker serving the clients."""
    start = {pid: cpu_seconds(pid) for pid in pids}
    time.sleep(seconds)
    return max(pids, key=lambda pid: cpu_seconds(pid) - start[pid])


def logged_ids(url: str) -> list[str]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(sa.text("SELECT request_id FROM prediction_log"))]
    engine.dispose()
    return ids


def one_run(registry: Path, bodies: list[bytes], log_url: str, victim: str, before: float, after: float,
            connections: int, work: Path) -> dict[str, Any]:
    port = free_port()
    proc, url, key = start_server(registry, work, 2, port, log_url=log_url)
    load = Load(url, key, bodies, connections)
    load.start()
    try:
        time.sleep(before)
        if victim == "worker":
            pids = worker_pids(url)
            os.kill(busiest(pids), signal.SIGKILL)
            time.sleep(after)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        rate = load.finish()
        if victim == "server":
            proc, url, _ = start_server(registry, work, 2, port, log_url=log_url, key=key)
    finally:
        load.stop.set()
        stop_server(proc)
    ids = Counter(logged_ids(log_url))
    acknowledged = set(load.acknowledged)
    lost = sum(1 for rid in acknowledged if rid not in ids)
    return {"rate": rate, "acknowledged": len(acknowledged), "logged": sum(ids.values()), "lost": lost,
            "twice": sum(1 for n in ids.values() if n > 1), "failed": load.failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", type=Path, default=Path("registry"))
    parser.add_argument("--leads", type=Path, default=Path("artifacts/split/open.parquet"))
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--victim", choices=["worker", "server", "both"], default="both")
    parser.add_argument("--before", type=float, default=8.0, help="seconds of load before the kill")
    parser.add_argument("--after", type=float, default=8.0, help="seconds of load after killing a worker")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                        help="a PostgreSQL server where a throw-away database may be created")
    args = parser.parse_args()

    registry = Registry(args.registry)
    version = registry.active_version()
    if version is None:
        raise SystemExit(f"{args.registry}/ has no active model: run `dvc repro` first")
    bodies = load_leads(args.leads, registry.show(version)["features"], 2000, 0)
    databases = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    victims = ["worker", "server"] if args.victim == "both" else [args.victim]
    print(f"kill -9 under load: leadscore serve --workers 2, model {version}, {args.connections} "
          f"connections, POST /v1/score?reasons=3, kill after {args.before:.0f} s", flush=True)
    for database in databases:
        for victim in victims:
            work = Path(tempfile.mkdtemp(prefix="bench-crash-"))
            admin = None
            if database == "sqlite":
                log_url = f"sqlite:///{work / 'predictions.db'}"
            else:
                name = f"bench_crash_{uuid.uuid4().hex[:8]}"
                admin = sa.create_engine(args.pg, isolation_level="AUTOCOMMIT")
                with admin.connect() as conn:
                    conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
                log_url = args.pg.rsplit("/", 1)[0] + f"/{name}"
            try:
                result = one_run(args.registry, bodies, log_url, victim, args.before, args.after,
                                 args.connections, work)
            finally:
                if admin is not None:
                    with admin.connect() as conn:
                        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                    admin.dispose()
            print(f"  {database:<10} kill -9 {victim:<6}  {result['rate']:6.0f} req/s  acknowledged "
                  f"{result['acknowledged']:>6,}  logged {result['logged']:>6,}  lost {result['lost']:>5,}  "
                  f"stored twice {result['twice']}  failed requests {result['failed']}", flush=True)
            print("  " + json.dumps({"database": database, "victim": victim, **result}), flush=True)


if __name__ == "__main__":
    main()
