"""Simulated A/B experiments on the demo world, where the ranking an arm uses changes who converts.

A world is a demo CRM extract of its own (seed, period), turned into the rows the pipeline scores
(:func:`~leadscore.data.crm.snapshot_table`, features at ``created_at + snapshot_days``) plus each lead's
true probability of converting in the label window without a call. Leads are assigned to arms as in
production (:func:`~leadscore.experiments.assignment.assign_arms`); each arm's sales team, with its
share of the capacity, works its own leads in its arm's order (:mod:`leadscore.demo.followup`),
which sets every lead's true probability; outcomes are Bernoulli draws from it. Working the same leads
with each arm's ranking tells the true lift, which no real experiment knows.

The runners behind ``benchmarks/bench_experiments.py`` repeat an experiment many times on fixed
probabilities (:class:`Trial`): arms and outcomes are drawn for all runs at once, counted per day with
NumPy, and read with the statistics of :mod:`leadscore.experiments` (fixed-horizon and daily z-tests,
mSPRT, CUPED). In those repeats the arms are uniform draws, which is what the hash buckets of
:func:`~leadscore.experiments.assignment.bucket` are, without hashing every lead again in every run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import optimize, special

from leadscore.core.config import Params
from leadscore.core.exceptions import ConfigError, DataValidationError
from leadscore.data.crm import snapshot_table
from leadscore.demo import generate_crm, label_probability
from leadscore.demo.followup import MAX_WAIT_DAYS, FollowUp, conversion_days, daily_capacity, work_leads
from leadscore.experiments.analysis import ExperimentAnalysis, analyse
from leadscore.experiments.assignment import CONTROL, TREATMENT, assign_arms, check_split
from leadscore.experiments.cuped import cuped_lift
from leadscore.experiments.proportions import check_alpha, two_proportion_lift
from leadscore.experiments.sequential import always_valid_p_values, difference_and_variance

SIM_START, SIM_MONTHS = "2026-01-01", 2  # after the bundled extract (2024-01 .. 2025-08)
CAPACITY_SHARE = 0.30  # calls a day over leads scored a day (would be params.yaml experiments.capacity_share)
RUN_CHUNK = 4_000_000  # runs x leads drawn at once by the repeated runners
MS_PER_DAY = 86_400_000


@dataclass(frozen=True, eq=False)
class World:
    """Leads of a simulated period in scoring order: ``rows`` (lead_id, created_at, snapshot_at and the
    features, as the pipeline builds them; no label), ``scored_ms`` (ms, UTC: ``snapshot_at``) and
    ``base_probability`` (converting in the label window without a call)."""

    rows: pd.DataFrame
    scored_ms: npt.NDArray[np.int64]
    base_probability: npt.NDArray[np.float64]
    snapshot_days: float
    window_days: float

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def lead_ids(self) -> np.ndarray:
        return self.rows["lead_id"].to_numpy(dtype=object)

    def subset(self, keep: npt.ArrayLike) -> World:
        """The leads at the positions (or where the mask) ``keep``, still in scoring order."""
        index = np.sort(np.arange(len(self))[np.asarray(keep)])
        return replace(self, rows=self.rows.iloc[index].reset_index(drop=True),
                       scored_ms=self.scored_ms[index], base_probability=self.base_probability[index])


def build_world(n_leads: int, seed: int, params: Params, *, start: str = SIM_START,
                months: int = SIM_MONTHS) -> World:
    """Generate a demo extract and keep the leads an experiment would rank.

    Those scored by the end of the extract with their full ``snapshot_days`` of history and not
    converted before (``converted_before`` leads are never scored). ``params`` gives the snapshot and
    feature settings (``snapshot``, ``features``).
    """
    crm = generate_crm(n_leads=n_leads, seed=seed, start=start, months=months)
    tables = {"leads": crm.leads, "activities": crm.activities, "outcomes": crm.outcomes}
    snap = snapshot_table(tables, params, as_of=crm.data_end, keep_excluded=False)
    days, window = float(params.snapshot.snapshot_days), float(params.snapshot.label_window_days)
    whole = snap["snapshot_at"].eq(snap["created_at"] + pd.Timedelta(days=days))
    rows = snap.loc[whole & snap["status"].ne("converted_before")].drop(columns=["label", "status"])
    rows = rows.sort_values("snapshot_at", kind="stable").reset_index(drop=True)
    p_convert = rows["lead_id"].map(crm.truth.set_index("lead_id")["p_convert"]).to_numpy(float)
    return World(rows, rows["snapshot_at"].to_numpy("datetime64[ms]").astype(np.int64),
                 label_probability(p_convert, days, window), days, window)


def _values(values: npt.ArrayLike, n: int, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.shape != (n,) or not np.isfinite(array).all():
        raise DataValidationError(f"{name}: expected {n} finite numbers (one per lead), got shape "
                                  f"{array.shape} with {int(np.sum(~np.isfinite(array)))} NaN/inf")
    return array


def _work_arms(world: World, rank: np.ndarray, treated: np.ndarray, capacity: float, split: float,
               max_wait_days: float) -> FollowUp:
    """One ranking applied in both arms, each arm's team with its share of the capacity."""
    called, wait, prob = np.zeros(len(world), bool), np.full(len(world), np.nan), np.zeros(len(world))
    for mask, share in ((~treated, 1 - split), (treated, split)):
        work = work_leads(world.scored_ms[mask], world.base_probability[mask], rank[mask],
                          capacity * share, max_wait_days=max_wait_days)
        called[mask], wait[mask], prob[mask] = work.called, work.wait_days, work.probability
    return FollowUp(called, wait, prob)


