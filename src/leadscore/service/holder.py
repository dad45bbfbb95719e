"""The served model: one reference swapped atomically, kept in step with the registry's active pointer.

A request reads :attr:`ModelHolder.current` once and uses that :class:`ServedModel` (scorer and request
models together) to the end, so it never mixes two versions. A new version is loaded, verified and
warmed up (one made-up lead scored, so first-use work such as compiling the fast path is done) before
the reference is replaced. A background thread looks at the registry's ``ACTIVE``
file every ``poll_interval`` seconds (one ``stat``; the file is re-read only when its inode, size or
mtime changed), so switches made by other workers or by ``leadscore models activate`` reach every
worker; a switch through this worker's admin endpoint is installed at once.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from leadscore.artifacts.registry import Registry
from leadscore.core.exceptions import LeadscoreError, ModelIntegrityError, ModelNotFoundError
from leadscore.scoring.scorer import Scorer
from leadscore.service.requests import LeadModels, build_models

log = logging.getLogger(__name__)

ACTIVE_FILE = "ACTIVE"
Signature = tuple[int, int, int] | None


@dataclass(frozen=True)
class ServedModel:
    """A loaded, verified model version and the request models generated from its schema, with the
    registry's challenger (``shadow``) when one is marked: it scores every lead too, logged only."""

    scorer: Scorer
    models: LeadModels
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    shadow: Scorer | None = None

    @property
    def version(self) -> str:
        return self.scorer.version

    @property
    def shadow_version(self) -> str | None:
        return None if self.shadow is None else self.shadow.version


WARM_UP_VALUES = {"numeric": 1.0, "categorical": "warm-up", "datetime": "2024-01-02T12:00:00",
                  "email": "warm-up@example.com", "presence": "warm-up"}


def warm_up(scorer: Scorer) -> None:
    """Score a made-up lead once, alone and in a frame, so that work done on first use (the scorer
    compiles its fast path) happens before the model serves, not in a client's request."""
    lead = {c.name: WARM_UP_VALUES[c.kind] for c in scorer.schema.columns}
    try:
        scorer.score_lead(lead, reasons=3)
        scorer.score_frame(pd.DataFrame([lead, lead]), reasons=3)
    except LeadscoreError as exc:  # a model that rejects made-up values still serves real leads
        log.warning("warm-up of model %s failed (%s); its first requests will be slower", scorer.version, exc)


class ModelHolder:
    """Holds the served model and follows the registry's active version.

    Parameters
    ----------
    registry : the shared registry.
    batch_limit : most leads per batch request (part of the generated batch model).
    poll_interval : seconds between looks at the active pointer.
    on_switch : called with (new version, previous version or None) after each swap.
    """

    def __init__(self, registry: Registry, *, batch_limit: int, poll_interval: float = 0.5,
                 on_switch: Callable[[str, str | None], None] | None = None) -> None:
        self.registry = registry
        self.batch_limit = batch_limit
        self.poll_interval = poll_interval
        self.current: ServedModel | None = None
        self.last_error: str | None = None
        self._on_switch = on_switch or (lambda new, old: None)
        self._signature: Signature = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _active_signature(self) -> Signature:
        try:
            st = os.stat(self.registry.root / ACTIVE_FILE)
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def prepare(self, version: str, challenger: str | None = None) -> ServedModel:
        """Load and verify ``version`` with its request models (and the ``challenger`` to score in its
        shadow), without serving it yet. A challenger that cannot be loaded is left out, with an error
        in the log: it must never keep the champion from serving.

        Raises
        ------
        ModelNotFoundError, ModelIntegrityError
            If the version does not exist or its artifact fails the sha256 check.
        """
        current = self.current
        if current is not None and current.version == version:
            scorer, models = current.scorer, current.models
        else:
            bundle = self.registry.load(version)  # registry versions only (never a folder path), verified
            scorer = Scorer(bundle, str(bundle.metadata.get("version") or version))
            warm_up(scorer)
            models = build_models(scorer.schema, self.batch_limit)
        return ServedModel(scorer, models, shadow=self._shadow(challenger, current))

    def _shadow(self, challenger: str | None, current: ServedModel | None) -> Scorer | None:
        if challenger is None:
            return None
        if current is not None and current.shadow_version == challenger:
            return current.shadow
        try:
            bundle = self.registry.load(challenger)
        except LeadscoreError as exc:
            log.error("cannot load challenger %s for shadow scoring: %s", challenger, exc)
            return None
        shadow = Scorer(bundle, str(bundle.metadata.get("version") or challenger), allow_missing=True)
        warm_up(shadow)
        return shadow

    def _challenger(self) -> str | None:
        try:
            return self.registry.challenger_version()
        except ModelIntegrityError:
            return None

    def install(self, served: ServedModel) -> None:
        """Serve ``served`` from the next request on."""
        with self._lock:
            self._install(served)

    def _install(self, served: ServedModel) -> None:
        previous = self.current
        self.current = served  # one reference assignment: atomic for readers
        self.last_error = None
        if previous is None or previous.version != served.version:
            log.info("serving model %s (was %s)", served.version, previous.version if previous else "none")
            self._on_switch(served.version, previous.version if previous else None)
        if served.shadow_version != (previous.shadow_version if previous else None):
            log.info("challenger %s scored in the shadow of %s", served.shadow_version or "none",
                     served.version)

    def refresh(self, *, force: bool = False) -> bool:
        """Serve the registry's active version if it changed; True if a new model was swapped in.

        A version that fails to load is reported in :attr:`last_error` and the current model stays.
        """
        signature = self._active_signature()
        if not force and signature == self._signature and self.current is not None:
            return False
        with self._lock:
            signature = self._active_signature()
            if not force and signature == self._signature and self.current is not None:
                return False
            try:
                active = self.registry.active_version()
                if active is None:
                    raise ModelNotFoundError(f"{self.registry.root}/ has no active model: run `dvc repro` or "
                                             "`leadscore models activate VERSION`")
                challenger = self._challenger()
                if self.current is not None and self.current.version == active \
                        and self.current.shadow_version == challenger:
                    self._signature = signature
                    return False
                served = self.prepare(active, challenger)
            except LeadscoreError as exc:
                if str(exc) != self.last_error:
                    log.error("cannot serve the registry's active model: %s", exc)
                self.last_error = str(exc)
                self._signature = signature
                return False
            self._install(served)
            # only now: a caller that sees the pointer change while the new model loads waits for it on the
            # lock instead of taking the unlocked path above and answering with the old model
            self._signature = signature
            return True

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_interval):
            self.refresh()

    def start(self) -> None:
        """Start following the registry in a background thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="model-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def activate(self, version: str) -> tuple[str, str | None]:
        """Load ``version``, make it the registry's active version and serve it; (new, previous)."""
        challenger = self._challenger()
        served = self.prepare(version, None if challenger == version else challenger)
        with self._lock:
            try:
                previous = self.registry.active_version()
            except ModelIntegrityError:  # a damaged ACTIVE file: activating repairs it
                previous = self.current.version if self.current else None
            self.registry.activate(version)
            self._signature = self._active_signature()
            self._install(served)
        return served.version, previous

    def rollback(self) -> tuple[str, str | None]:
        """Roll the registry back one version and serve it; (new, previous)."""
        with self._lock:
            previous = self.registry.active_version()
            version = self.registry.rollback()
            self._signature = self._active_signature()
            try:
                served = self.prepare(version, self._challenger())
            except LeadscoreError as exc:
                self.last_error = str(exc)
                raise
            self._install(served)
        return served.version, previous
