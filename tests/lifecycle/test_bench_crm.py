"""Smoke-run benchmarks/bench_crm.py (issue 23's figures) on a tiny SQLite CRM, so it cannot rot unnoticed."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks" / "bench_crm.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_crm", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help_and_docs_examples_parse(bench):
    text = ((bench.__doc__ or "") + (REPO / "docs" / "crm.md").read_text()).replace("\\\n", " ")
    examples = re.findall(r"python benchmarks/bench_crm\.py([^\n#`]*)", text)
    assert len(examples) >= 5
    for example in examples:
        args = bench.build_parser().parse_args(shlex.split(example))
        assert args.n_leads > 0 and args.rate > 0


@pytest.mark.slow
def test_json_figures_on_a_tiny_crm():
    argv = [sys.executable, str(BENCH), "--n-leads", "1500", "--duration", "2", "--rate", "20",
            "--breakdown", "30", "--sync-rate", "5", "--sync-duration", "3", "--json"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)
    assert figures["machine"]["cores"] >= 1 and len(figures["machine"]["load_end"]) == 3
    assert figures["demo"]["leads"] == 1500 and figures["demo"]["write_s"] > 0
    assert figures["features_db"]["leads"] == 1500 and figures["features_db"]["peak_rss_mb"] > 0
    api = figures["api"]
    assert api["sent"] == 40 and api["errors"] == 0 and 0 < api["p50_ms"] <= api["p99_ms"]
    assert figures["breakdown"]["read"]["n"] == 30 and figures["breakdown"]["features"]["p50_ms"] > 0
    sync = figures["sync"]
    assert sync["latency"]["inserted"] == 15 and sync["latency"]["not_seen"] == 0
    assert sync["latency"]["p99_ms"] > 0
    kill = sync["kill"]
    assert kill["inserted"] == 15 and kill["not_seen"] == 0
    assert kill["leads"] > 0 and kill["missed"] == 0 and kill["stale"] == 0