@dataclass(frozen=True, eq=False)
class SimulatedExperiment:
    """One simulated experiment: ``leads`` (one row per lead) and the true rates, without sampling noise,
    of every lead worked the control way and the treatment way."""

    leads: pd.DataFrame
    true_control_rate: float
    true_treatment_rate: float
    calls_per_day: float

    @property
    def true_lift(self) -> float:
        return self.true_treatment_rate - self.true_control_rate


def simulate_experiment(world: World, control_score: npt.ArrayLike, treatment_score: npt.ArrayLike, *,
                        covariate: npt.ArrayLike | None = None, split: float = 0.5,
                        capacity_share: float = CAPACITY_SHARE, salt: str = "simulation", seed: int = 0,
                        max_wait_days: float = MAX_WAIT_DAYS) -> SimulatedExperiment:
    """Run an experiment on ``world``: control ranks by ``control_score``, treatment by ``treatment_score``.

    Parameters
    ----------
    world : the leads (:func:`build_world`).
    control_score, treatment_score : each arm's ranking of every lead (higher is called first).
    covariate : pre-assignment value per lead for CUPED; default ``treatment_score`` (the model's
        probability, computed before the arm is known).
    split : the treatment's share of leads; capacity_share : calls a day over leads scored a day.
    salt, seed : the assignment salt and the seed of the outcome draws.

    Returns
    -------
    SimulatedExperiment
        ``leads``: lead_id, arm, assigned_at (= scoring time), control_score, treatment_score, covariate,
        called, wait_days, probability (true, under its arm's policy), converted (0/1), days_to_conversion
        (after assignment; NaN unless converted). The true rates work *every* lead with each arm's
        ranking, each arm's team keeping its capacity (total x its share), so ``true_lift`` is the
        average effect on exactly these leads.
    """
    n, split = len(world), check_split(split)
    control = _values(control_score, n, "control_score")
    treatment = _values(treatment_score, n, "treatment_score")
    covariate = treatment if covariate is None else _values(covariate, n, "covariate")
    arms = assign_arms(salt, world.lead_ids, split)
    treated = arms == TREATMENT
    capacity = daily_capacity(world.scored_ms, capacity_share)
    worked = {arm: _work_arms(world, rank, treated, capacity, split, max_wait_days)
              for arm, rank in ((CONTROL, control), (TREATMENT, treatment))}
    pick = {name: np.where(treated, getattr(worked[TREATMENT], name), getattr(worked[CONTROL], name))
            for name in ("called", "wait_days", "probability")}
    rng = np.random.default_rng(seed)
    converted = rng.random(n) < pick["probability"]
    days = conversion_days(rng, n, world.snapshot_days, world.window_days)
    leads = pd.DataFrame({
        "lead_id": world.lead_ids, "arm": arms, "assigned_at": world.rows["snapshot_at"].to_numpy(),
        "control_score": control, "treatment_score": treatment, "covariate": covariate,
        "called": pick["called"], "wait_days": pick["wait_days"], "probability": pick["probability"],
        "converted": converted.astype(np.int8), "days_to_conversion": np.where(converted, days, np.nan),
    })
    return SimulatedExperiment(leads, worked[CONTROL].conversion, worked[TREATMENT].conversion, capacity)


