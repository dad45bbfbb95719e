"""Response models: what the endpoints answer, as published in the OpenAPI document.

Where an answer shows a domain record field by field (an experiment, a monitoring state), its model is
derived from the record's dataclass (:func:`record_model`), so each field is declared once.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Self, get_type_hints

from pydantic import BaseModel, Field, create_model

from leadscore.experiments.store import Experiment
from leadscore.monitoring.alerts import CheckState


class RecordModel(BaseModel):
    """A response model showing a domain record (a dataclass) field by field: made by
    :func:`record_model` from the record's definition and filled by :meth:`from_record`."""

    @classmethod
    def from_record(cls, record: Any, **values: Any) -> Self:
        """The answer for ``record`` (its dates as ISO 8601 text where this model shows text), with
        ``values`` for the fields the record lacks or this answer overrides."""
        shown: dict[str, Any] = {}
        for name, info in cls.model_fields.items():
            if name in values or not hasattr(record, name):
                continue
            value = getattr(record, name)
            text = info.annotation is str or info.annotation == str | None
            shown[name] = value.isoformat() if text and isinstance(value, datetime) else value
        return cls(**shown, **values)


def record_model(name: str, record: type, *, omit: Iterable[str] = (), as_text: Iterable[str] = ()
                 ) -> type[RecordModel]:
    """A :class:`RecordModel` named ``name`` with the fields of the dataclass ``record``, in its order,
    with its types and defaults, less ``omit`` (fields never shown); ``as_text`` are dates shown as
    ISO 8601 text (as the record's ``to_dict`` gives them)."""
    hints, omit, as_text = get_type_hints(record), set(omit), set(as_text)
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(record):
        if field.name in omit:
            continue
        kind = hints[field.name]
        if field.name in as_text:
            kind = str | None if types.NoneType in getattr(kind, "__args__", ()) else str
        fields[field.name] = (kind, ... if field.default is dataclasses.MISSING else field.default)
    return create_model(name, __base__=RecordModel, **fields)


class Reason(BaseModel):
    field: str
    points: int = Field(description="score points this field adds (+) or takes away (-)")
    text: str


class Reasons(BaseModel):
    positive: list[Reason]
    negative: list[Reason]


class ArmAnswer(BaseModel):
    """The lead's arm in the experiment named in the request, and that arm's score (what to act on)."""

    name: str
    arm: str = Field(description="control or treatment (sticky: the same lead always gets the same arm)")
    ranked_by: str = Field(description="'rules' or the model version that ranks this arm's leads")
    probability: float | None = Field(description="the arm model's probability; null for rules")
    score: int = Field(description="the arm's 0-100 score (rules: the points, clipped to 0-100)")
    tier: str | None


class ScoreResult(BaseModel):
    lead_id: str | int | None = Field(description="the lead id sent, else the lead's 1-based position")
    probability: float = Field(description="calibrated probability of conversion")
    score: int = Field(description="round(100 * probability)")
    tier: str
    action: str
    confidence: float = Field(description="model agreement x share of usually filled fields filled, 0-1")
    reasons: Reasons
    model_version: str
    scored_at: datetime
    experiment: ArmAnswer | None = Field(None, description="only when scored with ?experiment=NAME")


class ScoreResponse(ScoreResult):
    request_id: str


class BatchResponse(BaseModel):
    request_id: str
    model_version: str
    count: int
    results: list[ScoreResult]


class FeatureInfo(BaseModel):
    name: str
    kind: str
    required: bool
    missing_rate: float


class ModelInfo(BaseModel):
    version: str
    active_in_registry: str | None = Field(description="may differ for up to a poll interval after a switch")
    loaded_at: datetime
    model: str | None
    created_at: str | None
    metrics: dict[str, Any] = Field(description="test metrics recorded at export (roc_auc, pr_auc, ...)")
    threshold: Any
    tiers: Any
    features: list[FeatureInfo]
    metadata: dict[str, Any]


class VersionEntry(BaseModel):
    version: str
    created_at: str
    model: str
    metrics: dict[str, float]
    sha256: str
    active: bool
    serving: bool


class VersionsResponse(BaseModel):
    active: str | None
    serving: str | None
    versions: list[VersionEntry]


class SwitchResponse(BaseModel):
    active: str
    previous: str | None


class TrainJob(BaseModel):
    """A retraining job started through the API: running, succeeded or failed, with the cycle's result
    (triggers, the new version, the gate's decision and figures) once it ends."""

    job: str
    state: str
    started_at: str
    finished_at: str | None = None
    seconds: float | None = None
    exit_code: int | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    log_tail: list[str] = []


class OutcomeResponse(BaseModel):
    lead_id: str
    converted: bool
    converted_at: datetime | None
    recorded_at: datetime


class Status(BaseModel):
    status: str
    model_version: str | None = None
    detail: str | None = None


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    detail: str | list[ErrorDetail]
    request_id: str | None = None


# an experiment as experiments.store.Experiment defines it, less its salt and frozen rules, with its arm sizes
class ExperimentInfo(record_model("ExperimentInfo", Experiment, omit=("salt", "rules"),  # type: ignore[misc]
                                  as_text=("created_at", "stopped_at"))):
    assigned: dict[str, int] = {}


class ExperimentsResponse(BaseModel):
    experiments: list[ExperimentInfo]


