"""Latency and throughput of the real-time scoring service over HTTP on loopback (issue 5 figures).

Starts `leadscore serve` (uvicorn, 2 workers) on the registry's active model with a fresh API key, a
throw-away SQLite prediction log, rate limiting and access log off, and drives it with a real HTTP load
generator on the same machine:

  * POST /v1/score?reasons=3 at a fixed rate (default 200 requests/s, open loop: each request's latency
    counts from its scheduled send time, so queueing is included): p50 and p99
  * the highest rate whose p99 stays under 50 ms
  * POST /v1/score/batch with 1,000 leads per request, 2 requests in flight: leads/s

The load generator is wrk when it is on PATH (closed loop: max throughput and the batch endpoint; plain
wrk cannot hold a fixed rate, so the fixed-rate figure always comes from the open-loop generator), else
an asyncio generator. It speaks HTTP/1.1 over keep-alive connections with prebuilt requests: httpx
costs about a millisecond of CPU per request, which on a small machine shared with the server would be
measured as server latency. Leads are rows sampled from --leads with only the model's input columns (and
lead_id) kept, sent as JSON the way a CRM would.

    python benchmarks/bench_service.py                      # ./registry, artifacts/split/open.parquet
    python benchmarks/bench_service.py --registry registry --rate 200 --duration 20
    python benchmarks/bench_service.py --fixed-only --challenger VERSION   # the cost of shadow scoring
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from leadscore.artifacts.registry import Registry
from leadscore.service.auth import generate_key, hash_key

SERVE = ["-m", "leadscore.cli", "serve"]  # the console script, run by this interpreter
P99_LIMIT = 0.050
STEP_RATES = (5, 10, 15, 20, 30, 40, 50, 60, 80, 100, 125, 150, 200, 250, 300, 400, 500, 650, 800, 1000)
WRK_CONNECTIONS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
WRK_SCRIPT = """
local bodies = {}
for line in io.lines("%(bodies)s") do bodies[#bodies + 1] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = "%(key)s"
request = function()
  i = i %% #bodies + 1
  return wrk.format(nil, "%(path)s", nil, bodies[i])
end
"""


# --- leads ---------------------------------------------------------------------------------------------

def _json_value(value: Any, kind: str) -> Any:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if kind == "numeric":
        return float(value)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)


def load_leads(path: Path, features: list[dict[str, Any]], n: int, seed: int) -> list[bytes]:
    """``n`` rows of ``path`` as JSON request bodies: input columns (and lead_id) only, nulls left out."""
    frame = pd.read_parquet(path)
    kinds = {f["name"]: f["kind"] for f in features}
    keep = [c for c in frame.columns if c in kinds or c == "lead_id"]
    rows = frame[keep].sample(n=min(n, len(frame)), random_state=seed, replace=len(frame) < n)
    bodies = []
    for record in rows.to_dict("records"):
        lead = {k: _json_value(v, kinds.get(k, "id")) for k, v in record.items()}
        bodies.append(json.dumps({k: v for k, v in lead.items() if v is not None}).encode())
    return bodies


# --- the server ----------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(registry: Path, work: Path, workers: int, port: int, *, log_url: str | None = None,
                 key: str | None = None, role: str = "scorer",
                 extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen[bytes], str, str]:
    """``leadscore serve`` (with ``extra`` options) and a fresh key of ``role`` (or ``key``) and a
    throw-away SQLite log (or ``log_url``); returns once every worker serves the model."""
    key = key or generate_key()
    keys = work / "keys.yaml"
    keys.write_text(f"keys:\n  - name: bench\n    role: {role}\n    hash: {hash_key(key)}\n")
    argv = [sys.executable, *SERVE, "--registry", str(registry), "--keys", str(keys),
            "--log-db", log_url or f"sqlite:///{work / 'predictions.db'}", "--workers", str(workers),
            "--port", str(port), "--rate-limit", "0", "--no-access-log", "--log-level", "warning", *extra]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    with (work / "server.log").open("ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited:\n{(work / 'server.log').read_text()[-3000:]}")
        try:
            metrics = httpx.get(f"{url}/metrics", timeout=2).text
            pids = set(re.findall(r'leadscore_model_loaded\{[^}]*pid="(\d+)"', metrics))
            if len(pids) >= workers or (workers == 1 and "leadscore_model_loaded{" in metrics):
                return proc, url, key
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_server(proc)
    raise SystemExit("server not ready after 300 s")


def settle(url: str, timeout: float = 120.0) -> None:
    """Wait until the server has worked off any backlog (a cheap request answers within 50 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        began = time.monotonic()
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"{url}/health", timeout=timeout)
        if time.monotonic() - began < 0.05:
            return
        time.sleep(0.2)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- asyncio load generator: HTTP/1.1 keep-alive connections, requests prebuilt ------------------------

def http_request(url: str, path: str, key: str, body: bytes) -> bytes:
    host = url.split("://", 1)[1]
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class Connections:
    """Idle keep-alive connections to the server, opened as needed (at most ``limit`` at once)."""

    def __init__(self, url: str, limit: int = 512) -> None:
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(limit)

    async def exchange(self, request: bytes) -> int:
        """Send one request, read the whole response; its status code.

        A kept-alive connection the server has closed meanwhile (idle timeout) is replaced once, as
        HTTP clients do.
        """
        async with self.slots:
            for reused in (True, False):
                if reused and not self.idle:
                    continue
                reader, writer = self.idle.pop() if reused else await asyncio.open_connection(self.host,
                                                                                               self.port)
                try:
                    status, close = await self._read(reader, writer, request)
                except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                    writer.close()
                    if reused:
                        continue
                    raise ConnectionError("request failed") from None
                if close:
                    writer.close()
                else:
                    self.idle.append((reader, writer))
                return status
        raise ConnectionError("request failed")

    @staticmethod
    async def _read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    request: bytes) -> tuple[int, bool]:
        writer.write(request)
        status = int((await reader.readline()).split()[1])
        length, close = 0, False
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"connection" and value.strip().lower() == b"close":
                close = True
        await reader.readexactly(length)
        return status, close

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def _open_loop(url: str, requests: list[bytes], rate: float, duration: float,
                     drain: float) -> dict[str, float]:
    n = max(1, int(rate * duration))
    latencies: list[float] = []
    errors = 0
    pool = Connections(url)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2

    async def one(i: int) -> None:
        nonlocal errors
        scheduled = start + i / rate  # open loop: the schedule does not wait for answers
        await asyncio.sleep(max(0.0, scheduled - loop.time()))
        try:
            status = await pool.exchange(requests[i % len(requests)])
        except ConnectionError:
            status = 0
        if status == 200:
            latencies.append(loop.time() - scheduled)
        else:
            errors += 1

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    _, pending = await asyncio.wait(tasks, timeout=duration + drain + 1)
    for task in pending:
        task.cancel()
    elapsed = loop.time() - start
    pool.close()
    finished = np.sort(np.array(latencies)) if latencies else np.array([math.inf])
    # requests that failed or never finished count as slower than everything that did
    padded = np.concatenate([finished, np.full(n - len(latencies), math.inf)])
    return {"sent": n, "ok": len(latencies), "errors": errors + len(pending),
            "p50": float(np.percentile(padded, 50)), "p99": float(np.percentile(padded, 99)),
            "max": float(padded.max()), "throughput": len(latencies) / max(elapsed, 1e-9)}


