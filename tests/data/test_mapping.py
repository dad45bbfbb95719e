"""CRM mappings: YAML parsing (every key checked) and validation against a live database."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from leadscore.core.exceptions import MappingError
from leadscore.data.crm_database import CrmDatabase
from leadscore.data.mapping import DEMO_MAPPING, load_mapping, parse_mapping
from leadscore.demo import generate_crm
from leadscore.demo.database import write_crm_database

REPO = Path(__file__).resolve().parents[2]
MAPPINGS = REPO / "docs" / "mappings"


def _demo_raw() -> dict:
    return yaml.safe_load((MAPPINGS / "demo.yaml").read_text())


def test_docs_demo_mapping_is_demo_mapping():
    assert load_mapping(MAPPINGS / "demo.yaml") == DEMO_MAPPING


def test_docs_salesforce_mapping_loads():
    mapping = load_mapping(MAPPINGS / "salesforce.yaml")
    assert mapping.leads.table == "Lead" and mapping.outcomes.table == "Lead"
    assert mapping.leads.fields == {"source": "LeadSource", "vertical": "Industry", "job_title": "Title"}
    assert mapping.leads.write_back["score"] == "Lead_Score__c"
    assert mapping.activities.type_values is not None
    assert mapping.activities.type_values["Task"] == "ignore"
    assert mapping.outcomes.converted == "IsConverted"


def _error(raw: dict) -> str:
    with pytest.raises(MappingError) as info:
        parse_mapping(raw)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("section", "key"), [(None, "activites"), ("leads", "craeted_at"),
                                              ("activities", "durations"), ("outcomes", "converted_on")])
def test_unknown_key_is_an_error(section, key):
    raw = _demo_raw()
    (raw if section is None else raw[section])[key] = "x"
    message = _error(raw)
    assert f"unknown key {key!r}" in message and (section or "top level") in message


def test_unknown_key_in_file_names_the_file(tmp_path):
    raw = _demo_raw()
    raw["leads"]["write_back"] = {"scroe": "score__c"}
    path = tmp_path / "crm.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(MappingError, match=r"crm\.yaml: .*unknown key 'scroe' in leads\.write_back"):
        load_mapping(path)


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda r: r["activities"].update(type_values={"Call": "phone_call"}), "maps to 'phone_call'"),
    (lambda r: r["outcomes"].update(converted=None, status="Status"), "'status' and 'status_values' go"),
    (lambda r: r["outcomes"].update(status="S", status_values={"Won": "converted"}), "not both"),
    (lambda r: r.update(timezone="Mars/Olympus"), "unknown time zone"),
    (lambda r: r["leads"]["fields"].update(seniority="Level"), "leads.fields.seniority"),
    (lambda r: r["leads"].pop("id"), "missing required key 'id'"),
    (lambda r: r["activities"].update(timestamp=3), "activities.timestamp: expected a column"),
])
def test_invalid_mapping(edit, expected):
    raw = _demo_raw()
    edit(raw)
    assert expected in _error(raw)


def test_bad_yaml_and_missing_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("leads: [unclosed")
    with pytest.raises(MappingError, match="not valid YAML"):
        load_mapping(path)
    with pytest.raises(MappingError, match="cannot read mapping file"):
        load_mapping(tmp_path / "absent.yaml")


# --- against a live database -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('mapping') / 'crm.db'}"
    write_crm_database(generate_crm(n_leads=60, seed=3), url)
    return url


def _live_error(url: str, mapping, call=lambda db: db.check()) -> str:
    db = CrmDatabase(url, mapping)
    try:
        with pytest.raises(MappingError) as info:
            call(db)
    finally:
        db.close()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_demo_mapping_checks(demo_db):
    with CrmDatabase(demo_db) as db:
        db.check()


def test_missing_column(demo_db):
    raw = _demo_raw()
    raw["leads"]["fields"]["vertical"] = "Industry"
    message = _live_error(demo_db, parse_mapping(raw))
    assert "column 'Industry' not found in table 'leads'" in message
    assert "leads.fields.vertical" in message


def test_missing_column_suggests_the_case_variant(demo_db):
    raw = _demo_raw()
    raw["activities"]["note"] = "Note"
    message = _live_error(demo_db, parse_mapping(raw), lambda db: db.read_tables(["L0000001"]))
    assert "column 'Note' not found in table 'activities'" in message and "did you mean 'note'" in message


def test_missing_table(demo_db):
    raw = _demo_raw()
    raw["outcomes"]["table"] = "crm.opportunities"
    message = _live_error(demo_db, parse_mapping(raw))
    assert "table 'crm.opportunities' (outcomes.table) not found" in message
    assert "converted_at" in message


def test_unmapped_activity_type_value(demo_db):
    raw = _demo_raw()
    raw["activities"]["type_values"] = {"email_sent": "email_sent", "page_view": "page_view"}
    mapping = parse_mapping(raw)
    for call in (lambda db: db.check(), lambda db: db.read_tables()):
        message = _live_error(demo_db, mapping, call)
        assert "in table 'activities', column 'activity_type' maps to no leadscore activity type" in message
        assert "value '" in message


def test_unmapped_direction_value(tmp_path):
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    write_crm_database(generate_crm(n_leads=30, seed=4), url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE activities SET direction = 'both' WHERE activity_id = 1"))
    engine.dispose()
    message = _live_error(url, DEMO_MAPPING)
    assert "value 'both' in table 'activities', column 'direction'" in message


def test_changed_leads_needs_a_change_column(demo_db):
    raw = _demo_raw()
    del raw["leads"]["changed_at"], raw["activities"]["changed_at"]
    message = _live_error(demo_db, parse_mapping(raw), lambda db: db.changed_leads(None))
    assert "no changed_at column" in message


@pytest.mark.parametrize("name", ["demo", "salesforce"])
def test_docs_page_shows_the_mapping_files(name):
    assert (MAPPINGS / f"{name}.yaml").read_text() in (REPO / "docs" / "crm.md").read_text()
