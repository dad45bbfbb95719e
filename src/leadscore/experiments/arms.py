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
from leadscore.experiments.store import RULES, Experiment
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