def open_loop(url: str, key: str, path: str, bodies: list[bytes], rate: float, duration: float,
              drain: float = 30.0) -> dict[str, float]:
    """Requests at a fixed ``rate`` for ``duration`` s; latency counts from each scheduled send time."""
    requests = [http_request(url, path, key, body) for body in bodies]
    return asyncio.run(_open_loop(url, requests, rate, duration, drain))


async def _closed_loop(url: str, request: bytes, concurrency: int, duration: float) -> dict[str, float]:
    times: list[float] = []
    pool = Connections(url)
    loop = asyncio.get_running_loop()
    stop = loop.time() + duration

    async def user() -> None:
        while loop.time() < stop:
            began = loop.time()
            if await pool.exchange(request) != 200:
                raise SystemExit("closed loop: a request failed")
            times.append(loop.time() - began)

    began = loop.time()
    await asyncio.gather(*(user() for _ in range(concurrency)))
    elapsed = loop.time() - began
    pool.close()
    return {"requests": len(times), "elapsed": elapsed, "p50": float(np.median(times))}


def closed_loop(url: str, key: str, path: str, body: bytes, concurrency: int,
                duration: float) -> dict[str, float]:
    """``concurrency`` connections, each sending its next request when the last one is answered."""
    return asyncio.run(_closed_loop(url, http_request(url, path, key, body), concurrency, duration))


