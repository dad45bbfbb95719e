"""Promotion: gather the evidence for the gate, apply its decision to the registry, record it.

Evidence is the same leads scored by both versions with matured labels: the shadow scores in the store
(the API and batch runs score every lead with the challenger too), else a labelled table of recent leads
that neither version trained on, scored by both now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from leadscore.artifacts.registry import Registry
from leadscore.core.config import PromotionParams
from leadscore.core.exceptions import DataValidationError
from leadscore.data.tables import coerce_target
from leadscore.evaluation.holdout import score_leads
from leadscore.lifecycle.gate import KEEP, PROMOTE, REJECT, GateDecision, judge
from leadscore.monitoring.labels import label_scores


@dataclass(frozen=True)
class Evidence:
    """Labels and both versions' probabilities for the same leads, and where they came from."""

    y: np.ndarray
    champion: np.ndarray
    challenger: np.ndarray
    source: str


def shadow_evidence(scores: pd.DataFrame, outcomes: pd.DataFrame, champion: str, challenger: str, *,
                    window_days: float, now: pd.Timestamp) -> Evidence:
    """The leads both versions scored (first score each), whose labels matured by ``now``."""
    both = scores[scores["model_version"].astype(str).isin([champion, challenger])]
    labelled = label_scores(both, outcomes, window_days=window_days, now=now) if len(both) else both
    done = labelled[labelled["label"].notna()] if len(labelled) else labelled
    if done.empty:
        return Evidence(np.array([], int), np.array([]), np.array([]), "shadow scores: none matured")
    wide = done.pivot_table(index="lead_id", columns="model_version", values="probability", aggfunc="first")
    if champion not in wide or challenger not in wide:
        return Evidence(np.array([], int), np.array([]), np.array([]),
                        f"shadow scores: no matured lead scored by both {champion} and {challenger}")
    wide = wide.dropna(subset=[champion, challenger])
    labels = done[done["model_version"] == champion].set_index("lead_id")["label"]
    y = labels.reindex(wide.index).to_numpy(int)
    return Evidence(y, wide[champion].to_numpy(float), wide[challenger].to_numpy(float),
                    f"shadow scores: {len(y):,} leads scored by both, labels matured by {now:%Y-%m-%d}")


def holdout_evidence(leads: pd.DataFrame, champion: Any, challenger: Any, *, label: str = "label",
                     time_column: str | None = "created_at") -> Evidence:
    """Labelled leads newer than both versions' training data (by ``time_column``), scored by both.

    Raises
    ------
    DataValidationError
        If the table has no ``label`` column.
    """
    if label not in leads:
        raise DataValidationError(f"expected a '{label}' column (the 0/1 outcome) in the evidence table")
    ends = [pd.Timestamp(w[1]) for w in (champion.metadata.get("training_window"),
                                         challenger.metadata.get("training_window")) if w]
    outcome = coerce_target(leads[label], label)
    frame = leads.assign(label=outcome)[outcome.notna()].reset_index(drop=True)
    where = f"{len(frame):,} labelled leads"
    if time_column and time_column in frame and ends:
        after = max(ends)
        times = pd.to_datetime(frame[time_column])
        after = after.tz_localize(times.dt.tz) if times.dt.tz is not None and after.tzinfo is None else after
        frame = frame[times > after].reset_index(drop=True)
        where = (f"{len(frame):,} labelled leads created after {after:%Y-%m-%d} "
                 "(neither version trained on them)")
    if "lead_id" not in frame:
        frame = frame.assign(lead_id=np.arange(len(frame)))
    if "created_at" not in frame:
        frame = frame.assign(created_at=pd.Series(pd.NaT, index=frame.index))
    if frame.empty:
        return Evidence(np.array([], int), np.array([]), np.array([]), where)
    scored = score_leads({"champion": champion, "challenger": challenger}, frame)
    return Evidence(scored["label"].to_numpy(int), scored["champion"].to_numpy(float),
                    scored["challenger"].to_numpy(float), where)


def decide_and_apply(registry: Registry, challenger: str, evidence: Evidence, settings: PromotionParams,
                     *, force: bool = False, actor: str = "cli") -> tuple[GateDecision, str]:
    """Run the gate on ``evidence`` for ``challenger`` against the active version, apply the decision
    (activate; keep it marked challenger; or unmark it) and record it in the registry's events.

    Returns the decision and what was done: ``promoted``, ``kept as challenger`` or ``rejected``;
    ``force`` promotes whatever the gate says, and the event records that it was forced.
    """
    champion = registry.active_version()
    if champion is None:
        raise DataValidationError(f"{registry.root}/ has no active model: activate one before a gate")
    registry.path(challenger)
    if challenger == champion:
        raise DataValidationError(f"{challenger} is already the active version")
    decision = judge(evidence.y, evidence.champion, evidence.challenger, settings)
    if force or decision.decision == PROMOTE:
        registry.activate(challenger)
        action = "promoted (forced)" if force and decision.decision != PROMOTE else "promoted"
    elif decision.decision == KEEP:
        if registry.challenger_version() != challenger:
            registry.set_challenger(challenger)
        action = "kept as challenger"
    else:
        if registry.challenger_version() == challenger:
            registry.set_challenger(None)
        action = "rejected"
    registry.record("gate", challenger=challenger, champion=champion, decision=decision.decision,
                    action=action, forced=bool(force and decision.decision != PROMOTE), actor=actor,
                    evidence=evidence.source, reasons=decision.reasons, figures=decision.figures)
    return decision, action


__all__ = ["KEEP", "PROMOTE", "REJECT", "Evidence", "decide_and_apply", "holdout_evidence",
           "shadow_evidence"]
