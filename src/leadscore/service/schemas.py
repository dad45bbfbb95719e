"""Request and response models. The lead model is generated from the served model's raw-field schema.

Each raw input column becomes a field of the type its kind takes (numbers for ``numeric``, strings for
the rest, dates as ISO 8601 text); fields required in training are required, the others optional and
scored as missing when absent or null, exactly as absent columns and empty cells are in batch scoring.
Columns the model dropped (free text, identifiers) are accepted and ignored, so a CRM can send the rows
it exports; any other field is a 422. Numbers must be finite and within +-1e15; dates within 1900-2199.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import pandas as pd
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    WithJsonSchema,
    create_model,
    model_validator,
)

from leadscore.data.schema import ColumnSpec, TableSchema

NUMBER_LIMIT = 1e15
YEARS = (1900, 2199)
DATE_PATTERN = (r"^(19|2[01])\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
                r"([T ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,9})?)?(Z|[+-]([01]\d|2[0-3]):?[0-5]\d)?)?$")
MAX_TEXT = {"categorical": 500, "email": 320, "presence": 10_000, "datetime": 64, "id": 200}
FORBID = ConfigDict(extra="forbid")


def _check_id(value: Any) -> str | int:
    if isinstance(value, str) and 1 <= len(value) <= MAX_TEXT["id"] or type(value) is int:
        return value
    raise ValueError(f"expected a string of 1 to {MAX_TEXT['id']} characters or an integer")


LeadId = Annotated[str | int, PlainValidator(_check_id), WithJsonSchema(
    {"anyOf": [{"type": "string", "minLength": 1, "maxLength": MAX_TEXT["id"]}, {"type": "integer"}]})]
Number = Annotated[float, Strict(), Field(allow_inf_nan=False, ge=-NUMBER_LIMIT, le=NUMBER_LIMIT)]


def _text(kind: str) -> Any:
    return Annotated[str, Strict(), Field(max_length=MAX_TEXT[kind])]


def _date_checker(placeholders: tuple[str, ...]) -> AfterValidator:
    tokens = {p.strip().casefold() for p in placeholders}

    def check(value: str) -> str:
        if value.strip().casefold() in tokens:
            return value  # a placeholder: missing, as in batch scoring
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                stamp = pd.to_datetime(value, format="mixed", utc=True)
        except (ValueError, TypeError, OverflowError):
            raise ValueError(f"expected an ISO 8601 date or date-time such as 2025-05-27T03:17:55Z, "
                             f"got {value[:40]!r}") from None
        if pd.isna(stamp) or not YEARS[0] <= stamp.year <= YEARS[1]:
            raise ValueError(f"expected a date between {YEARS[0]} and {YEARS[1]}, got {value[:40]!r}")
        return value

    return AfterValidator(check)


def _field_type(spec: ColumnSpec, schema: TableSchema) -> Any:
    if spec.kind == "numeric":
        return Number
    if spec.kind == "datetime":
        return Annotated[str, Strict(), Field(max_length=MAX_TEXT["datetime"], pattern=DATE_PATTERN),
                         _date_checker(schema.placeholders)]
    return _text(spec.kind)


def _describe(spec: ColumnSpec) -> str:
    kind = {"numeric": "a number", "categorical": "a category (text)",
            "datetime": "an ISO 8601 date or date-time (years 1900-2199), e.g. 2025-05-27T03:17:55Z",
            "email": "an e-mail address", "presence": "text (only whether it is filled is used)"}[spec.kind]
    need = "required" if spec.required else f"optional; missing in {spec.missing_rate:.0%} of training rows"
    return f"{kind}; {need}"


@dataclass(frozen=True)
class LeadModels:
    """The generated request models and how to turn a validated lead into a raw row."""

    lead: type[BaseModel]
    batch: type[BaseModel]
    scored: tuple[str, ...]   # raw columns passed to the scorer (the model's id column first, if any)
    id_field: str | None      # the field holding the lead id: the model's id column, else "lead_id"

    def row(self, lead: BaseModel) -> dict[str, Any]:
        """The raw row ``score_frame`` gets: every scored column, None where absent."""
        values = lead.model_dump(by_alias=True)
        return {name: values.get(name) for name in self.scored}

    def lead_id(self, lead: BaseModel) -> str | int | None:
        """The id the client sent, if any."""
        return lead.model_dump(by_alias=True).get(self.id_field) if self.id_field else None

    @staticmethod
    def inputs(lead: BaseModel) -> dict[str, Any]:
        """The fields the client sent (for the prediction log)."""
        return lead.model_dump(by_alias=True, exclude_unset=True)


def build_models(schema: TableSchema, batch_limit: int) -> LeadModels:
    """Pydantic models for one lead and for a batch of at most ``batch_limit`` leads of ``schema``."""
    definitions: dict[str, Any] = {}
    scored: list[str] = []
    names = {c.name for c in schema.columns} | set(schema.dropped) | {schema.target}
    id_field = schema.id_column or ("lead_id" if "lead_id" not in names else None)
    if id_field:  # a model without an id column still takes one, to echo and to log
        definitions["f_id"] = (LeadId | None, Field(None, alias=id_field, title=id_field,
                                                    description="the lead id, echoed as lead_id"))
    if schema.id_column:
        scored.append(schema.id_column)
    for i, spec in enumerate(schema.columns):
        kind = _field_type(spec, schema)
        info = Field(... if spec.required else None, alias=spec.name, title=spec.name,
                     description=_describe(spec))
        definitions[f"f{i}"] = (kind if spec.required else kind | None, info)
        scored.append(spec.name)
    used = set(scored) | {schema.target}
    ignored = [name for name in schema.dropped if name not in used]
    for i, name in enumerate(ignored):
        scalar = Annotated[str, Strict(), Field(max_length=MAX_TEXT["presence"])] | Number \
            | Annotated[bool, Strict()]
        note = f"ignored by this model ({schema.dropped[name]})"
        definitions[f"x{i}"] = (scalar | None, Field(None, alias=name, title=name, description=note))
    lead = create_model("Lead", __config__=FORBID,
                        __doc__="One lead as raw CRM fields.", **definitions)
    batch = create_model(
        "ScoreBatchRequest", __config__=FORBID, __doc__="Leads to score together (one model version).",
        leads=(Annotated[list[lead], Field(min_length=1, max_length=batch_limit)], ...))  # type: ignore[valid-type]
    return LeadModels(lead, batch, tuple(scored), id_field)


# --- responses and fixed requests ---------------------------------------------------------------------

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


class OutcomeRequest(BaseModel):
    """The actual outcome of a lead; sending it again for the same lead replaces the earlier one."""

    # the rule below is also in the published schema, so clients and schema-driven tests see it
    model_config = ConfigDict(**FORBID, json_schema_extra={
        "if": {"properties": {"converted": {"const": False}}, "required": ["converted"]},
        "then": {"properties": {"converted_at": {"type": "null"}}},
    })
    lead_id: LeadId
    converted: Annotated[bool, Strict()]
    converted_at: AwareDatetime | None = Field(None, description="when it converted (with a time zone)")

    @model_validator(mode="after")
    def _time_only_when_converted(self) -> OutcomeRequest:
        if self.converted_at is not None and not self.converted:
            raise ValueError("converted_at: expected null when converted is false")
        if self.converted_at is not None and not YEARS[0] <= self.converted_at.year <= YEARS[1]:
            raise ValueError(f"converted_at: expected a date between {YEARS[0]} and {YEARS[1]}")
        return self


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


class ExperimentRequest(BaseModel):
    """A new A/B experiment; omitted settings take the server's params.yaml `experiments` defaults."""

    model_config = FORBID
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    treatment: str = Field(min_length=1, max_length=64, description="the model version being tested")
    control: str = Field("rules", min_length=1, max_length=64, description="'rules' or a model version")
    split: float | None = Field(None, gt=0, lt=1, description="the treatment's share of leads")
    window_days: float | None = Field(None, gt=0, le=3650, description="conversion counted this long")
    min_days: float | None = Field(None, gt=0, le=3650, description="no deploy before this many days")
    mde: float | None = Field(None, gt=0, lt=1, description="minimum detectable absolute lift")
    description: str = Field("", max_length=2000)


class ExperimentInfo(BaseModel):
    name: str
    description: str
    control: str
    treatment: str
    split: float
    window_days: float
    min_days: float
    mde: float
    alpha: float
    status: str
    created_at: str
    stopped_at: str | None = None
    stop_reason: str | None = None
    assigned: dict[str, int] = {}


class ExperimentsResponse(BaseModel):
    experiments: list[ExperimentInfo]


class Assignment(BaseModel):
    experiment: str
    lead_id: str
    arm: str
    assigned_at: datetime


class StopRequest(BaseModel):
    model_config = FORBID
    reason: str = Field("", max_length=2000)


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


class MonitorEntry(BaseModel):
    check: str
    model_version: str
    subject: str
    period: str
    state: str
    reason: str
    value: float | None = None


class MonitoringSummary(BaseModel):
    """The states ``leadscore monitor check`` last saved, grouped: PSI per feature, score drift, realized and
    estimated performance, the rest; ``checked_at`` None before the first check."""

    checked_at: datetime | None = None
    drift: list[MonitorEntry]
    score_drift: list[MonitorEntry]
    performance: list[MonitorEntry]
    other: list[MonitorEntry]
    states: dict[str, int]
