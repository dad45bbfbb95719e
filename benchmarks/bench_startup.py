"""Start-up cost of the command line and the API: wall time and which heavy libraries get imported.

Everything goes through the real console entry point (``python -m leadscore.cli``) in fresh processes,
so the figures are what a user waits for:

  * ``leadscore --help`` and ``leadscore models list``: wall time (median of --runs)
  * importing what scoring a lead needs, for a logistic-only model and for the registry's model:
    wall time and which of CatBoost, XGBoost, shap, Optuna, Dask, LightGBM were imported
  * ``leadscore serve --workers 1``: time from process start to the first 200 on ``/ready``

Python's bytecode cache is on for the measured processes (``PYTHONDONTWRITEBYTECODE`` is removed from their
environment) and each figure gets one untimed warm-up run first, as on a server that has run the command
before; without the cache every start recompiles every imported module's source (seconds, here).

    python benchmarks/bench_startup.py                      # uses ./registry when it has a model
    python benchmarks/bench_startup.py --registry registry --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

HEAVY = ("catboost", "xgboost", "shap", "optuna", "dask", "lightgbm")
CLI = [sys.executable, "-m", "leadscore.cli"]
PROBE = """
import sys, time, json
t = time.perf_counter()
from leadscore.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print(json.dumps({{"seconds": time.perf_counter() - t,
                  "heavy": sorted(m for m in {heavy!r} if m in sys.modules)}}), file=sys.stderr)
"""


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _probe(argv: list[str], runs: int) -> tuple[float, float, list[str]]:
    """Whole-process wall time (median) and in-process time of ``leadscore ARGV``, and heavy imports."""
    walls, inner, heavy = [], [], []
    for run in range(runs + 1):  # run 0 warms the bytecode cache and is not counted
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)],
                              capture_output=True, text=True, check=False, env=ENV)
        if run == 0:
            continue
        walls.append(time.perf_counter() - started)
        report = json.loads(done.stderr.strip().splitlines()[-1])
        inner.append(report["seconds"])
        heavy = report["heavy"]
    return statistics.median(walls), statistics.median(inner), heavy


def _logistic_model(folder: Path) -> Path:
    """A logistic-only model fitted with ``leadscore fit`` on a small synthetic table."""
    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame({"lead_id": [f"L{i}" for i in range(n)], "visits": rng.poisson(3, n),
                          "source": rng.choice(["web", "referral", "event"], n)})
    frame["converted"] = (rng.random(n) < 0.1 + 0.05 * frame["visits"].clip(0, 6)).astype(int)
    frame.to_csv(folder / "train.csv", index=False)
    frame.drop(columns="converted").head(50).to_csv(folder / "new.csv", index=False)
    subprocess.run([*CLI, "fit", "--data", str(folder / "train.csv"), "--target", "converted",
                    "--id", "lead_id", "--candidates", "logistic", "--out", str(folder / "model")],
                   check=True, capture_output=True)
    return folder / "model"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _time_to_ready(registry: Path, folder: Path, timeout: float = 120.0) -> float:
    keys = folder / "keys.yaml"
    keys.unlink(missing_ok=True)
    made = subprocess.run([*CLI, "serve", "--new-key", "bench", "--keys", str(keys)], check=True,
                          capture_output=True, text=True)
    if not keys.exists():  # releases before the key helper wrote the file print the entry instead
        lines = [line for line in made.stdout.splitlines() if not line.startswith("#")]
        keys.write_text("keys:\n" + "\n".join(lines) + "\n")
    port = _free_port()
    started = time.perf_counter()
    server = subprocess.Popen([*CLI, "serve", "--registry", str(registry), "--keys", str(keys),
                               "--workers", "1", "--port", str(port), "--log-db",
                               str(folder / "log.db"), "--log-level", "warning"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    try:
        while time.perf_counter() - started < timeout:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise SystemExit(f"server not ready after {timeout} s")
    finally:
        server.terminate()
        server.wait(30)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", default="registry", help="registry with an active model (optional)")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median is printed)")
    args = parser.parse_args(argv)
    os.environ.setdefault("LEADSCORE_THREADS", "2")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = _logistic_model(folder)
        (folder / "reg").mkdir()
        subprocess.run([*CLI, "models", "register", "--registry", str(folder / "reg"), str(model),
                        "--activate"], check=True, capture_output=True)
        rows = [("leadscore --help", ["--help"]),
                ("leadscore models list", ["models", "list", "--registry", str(folder / "reg")]),
                ("leadscore score (logistic model, 50 leads)",
                 ["score", "--model", str(model), "--input", str(folder / "new.csv"),
                  "--output", str(folder / "out.csv")])]
        for label, command in rows:
            wall, inner, heavy = _probe(command, args.runs)
            print(f"{label:48s} wall {wall:6.2f} s (in process {inner:5.2f} s)  "
                  f"heavy imports: {', '.join(heavy) or 'none'}")
        ready = [_time_to_ready(folder / "reg", folder) for _ in range(max(1, args.runs // 2) + 1)][1:]
        print(f"{'API worker start to /ready (logistic model)':48s} median {statistics.median(ready):6.2f} s "
              f"over {len(ready)} starts")
        registry = Path(args.registry)
        if (registry / "ACTIVE").exists():
            ready = [_time_to_ready(registry, folder) for _ in range(max(1, args.runs // 2) + 1)][1:]
            print(f"{'API worker start to /ready (' + str(registry) + ')':48s} "
                  f"median {statistics.median(ready):6.2f} s over {len(ready)} starts")


if __name__ == "__main__":
    main()
