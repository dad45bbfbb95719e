"""Retraining: check the triggers, rebuild the model on the refreshed data, gate it, record the cycle.

One cycle at a time per registry: an exclusive ``flock`` on ``retrain.lock`` in the registry, which the
kernel releases when the holder dies, so a crash never leaves a stale lock. The file names the holder
(pid and start time) so a second run can say why it did not start.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from leadscore.artifacts.bundle import save_bundle
from leadscore.artifacts.registry import Registry
from leadscore.core.config import Params
from leadscore.core.exceptions import DataValidationError, LeadscoreError
from leadscore.data.schema import prepare_features
from leadscore.evaluation.holdout import holdout_summary
from leadscore.evaluation.tiers import saved_threshold, saved_tiers, threshold_metrics
from leadscore.lifecycle.promotion import decide_and_apply, holdout_evidence
from leadscore.training.build import snapshot_bundle

LOCK_FILE = "retrain.lock"


class RetrainBusy(LeadscoreError):
    """Another retraining cycle holds the registry's retrain lock."""


@dataclass(frozen=True)
class Trigger:
    """One trigger: whether it fired and why (or why not)."""

    name: str
    fired: bool
    reason: str


@dataclass
class Cycle:
    """What one retraining run did."""

    triggers: list[Trigger]
    ran: bool = False
    version: str | None = None
    decision: str | None = None
    action: str | None = None
    reasons: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def retrain_lock(registry: Registry) -> Iterator[None]:
    """Hold the registry's retrain lock for the block.

    Raises
    ------
    RetrainBusy
        If another process holds it (its pid and start time are in the message).
    """
    registry.root.mkdir(parents=True, exist_ok=True)
    path = registry.root / LOCK_FILE
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RetrainBusy(f"another retrain is running ({holder}): nothing done") from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} since {datetime.now(UTC).isoformat(timespec='seconds')}")
            handle.flush()
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _training_end(meta: dict[str, Any]) -> pd.Timestamp | None:
    """The newest lead the model learned from or was judged on: its training window's end, or the end
    of the labelled data it was gated on (``labelled_until``), whichever is later."""
    ends = [pd.Timestamp(t).tz_localize(None) if pd.Timestamp(t).tzinfo else pd.Timestamp(t)
            for t in [*(meta.get("training_window") or [])[1:], meta.get("labelled_until")] if t]
    return max(ends) if ends else None


def check_triggers(labelled: pd.DataFrame, meta: dict[str, Any], *, now: pd.Timestamp, params: Params,
                   alerts: list[str]) -> list[Trigger]:
    """The triggers for the active model (``meta``): labelled leads newer than its training data,
    its age, and the alerts monitoring saved for it (``alerts``: their descriptions)."""
    settings = params.retrain
    end = _training_end(meta)
    created = pd.to_datetime(labelled["created_at"])
    new = int((created > end).sum()) if end is not None else len(labelled)
    triggers = [Trigger("new_labels", new >= settings.min_new_labels,
                        f"{new:,} labelled leads created after the model's data "
                        f"({'none recorded' if end is None else f'{end:%Y-%m-%d}'}); "
                        f"threshold {settings.min_new_labels:,}")]
    trained_at = pd.Timestamp(meta.get("registered_at") or meta.get("created_at") or now)
    trained_at = trained_at.tz_localize("UTC") if trained_at.tzinfo is None else trained_at
    age = (now - trained_at).total_seconds() / 86400
    triggers.append(Trigger("max_age", age >= settings.max_age_days,
                            f"model {age:.0f} days old; threshold {settings.max_age_days:g}"))
    if settings.on_alert:
        triggers.append(Trigger("alert", bool(alerts),
                                "; ".join(alerts[:3]) if alerts else "no monitoring alert for this model"))
    return triggers


