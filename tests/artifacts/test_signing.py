"""A model folder cannot run code: bundles are signed, and nothing unsigned or foreign is unpickled."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import pytest
from conftest import make_flat_leads

from leadscore.artifacts.bundle import MODEL_FILE, load_bundle, save_bundle
from leadscore.artifacts.registry import Registry
from leadscore.artifacts.signing import ENV_KEY, ENV_KEY_FILE, signing_key
from leadscore.cli.main import main
from leadscore.core.exceptions import ConfigError, ModelIntegrityError
from leadscore.training.fit import fit_table


class _Payload:
    """Unpickling this runs a shell command: what an attacker would put in model.joblib."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    result = fit_table(make_flat_leads(300), target="converted", id_column="lead_id", candidates=["logistic"])
    return save_bundle(result.bundle, tmp_path_factory.mktemp("signed") / "bundle")


def _poison(folder: Path, marker: Path, *, keep_signature: bool) -> None:
    """Replace the model with a payload and fix up the sha256, as anyone who can write the folder can."""
    (folder / MODEL_FILE).write_bytes(pickle.dumps({"model": _Payload(marker), "schema": None}))
    meta = json.loads((folder / "metadata.json").read_text())
    meta["sha256"] = hashlib.sha256((folder / MODEL_FILE).read_bytes()).hexdigest()
    if not keep_signature:
        meta.pop("signature")
    (folder / "metadata.json").write_text(json.dumps(meta))


def test_saved_bundles_are_signed_and_load(bundle_dir):
    meta = json.loads((bundle_dir / "metadata.json").read_text())
    assert len(meta["signature"]) == 64
    assert load_bundle(bundle_dir).model is not None


@pytest.mark.parametrize(("keep_signature", "message"), [
    (True, "its signature does not match this machine's signing key"),
    (False, "the bundle is not signed"),
])
def test_a_poisoned_folder_runs_no_code(bundle_dir, tmp_path, capsys, keep_signature, message):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(bundle_dir, folder)
    marker = tmp_path / "pwned"
    _poison(folder, marker, keep_signature=keep_signature)
    with pytest.raises(ModelIntegrityError, match=message):
        load_bundle(folder)
    leads = tmp_path / "leads.csv"
    make_flat_leads(20).drop(columns="converted").to_csv(leads, index=False)
    assert main(["score", "--model", str(folder), "--input", str(leads), "--output",
                 str(tmp_path / "s.csv"), "-q"]) == 2
    assert main(["models", "register", "--registry", str(tmp_path / "reg"), str(folder), "--activate"]) == 2
    err = capsys.readouterr().err
    assert err.count(message) == 2 and "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "s.csv").exists()
    assert Registry(tmp_path / "reg").versions() == []
    # the check is what stops it: with the explicit trust flag the payload does run
    load_bundle(folder, trust=True)
    assert marker.exists()


def test_a_bundle_signed_with_another_key_needs_trust(bundle_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_KEY, "another machine's secret")
    with pytest.raises(ModelIntegrityError, match="signature does not match"):
        load_bundle(bundle_dir)
    reg = Registry(tmp_path / "reg")
    version = reg.register(bundle_dir, activate=True, trust=True)  # re-signed with this key
    assert reg.load().metadata["version"] == version


def test_the_key_file_is_created_private_and_refused_when_readable(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_KEY, raising=False)
    monkeypatch.setenv(ENV_KEY_FILE, str(tmp_path / "keys" / "signing.key"))
    key = signing_key()
    path = tmp_path / "keys" / "signing.key"
    assert len(key) == 64 and path.stat().st_mode & 0o777 == 0o600 and signing_key() == key
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="can be read by other users: chmod 600"):
        signing_key()


def test_versions_registered_before_signing_are_signed_on_request(bundle_dir, tmp_path, capsys):
    reg = Registry(tmp_path / "reg")
    version = reg.register(bundle_dir, activate=True)
    meta_path = reg.path(version) / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta.pop("signature")  # as a registry made by an earlier release
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelIntegrityError, match="not signed"):
        reg.load()
    assert main(["models", "sign", "--registry", str(tmp_path / "reg")]) == 2
    assert "confirm with --trust-model" in capsys.readouterr().err
    assert main(["models", "sign", "--registry", str(tmp_path / "reg"), "--trust-model"]) == 0
    assert "signed 1 version(s)" in capsys.readouterr().out
    assert reg.load().metadata["version"] == version
