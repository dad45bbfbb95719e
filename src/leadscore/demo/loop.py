"""The learning loop replayed on a generated world whose leads drift: does it notice, retrain, do better?

A demo world whose new lead source appears in its last ``new_source_months`` is walked as production on
its own clock: each step's leads are scored by the active model and, in its shadow, by the initial one; after
a cooldown, monitoring judges the active model as ``monitor check`` does (drift, realized ROC-AUC against its
held-out value) and the retrain triggers are checked; a cycle then runs as ``leadscore retrain`` does (train
on what was known that day, gate on the newest held-back months, activate only what passes). At the end both
the initial ("stale") model and the model active at scoring time are judged on the same matured leads.
``weaken`` trains challengers without the features derived from activities: the gate must reject them.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from leadscore.artifacts.bundle import save_bundle
from leadscore.artifacts.registry import Registry
from leadscore.core.config import Params
from leadscore.core.exceptions import ConfigError
from leadscore.data.crm import snapshot_table
from leadscore.data.snapshot import FEATURES
from leadscore.demo.generator import generate_crm
from leadscore.demo.latent import NEW_SOURCE
from leadscore.demo.replay import replay_leads
from leadscore.evaluation.comparison import delong_roc_test
from leadscore.evaluation.metrics import get_metric
from leadscore.lifecycle.promotion import PROMOTE, decide_and_apply, holdout_evidence
from leadscore.lifecycle.retrain import Cycle, check_triggers, held_back_metrics, retrain_lock, split_holdout
from leadscore.monitoring.alerts import CheckState, drift_states, performance_states
from leadscore.monitoring.drift import ALERT, DriftThresholds, drift_by_period
from leadscore.monitoring.labels import label_scores
from leadscore.monitoring.performance import period_of, realized_performance
from leadscore.scoring.scorer import Scorer
from leadscore.training.build import snapshot_bundle

# build_snapshot writes the profile and timing features first, then everything it derives from activities
ACTIVITY_FEATURES: tuple[str, ...] = FEATURES[FEATURES.index("emails_sent"):]
ACTOR = "loop-replay"


@dataclass(frozen=True)
class LoopSettings:
    """The generated world and the walk through it."""

    n_leads: int = 30_000
    months: int = 30
    new_source_months: int = 14   # the drift: the new source exists in the world's last months
    seed: int = 42
    start: str = "2024-01-01"
    lead_months: int = 3          # the walk (and the initial model) starts this long before the drift
    step_days: int = 14
    cooldown_days: int = 56       # no check sooner than this after the last cycle (or the initial model)
    holdout_months: int = 2       # the newest labelled months the gate judges on (retrain.holdout_months)
    by: str = "month"             # monitoring periods
    weaken: bool = False          # challengers without the features derived from activities


@dataclass(frozen=True)
class LoopCheck:
    """One check of the triggers: the day, the champion, its monitoring, and the cycle (``cycle.ran``)."""

    at: str
    champion: str
    alerts: list[str]
    realized: str | None          # the champion's realized ROC-AUC state and reason, when judged
    cycle: Cycle

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "champion": self.champion, "alerts": self.alerts, "realized": self.realized,
                **self.cycle.as_dict()}


@dataclass(frozen=True)
class MonthRow:
    """One month of scoring: its matured leads, and both models' realized figures on them."""

    month: str
    leads: int
    converted: int
    new_source_share: float
    versions: list[str]           # the active model(s) that scored them
    stale_roc_auc: float
    active_roc_auc: float
    stale_brier: float
    active_brier: float


@dataclass
class LoopReplay:
    """What the walk saw and did, and how it ended."""

    settings: LoopSettings
    drift_from: str
    walk: list[str]
    initial: str
    baseline: float               # the initial model's held-out ROC-AUC
    checks: list[LoopCheck]
    months: list[MonthRow]
    after: dict[str, Any]         # stale vs active, pooled, on the leads matured after the first promotion
    active: str
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k not in ("checks", "months")},
                "checks": [c.to_dict() for c in self.checks], "months": [asdict(m) for m in self.months]}


