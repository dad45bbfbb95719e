"""The CRM read from SQLite, PostgreSQL and MariaDB gives the same snapshot rows as the Parquet extract.

Each module-level database is created for this module alone (fixtures in conftest.py) and dropped after.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.cli.main import main
from leadscore.core.config import Params
from leadscore.core.exceptions import StoreError
from leadscore.data import crm_database, snapshot
from leadscore.data.crm import load_crm, snapshot_table
from leadscore.data.crm_database import CrmDatabase
from leadscore.data.mapping import ACTIVITY_TYPES, load_mapping
from leadscore.demo import CRMData, generate_crm, write_crm
from leadscore.demo.database import crm_metadata, write_crm_database

REPO = Path(__file__).resolve().parents[2]
PARAMS = Params()
BACKENDS = ("sqlite", "postgresql", "mariadb")


@pytest.fixture(scope="module")
def demo() -> CRMData:
    return generate_crm(n_leads=1500, seed=23)


@pytest.fixture(scope="module")
def parquet_tables(demo, tmp_path_factory) -> dict[str, pd.DataFrame]:
    out = tmp_path_factory.mktemp("parquet")
    write_crm(demo, out)
    return load_crm(out / "raw")


@pytest.fixture(scope="module", params=BACKENDS)
def crm_url(request, demo, tmp_path_factory) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('crm') / 'crm.db'}"
    else:
        fixture = "fresh_pg_url" if request.param == "postgresql" else "fresh_mariadb_url"
        url = request.getfixturevalue(fixture)
    write_crm_database(demo, url)
    return url


@pytest.fixture(scope="module")
def db(crm_url):
    with CrmDatabase(crm_url) as database:
        yield database


def _by_id(frame: pd.DataFrame, key: str = "lead_id") -> pd.DataFrame:
    return frame.sort_values(key, kind="stable").reset_index(drop=True)


def _same(left: pd.DataFrame, right: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(_by_id(left), _by_id(right), check_exact=False, rtol=0, atol=1e-9)


def test_tables_are_the_parquet_tables(db, parquet_tables):
    tables = db.read_tables()
    for name in ("leads", "outcomes"):
        pd.testing.assert_frame_equal(_by_id(tables[name]), _by_id(parquet_tables[name]))
    pd.testing.assert_frame_equal(_by_id(tables["activities"], "activity_id"),
                                  _by_id(parquet_tables["activities"], "activity_id"))
    assert db.data_end() == snapshot.data_end(parquet_tables)


def test_snapshot_parity_every_lead(db, parquet_tables):
    _same(snapshot_table(db.read_tables(), PARAMS), snapshot_table(parquet_tables, PARAMS))


def test_snapshot_parity_one_lead_at_a_time(db, parquet_tables):
    end = db.data_end()
    expected = snapshot_table(parquet_tables, PARAMS, as_of=end).set_index("lead_id")
    sample = parquet_tables["leads"]["lead_id"].sample(40, random_state=1).tolist()
    for lead_id in sample:
        row = snapshot_table(db.read_tables([lead_id]), PARAMS, as_of=end)
        assert row["lead_id"].tolist() == [lead_id]
        want = expected.loc[[lead_id]].reset_index()
        pd.testing.assert_frame_equal(row, want, check_exact=False, rtol=0, atol=1e-9)


def test_read_many_keeps_order_and_chunks(db, parquet_tables, monkeypatch):
    monkeypatch.setattr(crm_database, "IN_CHUNK", 7)
    ids = parquet_tables["leads"]["lead_id"].sample(50, random_state=2).tolist()
    tables = db.read_tables([*ids, "L9999999", ids[0]])
    assert tables["leads"]["lead_id"].tolist() == ids
    expected = parquet_tables["activities"]
    assert len(tables["activities"]) == int(expected["lead_id"].isin(ids).sum())
    assert db.read_tables(["L9999999"])["leads"].empty


def test_batches_cover_every_lead(db, parquet_tables):
    batches = list(db.iter_lead_batches(400))
    assert [len(b["leads"]) for b in batches] == [400, 400, 400, 300]
    ids = [i for b in batches for i in b["leads"]["lead_id"]]
    assert ids == sorted(ids) and len(set(ids)) == 1500
    acts = pd.concat([b["activities"] for b in batches], ignore_index=True)
    pd.testing.assert_frame_equal(_by_id(acts, "activity_id"),
                                  _by_id(parquet_tables["activities"], "activity_id"))


def test_changed_leads_sees_a_late_activity(db, crm_url, parquet_tables):
    end = db.data_end()
    assert db.changed_leads(end).lead_ids == ()
    old = db.changed_leads(end - pd.Timedelta(days=3))
    assert old.lead_ids and old.high_water is not None and old.high_water <= end
    late = {"activity_id": 10**9, "lead_id": "L0000003", "timestamp": dt.datetime(2024, 2, 1, 9, 30),
            "activity_type": "call_inbound", "recorded_at": (end + pd.Timedelta(hours=2)).to_pydatetime()}
    activities = crm_metadata().tables["activities"]
    engine = sa.create_engine(crm_url)
    try:
        with engine.begin() as conn:
            conn.execute(activities.insert().values(**late))
        changed = db.changed_leads(end)
        assert changed.lead_ids == ("L0000003",)
        assert changed.high_water == end + pd.Timedelta(hours=2)
        assert db.changed_leads(end, until=end + pd.Timedelta(hours=1)).lead_ids == ()
    finally:
        with engine.begin() as conn:
            conn.execute(activities.delete().where(activities.c.activity_id == 10**9))
        engine.dispose()


# --- random small CRMs ------------------------------------------------------------------------------

T0 = dt.datetime(2024, 3, 1)


@st.composite
def small_crms(draw) -> CRMData:
    n = draw(st.integers(1, 5))
    created = [T0 + dt.timedelta(minutes=draw(st.integers(0, 60 * 24 * 40))) for _ in range(n)]
    maybe = lambda values: st.one_of(st.none(), st.sampled_from(values))  # noqa: E731
    leads = pd.DataFrame({
        "lead_id": [f"R{i:03d}" for i in range(n)],
        "created_at": np.array(created, dtype="datetime64[ms]"),
    })
    text = {"source": ["web_form", "referral", " Referral", "Select"], "vertical": ["Health", "P&C"],
            "company_size": ["11-50"], "region": ["West", "west "], "job_title": ["VP Sales", "Intern", ""]}
    for name, values in text.items():
        leads[name] = pd.array([draw(maybe(values)) for _ in range(n)], dtype="str")
    leads["budget"] = np.array([draw(st.one_of(st.none(), st.floats(0, 1e6))) for _ in range(n)], dtype=float)
    for name, values in {"email_domain_type": ["business"], "company_name": ["Acme Inc"],
                         "phone": ["+1-555"], "sales_status": ["New", "Closed Won"]}.items():
        leads[name] = pd.array([draw(maybe(values)) for _ in range(n)], dtype="str")
    rows = []
    for i in range(n):
        snap = created[i] + dt.timedelta(days=PARAMS.snapshot.snapshot_days)
        for _ in range(draw(st.integers(0, 6))):  # zero: no activity history at all
            at = draw(st.one_of(st.just(snap), st.just(created[i]),  # exactly at the snapshot instant
                                st.integers(-2000, 20000).map(lambda m, s=snap: s + dt.timedelta(minutes=m))))
            rows.append({"activity_id": len(rows) + 1, "lead_id": f"R{i:03d}", "timestamp": at,
                         "activity_type": draw(st.sampled_from(ACTIVITY_TYPES)),
                         "direction": draw(maybe(["inbound", "outbound"])),
                         "duration_sec": draw(st.one_of(st.none(), st.floats(0, 3600))),
                         "page": draw(maybe(["pricing", "home"])),
                         "note": draw(maybe(["budget approved", "voicemail", "not interested"]))})
    columns = ["activity_id", "lead_id", "timestamp", "activity_type", "direction", "duration_sec", "page",
               "note"]
    acts = pd.DataFrame(rows, columns=columns)
    acts = acts.astype({"activity_id": "int64", "timestamp": "datetime64[ms]", "duration_sec": "float64",
                        **{c: "str" for c in ("lead_id", "activity_type", "direction", "page", "note")}})
    converted = [draw(st.booleans()) for _ in range(n)]
    outcomes = pd.DataFrame({
        "lead_id": pd.array(leads["lead_id"].tolist(), dtype="str"),
        "converted": np.array(converted, dtype="int8"),
        "converted_at": np.array([c + dt.timedelta(days=draw(st.integers(0, 200))) if k else None
                                  for c, k in zip(created, converted, strict=True)], dtype="datetime64[ms]")})
    leads["lead_id"] = leads["lead_id"].astype("str")
    return CRMData(leads, acts, outcomes, pd.DataFrame(), pd.Timestamp(T0))


def _write_aware(data: CRMData, url: str) -> None:
    """The demo schema with TIMESTAMPTZ columns, the times written at random offsets from UTC."""
    meta = crm_metadata()
    for table in meta.tables.values():
        for column in table.columns:
            if isinstance(column.type, sa.DateTime):
                column.type = sa.DateTime(timezone=True)
    engine = sa.create_engine(url)
    zones = [dt.timezone(dt.timedelta(hours=h)) for h in (-8, 0, 5.5, 9)]
    frames = {"leads": data.leads.assign(updated_at=data.leads["created_at"]),
              "activities": data.activities.assign(recorded_at=data.activities["timestamp"]),
              "outcomes": data.outcomes}
    try:
        meta.drop_all(engine)
        meta.create_all(engine)
        with engine.begin() as conn:
            conn.execute(sa.text("SET TIME ZONE 'America/New_York'"))
            for name, frame in frames.items():
                records = frame.astype(object).where(frame.notna(), None).to_dict("records")
                for k, record in enumerate(records):
                    for key, value in record.items():
                        if isinstance(value, pd.Timestamp):
                            utc = value.to_pydatetime().replace(tzinfo=dt.UTC)
                            record[key] = utc.astimezone(zones[k % 4])
                if records:
                    conn.execute(meta.tables[name].insert(), records)
    finally:
        engine.dispose()


def _check_random(data: CRMData, url: str, *, aware: bool = False) -> None:
    if aware:
        _write_aware(data, url)
    else:
        write_crm_database(data, url, if_exists="replace")
    tables = {"leads": data.leads, "activities": data.activities, "outcomes": data.outcomes}
    with CrmDatabase(url) as database:
        read = database.read_tables()
        end = database.data_end()
        assert end == snapshot.data_end(tables)
        _same(snapshot_table(read, PARAMS), snapshot_table(tables, PARAMS))
        one = data.leads["lead_id"].iloc[-1]
        expected = snapshot_table(tables, PARAMS, as_of=end)
        got = snapshot_table(database.read_tables([one]), PARAMS, as_of=end)
        _same(got, expected[expected["lead_id"] == one])


RANDOM = settings(max_examples=12, deadline=None, derandomize=True,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@RANDOM
@given(data=small_crms())
def test_random_crms_sqlite(data, tmp_path):
    _check_random(data, f"sqlite:///{tmp_path / 'random.db'}")


@RANDOM
@given(data=small_crms(), aware=st.booleans())
def test_random_crms_postgresql(data, aware, fresh_pg_url):
    _check_random(data, fresh_pg_url, aware=aware)


# --- a Salesforce-style schema -----------------------------------------------------------------------


def _records(frame: pd.DataFrame) -> list[dict]:
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [{k: v.to_pydatetime() if isinstance(v, pd.Timestamp) else v for k, v in r.items()} for r in rows]


def _salesforce(demo: CRMData, url: str, mapping) -> None:
    """``Lead`` and ``Task`` tables holding the demo CRM, spelt as the mapping file says."""
    inverse: dict[str, str] = {}
    for crm_value, kind in mapping.activities.type_values.items():
        inverse.setdefault(kind, crm_value)
    meta = sa.MetaData()
    lead = sa.Table("Lead", meta, sa.Column("Id", sa.String(18), primary_key=True),
                    sa.Column("CreatedDate", sa.DateTime), sa.Column("LeadSource", sa.String(80)),
                    sa.Column("Industry", sa.String(80)), sa.Column("Title", sa.String(128)),
                    sa.Column("IsConverted", sa.Boolean), sa.Column("ConvertedDate", sa.DateTime),
                    sa.Column("SystemModstamp", sa.DateTime))
    task = sa.Table("Task", meta, sa.Column("Id", sa.Integer, primary_key=True),
                    sa.Column("WhoId", sa.String(18), index=True), sa.Column("ActivityDate", sa.DateTime),
                    sa.Column("TaskSubtype", sa.String(40)), sa.Column("CallDurationInSeconds", sa.Integer),
                    sa.Column("Description", sa.Text), sa.Column("SystemModstamp", sa.DateTime))
    leads = demo.leads.merge(demo.outcomes, on="lead_id")
    lead_rows = _records(pd.DataFrame({
        "Id": leads["lead_id"], "CreatedDate": leads["created_at"], "LeadSource": leads["source"],
        "Industry": leads["vertical"], "Title": leads["job_title"], "IsConverted": leads["converted"] == 1,
        "ConvertedDate": leads["converted_at"], "SystemModstamp": leads["created_at"]}))
    acts = demo.activities
    task_rows = _records(pd.DataFrame({
        "Id": acts["activity_id"], "WhoId": acts["lead_id"], "ActivityDate": acts["timestamp"],
        "TaskSubtype": acts["activity_type"].map(inverse),
        "CallDurationInSeconds": acts["duration_sec"].round(),
        "Description": acts["note"], "SystemModstamp": acts["timestamp"]}))
    task_rows += [{"Id": 10**8 + j, "WhoId": "L0000001", "ActivityDate": T0, "TaskSubtype": "Task",
                   "CallDurationInSeconds": None, "Description": "send contract", "SystemModstamp": T0}
                  for j in range(3)]  # to-dos: ignored by the mapping
    engine = sa.create_engine(url)
    try:
        meta.drop_all(engine)
        meta.create_all(engine)
        with engine.begin() as conn:
            conn.execute(lead.insert(), lead_rows)
            conn.execute(task.insert(), task_rows)
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_salesforce_schema_gives_the_same_features(backend, demo, tmp_path, request):
    mapping = load_mapping(REPO / "docs" / "mappings" / "salesforce.yaml")
    url = f"sqlite:///{tmp_path / 'sf.db'}" if backend == "sqlite" \
        else request.getfixturevalue("fresh_pg_url")
    _salesforce(demo, url, mapping)
    acts = demo.activities.assign(duration_sec=demo.activities["duration_sec"].round())
    expected_tables = {
        "leads": demo.leads[["lead_id", "created_at", "source", "vertical", "job_title"]],
        "activities": acts[["lead_id", "timestamp", "activity_type", "duration_sec", "note"]],
        "outcomes": demo.outcomes}
    with CrmDatabase(url, mapping) as database:
        database.check()
        tables = database.read_tables()
        assert list(tables["leads"].columns) == ["lead_id", "created_at", "source", "vertical", "job_title"]
        assert list(tables["activities"].columns) == ["lead_id", "timestamp", "activity_type", "duration_sec",
                                                      "note"]
        assert len(tables["activities"]) == len(demo.activities)  # the "Task" to-dos are ignored
        got = snapshot_table(tables, PARAMS)
        one = snapshot_table(database.read_tables(["L0000001"]), PARAMS, as_of=database.data_end())
    want = snapshot_table({k: v.astype({c: "str" for c in v.columns if v[c].dtype == object})
                           for k, v in expected_tables.items()}, PARAMS)
    _same(got, want)
    _same(one, want[want["lead_id"] == "L0000001"])


# --- the command line and the benchmark ---------------------------------------------------------------


def test_demo_db_command(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    assert main(["demo", "--db", url, "--n-leads", "300", "--seed", "5"]) == 0
    assert "leads 300" in capsys.readouterr().out
    assert not (tmp_path / "data").exists()  # with --db and no --out, no files
    assert main(["demo", "--db", url, "--n-leads", "300"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert main(["demo", "--db", url, "--n-leads", "200", "--replace"]) == 0
    with CrmDatabase(url) as database:
        tables = database.read_tables()
    assert len(tables["leads"]) == 200
    pd.testing.assert_frame_equal(tables["leads"], generate_crm(n_leads=200, seed=42).leads.astype(
        {c: "str" for c in tables["leads"].columns if c not in ("created_at", "budget")}))


def test_write_refuses_unknown_if_exists(tmp_path):
    with pytest.raises(Exception, match="if_exists"):
        write_crm_database(generate_crm(n_leads=5, seed=1), str(tmp_path / "x.db"), if_exists="append")


def test_batch_size_must_be_positive(tmp_path):
    with CrmDatabase(str(tmp_path / "none.db")) as database, pytest.raises(StoreError, match="batch_size"):
        next(database.iter_lead_batches(0))


def test_benchmark_runs(tmp_path, capsys):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import bench_crm_reads
    finally:
        sys.path.pop(0)
    assert bench_crm_reads.main(["--n-leads", "60", "--repeat", "20", "--db", str(tmp_path / "b.db")]) == 0
    assert "p50" in capsys.readouterr().out


def test_example_commands_parse():
    import re
    import shlex

    from leadscore.cli.main import build_parser

    parser = build_parser()
    demo_help = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "demo")[1]
    texts = (REPO / "docs" / "crm.md").read_text() + demo_help.format_help()
    commands = re.findall(r"^\s*(leadscore demo .+?)\s*(?:#.*)?$", texts, flags=re.MULTILINE)
    assert len(commands) >= 6
    for command in commands:
        args = parser.parse_args(shlex.split(command)[1:])
        assert args.command == "demo"