# --- wrk -----------------------------------------------------------------------------------------------

def _wrk_seconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip()).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def wrk(url: str, key: str, path: str, bodies: list[bytes], work: Path, connections: int,
        duration: float) -> dict[str, float]:
    """Closed loop: ``connections`` connections, each sending its next request when the last is answered."""
    lines = work / f"bodies-{abs(hash(path))}.txt"
    lines.write_bytes(b"\n".join(bodies) + b"\n")
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT % {"bodies": lines, "key": key, "path": path})
    argv = ["wrk", "-t", str(min(connections, 2)), "-c", str(connections), "-d", f"{duration:.0f}s",
            "--timeout", "30s", "--latency", "-s", str(script), url]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    if "Latency Distribution" not in out:
        raise SystemExit(f"wrk gave no latencies:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    distribution = out.split("Latency Distribution", 1)[1]
    try:
        p50 = _wrk_seconds(re.search(r"^\s*50%\s+(\S+)", distribution, re.M).group(1))  # type: ignore[union-attr]
        p99 = _wrk_seconds(re.search(r"^\s*99%\s+(\S+)", distribution, re.M).group(1))  # type: ignore[union-attr]
    except AttributeError:
        raise SystemExit(f"cannot read wrk's latencies:\n{out}") from None
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed = (int(bad.group(1)) if bad else 0) + (sum(map(int, errors.groups())) if errors else 0)
    return {"throughput": rate, "p50": p50, "p99": p99, "errors": failed}


# --- the figures ---------------------------------------------------------------------------------------

def ms(seconds: float) -> str:
    return "timeout" if math.isinf(seconds) else f"{1000 * seconds:.1f} ms"


Step = tuple[dict[str, float] | None, dict[str, float]]


MISSES = 2  # the search stops after this many steps in a row over the p99 limit (one may be noise)


def max_rate_open_loop(url: str, key: str, bodies: list[bytes], step: float) -> Step:
    """Offer rising fixed rates; the highest one answered in full with p99 under 50 ms."""
    best = None
    result: dict[str, float] = {}
    misses = 0
    for rate in STEP_RATES:
        settle(url)
        result = open_loop(url, key, "/v1/score?reasons=3", bodies, rate, step, drain=10.0)
        result["rate"] = rate
        print(f"    {rate:>5} req/s offered: p50 {ms(result['p50'])}, p99 {ms(result['p99'])}, "
              f"{result['throughput']:.1f} req/s done, {result['errors']:.0f} errors", flush=True)
        if result["p99"] >= P99_LIMIT or result["errors"] or result["throughput"] < 0.9 * rate:
            misses += 1
            if misses == MISSES:
                break
            continue
        misses = 0
        best = result
    return best, result


def max_rate_wrk(url: str, key: str, bodies: list[bytes], work: Path, step: float) -> Step:
    """More and more connections (closed loop); the best throughput of the steps with p99 under 50 ms."""
    best = None
    result: dict[str, float] = {}
    misses = 0
    for connections in WRK_CONNECTIONS:
        settle(url)
        result = wrk(url, key, "/v1/score?reasons=3", bodies, work, connections, step)
        result["connections"] = connections
        print(f"    {connections:>3} connections: {result['throughput']:.1f} req/s, p50 {ms(result['p50'])}, "
              f"p99 {ms(result['p99'])}, {result['errors']:.0f} errors", flush=True)
        if result["p99"] >= P99_LIMIT or result["errors"]:
            misses += 1
            if misses == MISSES:
                break
            continue
        misses = 0
        if best is None or result["throughput"] > best["throughput"]:
            best = result
    return best, result


def scorer_alone(registry: Path, bodies: list[bytes], reps: int = 50) -> tuple[float, float]:
    """Median in-process seconds for one lead with 3 reasons: ``score_lead`` (what POST /v1/score calls)
    and ``score_frame`` on a one-row frame."""
    from leadscore.scoring.scorer import Scorer

    scorer = Scorer.load(registry=registry)
    columns = [c.name for c in scorer.schema.columns]
    lead_times, frame_times = [], []
    for body in bodies[:reps]:
        lead = {name: json.loads(body).get(name) for name in columns}  # absent fields: None, as the API
        began = time.perf_counter()
        scorer.score_lead(lead, reasons=3)
        lead_times.append(time.perf_counter() - began)
        frame = pd.DataFrame([lead], columns=columns)
        began = time.perf_counter()
        scorer.score_frame(frame, reasons=3)
        frame_times.append(time.perf_counter() - began)
    return float(np.median(lead_times[3:])), float(np.median(frame_times[3:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", type=Path, default=Path("registry"))
    parser.add_argument("--leads", type=Path, default=Path("artifacts/split/open.parquet"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=200.0, help="fixed rate for the p50/p99 figure")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds at the fixed rate")
    parser.add_argument("--step", type=float, default=8.0, help="seconds per step of the max-rate search")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batch-duration", type=float, default=20.0)
    parser.add_argument("--generator", choices=["auto", "wrk", "httpx"], default="auto")
    parser.add_argument("--sample", type=int, default=2000, help="leads sampled for the requests")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--challenger", metavar="VERSION",
                        help="mark VERSION as challenger for the run (shadow-scored; unmarked afterwards)")
    parser.add_argument("--fixed-only", action="store_true",
                        help="only the 2 req/s and fixed-rate figures (skip max rate and batch)")
    args = parser.parse_args()

    registry = Registry(args.registry)
    version = registry.active_version()
    if version is None:
        raise SystemExit(f"{args.registry}/ has no active model: run `dvc repro` first")
    meta = registry.show(version)
    bodies = load_leads(args.leads, meta["features"], args.sample, args.seed)
    use_wrk = args.generator == "wrk" or (args.generator == "auto" and shutil.which("wrk") is not None)
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("[")[0].strip() \
        if use_wrk else ""
    repeated = bodies * (args.batch_size // len(bodies) + 1)
    batch_body = json.dumps({"leads": [json.loads(b) for b in repeated[:args.batch_size]]}).encode()
    print("leadscore service benchmark", flush=True)
    print(f"  model      {version} ({meta.get('model')}) from {args.registry}/, "
          f"{len(meta['features'])} input fields")
    print(f"  server     leadscore serve --workers {args.workers} (uvicorn; rate limit and access log off; "
          "prediction log on, SQLite)")
    print(f"  machine    {os.cpu_count()} CPUs, load generator on the same machine (loopback)")
    print(f"  generator  {wrk_version + ' (closed loop) for max throughput and batch; ' if use_wrk else ''}"
          "asyncio HTTP/1.1 open loop for the fixed rate" + ("" if use_wrk else ", max rate and batch"))
    size = np.mean([len(b) for b in bodies])
    print(f"  leads      {len(bodies):,} rows sampled from {args.leads} (mean body {size:.0f} bytes)")
    by_lead, by_frame = scorer_alone(args.registry, bodies)
    print(f"  reference  in process, 1 lead, 3 reasons: score_lead median {ms(by_lead)}, "
          f"score_frame median {ms(by_frame)}", flush=True)

    previous_challenger = registry.challenger_version()
    if args.challenger:
        registry.set_challenger(args.challenger)
    print(f"  challenger {registry.challenger_version() or 'none'} (scored in the shadow of every request)")
    work = Path(tempfile.mkdtemp(prefix="bench-service-"))
    proc, url, key = start_server(args.registry, work, args.workers, free_port())
    try:
        open_loop(url, key, "/v1/score?reasons=3", bodies, rate=10, duration=3)    # warm-up
        one = open_loop(url, key, "/v1/score?reasons=3", bodies, rate=2, duration=10)
        print(f"\nPOST /v1/score at 2 req/s (no queueing): p50 {ms(one['p50'])}, p99 {ms(one['p99'])}",
              flush=True)
        settle(url)
        fixed = open_loop(url, key, "/v1/score?reasons=3", bodies, args.rate, args.duration)
        print(f"POST /v1/score (3 reasons) at a fixed {args.rate:.0f} req/s for {args.duration:.0f} s: "
              f"p50 {ms(fixed['p50'])}, p99 {ms(fixed['p99'])} ({fixed['ok']:.0f} of {fixed['sent']:.0f} "
              f"answered, {fixed['errors']:.0f} errors or timeouts, {fixed['throughput']:.1f} req/s done)",
              flush=True)
        if args.fixed_only:
            return
        print("max throughput with p99 < 50 ms:")
        if use_wrk:
            best, last = max_rate_wrk(url, key, bodies, work, args.step)
            found = f"{best['throughput']:.1f} req/s (p99 {ms(best['p99'])}, " \
                f"{best['connections']:.0f} connections)" if best else \
                f"none: p99 {ms(last['p99'])} already with 1 connection"
        else:
            best, last = max_rate_open_loop(url, key, bodies, args.step)
            found = f"{best['throughput']:.1f} req/s (p99 {ms(best['p99'])})" if best else \
                f"none: p99 {ms(last['p99'])} already at {last['rate']:.0f} req/s"
        print(f"  => {found}", flush=True)
        settle(url)
        users = 2 * args.workers
        if use_wrk:
            busy = wrk(url, key, "/v1/score?reasons=3", bodies, work, users, args.step)
            sat_rate, sat_p50 = busy["throughput"], busy["p50"]
        else:
            loop_result = closed_loop(url, key, "/v1/score?reasons=3", bodies[0], users, args.step)
            sat_rate, sat_p50 = loop_result["requests"] / loop_result["elapsed"], loop_result["p50"]
        print(f"POST /v1/score saturated ({users} connections, closed loop): {sat_rate:.1f} req/s "
              f"(p50 {ms(sat_p50)})", flush=True)
        settle(url)
        if use_wrk:
            batch = wrk(url, key, "/v1/score/batch?reasons=3", [batch_body], work, 2, args.batch_duration)
            leads_per_s, p50 = batch["throughput"] * args.batch_size, batch["p50"]
        else:
            result = closed_loop(url, key, "/v1/score/batch?reasons=3", batch_body, 2, args.batch_duration)
            leads_per_s, p50 = result["requests"] * args.batch_size / result["elapsed"], result["p50"]
        print(f"POST /v1/score/batch ({args.batch_size:,} leads, 3 reasons, 2 in flight): "
              f"{leads_per_s:,.0f} leads/s (p50 {p50:.2f} s per request)", flush=True)
        settle(url)  # requests the load generator stopped waiting for are still being answered
        time.sleep(2.0)
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
        scored = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                     if line.startswith("leadscore_predictions_total{"))
    finally:
        stop_server(proc)
        if args.challenger:
            registry.set_challenger(previous_challenger)
    with sqlite3.connect(work / "predictions.db") as db:
        rows = db.execute("SELECT count(*) FROM prediction_log").fetchone()[0]
    print(f"prediction log: {rows:,} rows written for {scored:,.0f} leads scored; server stopped "
          f"(SIGTERM) with exit code {proc.returncode}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