def split_holdout(labelled: pd.DataFrame, months: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The labelled rows before the newest ``months`` of creation dates (to train on) and those months
    (held back for the gate).

    Raises
    ------
    DataValidationError
        If either part lacks one of the two outcomes.
    """
    created = pd.to_datetime(labelled["created_at"])
    cutoff = created.max() - pd.DateOffset(months=months)
    train, holdout = labelled[created <= cutoff], labelled[created > cutoff]
    for name, part in (("training", train), ("held-back", holdout)):
        if part["label"].nunique() < 2:
            raise DataValidationError(f"the {name} part has only one outcome: more data or another "
                                      "retrain.holdout_months")
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


def held_back_metrics(bundle: Any, holdout: pd.DataFrame, *, seed: int = 42) -> dict[str, Any]:
    """The new model's ``holdout`` summary and ``test_metrics`` on the held-back months (what the
    pipeline's export records for the test period), so that the registry, the dashboard and the
    performance checks see its held-out quality; nothing when they hold one outcome only."""
    labels = holdout["label"].astype(int).to_numpy()
    if len(set(labels)) < 2:
        return {}
    probability = bundle.model.predict_proba(prepare_features(holdout, bundle.schema))[:, 1]
    created = pd.to_datetime(holdout["created_at"])
    threshold = saved_threshold(bundle.metadata)
    summary = holdout_summary(labels, probability, threshold=threshold, tiers=saved_tiers(bundle.metadata),
                              seed=seed, where=f"held-back months: the {len(holdout):,} leads created "
                                               f"{created.min():%Y-%m-%d} to {created.max():%Y-%m-%d}, "
                                               "never seen in training")
    return {"holdout": summary,
            "test_metrics": {**summary["metrics"], **threshold_metrics(probability, labels, threshold)}}


def retrain(registry: Registry, labelled: pd.DataFrame, params: Params, *, now: pd.Timestamp,
            alerts: list[str] | None = None, if_needed: bool = True, progress: bool = False) -> Cycle:
    """One retraining cycle on ``labelled`` snapshot rows (closed label windows, ``label`` 0/1).

    With ``if_needed`` nothing is trained unless a trigger fired. Otherwise: train on all but the newest
    ``retrain.holdout_months``, register the new version, run the gate on the held-back months (which
    neither model trained on) and apply its decision; the cycle is recorded in the registry's events.

    Raises
    ------
    RetrainBusy
        If another cycle is running.
    """
    started = time.perf_counter()
    with retrain_lock(registry):
        champion = registry.active_version()
        meta = registry.show(champion) if champion else {}
        triggers = check_triggers(labelled, meta, now=now, params=params, alerts=alerts or [])
        cycle = Cycle(triggers)
        if if_needed and champion is not None and not any(t.fired for t in triggers):
            return cycle
        train, holdout = split_holdout(labelled, params.retrain.holdout_months)
        trained, bundle = snapshot_bundle(train, params, progress=progress)
        bundle.metadata["labelled_until"] = pd.to_datetime(labelled["created_at"]).max().isoformat()
        bundle.metadata.update(held_back_metrics(bundle, holdout, seed=params.seed))
        with tempfile.TemporaryDirectory(prefix="leadscore-retrain-") as tmp:
            version = registry.register(save_bundle(bundle, Path(tmp) / "bundle"))
        cycle.ran, cycle.version = True, version
        days = {name: pd.to_datetime(part["created_at"]) for name, part in (("train", train),
                                                                            ("holdout", holdout))}
        cycle.data = {"rows": len(train), "holdout_rows": len(holdout),
                      "trained_on": [f"{days['train'].min():%Y-%m-%d}", f"{days['train'].max():%Y-%m-%d}"],
                      "held_back": [f"{days['holdout'].min():%Y-%m-%d}", f"{days['holdout'].max():%Y-%m-%d}"],
                      "fit_seconds": round(trained.seconds, 1)}
        if champion is None:
            registry.activate(version)
            cycle.decision, cycle.action = "promote", "promoted (no active model)"
        else:
            evidence = holdout_evidence(holdout, registry.load(champion), registry.load(version))
            decision, action = decide_and_apply(registry, version, evidence, params.promotion,
                                                actor="retrain")
            cycle.decision, cycle.action = decision.decision, action
            cycle.reasons, cycle.figures = decision.reasons, decision.figures
        cycle.seconds = round(time.perf_counter() - started, 1)
        registry.record("retrain", version=version, champion=champion,
                        triggers=[asdict(t) for t in triggers if t.fired] or "forced",
                        data=cycle.data, decision=cycle.decision, action=cycle.action,
                        figures=cycle.figures, seconds=cycle.seconds)
        return cycle