class Assignment(BaseModel):
    experiment: str
    lead_id: str
    arm: str
    assigned_at: datetime


class WhoAmI(BaseModel):
    name: str
    role: str


class Importance(BaseModel):
    feature: str
    share: float


class DashboardModel(BaseModel):
    """The active model as the dashboard shows it; ``metrics`` holds the radar's five (None when the
    metadata lacks one), ``missing`` names those."""

    version: str
    model: str | None = None
    created_at: str | None = None
    training_window: list[str | None] | None = None
    metrics: dict[str, float | None]
    missing: list[str]
    other_metrics: dict[str, float]
    importance: list[Importance]
    importance_note: str | None = None


class ScoreBin(BaseModel):
    low: int
    high: int
    count: int


class KeptAnswer(BaseModel):
    """A dashboard answer the service keeps for a while (the heavy panels), stamped when it was built."""

    computed_at: datetime = Field(default_factory=lambda: datetime.now(UTC),
                                  description="when these figures were computed (kept up to 15 minutes)")


class ScoreSummary(KeptAnswer):
    """Served scores of the last ``days`` days (at most ``limit`` of the newest; ``truncated`` when more)."""

    days: int
    count: int
    truncated: bool
    limit: int
    bins: list[ScoreBin]
    tiers: dict[str, int]


class LeadScoreEntry(BaseModel):
    model_version: str
    probability: float
    score: int
    tier: str | None = None
    reasons: dict[str, Any] | None = None
    scored_at: datetime


class LeadHistory(BaseModel):
    lead_id: str
    latest: LeadScoreEntry
    history: list[LeadScoreEntry]


class PerformanceWeek(BaseModel):
    """One week (Monday first) of one version's served scores: leads first scored that week, those whose
    label matured, the realized conversion among them and the realized ROC-AUC (None while too few)."""

    week: str
    model_version: str
    leads: int
    labelled: int
    open: int
    converted: int
    conversion: float | None = None
    roc_auc: float | None = None
    note: str = ""
    est_conversion: float | None = Field(None, description="estimated conversion of the week's leads (final "
                                         "labels plus draws for the open ones); None when none is open")
    est_conversion_low: float | None = None
    est_conversion_high: float | None = None
    est_roc_auc: float | None = Field(None, description="estimated ROC-AUC, same way")
    est_roc_auc_low: float | None = None
    est_roc_auc_high: float | None = None


class EventMarker(BaseModel):
    at: datetime
    event: str
    version: str | None = None
    detail: str | None = None


class PerformanceOverTime(KeptAnswer):
    """Realized performance per week of scoring over the last ``weeks`` weeks, with the registry's events
    of that range (activations, rollbacks, gate decisions, retrain cycles)."""

    version: str
    weeks: int
    since: datetime
    label_window_days: float
    min_labelled: int
    truncated: bool
    limit: int
    matured_weeks: int
    series: list[PerformanceWeek]
    events: list[EventMarker]


class DriftCell(BaseModel):
    """One feature's drift in one week: PSI against the training profile and its state."""

    feature: str
    period: str
    n: int
    psi: float | None = None
    state: str
    reason: str


class DriftOverTime(KeptAnswer):
    """PSI per feature (the most drifted first; ``(score)`` is the score's own drift) and week of the
    served version's newest scored leads (at most ``limit``; ``truncated`` when more), or a ``note`` when
    they cannot be judged."""

    version: str
    weeks: int
    since: datetime
    leads: int
    truncated: bool
    limit: int
    periods: list[str]
    features: list[str]
    cells: list[DriftCell]
    note: str | None = None


class Segment(BaseModel):
    """One k-means cluster of recently scored leads: its size, the realized conversion of its matured
    leads (None when none has matured), its mean predicted probability and what sets it apart."""

    cluster: int
    leads: int
    share: float
    labelled: int
    converted: int
    conversion: float | None = None
    mean_probability: float
    traits: str


class SegmentPoint(BaseModel):
    x: float
    y: float
    cluster: int


class SegmentSummary(KeptAnswer):
    """Clusters of the served version's leads scored in the last ``days`` days (each lead's newest score,
    at most ``limit`` leads), with a sample of ``points`` on the first two principal components of the
    clustering space; ``note`` says why there are none."""

    version: str
    days: int
    k: int
    leads: int
    truncated: bool
    limit: int
    label_window_days: float
    segments: list[Segment]
    points: list[SegmentPoint]
    note: str | None = None


class DashboardExperiments(KeptAnswer):
    """The newest experiments (at most ``limit`` of ``total``), each with its analysis as
    ``GET /v1/experiments/{name}/results`` gives it."""

    total: int
    limit: int
    experiments: list[dict[str, Any]]


# one saved state, as monitoring.alerts.CheckState defines it
class MonitorEntry(record_model("MonitorEntry", CheckState)):  # type: ignore[misc]
    pass


class MonitoringSummary(BaseModel):
    """The states ``leadscore monitor check`` last saved, grouped: PSI per feature, score drift, realized and
    estimated performance, the rest; ``checked_at`` None before the first check."""

    checked_at: datetime | None = None
    drift: list[MonitorEntry]
    score_drift: list[MonitorEntry]
    performance: list[MonitorEntry]
    other: list[MonitorEntry]
    states: dict[str, int]