def loop_params(params: Params, settings: LoopSettings) -> Params:
    """``params`` with quick training (LightGBM alone, three folds, Platt scaling; no tuning, ensemble or
    segment models) and a yearly schedule (a year of new labels, or a model a year old), so that what
    starts a cycle in the replay is monitoring; the gate judges on ``settings.holdout_months``."""
    comparison = replace(params.comparison, candidates=("lightgbm",), cv_folds=3, n_trials=0,
                         time_budget_seconds=0.0, study_storage=None, ensemble=False, calibration=("platt",))
    schedule = replace(params.retrain, max_age_days=365.0, holdout_months=settings.holdout_months,
                       min_new_labels=settings.n_leads * 12 // settings.months)
    return replace(params, comparison=comparison, segments=replace(params.segments, column=None),
                   retrain=schedule)


def tables_at(tables: dict[str, pd.DataFrame], when: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """What the CRM held at ``when`` (naive UTC): the leads created by then, their activities before it and
    the conversions that had happened."""
    leads = tables["leads"][tables["leads"]["created_at"] <= when]
    outcomes = tables["outcomes"][tables["outcomes"]["lead_id"].isin(leads["lead_id"])]
    later = outcomes["converted_at"] > when
    outcomes = outcomes.assign(converted=outcomes["converted"].where(~later, 0),
                               converted_at=outcomes["converted_at"].where(~later))
    return {"leads": leads, "activities": tables["activities"][tables["activities"]["timestamp"] < when],
            "outcomes": outcomes}


def labelled_at(tables: dict[str, pd.DataFrame], params: Params, when: pd.Timestamp) -> pd.DataFrame:
    """The snapshot rows whose label window had closed at ``when`` (naive UTC), as known that day."""
    snapshots = snapshot_table(tables_at(tables, when), params, as_of=when)
    return snapshots[snapshots["status"] == "closed"].reset_index(drop=True)


@dataclass
class _Walk:
    """The walk's state: the world, the registry, the scorers, the scored leads, the checks."""

    registry: Registry
    params: Params
    settings: LoopSettings
    tables: dict[str, pd.DataFrame]
    snapshots: pd.DataFrame
    conversions: pd.DataFrame
    scorers: dict[str, Scorer] = field(default_factory=dict)
    baselines: dict[str, float] = field(default_factory=dict)
    scored: list[pd.DataFrame] = field(default_factory=list)
    checks: list[LoopCheck] = field(default_factory=list)
    last_cycle: pd.Timestamp | None = None

    def train(self, labelled: pd.DataFrame, when: pd.Timestamp, *,
              weaken: bool) -> tuple[str, pd.DataFrame, pd.DataFrame, float]:
        """Train on all but the held-back months, register dated ``when`` (the world's clock, so a model's
        age is the world's too): the version, both parts, the fit's seconds."""
        train, holdout = split_holdout(labelled, self.params.retrain.holdout_months)
        rows = train.drop(columns=[c for c in ACTIVITY_FEATURES if c in train]) if weaken else train
        trained, bundle = snapshot_bundle(rows, self.params)
        bundle.metadata["labelled_until"] = pd.to_datetime(labelled["created_at"]).max().isoformat()
        bundle.metadata.update(held_back_metrics(bundle, holdout, seed=self.params.seed))
        with tempfile.TemporaryDirectory(prefix="leadscore-loop-") as tmp:
            version = self.registry.register(save_bundle(bundle, Path(tmp) / "bundle"),
                                             now=when.to_pydatetime())
        self.scorers[version] = Scorer(self.registry.load(version), version)
        return version, train, holdout, trained.seconds

    def first_model(self, when: pd.Timestamp) -> str:
        """The initial model, trained on what was known at ``when``, active; its held-out ROC-AUC kept."""
        version, _, holdout, _ = self.train(labelled_at(self.tables, self.params, when.tz_localize(None)),
                                            when, weaken=False)
        self.registry.activate(version)
        scored = self.scorers[version].score_frame(holdout, reasons=0)
        self.baselines[version] = get_metric("roc_auc")(holdout["label"], scored["probability"])
        self.last_cycle = when
        return version

    def score(self, start: pd.Timestamp, end: pd.Timestamp, stale: str) -> None:
        """Score the leads whose snapshot falls in ``[start, end)``: the active model, the stale one."""
        leads = replay_leads(self.snapshots, start, end, snapshot_days=self.params.snapshot.snapshot_days)
        if leads.empty:
            return
        version = str(self.registry.active_version())
        probability = {v: self.scorers[v].score_frame(leads, reasons=0)["probability"].to_numpy()
                       for v in {version, stale}}
        self.scored.append(leads.assign(model_version=version, probability=probability[version],
                                        stale_probability=probability[stale], scored_at=leads["snapshot_at"]))

    def monitor(self, now: pd.Timestamp) -> list[CheckState]:
        """The active model's drift and realized-performance states as of ``now``, on its recent leads."""
        version = str(self.registry.active_version())
        scored = pd.concat(self.scored, ignore_index=True)
        mine = scored[scored["model_version"] == version].reset_index(drop=True)
        if mine.empty:
            return []
        window, settings = self.params.snapshot.label_window_days, self.params.monitoring
        recent = mine[mine["scored_at"] >= now - pd.Timedelta(days=62)].reset_index(drop=True)
        drift = drift_by_period(recent, self.scorers[version].bundle, version, times=recent["scored_at"],
                                probabilities=recent["probability"].to_numpy(), by=self.settings.by,
                                thresholds=DriftThresholds.from_settings(settings), ignore=settings.ignore)
        matured = mine[mine["scored_at"] >= now - pd.Timedelta(days=window + 70)]
        labelled = label_scores(matured, self.conversions, window_days=window, now=now)
        table = realized_performance(labelled, by=self.settings.by, min_labelled=settings.min_labelled)
        return [*drift_states(drift), *performance_states(table, self.baselines, settings)]

    def check(self, now: pd.Timestamp) -> None:
        """Once the cooldown has passed: monitoring, the triggers, and a cycle if one fires; recorded."""
        cooldown = pd.Timedelta(days=self.settings.cooldown_days)
        if self.last_cycle is not None and now - self.last_cycle < cooldown:
            return
        states = self.monitor(now) if self.scored else []
        alerts = [f"{s.check} {s.subject}: {s.reason}" for s in states if s.state == ALERT]
        realized = next((f"{s.state}: {s.reason}" for s in states if s.check == "performance"), None)
        champion = str(self.registry.active_version())
        labelled = labelled_at(self.tables, self.params, now.tz_localize(None))
        with retrain_lock(self.registry):
            cycle = Cycle(check_triggers(labelled, self.registry.show(champion), now=now, params=self.params,
                                         alerts=alerts))
            if any(t.fired for t in cycle.triggers):
                self.run_cycle(cycle, labelled, champion, now)
        self.checks.append(LoopCheck(f"{now:%Y-%m-%d}", champion, alerts, realized, cycle))

    def run_cycle(self, cycle: Cycle, labelled: pd.DataFrame, champion: str, now: pd.Timestamp) -> None:
        """Train the challenger, gate it on the held-back months against ``champion``, apply, record."""
        started = time.perf_counter()
        version, train, holdout, fit_seconds = self.train(labelled, now, weaken=self.settings.weaken)
        evidence = holdout_evidence(holdout, self.scorers[champion].bundle, self.scorers[version].bundle)
        decision, action = decide_and_apply(self.registry, version, evidence, self.params.promotion,
                                            actor=ACTOR)
        days = {name: pd.to_datetime(part["created_at"]) for name, part in (("train", train),
                                                                            ("holdout", holdout))}
        cycle.ran, cycle.version, cycle.decision, cycle.action = True, version, decision.decision, action
        cycle.reasons, cycle.figures = decision.reasons, decision.figures
        cycle.data = {"rows": len(train), "holdout_rows": len(holdout), "weakened": self.settings.weaken,
                      **{k: [f"{days[part].min():%Y-%m-%d}", f"{days[part].max():%Y-%m-%d}"]
                         for k, part in (("trained_on", "train"), ("held_back", "holdout"))},
                      "fit_seconds": round(fit_seconds, 1)}
        cycle.seconds = round(time.perf_counter() - started, 1)
        if "challenger_roc_auc" in decision.figures:
            self.baselines[version] = float(decision.figures["challenger_roc_auc"])
        self.last_cycle = now
        self.registry.record("retrain", version=version, champion=champion, actor=ACTOR,
                             triggers=[asdict(t) for t in cycle.triggers if t.fired], data=cycle.data,
                             decision=cycle.decision, action=cycle.action, figures=cycle.figures,
                             seconds=cycle.seconds)


def matured_scores(scored: pd.DataFrame, conversions: pd.DataFrame, *, window_days: float,
                   now: pd.Timestamp) -> pd.DataFrame:
    """The scored leads whose label window had closed by ``now``, with their final ``label``."""
    labelled = label_scores(scored, conversions, window_days=window_days, now=now)
    return labelled[labelled["matures_at"] <= now].reset_index(drop=True)


def _both(part: pd.DataFrame, metric: str) -> list[float]:
    """``metric`` of the stale model's and of the active model's probabilities for ``part``'s labels."""
    return [get_metric(metric)(part["label"], part[c]) for c in ("stale_probability", "probability")]


def monthly_comparison(matured: pd.DataFrame, *, by: str = "month", min_leads: int = 100) -> list[MonthRow]:
    """Per period of scoring with ``min_leads`` matured leads of both outcomes: the stale model's and the
    active model's realized ROC-AUC and Brier score on the same leads."""
    rows = []
    for month, part in matured.groupby(period_of(matured["scored_at"], by), sort=True):
        if len(part) >= min_leads and part["label"].nunique() == 2:
            rows.append(MonthRow(str(month), len(part), int(part["label"].sum()),
                                 float((part["source"] == NEW_SOURCE).mean()),
                                 sorted(part["model_version"].astype(str).unique()),
                                 *_both(part, "roc_auc"), *_both(part, "brier")))
    return rows


def pooled_comparison(matured: pd.DataFrame, since: pd.Timestamp) -> dict[str, Any]:
    """Stale vs active on the matured leads scored since ``since``: ROC-AUCs and DeLong's test; and the
    ROC-AUCs on the other sources' leads (the gain that does not come from the new source)."""
    part = matured[matured["scored_at"] >= since]
    others = part[part["source"] != NEW_SOURCE]
    out: dict[str, Any] = {"since": f"{since:%Y-%m-%d}", "leads": len(part),
                           "converted": int(part["label"].sum())}
    if part["label"].nunique() < 2 or others["label"].nunique() < 2:
        return out
    names = ("stale_roc_auc", "active_roc_auc")
    out.update(zip(names, _both(part, "roc_auc"), strict=True),
               others={"leads": len(others), **dict(zip(names, _both(others, "roc_auc"), strict=True))})
    if not part["probability"].equals(part["stale_probability"]):
        test = delong_roc_test(part["label"], part["stale_probability"], part["probability"])
        out.update(diff=test["diff"], se=test["se"], p_better=test["p_better"])
    return out


def _world(settings: LoopSettings) -> tuple[dict[str, pd.DataFrame], pd.Timestamp, pd.Timestamp]:
    """The generated CRM tables, when the drift starts and when the data ends (naive UTC)."""
    data = generate_crm(n_leads=settings.n_leads, seed=settings.seed, start=settings.start,
                        months=settings.months, new_source_months=settings.new_source_months)
    drift_from = pd.Timestamp(data.data_end - pd.DateOffset(months=settings.new_source_months))
    return {"leads": data.leads, "activities": data.activities, "outcomes": data.outcomes}, drift_from, \
        data.data_end


def _conversions(outcomes: pd.DataFrame) -> pd.DataFrame:
    hit = outcomes[outcomes["converted"].astype(bool)]
    return pd.DataFrame({"lead_id": hit["lead_id"].astype(str), "converted": True,
                         "converted_at": pd.to_datetime(hit["converted_at"], utc=True)})


def replay_loop(registry: Registry, params: Params, settings: LoopSettings = LoopSettings(), *,
                progress: bool = False) -> LoopReplay:
    """Walk a generated world with the learning loop (see the module docstring) into a new ``registry``.

    Raises
    ------
    ConfigError
        If the registry already has an active model, or the walk would start before labelled leads exist.
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    if registry.active_version() is not None:
        raise ConfigError(f"{registry.root}/: expected a new registry, got one with an active model")
    tables, drift_from, end = _world(settings)
    begin = drift_from - pd.DateOffset(months=settings.lead_months)
    if begin < pd.Timestamp(settings.start) + pd.DateOffset(months=4 + settings.holdout_months):
        raise ConfigError(f"the walk would start on {begin:%Y-%m-%d}, too soon after the world's start "
                          f"{settings.start} to train on: more months, or fewer new-source or lead months")
    walk = _Walk(registry, params, settings, tables, snapshot_table(tables, params),
                 _conversions(tables["outcomes"]))
    begin_utc, end_utc = begin.tz_localize("UTC"), end.tz_localize("UTC")
    stale = walk.first_model(begin_utc)
    steps = sorted({*pd.date_range(begin_utc, end_utc, freq=f"{settings.step_days}D")[1:], end_utc})
    for previous, step in tqdm(list(zip([begin_utc, *steps], steps, strict=False)), desc="walk",
                               unit="step", disable=not progress):
        walk.score(previous, step, stale)
        walk.check(step)
    matured = matured_scores(pd.concat(walk.scored, ignore_index=True), walk.conversions,
                             window_days=params.snapshot.label_window_days, now=end_utc)
    promoted = [c.at for c in walk.checks if c.cycle.decision == PROMOTE]
    since = pd.Timestamp(promoted[0], tz="UTC") if promoted else drift_from.tz_localize("UTC")
    return LoopReplay(settings, f"{drift_from:%Y-%m-%d}", [f"{begin:%Y-%m-%d}", f"{end:%Y-%m-%d}"], stale,
                      walk.baselines[stale], walk.checks,
                      monthly_comparison(matured, by=settings.by, min_leads=params.monitoring.min_labelled),
                      pooled_comparison(matured, since), str(registry.active_version()),
                      round(time.perf_counter() - started, 1))
