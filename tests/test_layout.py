"""The package's layout is enforced, documented and cheap to import.

* the layered import contract (``[tool.importlinter]`` in pyproject.toml) holds, and a planted upward
  import breaks it;
* the architecture page's layout map (docs/architecture.md) names every subpackage and module, and its
  layer list is the enforced contract;
* ``leadscore --help``, ``models list``, scoring with a logistic-only model and an API worker's start do
  not import CatBoost, XGBoost, LightGBM, shap, Optuna or Dask.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO, make_flat_leads

PACKAGE = REPO / "src" / "leadscore"
HEAVY = ("catboost", "xgboost", "lightgbm", "shap", "optuna", "dask")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(src: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=REPO, env=env, capture_output=True,
                          text=True, check=False)


def test_the_layered_import_contract_holds():
    done = _lint_imports(REPO / "src")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / "leadscore", ignore=shutil.ignore_patterns("__pycache__"))
    tables = tmp_path / "leadscore" / "data" / "tables.py"
    tables.write_text(tables.read_text() + "\nfrom leadscore.service import app  # noqa: E402\n")
    done = _lint_imports(tmp_path)
    assert done.returncode != 0
    assert "leadscore.data is not allowed to import leadscore.service" in done.stdout
    assert "leadscore.data.tables -> leadscore.service.app" in done.stdout


def _layout_block() -> list[str]:
    page = (REPO / "docs" / "architecture.md").read_text()
    block = page.split("## Layout", 1)[1].split("```", 2)[1]
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if "── src/leadscore/" in line)
    return lines[start + 1:]


def _modules(package: Path) -> list[str]:
    return sorted(p.stem for p in package.glob("*.py") if not p.stem.startswith("__"))


@pytest.mark.parametrize("package", sorted(
    str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*") if p.is_dir() and (p / "__init__.py").exists()))
def test_the_architecture_layout_names_every_module(package):
    pattern = re.compile(rf"── {re.escape(Path(package).name)}/\s")
    line = next((text for text in _layout_block() if pattern.search(text)), None)
    assert line is not None, f"docs/architecture.md layout has no line for {package}/"
    described = line.split("#", 1)[-1]
    missing = [m for m in _modules(PACKAGE / package) if not re.search(rf"\b{m}\b", described)]
    assert not missing, f"docs/architecture.md layout line for {package}/ does not name: {', '.join(missing)}"
    children = [p.name for p in (PACKAGE / package).iterdir() if (p / "__init__.py").exists()]
    assert all(f"{child}/" in described for child in children), f"{package}/: name {children} too"


PROBE = textwrap.dedent("""
    import sys
    {body}
    heavy = sorted(m for m in {heavy!r} if m in sys.modules)
    print("HEAVY=" + ",".join(heavy))
""")


def _heavy_after(body: str, cwd: Path) -> list[str]:
    code = PROBE.format(body=textwrap.indent(textwrap.dedent(body), "").strip(), heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("HEAVY="))
    return [m for m in line.removeprefix("HEAVY=").split(",") if m]


@pytest.fixture(scope="module")
def logistic_registry(tmp_path_factory) -> Path:
    from leadscore.artifacts.bundle import save_bundle
    from leadscore.artifacts.registry import Registry
    from leadscore.training.fit import fit_table

    root = tmp_path_factory.mktemp("logistic")
    frame = make_flat_leads(300)
    result = fit_table(frame, target="converted", id_column="lead_id", candidates=["logistic"])
    bundle = save_bundle(result.bundle, root / "bundle")
    Registry(root / "registry").register(bundle, activate=True)
    frame.drop(columns="converted").head(20).to_csv(root / "new.csv", index=False)
    return root


def test_help_and_models_list_import_no_heavy_library(logistic_registry):
    root = logistic_registry
    assert _heavy_after("""
        from leadscore.cli import main
        try:
            main(["--help"])
        except SystemExit:
            pass
        main(["models", "list", "--registry", "registry"])
    """, root) == []


def test_scoring_with_a_logistic_model_imports_no_heavy_library(logistic_registry):
    root = logistic_registry
    assert _heavy_after("""
        from leadscore.cli import main
        assert main(["score", "--model", "bundle", "--input", "new.csv", "--output", "out.csv",
                     "--reasons", "2", "-q"]) == 0
    """, root) == []
    assert (root / "out.csv").read_text().count("\n") == 21


def test_an_api_worker_with_a_logistic_model_imports_no_heavy_library(logistic_registry):
    from service_support import write_keys

    root = logistic_registry
    write_keys(root / "keys.yaml")
    assert _heavy_after(f"""
        from fastapi.testclient import TestClient
        from leadscore.service.app import create_app
        from leadscore.service.settings import ServiceSettings
        from pathlib import Path
        settings = ServiceSettings(registry=Path("registry"), keys_file=Path("keys.yaml"),
                                   log_url="sqlite:///{root / 'log.db'}")
        with TestClient(create_app(settings)) as client:
            assert client.get("/ready").status_code == 200
    """, root) == []


def test_a_lightgbm_model_imports_lightgbm_and_only_it(logistic_registry, tmp_path):
    """The check above can fail: a model that needs a library does import it."""
    from leadscore.artifacts.bundle import save_bundle
    from leadscore.training.fit import fit_table

    result = fit_table(make_flat_leads(300), target="converted", id_column="lead_id", candidates=["lightgbm"])
    save_bundle(result.bundle, tmp_path / "bundle")
    shutil.copy(logistic_registry / "new.csv", tmp_path / "new.csv")
    heavy = _heavy_after("""
        from leadscore.cli import main
        assert main(["score", "--model", "bundle", "--input", "new.csv", "--output", "out.csv", "-q"]) == 0
    """, tmp_path)
    assert heavy == ["lightgbm"]


def test_the_architecture_page_lists_the_enforced_layers():
    import tomllib

    contract = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]
    page = (REPO / "docs" / "architecture.md").read_text()
    block = page.split("```", 2)[1].strip().splitlines()
    drawn = [re.split(r"\s{2,}", line.strip())[0] for line in block]
    assert drawn == contract["layers"]
