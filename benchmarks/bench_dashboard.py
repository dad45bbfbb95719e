"""How fast the ML insights dashboard (GET /dashboard) loads over a store of 100,000 logged predictions.

Builds a throw-away store (SQLite, the service's prediction log and outcomes tables) as production would
have filled it, then serves it with `leadscore serve` and loads the page in a real headless Chromium:

  * store (not timed): --rows leads sampled from --snapshots (with replacement when there are fewer; each
    gets its own lead_id), scored by the registry's ACTIVE model with 3 reasons and logged as the API
    logs them, scored_at spread evenly over the 26 weeks ending now, oldest first. Leads scored more than
    30 days ago have an outcome: converted with their predicted probability (seeded), a few days after
    scoring, else explicitly lost; younger leads are open. `leadscore monitor check` then saves its
    states in the store (the alert panel), and `leadscore experiments simulate` adds one stopped
    experiment with its exposures (--experiment-leads 0 leaves it out);
  * server: `leadscore serve --workers 2` on that store (rate limit off), an admin key;
  * page loads: Playwright (sync API) on Debian's chromium signs in once, then measures
    page.goto(/dashboard) until every panel has drawn (the page sets body[data-ready=true]); the figure
    is performance.now() in the page at that moment (ms since navigation start), with the navigation's
    domContentLoadedEventEnd. First a server started with --no-warm-dashboard: one load after sign-in,
    every heavy panel (performance, drift, segments, scores) computed in its request (the worst case).
    Then a default server (it computes those panels in the background at start): the first load
    --warm-wait seconds after it is ready; --cold loads, each after 31 s without any request (the kept
    answers are no longer fresh: shown at once while recomputed); --warm loads back to back. The page's
    own fetches (Resource Timing, queueing in the browser included) are shown per endpoint;
  * endpoints: every JSON endpoint the page calls, timed alone with httpx (X-API-Key): per round, after
    31 s idle, one cold request each then --warm more on the same connection (same worker); --cold rounds.

Timings are printed, never checked. The first load after sign-in (lazy imports, first queries) is shown
apart. Needs `dvc repro` (registry/, artifacts/features/snapshots.parquet) and chromium
(scripts/setup-system.sh).

    python benchmarks/bench_dashboard.py                          # 100,000 rows, 3 cold, 10 warm loads
    python benchmarks/bench_dashboard.py --rows 5000 --cold 1 --warm 2
    python benchmarks/bench_dashboard.py --keep /tmp/dash-store   # keep the store to inspect it
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_service import free_port, start_server, stop_server  # noqa: E402

from leadscore.artifacts.paths import LOG_TABLE, OUTCOMES_TABLE  # noqa: E402
from leadscore.artifacts.registry import Registry  # noqa: E402
from leadscore.demo.replay import log_rows  # noqa: E402
from leadscore.monitoring.log_rows import insert_rows  # noqa: E402
from leadscore.monitoring.outcomes import OutcomeStore  # noqa: E402
from leadscore.monitoring.predlog import open_database  # noqa: E402
from leadscore.scoring.scorer import Scorer  # noqa: E402

CLI = [sys.executable, "-m", "leadscore.cli"]  # the console script, run by this interpreter
WEEKS = 26
MATURE_DAYS = 30        # leads scored before this many days ago have an outcome
CACHE_IDLE = 31.0       # a kept panel answer is fresh 30 s (then shown while recomputed)
CHUNK = 10_000          # leads scored and written at once
EXPERIMENT = "bench-ml-vs-rules"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# the page's JSON endpoints with its default fields (dashboard.js); experiment results are added
ENDPOINTS = ["/v1/dashboard/whoami", "/v1/dashboard/model", "/v1/dashboard/scores?days=30",
             "/v1/dashboard/performance?weeks=26", "/v1/dashboard/monitoring", "/v1/dashboard/drift?weeks=12",
             "/v1/dashboard/segments?days=90&k=5", "/v1/dashboard/experiments", "/v1/model/versions",
             "/v1/experiments"]
# records the moment the page marks itself ready (before any page script runs; not subject to the CSP)
READY_OBSERVER = """
new MutationObserver((_, observer) => {
  if (document.body && document.body.dataset.ready === "true") {
    window.__benchReadyAt = performance.now();
    observer.disconnect();
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-ready"] });
"""
TIMING = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const fetches = performance.getEntriesByType("resource").filter(r => r.name.includes("/v1/"))
    .map(r => { const u = new URL(r.name); return [u.pathname + u.search, r.responseEnd - r.startTime]; });
  return { ready: window.__benchReadyAt ?? performance.now(), dcl: nav.domContentLoadedEventEnd, fetches };
}"""


# --- the store -----------------------------------------------------------------------------------------

def build_store(url: str, registry: Path, version: str, snapshots: Path, rows: int,
                seed: int) -> dict[str, Any]:
    """``rows`` logged predictions of ``version`` over the 26 weeks ending now, and their outcomes."""
    rng = np.random.default_rng(seed)
    scorer = Scorer.load(version, registry=registry)
    source = pd.read_parquet(snapshots)
    leads = source.sample(n=rows, replace=len(source) < rows, random_state=seed).reset_index(drop=True)
    leads["lead_id"] = [f"bench-{i:07d}" for i in range(rows)]
    now = pd.Timestamp.now(tz="UTC")
    start = now - pd.Timedelta(weeks=WEEKS)
    offsets = np.sort(rng.uniform(0, (now - start).total_seconds() - 60, rows))  # the newest a minute ago
    leads["snapshot_at"] = (start + pd.to_timedelta(offsets, unit="s")).floor("ms")
    inputs = [c.name for c in scorer.schema.columns if c.name in leads.columns]
    engine, log_table, outcomes_table = open_database(url, LOG_TABLE, OUTCOMES_TABLE)
    probability = np.empty(rows)
    try:
        for first in range(0, rows, CHUNK):
            chunk = leads.iloc[first:first + CHUNK]
            scored = scorer.score_frame(chunk, reasons=3)
            probability[first:first + len(chunk)] = scored["probability"].to_numpy(float)
            insert_rows(engine, log_table, log_rows(chunk, scored, inputs))
        scored_at = leads["snapshot_at"]
        old = (scored_at < now - pd.Timedelta(days=MATURE_DAYS)).to_numpy()
        converted = rng.random(rows) < probability
        delay = pd.to_timedelta(rng.uniform(1, 10, rows), unit="D").to_numpy()
        won_at = (scored_at + delay).dt.to_pydatetime()
        lost_at = (scored_at + pd.Timedelta(days=MATURE_DAYS - 5)).dt.to_pydatetime()
        ids = leads["lead_id"].tolist()
        outcomes = [
            {"lead_id": ids[i], "converted": True, "converted_at": won_at[i], "recorded_at": won_at[i]}
            if converted[i] else
            {"lead_id": ids[i], "converted": False, "converted_at": None, "recorded_at": lost_at[i]}
            for i in np.flatnonzero(old)]
        OutcomeStore(engine, outcomes_table).record_many(outcomes, what="the benchmark's outcomes")
    finally:
        engine.dispose()
    return {"inputs": len(inputs), "converted": int((old & converted).sum()),
            "lost": int((old & ~converted).sum()), "open": int((~old).sum()), "first": start, "now": now}


def run_cli(argv: list[str], what: str) -> str:
    """A leadscore command run by this interpreter; its output (exits on failure)."""
    done = subprocess.run([*CLI, *argv], capture_output=True, text=True)
    if done.returncode not in (0, 3):
        raise SystemExit(f"{what} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return done.stdout


def monitor_check(url: str, registry: Path) -> str:
    """`leadscore monitor check` on the store (saves its states there); its first line."""
    out = run_cli(["monitor", "check", "--db", url, "--registry", str(registry)], "leadscore monitor check")
    return out.strip().splitlines()[0] if out.strip() else "(no output)"


def simulate_experiment(url: str, registry: Path, version: str, leads: int, seed: int) -> str:
    """`leadscore experiments simulate`: one stopped experiment, rules vs the model, in the store."""
    out = run_cli(["experiments", "simulate", EXPERIMENT, "--model", version, "--registry", str(registry),
                   "--db", url, "--n-leads", str(leads), "--seed", str(seed)],
                  "leadscore experiments simulate")
    return out.strip().splitlines()[0] if out.strip() else "(no output)"


def store_counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            names = sa.inspect(conn).get_table_names()
            return {name: int(conn.execute(sa.text(f'SELECT count(*) FROM "{name}"')).scalar_one())
                    for name in names}
    finally:
        engine.dispose()


# --- the server ----------------------------------------------------------------------------------------

def serve(registry: Path, url_db: str, work: Path, workers: int,
          extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen[bytes], str, str, float]:
    """`leadscore serve` on the store with a fresh admin key (its journal in ``work``); returns once every
    worker serves the model, with the seconds that took."""
    began = time.monotonic()
    proc, url, key = start_server(registry, work, workers, free_port(), log_url=url_db, role="admin",
                                  extra=("--journal", str(work / "journal"), *extra))
    return proc, url, key, time.monotonic() - began


# --- the page ------------------------------------------------------------------------------------------

def load(page: Any, url: str) -> dict[str, Any]:
    """One navigation to /dashboard until every panel has drawn: ready and DOMContentLoaded in ms since
    navigation start, and the page's API fetches (path, ms)."""
    page.goto(f"{url}/dashboard")
    page.wait_for_selector("body[data-ready='true']", timeout=600_000)
    return page.evaluate(TIMING)  # type: ignore[no-any-return]


def idle(seconds: float, page: Any | None = None) -> None:
    """No request for ``seconds`` (the page, if any, is left for about:blank first)."""
    if page is not None:
        page.goto("about:blank")
    time.sleep(seconds)


def first_load(url: str, key: str) -> dict[str, Any]:
    """Sign in and load the page once (nothing else)."""
    return browser_loads(url, key, 0, 0)["first"]


def browser_loads(url: str, key: str, cold: int, warm: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        raise SystemExit("chromium is not installed: run `bash scripts/setup-system.sh`")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context()
            context.add_init_script(READY_OBSERVER)
            page = context.new_page()
            page.goto(f"{url}/dashboard")
            page.get_by_label("API key").fill(key)
            page.get_by_role("button", name="Sign in").click()  # redirected to /dashboard
            page.wait_for_selector("body[data-ready='true']", timeout=600_000)
            first = page.evaluate(TIMING)
            colds = []
            for _ in range(cold):
                idle(CACHE_IDLE, page)
                colds.append(load(page, url))
            warms = [load(page, url) for _ in range(warm)]
            version = browser.version
        finally:
            browser.close()
    return {"first": first, "cold": colds, "warm": warms, "version": version}


# --- the endpoints alone -------------------------------------------------------------------------------

def time_endpoints(url: str, key: str, paths: list[str], rounds: int, warm: int) -> dict[str, dict[str, Any]]:
    """Per path: the seconds of its cold requests (one per round, after 31 s idle) and of the warm ones
    (``warm`` per round, right after the cold one on the same connection), and the answer's size."""
    found: dict[str, dict[str, Any]] = {p: {"cold": [], "warm": [], "bytes": 0, "status": set()}
                                        for p in paths}
    for _ in range(rounds):
        idle(CACHE_IDLE)
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=600) as client:
            for path in paths:
                for i in range(1 + warm):
                    began = time.perf_counter()
                    response = client.get(path)
                    seconds = time.perf_counter() - began
                    found[path]["cold" if i == 0 else "warm"].append(seconds)
                    found[path]["bytes"] = len(response.content)
                    found[path]["status"].add(response.status_code)
    return found


# --- the figures ---------------------------------------------------------------------------------------

def ms(value: float) -> str:
    return f"{value:,.0f} ms" if value < 10_000 else f"{value / 1000:,.1f} s"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def spread(values: list[float]) -> str:
    return f"median {ms(float(np.median(values)))}, max {ms(max(values))}" if values else "n/a"


def page_line(name: str, loads: list[dict[str, Any]]) -> str:
    ready = [x["ready"] for x in loads]
    dcl = [x["dcl"] for x in loads]
    each = ", ".join(ms(v) for v in ready)
    return (f"{name}: every panel drawn {spread(ready)} "
            f"(DOMContentLoaded median {ms(float(np.median(dcl)))}); each: {each}")


def fetch_lines(loads: list[dict[str, Any]]) -> list[str]:
    """Per API path the page fetched: median and max ms from request start to response end."""
    by_path: dict[str, list[float]] = {}
    for x in loads:
        for path, duration in x["fetches"]:
            by_path.setdefault(path, []).append(duration)
    order = sorted(by_path, key=lambda p: -float(np.median(by_path[p])))
    return [f"    {path:<44} {spread(by_path[path])}" for path in order]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", type=Path, default=Path("registry"),
                        help="model registry; its active version scores the leads (default: %(default)s)")
    parser.add_argument("--snapshots", type=Path, default=Path("artifacts/features/snapshots.parquet"),
                        help="point-in-time lead rows to sample (default: %(default)s)")
    parser.add_argument("--rows", type=int, default=100_000, help="logged predictions (default: %(default)s)")
    parser.add_argument("--cold", type=int, default=3,
                        help="cold page loads (and endpoint rounds), each after 31 s idle "
                             "(default: %(default)s)")
    parser.add_argument("--warm", type=int, default=10,
                        help="warm page loads back to back (and warm requests per endpoint and round) "
                             "(default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="server workers (default: %(default)s)")
    parser.add_argument("--warm-wait", type=float, default=20.0, metavar="S",
                        help="seconds between the server being ready and the first load (default: "
                             "%(default)s)")
    parser.add_argument("--experiment-leads", type=int, default=20_000, metavar="N",
                        help="leads of the simulated experiment; 0 = no experiment (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="build the store (with keys.yaml and server.log) in DIR and keep it")
    args = parser.parse_args()

    registry = Registry(args.registry)
    version = registry.active_version()
    if version is None:
        raise SystemExit(f"{args.registry}/ has no active model: run `dvc repro` first")
    if shutil.which("chromium") is None:
        raise SystemExit("chromium is not installed: run `bash scripts/setup-system.sh`")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        if (args.keep / "store.db").exists():
            raise SystemExit(f"{args.keep}/store.db exists: give an empty folder")
    work = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    url_db = f"sqlite:///{work / 'store.db'}"
    meta = registry.show(version)
    print("leadscore dashboard benchmark", flush=True)
    print(f"  model      {version} ({meta.get('model')}) from {args.registry}/ (active)")
    print(f"  machine    {os.cpu_count()} CPUs; server, browser and client on the same machine (loopback)")

    began = time.perf_counter()
    built = build_store(url_db, args.registry, version, args.snapshots, args.rows, args.seed)
    logged = time.perf_counter() - began
    check = monitor_check(url_db, args.registry)
    checked = time.perf_counter() - began - logged
    experiment = simulate_experiment(url_db, args.registry, version, args.experiment_leads, args.seed) \
        if args.experiment_leads else "none"
    counts = store_counts(url_db)
    size = sum(f.stat().st_size for f in work.glob("store.db*"))
    print(f"  store      {counts.get(LOG_TABLE, 0):,} logged predictions ({built['inputs']} input fields, "
          f"3 reasons each) from {built['first']:%Y-%m-%d} to {built['now']:%Y-%m-%d %H:%M} UTC; outcomes: "
          f"{built['converted']:,} converted, {built['lost']:,} lost, {built['open']:,} open "
          f"(scored in the last {MATURE_DAYS} days); {counts.get('outcomes', 0):,} outcome rows in all; "
          f"{size / 1e6:,.0f} MB SQLite in {work}")
    print(f"  monitoring {check} ({counts.get('monitor_states', 0)} states)")
    print(f"  experiment {experiment}")
    print(f"  built in {time.perf_counter() - began:.1f} s (not timed: log {logged:.1f} s, monitor check "
          f"{checked:.1f} s, experiment {time.perf_counter() - began - logged - checked:.1f} s)", flush=True)

    proc, url, key, ready = serve(args.registry, url_db, work, args.workers, ("--no-warm-dashboard",))
    try:
        cold_start = first_load(url, key)
    finally:
        stop_server(proc)
    print(f"GET /dashboard on a server without warm-up (--no-warm-dashboard), first load after sign-in: "
          f"every panel drawn {ms(cold_start['ready'])} (DOMContentLoaded {ms(cold_start['dcl'])}); every "
          "heavy panel computed in its request", flush=True)
    proc, url, key, ready = serve(args.registry, url_db, work, args.workers)
    try:
        print(f"  server     leadscore serve --workers {args.workers} (rate limit and access log off), "
              f"ready in {ready:.1f} s; first load {args.warm_wait:.0f} s later (panels computed in the "
              "background meanwhile)", flush=True)
        time.sleep(args.warm_wait)
        pages = browser_loads(url, key, args.cold, args.warm)
        print(f"  browser    Chromium {pages['version']} headless (Playwright, sync API)\n", flush=True)
        first = pages["first"]
        print(f"GET /dashboard first load after sign-in ({args.warm_wait:.0f} s after the server was ready): "
              f"every panel drawn {ms(first['ready'])} (DOMContentLoaded {ms(first['dcl'])})")
        print(page_line(f"GET /dashboard after idling ({plural(args.cold, 'load')}, each after "
                        f"{CACHE_IDLE:.0f} s without a request: kept answers no longer fresh, shown while "
                        "recomputed)", pages["cold"]))
        print(page_line(f"GET /dashboard warm ({plural(args.warm, 'load')} back to back)", pages["warm"]))
        for kind, name in (("cold", "idle"), ("warm", "warm")):
            print(f"  the page's fetches in the {name} loads (request start to response end, queueing in "
                  "the browser included):")
            print("\n".join(fetch_lines(pages[kind])), flush=True)

        if args.cold:  # the endpoints alone: one round per idle period
            paths = list(ENDPOINTS)
            listed = httpx.get(f"{url}/v1/experiments", headers={"X-API-Key": key}, timeout=60).json()
            paths += [f"/v1/experiments/{e['name']}/results" for e in listed.get("experiments", [])[:3]]
            alone = time_endpoints(url, key, paths, args.cold, args.warm)
            print(f"\nendpoints alone (httpx, one at a time): idle = first request after {CACHE_IDLE:.0f} s "
                  f"idle ({plural(args.cold, 'round')}), warm = the next {args.warm} on the same connection")
            for path in sorted(paths, key=lambda p: -float(np.median(alone[p]["cold"]))):
                got = alone[path]
                status = ",".join(str(s) for s in sorted(got["status"]))
                print(f"  GET {path:<44} idle {spread([1000 * s for s in got['cold']])}; "
                      f"warm {spread([1000 * s for s in got['warm']])}; {got['bytes'] / 1024:,.1f} kB"
                      + ("" if status == "200" else f" (HTTP {status})"))
        print(f"rows: {counts.get(LOG_TABLE, 0):,} logged predictions", flush=True)
    finally:
        stop_server(proc)
    print(f"server stopped (SIGTERM) with exit code {proc.returncode}")
    if args.keep:
        print(f"store kept: {url_db} (keys.yaml, server.log beside it)")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
