"""The demo experiment: a simulated rules-vs-model A/B test written into a store like a real one.

The leads of a simulated period (:func:`~leadscore.demo.simulation.build_world`) are scored by a
model (the treatment) and by the rules point system (the control), assigned to arms with the
experiment's salt, worked by each arm's capacity-limited sales team in its arm's order, and converted
or not (:mod:`leadscore.demo.followup`). The store then holds what production would have written:
the experiment, one exposure per lead (assigned when scored, both arms' scores, the model probability
as the covariate) and the conversions on their dates. The truth the store cannot know, each arm's true
conversion rate, is returned separately.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

from leadscore.artifacts.paths import LOG_TABLE, OUTCOMES_TABLE
from leadscore.core.config import Params
from leadscore.demo.simulation import CAPACITY_SHARE, build_world, simulate_experiment
from leadscore.experiments.arms import rules_points
from leadscore.experiments.store import RULES, ExperimentStore
from leadscore.monitoring.outcomes import OutcomeStore
from leadscore.monitoring.predlog import open_database
from leadscore.scoring.scorer import Scorer, to_score


@dataclass(frozen=True)
class DemoExperiment:
    """What was written, and the truth only a simulation knows."""

    name: str
    leads: int
    conversions: int
    started_at: str
    stopped_at: str
    matured_by: str              # every lead's conversion window has closed by then
    calls_per_day: float
    true_control_rate: float
    true_treatment_rate: float
    true_lift: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def simulate_into_store(url: str, name: str, scorer: Scorer, params: Params, *, n_leads: int, seed: int,
                        capacity_share: float = CAPACITY_SHARE, mde: float | None = None) -> DemoExperiment:
    """Simulate experiment ``name`` (rules vs ``scorer``) on a new world of ``n_leads`` and record it in
    the store at ``url`` (stopped after its last lead). The salt comes from ``seed``, so the same
    arguments write the same store; ``mde`` (default: params.yaml's) plans the sample size.

    Raises
    ------
    ExperimentStateError
        If the store already has an experiment of that name.
    """
    settings = params.experiments
    world = build_world(n_leads, seed, params)
    probability = scorer.score_frame(world.rows, reasons=0)["probability"].to_numpy(float)
    points = rules_points(params.rules, world.rows)
    engine, _, outcomes_table = open_database(url, LOG_TABLE, OUTCOMES_TABLE)
    try:
        store = ExperimentStore(engine)
        assigned = pd.to_datetime(world.rows["snapshot_at"], utc=True)
        window = float(settings.window_days or params.snapshot.label_window_days)
        experiment = store.create(
            name, control=RULES, treatment=scorer.version, split=settings.split, window_days=window,
            min_days=settings.min_days, mde=mde or settings.mde, alpha=settings.alpha, rules=params.rules,
            description=(f"Simulated on {len(world):,} demo leads: a sales team calling "
                         f"{capacity_share:.0%} of a day's leads works them in the arm's order"),
            now=assigned.min().to_pydatetime(), salt=f"simulation-{seed}")
        sim = simulate_experiment(world, points, probability, split=settings.split,
                                  capacity_share=capacity_share, salt=experiment.salt, seed=seed)
        leads = sim.leads
        store.record(experiment, [
            {"lead_id": lead, "assigned_at": when, "control_score": float(np.clip(p, 0, 100)),
             "treatment_probability": prob, "treatment_score": float(score), "covariate": prob}
            for lead, when, p, prob, score in zip(leads["lead_id"], assigned.tolist(), points,
                                                  probability, to_score(probability), strict=True)])
        won = leads["converted"].to_numpy() == 1
        delay = pd.to_timedelta(leads.loc[won, "days_to_conversion"], unit="D")
        converted_at = (assigned[won] + delay).dt.floor("s")
        OutcomeStore(engine, outcomes_table).record_many(
            {"lead_id": lead, "converted": True, "converted_at": when.to_pydatetime(),
             "recorded_at": when.to_pydatetime()}
            for lead, when in zip(leads.loc[won, "lead_id"], converted_at, strict=True))
        last = assigned.max().to_pydatetime()
        store.stop(name, "the simulated period ended", now=last)
    finally:
        engine.dispose()
    return DemoExperiment(
        name=name, leads=len(leads), conversions=int(won.sum()), started_at=assigned.min().isoformat(),
        stopped_at=last.isoformat(), matured_by=(last + timedelta(days=window)).isoformat(),
        calls_per_day=round(sim.calls_per_day, 2), true_control_rate=round(sim.true_control_rate, 6),
        true_treatment_rate=round(sim.true_treatment_rate, 6), true_lift=round(sim.true_lift, 6))
