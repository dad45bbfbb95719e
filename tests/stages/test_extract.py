"""The extract stage: the CRM from files or a database, deterministic bytes, a manifest, clear errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import sqlalchemy as sa

from leadscore.cli.main import main
from leadscore.core.config import Params
from leadscore.core.exceptions import ConfigError
from leadscore.data.crm import load_crm, snapshot_table
from leadscore.stages.extract import extract_crm, resolve_source

N = 600


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo CRM as files and in a SQLite database (same generator, same settings)."""
    root = tmp_path_factory.mktemp("extract")
    assert main(["demo", "--out", str(root / "data"), "--n-leads", str(N), "--params", "none.yaml"]) == 0
    assert main(["demo", "--db", str(root / "crm.db"), "--n-leads", str(N), "--params", "none.yaml"]) == 0
    return root


def test_files_are_copied_byte_for_byte(demo, tmp_path):
    manifest = extract_crm("files", tmp_path / "raw", raw_dir=demo / "data/raw")
    for name in ("leads", "activities", "outcomes"):
        assert (tmp_path / "raw" / f"{name}.parquet").read_bytes() == \
            (demo / "data/raw" / f"{name}.parquet").read_bytes()
    assert manifest["tables"]["leads"]["rows"] == N and manifest["source"] == str(demo / "data/raw")


def test_a_database_gives_the_same_rows_and_the_same_bytes_each_time(demo, tmp_path):
    first = extract_crm(f"sqlite:///{demo / 'crm.db'}", tmp_path / "a")
    again = extract_crm(f"sqlite:///{demo / 'crm.db'}", tmp_path / "b")
    assert first["sha256"] == again["sha256"]  # unchanged database: DVC reruns nothing after extract
    files = extract_crm("files", tmp_path / "f", raw_dir=demo / "data/raw")
    assert first["tables"] == files["tables"]
    params = Params()
    from_db = snapshot_table(load_crm(tmp_path / "a"), params)
    from_files = snapshot_table(load_crm(demo / "data/raw"), params)
    pd.testing.assert_frame_equal(from_db.sort_values("lead_id").reset_index(drop=True),
                                  from_files.sort_values("lead_id").reset_index(drop=True),
                                  check_exact=False, rtol=0, atol=1e-9)


def test_a_changed_database_changes_the_extract(demo, tmp_path):
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    assert main(["demo", "--db", url, "--n-leads", str(N), "--params", "none.yaml"]) == 0
    before = extract_crm(url, tmp_path / "a")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE leads SET region = 'moved' WHERE lead_id = 'L0000001'"))
    engine.dispose()
    after = extract_crm(url, tmp_path / "b")
    assert after["sha256"]["leads"] != before["sha256"]["leads"]
    assert after["sha256"]["activities"] == before["sha256"]["activities"]


def test_the_cli_writes_the_manifest_and_reads_a_url_from_the_environment(demo, tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_URL_FOR_TEST", f"sqlite:///{demo / 'crm.db'}")
    assert main(["extract", "--source", "env:CRM_URL_FOR_TEST", "--out", str(tmp_path / "raw"),
                 "--manifest", str(tmp_path / "manifest.json")]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["tables"]["activities"]["rows"] > N and manifest["tables"]["leads"]["newest"]


def test_bad_sources_are_one_line_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(ConfigError, match="environment variable NOT_SET_ANYWHERE is not set"):
        resolve_source("env:NOT_SET_ANYWHERE")
    with pytest.raises(ConfigError, match="expected 'files', a database URL"):
        resolve_source("ftp://somewhere/crm")
    assert main(["extract", "--source", "files", "--mapping", "m.yaml", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "crm.mapping is for a database source" in err[0]
