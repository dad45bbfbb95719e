"""Scoring leads for an experiment: both arms score every lead, its own arm's answer is returned.

Each arm ranks leads either with a model version (its probability, 0-100 score and tier) or, for a
``rules`` control, with the experiment's point system (:class:`~leadscore.modeling.rules.RuleScorer`
points on the same prepared fields, clipped to 0-100 as the score; no probability). Both arms' scores of
every exposed lead are kept, and the treatment model's probability, computed before the arm is known,
is the covariate CUPED uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from leadscore.experiments.assignment import CONTROL, TREATMENT
from leadscore.experiments.store import RULES, Experiment, ExperimentStore
from leadscore.modeling.rules import RuleScorer, rules_from_config
from leadscore.scoring.scorer import Scorer


@dataclass(frozen=True)
class ArmScorers:
    """What scores each arm of ``experiment``: the treatment's model, the control's model (or None for
    ``rules``) and the rules."""

    experiment: Experiment
    treatment: Scorer
    control: Scorer | None
    rules: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def load(cls, experiment: Experiment, load: Callable[[str], Scorer]) -> ArmScorers:
        """Scorers of both arms, ``load(version)`` giving a model version's :class:`Scorer`."""
        control = None if experiment.control == RULES else load(experiment.control)
        return cls(experiment, load(experiment.treatment), control, tuple(experiment.rules or ()))

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per input row: ``control_probability``/``control_score``/``control_tier``, the same for the
        treatment, and ``covariate`` (the treatment's probability)."""
        treated = self.treatment.score_frame(frame, reasons=0)
        out = pd.DataFrame({
            "treatment_probability": treated["probability"].astype(float),
            "treatment_score": treated["score"].astype(int),
            "treatment_tier": treated["tier"]}, index=frame.index)
        if self.control is not None:
            control = self.control.score_frame(frame, reasons=0)
            out["control_probability"] = control["probability"].astype(float)
            out["control_score"] = control["score"].astype(int)
            out["control_tier"] = control["tier"]
        else:
            points = rules_points(self.rules, self.treatment.features(self.treatment.check(frame)))
            out["control_probability"] = np.nan
            out["control_score"] = np.clip(np.rint(points), 0, 100).astype(int)
            out["control_tier"] = None
        out["covariate"] = out["treatment_probability"]
        return out


def expose_leads(store: ExperimentStore, experiment: Experiment, arms: ArmScorers, rows: pd.DataFrame,
                 lead_ids: Sequence[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Both arms score ``rows`` and each lead's exposure is recorded (its first assignment wins): the one
    exposure step of the API (``?experiment=``) and of batch runs (``--experiment``).

    Returns each row's scores of both arms and its exposure row as stored (with its ``arm``).
    """
    both = arms.score(rows)
    records = [{str(k): v for k, v in r.items()} for r in both.to_dict("records")]
    stored = store.record(experiment, [{"lead_id": str(lead), **record}
                                       for lead, record in zip(lead_ids, records, strict=True)])
    return records, stored


class ExperimentHook:
    """The hook of a batch run inside an experiment: each chunk's leads get their arm (exposures stored
    before the chunk is written) and the scores gain ``experiment``, ``arm``, ``arm_score``,
    ``arm_probability`` and ``arm_tier``."""

    def __init__(self, store: ExperimentStore, experiment: Experiment, arms: ArmScorers) -> None:
        self.store, self.experiment, self.arms = store, experiment, arms

    def __call__(self, rows: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
        records, stored = expose_leads(self.store, self.experiment, self.arms, rows,
                                       scores["lead_id"].tolist())
        both = pd.DataFrame(records, index=scores.index)
        arm = pd.Series([r["arm"] for r in stored], index=scores.index)
        control = arm.eq(CONTROL)
        return scores.assign(
            experiment=self.experiment.name, arm=arm,
            arm_score=both["control_score"].where(control, both["treatment_score"]).astype(int),
            arm_probability=both["control_probability"].where(control, both["treatment_probability"]),
            arm_tier=both["control_tier"].where(control, both["treatment_tier"]))


def rules_points(rules: Sequence[Mapping[str, Any]], features: pd.DataFrame) -> np.ndarray:
    """Total points of the point system ``rules`` (params.yaml's ``rules`` items) for prepared rows."""
    return RuleScorer(rules=rules_from_config(rules)).points(features)


def arm_answer(experiment: Experiment, arm: str, scores: Mapping[str, Any]) -> dict[str, Any]:
    """What a scored lead's answer says about the experiment: its arm and that arm's score."""
    prefix = CONTROL if arm == CONTROL else TREATMENT
    probability = scores.get(f"{prefix}_probability")
    return {"name": experiment.name, "arm": arm, "ranked_by": experiment.arm_model(arm),
            "probability": None if probability is None or pd.isna(probability) else float(probability),
            "score": int(scores[f"{prefix}_score"]), "tier": scores.get(f"{prefix}_tier")}
