"""The model registry: versions, activation and rollback, pruning, integrity, atomic switching, CLI."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from conftest import make_flat_leads

from leadscore.artifacts.bundle import MODEL_FILE, load_bundle, read_metadata, save_bundle
from leadscore.artifacts.registry import Registry
from leadscore.cli.models import add_models_command
from leadscore.core.exceptions import ConfigError, ModelIntegrityError, ModelNotFoundError
from leadscore.core.hashing import file_sha256
from leadscore.data.schema import prepare_features
from leadscore.training.fit import fit_table

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> tuple[Path, Path]:
    """Two small real bundles; the second carries test metrics as `export` writes them."""
    root = tmp_path_factory.mktemp("bundles")
    result = fit_table(make_flat_leads(300), target="converted", id_column="lead_id",
                       candidates=["logistic"])
    first = save_bundle(result.bundle, root / "first")
    result.bundle.metadata["test_metrics"] = {"roc_auc": 0.8123, "pr_auc": 0.51, "brier": 0.12,
                                              "lift": None}
    result.bundle.metadata["model"] = "second"
    second = save_bundle(result.bundle, root / "second")
    return first, second


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_register_list_show(bundles, tmp_path):
    first, second = bundles
    reg = Registry(tmp_path / "reg")
    assert reg.versions() == [] and reg.active_version() is None
    v1 = reg.register(first, now=at(0))
    v2 = reg.register(second, now=at(60), activate=True)
    assert (v1, v2) == ("20250101120000", "20250101120100")
    infos = reg.versions()
    assert [i.version for i in infos] == [v2, v1]
    assert [i.active for i in infos] == [True, False]
    assert infos[0].model == "second" and infos[0].metrics == {"roc_auc": 0.8123, "pr_auc": 0.51,
                                                                "brier": 0.12}
    assert infos[1].metrics == {} and infos[1].path == tmp_path / "reg" / "versions" / v1
    meta = reg.show(v2)
    assert meta["version"] == v2 and meta["registered_at"] == "2025-01-01T12:01:00+00:00"
    # the artifact is byte-identical: same sha256 as the source, still verified on load
    assert file_sha256(reg.path(v2) / MODEL_FILE) == file_sha256(second / MODEL_FILE) == meta["sha256"]
    assert meta["sha256"] == read_metadata(second)["sha256"] == infos[0].sha256
    bundle = reg.load()
    assert bundle.metadata["version"] == v2
    X = prepare_features(make_flat_leads(40, seed=5), bundle.schema)  # noqa: N806
    expected = load_bundle(second).model.predict_proba(X)[:, 1]
    assert np.array_equal(bundle.model.predict_proba(X)[:, 1], expected)  # the same model, loaded
    assert 0 < expected.min() < expected.max() < 1
    assert reg.load(v1).metadata["version"] == v1
    assert not list((tmp_path / "reg").glob(".tmp-*"))      # no staging folders left behind


def test_version_names_are_utc_and_collisions_move_on(bundles, tmp_path):
    reg = Registry(tmp_path)
    plus_two = timezone(timedelta(hours=2))
    names = [reg.register(bundles[0], now=datetime(2025, 1, 1, 14, 0, 0, tzinfo=plus_two)),
             reg.register(bundles[0], now=T0),
             reg.register(bundles[0], now=T0.replace(tzinfo=None)),     # naive: taken as UTC
             reg.register(bundles[0], now=at(2))]
    assert names == ["20250101120000", "20250101120001", "20250101120002", "20250101120003"]
    fresh = reg.register(bundles[0])
    assert abs(datetime.strptime(fresh, "%Y%m%d%H%M%S").replace(tzinfo=UTC) - datetime.now(UTC)) \
        < timedelta(minutes=1)


def test_activate_rollback_and_again(bundles, tmp_path):
    reg = Registry(tmp_path)
    a, b, c = (reg.register(bundles[0], now=at(i)) for i in range(3))
    with pytest.raises(ModelNotFoundError, match="has no active model"):
        reg.rollback()
    for v in (a, b, c):
        reg.activate(v)
    state = json.loads((tmp_path / "ACTIVE").read_text())
    assert state["version"] == c and state["history"] == [a, b] and state["activated_at"]
    assert reg.rollback() == b and reg.active_version() == b
    assert reg.rollback() == a and reg.active_version() == a
    with pytest.raises(ModelNotFoundError, match=f"no earlier active version.*active: {a}"):
        reg.rollback()
    assert reg.active_version() == a
    reg.activate(c)
    reg.activate(c)                       # re-activating the active version does not grow the history
    reg.activate(b)
    assert json.loads((tmp_path / "ACTIVE").read_text())["history"] == [a, c]
    assert reg.rollback() == c


def test_pruning_keeps_newest_active_rollback_target_and_challenger(bundles, tmp_path):
    reg = Registry(tmp_path, keep=5)
    old = reg.register(bundles[0], now=at(0), activate=True)
    target = reg.register(bundles[0], now=at(1))
    challenger = reg.register(bundles[1], now=at(2))
    reg.activate(target)
    reg.activate(old)                     # active: old, rollback would return to: target
    reg.set_challenger(challenger)
    new = [reg.register(bundles[1], now=at(10 + i)) for i in range(7)]
    assert [i.version for i in reg.versions()] == [*new[:1:-1], challenger, target, old]
    assert reg.prune() == []
    assert reg.rollback() == target       # old is no longer protected ...
    assert reg.challenger_version() == challenger   # (switches keep the challenger)
    reg.set_challenger(None)              # ... nor is the challenger once unmarked
    reg.register(bundles[1], now=at(20))
    kept = [i.version for i in reg.versions()]
    assert old not in kept and challenger not in kept and len(kept) == 6   # 5 newest + the active one
    assert json.loads((tmp_path / "ACTIVE").read_text())["history"] == []
    with pytest.raises(ConfigError, match="expected an integer >= 5"):
        Registry(tmp_path, keep=4)
    events = reg.events()
    assert [e["event"] for e in events][:3] == ["register", "activate", "register"]
    assert {"prune", "rollback", "challenger"} <= {e["event"] for e in events}
    assert reg.events(limit=2) == events[-2:]


def test_challenger_must_be_another_registered_version(bundles, tmp_path):
    reg = Registry(tmp_path)
    active = reg.register(bundles[0], now=at(0), activate=True)
    with pytest.raises(ConfigError, match="is the active version"):
        reg.set_challenger(active)
    with pytest.raises(ModelNotFoundError):
        reg.set_challenger("20990101000000")
    other = reg.register(bundles[1], now=at(1))
    reg.set_challenger(other)
    reg.activate(other)                   # promoted: no longer a challenger
    assert reg.challenger_version() is None and reg.active_version() == other


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_artifact_refused_on_activate_and_load(bundles, tmp_path, damage):
    reg = Registry(tmp_path)
    good = reg.register(bundles[0], now=at(0), activate=True)
    bad = reg.register(bundles[0], now=at(1))
    artifact = reg.path(bad) / MODEL_FILE
    if damage == "flip":
        flip_byte(artifact)
    else:
        artifact.write_bytes(artifact.read_bytes()[: artifact.stat().st_size // 2])
    with pytest.raises(ModelIntegrityError, match="sha256"):
        reg.activate(bad)
    assert reg.active_version() == good                     # nothing switched
    with pytest.raises(ModelIntegrityError, match="sha256"):
        reg.load(bad)
    reg.load()                                              # the active one is still fine
    shutil.copyfile(artifact, reg.path(good) / MODEL_FILE)  # now damage the active version too
    with pytest.raises(ModelIntegrityError):
        reg.load()


def test_register_refuses_tampered_source(bundles, tmp_path):
    source = tmp_path / "src"
    shutil.copytree(bundles[0], source)
    flip_byte(source / MODEL_FILE)
    reg = Registry(tmp_path / "reg")
    with pytest.raises(ModelIntegrityError, match="expected sha256"):
        reg.register(source)
    assert reg.versions() == []
    with pytest.raises(ModelNotFoundError, match="no model at"):
        reg.register(tmp_path / "nowhere")


def test_unknown_version_and_empty_registry_messages(bundles, tmp_path):
    reg = Registry(tmp_path / "registry")
    with pytest.raises(ModelNotFoundError, match=r"registry/ has no active model: run `dvc repro` or "
                                                 r"`leadscore models activate VERSION`"):
        reg.load()
    with pytest.raises(ModelNotFoundError, match=r"no model version 20250101000000 in .*registry/ "
                                                 r"\(known: none\)"):
        reg.activate("20250101000000")
    v = reg.register(bundles[0], now=at(0))
    for call in (reg.show, reg.load, reg.activate, reg.path):
        with pytest.raises(ModelNotFoundError, match=rf"no model version 20250101000000 .*\(known: {v}\)"):
            call("20250101000000")
    with pytest.raises(ModelNotFoundError, match="no model version ../versions"):
        reg.path("../versions")


def test_writers_serialise_on_the_lock(bundles, tmp_path):
    reg = Registry(tmp_path)
    a = reg.register(bundles[0], now=at(0), activate=True)
    b = reg.register(bundles[0], now=at(1))
    done = threading.Event()
    other = Registry(tmp_path)
    worker = threading.Thread(target=lambda: (other.activate(b), done.set()))
    with reg._locked():
        worker.start()
        assert not done.wait(0.3)             # blocked while another writer holds the lock
        assert reg.active_version() == a      # readers are not blocked
    worker.join(5)
    assert done.is_set() and reg.active_version() == b


WRITER = textwrap.dedent("""
    import sys
    from leadscore.artifacts.registry import Registry
    root, a, b, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    reg = Registry(root)
    print("ready", flush=True)
    for i in range(n):
        reg.activate(b if i % 2 == 0 else a)