def read_experiment(experiment: SimulatedExperiment, *, split: float, mde: float, alpha: float = 0.05,
                    power: float = 0.8, min_days: float = 14.0) -> ExperimentAnalysis:
    """:func:`~leadscore.experiments.analysis.analyse` of the simulated leads, read after the last
    assignment with every label window closed (the simulation knows every outcome)."""
    leads = experiment.leads
    columns = ["arm", "assigned_at", "converted", "covariate", "days_to_conversion"]
    return analyse(leads[columns], split=split, mde=mde, alpha=alpha, power=power, min_days=min_days,
                   started_at=leads["assigned_at"].min(), now=leads["assigned_at"].max())


@dataclass(frozen=True, eq=False)
class Trial:
    """Fixed true probabilities of the first ``n`` leads of a world under each arm, for repeated runs.

    ``day``: the experiment day each lead is assigned on (0 = the first); a look is taken at the end
    of every day with leads.
    """

    control: npt.NDArray[np.float64]
    treatment: npt.NDArray[np.float64]
    covariate: npt.NDArray[np.float64]
    day: npt.NDArray[np.int64]

    @property
    def true_lift(self) -> float:
        return float(self.treatment.mean() - self.control.mean())

    @property
    def looks(self) -> int:
        return int(np.unique(self.day).size)


def shift_probability(probability: np.ndarray, lift: float) -> np.ndarray:
    """``probability`` moved by one log-odds shift so that its mean rises by exactly ``lift``."""
    if lift == 0:
        return probability.copy()
    if not 0 < lift < 1 - probability.mean():
        raise ConfigError(f"lift: expected an absolute lift in (0, {1 - probability.mean():.3f}), "
                          f"got {lift!r}")
    logit = special.logit(probability)
    delta = optimize.brentq(lambda d: special.expit(logit + d).mean() - probability.mean() - lift, 0.0, 50.0)
    return np.asarray(special.expit(logit + delta))


def plan_trial(world: World, rank: npt.ArrayLike, covariate: npt.ArrayLike, n_total: int, *,
               lift: float = 0.0, capacity_share: float = CAPACITY_SHARE,
               max_wait_days: float = MAX_WAIT_DAYS) -> Trial:
    """The first ``n_total`` leads of ``world``, all worked with ``rank`` by one team (both arms use the
    same policy); the treatment adds ``lift`` (:func:`shift_probability`, 0 for an A/A test)."""
    if not 0 < n_total <= len(world):
        raise ConfigError(f"n_total: expected 1 to {len(world)} leads (the world's size), got {n_total}")
    n = len(world)
    work = work_leads(world.scored_ms, world.base_probability, _values(rank, n, "rank"),
                      daily_capacity(world.scored_ms, capacity_share), max_wait_days=max_wait_days)
    control = work.probability[:n_total]
    day = world.scored_ms[:n_total] // MS_PER_DAY
    return Trial(control, shift_probability(control, lift), _values(covariate, n, "covariate")[:n_total],
                 day - day[0])


