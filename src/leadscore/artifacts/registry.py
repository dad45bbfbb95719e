"""Versioned model bundles in one folder: register, list, activate, roll back, load (always verified).

Layout of a registry root::

    versions/<YYYYMMDDHHMMSS>/   a bundle (model.joblib + metadata.json), never changed once there
    ACTIVE                       {"version": ..., "history": [...], "activated_at": ..., "challenger": ...}
    events.jsonl                 what happened, one JSON object a line: registrations, activations,
                                 rollbacks, challengers, gate decisions, retraining cycles
    .lock                        writers hold an exclusive flock on it

A version appears by ``os.rename`` of a finished folder and the pointer changes by ``os.replace`` of a
finished file, so a reader sees either the old or the new state, never half of one. Writers (register,
activate, rollback, prune) serialise on the lock; readers take no lock.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leadscore.artifacts import signing
from leadscore.artifacts.card_render import write_card
from leadscore.artifacts.metadata import read_metadata, verify_artifact
from leadscore.artifacts.paths import (
    DEFAULT_REGISTRY,
    METADATA_FILE,
    REGISTRY_ACTIVE,
    REGISTRY_ENV,
    REGISTRY_LOCK,
    REGISTRY_VERSIONS,
)
from leadscore.core.exceptions import ConfigError, ModelIntegrityError, ModelNotFoundError
from leadscore.core.files import atomic_write_text

if TYPE_CHECKING:
    from leadscore.artifacts.bundle import ModelBundle

log = logging.getLogger(__name__)

ENV_ROOT = REGISTRY_ENV
VERSION_FORMAT = "%Y%m%d%H%M%S"
_VERSION_RE = re.compile(r"^\d{14}$")
_ACTIVE = REGISTRY_ACTIVE
_LOCK = REGISTRY_LOCK
_TMP_PREFIX = ".tmp-"
_EVENTS = "events.jsonl"
MIN_KEEP = 5


@dataclass(frozen=True)
class VersionInfo:
    """One registered version, as listed by :meth:`Registry.versions`."""

    version: str  # "YYYYMMDDHHMMSS", UTC at registration
    path: Path
    created_at: str  # when the model was fitted (metadata "created_at"), else when registered
    model: str
    metrics: dict[str, float]  # numeric entries of metadata "test_metrics" (roc_auc, pr_auc, brier, ...)
    sha256: str
    active: bool


def _numeric(values: Any) -> dict[str, float]:
    if not isinstance(values, dict):
        return {}
    return {str(k): float(v) for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}


class Registry:
    """A folder of model versions with an atomically switched active pointer.

    Parameters
    ----------
    root : the registry folder; created by the first write.
    keep : how many of the newest versions pruning keeps (the active version and the one
        :meth:`rollback` would return to are always kept as well).
    """

    def __init__(self, root: str | Path, keep: int = 10) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < MIN_KEEP:
            raise ConfigError(f"keep: expected an integer >= {MIN_KEEP} (versions kept for rollback), "
                              f"got {keep!r}")
        self.root = Path(root)
        self.keep = keep

    @classmethod
    def default_root(cls) -> Path:
        """``$LEADSCORE_REGISTRY`` if set, else ``registry`` (read at call time)."""
        return Path(os.environ.get(ENV_ROOT) or DEFAULT_REGISTRY)

    def __repr__(self) -> str:
        return f"Registry({str(self.root)!r}, keep={self.keep})"

    # --- reading -----------------------------------------------------------------------------------

    @property
    def _versions_dir(self) -> Path:
        return self.root / REGISTRY_VERSIONS

    def _names(self) -> list[str]:
        """Version names, newest first."""
        if not self._versions_dir.is_dir():
            return []
        names = [p.name for p in self._versions_dir.iterdir() if _VERSION_RE.match(p.name) and p.is_dir()]
        return sorted(names, reverse=True)

    def _unknown(self, version: str) -> ModelNotFoundError:
        names = self._names()
        known = ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")
        return ModelNotFoundError(
            f"no model version {version} in {self.root}/ (known: {known or 'none'})")

    def path(self, version: str) -> Path:
        """Folder of ``version``; :class:`ModelNotFoundError` if it is not registered."""
        version = str(version)
        folder = self._versions_dir / version
        if not _VERSION_RE.match(version) or not folder.is_dir():
            raise self._unknown(version)
        return folder

    def _state(self) -> dict[str, Any]:
        path = self.root / _ACTIVE
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            return {"version": None, "history": []}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelIntegrityError(f"{path} is not valid JSON ({exc}): repair it with "
                                      "`leadscore models activate VERSION`") from exc
        if not isinstance(state, dict) or not isinstance(state.get("history", []), list):
            raise ModelIntegrityError(f"{path}: expected a JSON object with a history list, got "
                                      f"{str(state)[:80]!r}: repair it with "
                                      "`leadscore models activate VERSION`")
        return {"version": state.get("version"), "history": list(state.get("history", [])),
                "activated_at": state.get("activated_at"), "challenger": state.get("challenger")}

    def active_version(self) -> str | None:
        """The active version, or None if nothing was activated yet."""
        version = self._state()["version"]
        return None if version is None else str(version)

    def challenger_version(self) -> str | None:
        """The version marked challenger (scored in the shadow of the active one), or None."""
        version = self._state().get("challenger")
        return None if version is None else str(version)

    def events(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The registry's events, oldest first (the last ``limit`` of them)."""
        path = self.root / _EVENTS
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            return []
        events = []
        for line in lines[-limit:] if limit else lines:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:  # a line torn by a crash mid-append: skipped, the rest stands
                log.warning("%s: skipping an unreadable line", path)
        return events

    def _info(self, version: str, active: str | None) -> VersionInfo:
        folder = self._versions_dir / version
        meta = read_metadata(folder)
        return VersionInfo(
            version=version, path=folder,
            created_at=str(meta.get("created_at") or meta.get("registered_at") or ""),
            model=str(meta.get("model", "unknown")), metrics=_numeric(meta.get("test_metrics")),
            sha256=str(meta.get("sha256", "")), active=version == active)

    def versions(self) -> list[VersionInfo]:
        """Every registered version, newest first."""
        active = self.active_version()
        infos = []
        for name in self._names():
            try:
                infos.append(self._info(name, active))
            except ModelNotFoundError:
                if (self._versions_dir / name).exists():
                    raise  # a version folder without metadata: report it
                # else pruned by another process while we were listing
        return infos

    def show(self, version: str) -> dict[str, Any]:
        """The metadata of ``version``."""
        return read_metadata(self.path(version))

    def load(self, version: str | None = None) -> ModelBundle:
        """Load ``version`` (default: the active one) after verifying its sha256."""
        if version is None:
            version = self.active_version()
            if version is None:
                raise ModelNotFoundError(
                    f"{self.root}/ has no active model: run `dvc repro` or "
                    "`leadscore models activate VERSION`")
        from leadscore.artifacts.bundle import load_bundle  # scikit-learn and joblib: only to load

        return load_bundle(self.path(version))

    # --- writing -----------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / _LOCK).open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _write_state(self, version: str | None, history: list[str], activated_at: str | None = None,
                     challenger: str | None = None) -> None:
        state = {"version": version, "history": history,
                 "activated_at": activated_at or datetime.now(UTC).isoformat(timespec="seconds"),
                 "challenger": challenger if challenger != version else None}
        atomic_write_text(self.root / _ACTIVE, json.dumps(state, indent=2) + "\n")

    def _record(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one event (lock held); returns it."""
        entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "event": event, **fields}
        with (self.root / _EVENTS).open("a") as handle:
            handle.write(json.dumps(entry, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return entry

    def record(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append an event to the registry's history (gate decisions, retraining cycles)."""
        with self._locked():
            return self._record(event, **fields)

    def set_challenger(self, version: str | None) -> None:
        """Mark ``version`` as the challenger (None: no challenger).

        Raises
        ------
        ModelNotFoundError
            If ``version`` is not registered.
        ConfigError
            If it is the active version.
        """
        with self._locked():
            state = self._state()
            if version is not None:
                self.path(version)
                if version == state["version"]:
                    raise ConfigError(f"{version} is the active version: a challenger must be another one")
            self._write_state(state["version"], state["history"], state.get("activated_at"), version)
            self._record("challenger", version=version, previous=state.get("challenger"))

    def _switch(self, version: str, history: list[str], challenger: str | None = None) -> None:
        """Verify ``version`` and make it active with ``history`` (lock held)."""
        folder = self.path(version)
        meta = read_metadata(folder)
        signing.verify(meta, folder)
        verify_artifact(folder, meta)
        self._write_state(version, [v for v in history if v != version], challenger=challenger)

    def register(self, bundle_dir: str | Path, *, activate: bool = False,
                 now: datetime | None = None, trust: bool = False) -> str:
        """Copy a saved bundle into the registry as a new version and return its name.

        The version is ``now`` in UTC as ``YYYYMMDDHHMMSS`` (a naive ``now`` is taken as UTC), one second
        later while taken. ``model.joblib`` is copied byte for byte; metadata gains ``version`` and
        ``registered_at``; its model card is written next to it (``model_card.md`` and ``.html``).
        Older versions are then pruned, and the new one activated if asked.

        Raises
        ------
        ModelNotFoundError
            If ``bundle_dir`` holds no bundle.
        ModelIntegrityError
            If its artifact does not match the recorded sha256.
        """
        source = Path(bundle_dir)
        meta = read_metadata(source)
        signing.verify(meta, source, trust=trust)  # an unsigned or foreign bundle needs ``trust``
        verify_artifact(source, meta)
        now = datetime.now(UTC) if now is None else now
        now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
        with self._locked():
            for stale in self.root.glob(f"{_TMP_PREFIX}*"):  # left by a writer that crashed
                if stale.is_dir():
                    shutil.rmtree(stale)
                else:
                    stale.unlink()
            stamp = now
            while (self._versions_dir / stamp.strftime(VERSION_FORMAT)).exists():
                stamp += timedelta(seconds=1)
            version = stamp.strftime(VERSION_FORMAT)
            staging = Path(tempfile.mkdtemp(dir=self.root, prefix=_TMP_PREFIX))
            try:
                shutil.copytree(source, staging, dirs_exist_ok=True)
                meta = {**meta, "version": version, "registered_at": now.isoformat(timespec="seconds")}
                meta[signing.SIGNATURE] = signing.sign(meta)  # signed with this registry's key
                (staging / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
                write_card(staging, meta, version)
                verify_artifact(staging, meta)
                self._versions_dir.mkdir(exist_ok=True)
                os.rename(staging, self._versions_dir / version)
            finally:
                if staging.exists():
                    shutil.rmtree(staging)
            self._record("register", version=version, model=meta.get("model"),
                         roc_auc=_numeric(meta.get("test_metrics")).get("roc_auc"))
            removed = self._prune()
            if removed:
                self._record("prune", versions=removed)
            if activate:
                self._activate(version)
        return version

    def sign(self, versions: list[str] | None = None) -> list[str]:
        """Sign registered versions with this machine's key (default: every version); their names.

        For registries made before bundles were signed, or moved from another machine: call it only
        for versions you trust, since signing vouches for the code in the pickle. The artifact's sha256
        is checked first, and the metadata is replaced atomically.
        """
        with self._locked():
            names = self._names() if versions is None else [self.path(v).name for v in versions]
            for version in names:
                folder = self._versions_dir / version
                meta = read_metadata(folder)
                verify_artifact(folder, meta)
                meta[signing.SIGNATURE] = signing.sign(meta)
                atomic_write_text(folder / METADATA_FILE, json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return names

    def _activate(self, version: str) -> None:
        try:
            state = self._state()
        except ModelIntegrityError as exc:  # an explicit activation is how a damaged pointer is repaired
            log.warning("%s; activating %s replaces it (the rollback history is lost)", exc, version)
            state = {"version": None, "history": [], "challenger": None}
        current = state["version"]
        history = [v for v in state["history"] if v != current]
        if current is not None and current != version:
            history.append(current)
        self._switch(version, history, state.get("challenger"))
        if current != version:
            self._record("activate", version=version, previous=current)

    def activate(self, version: str) -> None:
        """Make ``version`` active after verifying its sha256; the previous one goes on the history.

        Raises
        ------
        ModelNotFoundError
            If ``version`` is not registered.
        ModelIntegrityError
            If its artifact was changed or truncated (the active version then stays as it was).
        """
        with self._locked():
            self._activate(version)

    def rollback(self) -> str:
        """Re-activate the version that was active before the current one and return it.

        Repeated calls walk further back through the history.
        """
        with self._locked():
            state = self._state()
            if state["version"] is None:
                raise ModelNotFoundError(
                    f"{self.root}/ has no active model: run `dvc repro` or "
                    "`leadscore models activate VERSION`")
            history = [v for v in state["history"] if v != state["version"]]
            if not history:
                raise ModelNotFoundError(
                    f"{self.root}/ has no earlier active version to roll back to "
                    f"(active: {state['version']}); activate one with `leadscore models activate VERSION`")
            previous = history.pop()
            self._switch(previous, history, state.get("challenger"))
            self._record("rollback", version=previous, previous=state["version"])
            return str(previous)

    def _prune(self) -> list[str]:
        state = self._state()
        protected = {state["version"], *state["history"][-1:], state.get("challenger")}
        names = self._names()
        removed = [v for v in names[self.keep:] if v not in protected]
        for version in removed:
            trash = Path(tempfile.mkdtemp(dir=self.root, prefix=_TMP_PREFIX))
            os.rename(self._versions_dir / version, trash / version)  # disappears at once
            shutil.rmtree(trash)
        if removed and state["version"] is not None:
            history = [v for v in state["history"] if v not in removed]
            if history != state["history"]:
                self._write_state(str(state["version"]), history, state.get("activated_at"),
                                  state.get("challenger"))
        return removed

    def prune(self) -> list[str]:
        """Delete all but the newest ``keep`` versions (never the active one nor the one rollback would
        return to) and return the deleted names."""
        with self._locked():
            return self._prune()
