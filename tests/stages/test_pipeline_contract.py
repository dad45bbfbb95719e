"""dvc.yaml, params.yaml, notebooks and data.dvc agree with each other."""

from __future__ import annotations

import json
import re
import shlex

import papermill as pm
import pytest
import yaml
from conftest import REPO

from leadscore.core.config import load_params
from leadscore.core.hashing import dvc_dir_md5, recorded_md5
from leadscore.demo import generate_crm, write_crm

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
NOTEBOOK_STAGES = {name: stage for name, stage in STAGES.items() if "papermill" in stage["cmd"]}


def _papermill_calls(cmd: str) -> list[tuple[str, dict[str, str]]]:
    calls = []
    for part in cmd.split("&&"):
        words = shlex.split(part)
        if words and words[0] == "papermill":
            notebook = next(w for w in words if w.startswith("notebooks/"))
            params = {words[i + 1]: words[i + 2] for i, w in enumerate(words) if w == "-p"}
            calls.append((notebook, params))
    return calls


@pytest.mark.parametrize("stage", sorted(NOTEBOOK_STAGES))
def test_dvc_parameters_exist_in_the_notebook(stage):
    for notebook, passed in _papermill_calls(NOTEBOOK_STAGES[stage]["cmd"]):
        declared = pm.inspect_notebook(str(REPO / notebook))
        assert set(passed) <= set(declared), f"{stage}: unknown {set(passed) - set(declared)}"
        assert notebook in STAGES[stage]["deps"]


def test_interpolated_params_exist_in_params_yaml():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for name, stage in STAGES.items():
        for ref in re.findall(r"\$\{([^}]+)\}", stage["cmd"]):
            node = params
            for key in ref.split("."):
                assert key in node, f"stage {name}: ${{{ref}}} not in params.yaml"
                node = node[key]


def test_source_notebooks_have_no_outputs():
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        book = json.loads(path.read_text())
        assert all(not c.get("outputs") for c in book["cells"] if c["cell_type"] == "code"), path
        tags = book["cells"][1]["metadata"].get("tags", [])
        assert "parameters" in tags, f"{path.name}: second cell must be the parameters cell"


def test_params_yaml_loads():
    params = load_params(REPO / "params.yaml")
    assert "sales_status" in params.features.exclude
    assert "rules" in params.candidates and len(params.rules) >= 5
    import numpy as np

    from leadscore.evaluation.tiers import capacity_tiers
    from leadscore.modeling.rules import rules_from_config

    assert params.decision.tiers_by == "capacity"
    tiers, plan = capacity_tiers(params.decision.tiers, np.linspace(0, 1, 1001), np.zeros(1001))
    assert [t.name for t in tiers] == ["HIGH_PRIORITY", "MEDIUM_PRIORITY", "NURTURE", "LOW_PRIORITY"]
    assert sum(p["share"] for p in plan[:2]) == pytest.approx(params.decision.capacity_share, abs=0.002)
    assert rules_from_config(params.rules)[0].feature == "quote_requests"


def test_regenerated_demo_data_matches_data_dvc(tmp_path):
    """A fresh clone rebuilds data/ from params.yaml; it must hash to what data.dvc records."""
    demo = load_params(REPO / "params.yaml").demo
    write_crm(generate_crm(n_leads=demo.n_leads, seed=demo.seed, start=demo.start,
                           months=demo.months), tmp_path / "data")
    assert dvc_dir_md5(tmp_path / "data") == recorded_md5(REPO / "data.dvc")