@dataclass(frozen=True, eq=False)
class RunCounts:
    """Cumulative leads and conversions of each arm after each look: arrays of shape (runs, looks)."""

    n_control: np.ndarray
    conversions_control: np.ndarray
    n_treatment: np.ndarray
    conversions_treatment: np.ndarray


def simulate_counts(trial: Trial, *, runs: int, split: float = 0.5, seed: int = 0) -> RunCounts:
    """``runs`` experiments on ``trial``: new arms and outcomes each time, counted per daily look."""
    split = check_split(split)
    n = trial.control.size
    starts = np.flatnonzero(np.r_[True, trial.day[1:] != trial.day[:-1]])
    rng = np.random.default_rng(seed)
    parts = []
    for first in range(0, runs, max(1, RUN_CHUNK // n)):
        size = (min(max(1, RUN_CHUNK // n), runs - first), n)
        treated = rng.random(size) < split
        converted = rng.random(size) < np.where(treated, trial.treatment, trial.control)
        parts.append([np.add.reduceat(x.astype(np.int64), starts, axis=1) for x in
                      (~treated, ~treated & converted, treated, treated & converted)])
    return RunCounts(*(np.cumsum(np.concatenate([p[i] for p in parts]), axis=1) for i in range(4)))


@dataclass(frozen=True)
class Rejections:
    """How many of ``runs`` experiments found a difference at ``alpha`` with each way of reading them."""

    runs: int
    looks: int
    fixed: int          # the fixed-horizon z-test, once, at the planned end
    peeking: int        # the same z-test read after every look, stopping at the first p < alpha
    sequential: int     # the mSPRT always-valid p-value read after every look


def count_rejections(counts: RunCounts, *, alpha: float, tau2: float) -> Rejections:
    """Read every run at every look with :func:`two_proportion_lift` and the mSPRT."""
    alpha = check_alpha(alpha)
    runs, looks = counts.n_control.shape

    def p_value(r: int, look: int) -> float:
        return two_proportion_lift(int(counts.conversions_control[r, look]), int(counts.n_control[r, look]),
                                   int(counts.conversions_treatment[r, look]),
                                   int(counts.n_treatment[r, look]), alpha).p_value

    fixed = sum(p_value(r, looks - 1) < alpha for r in range(runs))
    peeking = sum(any(p_value(r, look) < alpha for look in range(looks)) for r in range(runs))  # stops early
    diff, variance = difference_and_variance(counts.conversions_control, counts.n_control,
                                             counts.conversions_treatment, counts.n_treatment)
    p_seq = always_valid_p_values(diff.T, variance.T, tau2)  # looks first: the minimum runs over them
    return Rejections(runs, looks, int(fixed), int(peeking), int((p_seq[-1] < alpha).sum()))


@dataclass(frozen=True)
class CupedWidths:
    """Mean width of the (1 - alpha) lift interval with and without CUPED over ``runs`` experiments, the
    mean variance reduction, and how often each interval covered the true lift."""

    runs: int
    width: float
    unadjusted_width: float
    variance_reduction: float
    coverage: float
    unadjusted_coverage: float


def cuped_runs(trial: Trial, *, runs: int, split: float = 0.5, alpha: float = 0.05,
               seed: int = 0) -> CupedWidths:
    """``runs`` experiments on ``trial`` read once at the end with :func:`cuped_lift`."""
    split, truth = check_split(split), trial.true_lift
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(runs):
        treated = rng.random(trial.control.size) < split
        y = rng.random(trial.control.size) < np.where(treated, trial.treatment, trial.control)
        a = cuped_lift(y.astype(float), trial.covariate, treated, alpha)
        rows.append((a.high - a.low, a.unadjusted_high - a.unadjusted_low, a.variance_reduction,
                     a.low <= truth <= a.high, a.unadjusted_low <= truth <= a.unadjusted_high))
    mean = np.mean(rows, axis=0) if rows else np.full(5, math.nan)
    return CupedWidths(runs, *(float(v) for v in mean))
