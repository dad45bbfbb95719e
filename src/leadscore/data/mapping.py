"""Where leadscore's concepts live in a CRM database: tables and columns of leads, activities, outcomes.

A :class:`CrmMapping` names, for each of the three CRM tables leadscore reads, the table (or view,
optionally ``schema.table``) and the column holding each concept: the lead id, its creation time and
profile fields; each activity's lead, time and type (with a map of the CRM's type values onto
leadscore's); each lead's outcome. Fields it leaves out are unknown (missing), exactly as when a CRM
export lacks them. Mappings are written in YAML (see ``docs/crm.md``) and read by :func:`load_mapping`;
every key is checked, so a misspelt key is an error, never silently ignored.

>>> DEMO_MAPPING.activities.type
'activity_type'
>>> DEMO_MAPPING.leads.fields["vertical"]
'vertical'
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from leadscore.core.exceptions import MappingError

ACTIVITY_TYPES: tuple[str, ...] = ("email_sent", "email_open", "email_click", "page_view", "form_submit",
                                   "quote_request", "call_outbound", "call_inbound", "meeting")
IGNORE = "ignore"  # a type value mapped to this is dropped when read (e.g. Salesforce "Task")
DIRECTIONS: tuple[str, ...] = ("inbound", "outbound")
OUTCOME_STATUSES: tuple[str, ...] = ("converted", "not_converted")
WRITE_BACK_FIELDS: tuple[str, ...] = ("probability", "score", "tier", "action", "confidence", "reasons",
                                      "model_version", "scored_at")
# names build_snapshot writes itself: a profile field of that name would overwrite a feature
RESERVED_FIELDS = frozenset({
    "lead_id", "created_at", "snapshot_at", "label", "status", "seniority", "has_phone", "has_company_name",
    "contact_completeness", "created_month", "created_dayofweek", "created_hour", "created_on_weekend",
    "days_since_creation"})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class LeadsMapping:
    """The lead table: one row per lead. ``fields`` maps leadscore names onto CRM columns."""

    table: str = "leads"
    id: str = "lead_id"
    created_at: str = "created_at"
    fields: Mapping[str, str] = field(default_factory=dict)
    changed_at: str | None = None
    write_back: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ActivitiesMapping:
    """The activity log: one row per event. ``type_values`` maps CRM values onto leadscore types
    (``None``: the CRM already uses leadscore's names); ``direction_values`` likewise."""

    table: str = "activities"
    lead_id: str = "lead_id"
    timestamp: str = "timestamp"
    type: str = "activity_type"
    type_values: Mapping[str, str] | None = None
    id: str | None = None
    direction: str | None = None
    direction_values: Mapping[str, str] | None = None
    duration_sec: str | None = None
    page: str | None = None
    note: str | None = None
    changed_at: str | None = None


@dataclass(frozen=True)
class OutcomesMapping:
    """Each lead's outcome: a ``converted`` flag column or a ``status`` column with ``status_values``
    (CRM value -> converted / not_converted; values not listed are not converted), and the time of
    conversion. ``table`` may be the lead table itself (Salesforce ``Lead.IsConverted``)."""

    table: str = "outcomes"
    lead_id: str = "lead_id"
    converted_at: str = "converted_at"
    converted: str | None = None
    status: str | None = None
    status_values: Mapping[str, str] = field(default_factory=dict)
    changed_at: str | None = None


@dataclass(frozen=True)
class CrmMapping:
    """The whole mapping; ``timezone`` is the zone of naive timestamps in the database (default UTC)."""

    leads: LeadsMapping = field(default_factory=LeadsMapping)
    activities: ActivitiesMapping = field(default_factory=ActivitiesMapping)
    outcomes: OutcomesMapping = field(default_factory=OutcomesMapping)
    timezone: str = "UTC"


DEMO_MAPPING = CrmMapping(
    leads=LeadsMapping(
        table="leads", id="lead_id", created_at="created_at", changed_at="updated_at",
        fields={name: name for name in ("source", "vertical", "company_size", "region", "job_title", "budget",
                                        "email_domain_type", "company_name", "phone", "sales_status")}),
    activities=ActivitiesMapping(
        table="activities", id="activity_id", lead_id="lead_id", timestamp="timestamp", type="activity_type",
        direction="direction", duration_sec="duration_sec", page="page", note="note",
        changed_at="recorded_at"),
    outcomes=OutcomesMapping(table="outcomes", lead_id="lead_id", converted="converted",
                             converted_at="converted_at"),
)


def _where(path: str) -> str:
    return path or "top level"


def _section(raw: Any, path: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
    if not isinstance(raw, dict):
        raise MappingError(f"mapping: {_where(path)}: expected a mapping of keys, got {type(raw).__name__}")
    unknown = sorted(str(k) for k in raw if k not in allowed)
    if unknown:
        raise MappingError(f"mapping: unknown key {unknown[0]!r} in {_where(path)} "
                           f"(expected one of: {', '.join(allowed)})")
    missing = [k for k in required if raw.get(k) is None]
    if missing:
        raise MappingError(f"mapping: {_where(path)}: missing required key {missing[0]!r}")
    return raw


def _column(raw: Any, path: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise MappingError(f"mapping: {path}: expected a column or table name, got {raw!r}")
    return raw.strip()


def _optional(raw: dict, key: str, path: str) -> str | None:
    return None if raw.get(key) is None else _column(raw[key], f"{path}.{key}")


def _names(raw: Any, path: str, allowed: tuple[str, ...] | None) -> dict[str, str]:
    """A map of leadscore names (keys) onto CRM columns (values)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise MappingError(f"mapping: {path}: expected a mapping of name: column, got {type(raw).__name__}")
    out = {}
    for key, value in raw.items():
        name = str(key)
        if allowed is not None and name not in allowed:
            raise MappingError(f"mapping: unknown key {name!r} in {path} "
                               f"(expected one of: {', '.join(allowed)})")
        if allowed is None and (not _NAME.match(name) or name in RESERVED_FIELDS):
            raise MappingError(f"mapping: {path}.{name}: expected a new field name (letters, digits, _; not "
                               "one of leadscore's own columns)")
        out[name] = _column(value, f"{path}.{name}")
    return out


def _values(raw: Any, path: str, targets: tuple[str, ...]) -> dict[str, str] | None:
    """A map of CRM values (keys) onto leadscore values (``targets``)."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw:
        raise MappingError(f"mapping: {path}: expected a non-empty mapping of CRM value: leadscore value")
    out = {}
    for key, value in raw.items():
        if value not in targets:
            raise MappingError(f"mapping: {path}: value {key!r} maps to {value!r}, expected one of: "
                               f"{', '.join(targets)}")
        out[str(key)] = str(value)
    return out


def _leads(raw: Any) -> LeadsMapping:
    keys = ("table", "id", "created_at", "fields", "changed_at", "write_back")
    raw = _section(raw, "leads", keys, ("table", "id", "created_at"))
    return LeadsMapping(
        table=_column(raw["table"], "leads.table"), id=_column(raw["id"], "leads.id"),
        created_at=_column(raw["created_at"], "leads.created_at"),
        fields=_names(raw.get("fields"), "leads.fields", None),
        changed_at=_optional(raw, "changed_at", "leads"),
        write_back=_names(raw.get("write_back"), "leads.write_back", WRITE_BACK_FIELDS))


def _activities(raw: Any) -> ActivitiesMapping:
    keys = ("table", "id", "lead_id", "timestamp", "type", "type_values", "direction", "direction_values",
            "duration_sec", "page", "note", "changed_at")
    raw = _section(raw, "activities", keys, ("table", "lead_id", "timestamp", "type"))
    direction = _optional(raw, "direction", "activities")
    if raw.get("direction_values") is not None and direction is None:
        raise MappingError("mapping: activities.direction_values given without activities.direction")
    optional = {k: _optional(raw, k, "activities")
                for k in ("id", "duration_sec", "page", "note", "changed_at")}
    return ActivitiesMapping(
        table=_column(raw["table"], "activities.table"),
        lead_id=_column(raw["lead_id"], "activities.lead_id"),
        timestamp=_column(raw["timestamp"], "activities.timestamp"),
        type=_column(raw["type"], "activities.type"),
        type_values=_values(raw.get("type_values"), "activities.type_values", (*ACTIVITY_TYPES, IGNORE)),
        direction=direction,
        direction_values=_values(raw.get("direction_values"), "activities.direction_values", DIRECTIONS),
        **optional)


def _outcomes(raw: Any) -> OutcomesMapping:
    keys = ("table", "lead_id", "converted", "status", "status_values", "converted_at", "changed_at")
    raw = _section(raw, "outcomes", keys, ("table", "lead_id", "converted_at"))
    status = _optional(raw, "status", "outcomes")
    converted = _optional(raw, "converted", "outcomes")
    if status is not None and converted is not None:
        raise MappingError("mapping: outcomes: give either 'converted' (a flag column) or 'status', not both")
    values = _values(raw.get("status_values"), "outcomes.status_values", OUTCOME_STATUSES)
    if (status is None) != (values is None):
        raise MappingError("mapping: outcomes: 'status' and 'status_values' go together")
    return OutcomesMapping(
        table=_column(raw["table"], "outcomes.table"), lead_id=_column(raw["lead_id"], "outcomes.lead_id"),
        converted_at=_column(raw["converted_at"], "outcomes.converted_at"), converted=converted,
        status=status, status_values=values or {}, changed_at=_optional(raw, "changed_at", "outcomes"))


def parse_mapping(raw: Any) -> CrmMapping:
    """A :class:`CrmMapping` from the parsed YAML document (a dict).

    Raises
    ------
    MappingError
        On an unknown or missing key, a value of the wrong kind, or an unknown time zone.
    """
    sections = ("leads", "activities", "outcomes")
    raw = _section(raw, "", (*sections, "timezone"), sections)
    timezone = str(raw.get("timezone") or "UTC")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise MappingError(f"mapping: timezone: unknown time zone {timezone!r} (expected e.g. UTC, "
                           "Europe/Berlin)") from exc
    return CrmMapping(leads=_leads(raw["leads"]), activities=_activities(raw["activities"]),
                      outcomes=_outcomes(raw["outcomes"]), timezone=timezone)


def load_mapping(path: str | Path) -> CrmMapping:
    """Read a mapping YAML file (see ``docs/mappings/*.yaml``).

    Raises
    ------
    MappingError
        If the file is missing or not YAML, or the mapping is invalid (message names the file and key).
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MappingError(f"cannot read mapping file {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        line = str(exc).strip().splitlines()[0]
        raise MappingError(f"mapping file {path} is not valid YAML: {line}") from exc
    try:
        return parse_mapping(raw)
    except MappingError as exc:
        raise MappingError(f"{path}: {exc}") from exc


def activity_type_map(mapping: ActivitiesMapping) -> dict[str, str]:
    """CRM type value -> leadscore type (or :data:`IGNORE`); identity when the mapping gives none."""
    return dict(mapping.type_values) if mapping.type_values is not None else {t: t for t in ACTIVITY_TYPES}


def direction_map(mapping: ActivitiesMapping) -> dict[str, str]:
    """CRM direction value -> inbound/outbound; identity when the mapping gives none."""
    return dict(mapping.direction_values) if mapping.direction_values is not None \
        else {d: d for d in DIRECTIONS}
