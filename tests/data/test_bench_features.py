"""Smoke-run benchmarks/bench_features.py on tiny sizes, so the benchmark cannot rot unnoticed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_features.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_features", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help(bench, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--help"])
    assert exit_info.value.code == 0
    assert "--single" in capsys.readouterr().out


def test_json_figures_on_a_tiny_crm(bench, capsys):
    assert bench.main(["--n-leads", "150", "--single", "5", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["batch_leads"] == 150 and figures["single_repeat"] == 5
    assert figures["single_median_ms"] > 0 and figures["batch_leads_per_s"] > 0
    assert figures["cores"] >= 1 and figures["peak_rss_mb"] > 0


def test_text_report_from_a_written_extract(bench, capsys, tmp_path):
    from leadscore.demo import generate_crm, write_crm

    write_crm(generate_crm(n_leads=100, seed=3), tmp_path)
    assert bench.main(["--crm", str(tmp_path / "raw"), "--single", "3"]) == 0
    out = capsys.readouterr().out
    assert "one lead (by id" in out and "batch: 100 leads" in out and "cores" in out
