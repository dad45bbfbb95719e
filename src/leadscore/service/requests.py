"""Request models. The lead model is generated from the served model's raw-field schema; the other
requests (an outcome, a new experiment) are fixed.

Each raw input column becomes a field of the type its kind takes (numbers for ``numeric``, strings for
the rest, dates as ISO 8601 text); fields required in training are required, the others optional and
scored as missing when absent or null, exactly as absent columns and empty cells are in batch scoring.
Columns the model dropped (free text, identifiers) are accepted and ignored, so a CRM can send the rows
it exports; any other field is a 422. Numbers must be finite and within +-1e15; dates within 1900-2199.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
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


# --- fixed requests -----------------------------------------------------------------------------------

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


class StopRequest(BaseModel):
    model_config = FORBID
    reason: str = Field("", max_length=2000)
