"""Bundles survive refactors: a bundle saved before the subpackage layout loads and scores identically,
the format is versioned, and thread counts are the loading machine's, never the bundle's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from leadscore.artifacts.bundle import FORMAT_VERSION, ModelBundle, load_bundle, save_bundle
from leadscore.artifacts.metadata import read_metadata
from leadscore.core.exceptions import ModelIntegrityError
from leadscore.modeling.composite import classifiers
from leadscore.modeling.segments import SegmentedModel
from leadscore.scoring.explain import contributions
from leadscore.scoring.scorer import Scorer

FIXTURE = REPO / "tests" / "fixtures" / "bundle_v1"


def test_a_bundle_from_before_the_move_scores_identically():
    meta = read_metadata(FIXTURE / "bundle")
    assert "format_version" not in meta and "signature" not in meta  # written by the flat layout
    with pytest.raises(ModelIntegrityError, match="the bundle is not signed"):
        Scorer.load(FIXTURE / "bundle")  # unsigned: only with an explicit trust flag
    scorer = Scorer.load(FIXTURE / "bundle", trust=True)
    leads = pd.read_csv(FIXTURE / "leads.csv")
    scored = scorer.score_frame(leads, reasons=2, now=pd.Timestamp("2026-01-01", tz="UTC"))
    expected = pd.read_parquet(FIXTURE / "expected_scores.parquet")
    pd.testing.assert_frame_equal(scored.reset_index(drop=True), expected, check_dtype=False)
    raw = pd.read_parquet(FIXTURE / "expected_raw.parquet")
    X = scorer.features(leads)  # noqa: N806
    assert isinstance(scorer.bundle.model, SegmentedModel)
    np.testing.assert_array_equal(scorer.bundle.model.predict_proba(X)[:, 1], raw["probability"])
    contrib = contributions(scorer.bundle.model, X)
    np.testing.assert_allclose(contrib.base, raw["base"], rtol=0, atol=1e-12)
    for column in contrib.values.columns:
        np.testing.assert_allclose(contrib.values[column], raw[f"contribution_{column}"], rtol=0, atol=1e-12)


def test_an_old_bundle_resaved_is_the_current_format_and_loads_without_the_old_names(tmp_path):
    old = load_bundle(FIXTURE / "bundle", trust=True)
    save_bundle(ModelBundle(old.model, old.schema, dict(old.metadata)), tmp_path / "new")
    meta = json.loads((tmp_path / "new" / "metadata.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION and meta["created_at"]
    # a fresh interpreter that never installs the old module names still loads the re-saved bundle
    code = (f"import sys; from leadscore.artifacts.bundle import load_bundle; "
            f"b = load_bundle({str(tmp_path / 'new')!r}); "
            f"print(sorted(m for m in sys.modules if m in ('leadscore.models', 'leadscore.segments')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_bundle_of_a_newer_format_is_refused_with_one_line(tmp_path):
    shutil.copytree(FIXTURE / "bundle", tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "metadata.json").read_text())
    (tmp_path / "b" / "metadata.json").write_text(json.dumps({**meta, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(ModelIntegrityError, match=r"bundle format \d+ is newer than this release reads"):
        load_bundle(tmp_path / "b", trust=True)


@pytest.mark.parametrize("threads", ["1", "3"])
def test_threads_are_the_loading_machines(monkeypatch, threads):
    monkeypatch.setenv("LEADSCORE_THREADS", threads)
    model = load_bundle(FIXTURE / "bundle", trust=True).model
    counts = {type(c).__name__: c.get_params().get("n_jobs", c.get_params().get("thread_count"))
              for c in classifiers(model) if hasattr(c, "get_params")}
    # the fixture was saved with 2 threads per model; each classifier now has the loader's count
    assert counts == {"CategoricalLGBMClassifier": int(threads), "SafeNameXGBClassifier": int(threads),
                      "CategoricalCatBoostClassifier": int(threads), "LogisticRegression": int(threads),
                      "RuleScorer": None}


def test_saved_bundles_never_record_a_thread_count(tmp_path, monkeypatch):
    monkeypatch.setenv("LEADSCORE_THREADS", "1")
    bundle = load_bundle(FIXTURE / "bundle", trust=True)
    save_bundle(bundle, tmp_path / "again")
    text = (tmp_path / "again" / "metadata.json").read_text()
    assert "n_jobs" not in text and "thread_count" not in text
    monkeypatch.setenv("LEADSCORE_THREADS", "4")
    lgbm = next(c for c in classifiers(load_bundle(tmp_path / "again").model)
                if type(c).__name__ == "CategoricalLGBMClassifier")
    assert lgbm.get_params()["n_jobs"] == 4


def test_threads_setting_is_validated(monkeypatch):
    from leadscore.core.exceptions import ConfigError
    from leadscore.core.threads import n_threads

    monkeypatch.setenv("LEADSCORE_THREADS", "zero")
    with pytest.raises(ConfigError, match="LEADSCORE_THREADS: expected an integer >= 1, got 'zero'"):
        n_threads()
    monkeypatch.delenv("LEADSCORE_THREADS")
    assert n_threads() >= 1


def test_fixture_is_committed_as_written():
    assert Path(FIXTURE / "bundle" / "model.joblib").stat().st_size > 1000