""")


def test_reader_never_sees_a_half_switched_registry(bundles, tmp_path):
    reg = Registry(tmp_path)
    a = reg.register(bundles[0], now=at(0), activate=True)
    b = reg.register(bundles[1], now=at(1))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), a, b, "200"],
                              stdout=subprocess.PIPE, text=True)
    seen: set[str] = set()
    reads = 0
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"  # imports done
        deadline = time.monotonic() + 20
        while writer.poll() is None and time.monotonic() < deadline:
            active = reg.active_version()
            assert active in (a, b)
            loaded = reg.load(active).metadata["version"]
            current = reg.load().metadata["version"]
            assert loaded == active and current in (a, b)
            seen.add(current)
            reads += 1
    finally:
        if writer.poll() is None:
            writer.kill()
    assert writer.wait() == 0 and reads > 0
    assert seen == {a, b}, f"the reader saw only {seen} in {reads} reads"
    state = json.loads((tmp_path / "ACTIVE").read_text())
    assert state["version"] == a and state["history"] == [b]   # 200 flips: ends on a


# --- CLI -------------------------------------------------------------------------------------------

def run_cli(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="leadscore")
    add_models_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


def test_cli_register_list_activate_rollback_show(bundles, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LEADSCORE_REGISTRY", str(tmp_path / "env-reg"))
    run_cli(["models", "list"])
    assert "has no versions" in capsys.readouterr().out
    run_cli(["models", "register", str(bundles[0])])
    run_cli(["models", "register", str(bundles[1]), "--activate"])
    out = capsys.readouterr().out
    assert "(not active)" in out and "(active)" in out
    reg = Registry(tmp_path / "env-reg")
    old, new = sorted(i.version for i in reg.versions())
    run_cli(["models", "list"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["version", "model", "roc_auc", "created"]
    assert lines[1].startswith(f"* {new}") and "second" in lines[1] and "0.8123" in lines[1]
    assert lines[2].startswith(f"  {old}") and lines[2].split()[2] == "-"
    run_cli(["models", "activate", old, "--registry", str(tmp_path / "env-reg")])
    assert reg.active_version() == old
    run_cli(["models", "rollback"])
    assert reg.active_version() == new and f"rolled back from {old}" in capsys.readouterr().out
    run_cli(["models", "show", new])
    assert json.loads(capsys.readouterr().out)["version"] == new
    with pytest.raises(ModelNotFoundError, match="no model version 19990101000000"):
        run_cli(["models", "activate", "19990101000000"])
    with pytest.raises(ConfigError, match="keep"):
        run_cli(["models", "list", "--keep", "0"])


def test_cli_registry_option_default_and_help(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LEADSCORE_REGISTRY", raising=False)
    assert Registry.default_root() == Path("registry")
    monkeypatch.setenv("LEADSCORE_REGISTRY", str(tmp_path / "x"))
    assert Registry.default_root() == tmp_path / "x"       # read at call time
    for sub in ("list", "show", "activate", "rollback", "register"):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(["models", sub, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert "--registry PATH" in text and "--keep N" in text
    with pytest.raises(SystemExit):
        run_cli(["models"])                                # a subcommand is required


@pytest.mark.parametrize("damage", ["{not json", "[1, 2]"])
def test_a_damaged_active_file_is_reported_and_repaired_by_activation(bundles, tmp_path, capsys, damage):
    reg = Registry(tmp_path)
    a = reg.register(bundles[0], activate=True, now=at(0))
    b = reg.register(bundles[1], now=at(1))
    (tmp_path / "ACTIVE").write_text(damage)
    with pytest.raises(ModelIntegrityError, match="repair it with `leadscore models activate VERSION`"):
        reg.active_version()
    with pytest.raises(ModelIntegrityError, match="ACTIVE"):
        reg.rollback()
    run_cli(["models", "activate", "--registry", str(tmp_path), b])  # the CLI repairs it
    assert "active: " + b in capsys.readouterr().out
    assert reg.active_version() == b and reg.load().metadata["version"] == b
    reg.activate(a)
    assert reg.rollback() == b  # history works again from the repair on


def test_metadata_that_is_not_an_object_is_refused_with_one_line(bundles, tmp_path):
    shutil.copytree(bundles[0], tmp_path / "b")
    (tmp_path / "b" / "metadata.json").write_text("[1, 2, 3]")
    with pytest.raises(ModelIntegrityError, match="expected a JSON object, got a JSON list"):
        read_metadata(tmp_path / "b")
