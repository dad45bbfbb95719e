"""A small demo CRM in a database with a quickly trained model in a registry, for the tests of scoring
by lead id, write-back and rescoring on change."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from lifecycle_support import make_crm_project

from leadscore.artifacts.bundle import save_bundle
from leadscore.artifacts.registry import Registry
from leadscore.cli.main import main
from leadscore.core.config import load_params
from leadscore.data.crm import load_crm, snapshot_table
from leadscore.training.build import snapshot_bundle

N_LEADS = 3000
AS_OF = "2025-09-01"  # the demo extract's end (20 months from 2024-01-01)


@dataclass(frozen=True)
class CrmModel:
    root: Path
    params: Path
    raw: Path
    registry: Path
    version: str


def build_crm_model(root: Path) -> CrmModel:
    """The demo CRM (files) of :data:`N_LEADS` leads and a logistic model trained on its closed leads,
    registered and active."""
    make_crm_project(root, N_LEADS)
    params = load_params(root / "params.yaml")
    snaps = snapshot_table(load_crm(root / "data/raw"), params)
    _, bundle = snapshot_bundle(snaps[snaps["status"] == "closed"].reset_index(drop=True), params)
    version = Registry(root / "registry").register(save_bundle(bundle, root / "model"), activate=True)
    return CrmModel(root, root / "params.yaml", root / "data/raw", root / "registry", version)


def write_crm_db(model: CrmModel, url: str) -> None:
    """The same demo CRM written into the database at ``url``."""
    assert main(["demo", "--db", url, "--n-leads", str(N_LEADS), "--months", "20",
                 "--params", str(model.params), "--replace"]) == 0


def add_activity(url: str, lead_id: str, kind: str, at: pd.Timestamp, *,
                 recorded_at: pd.Timestamp | None = None, note: str | None = None) -> None:
    """Insert one activity of the demo schema (``recorded_at`` default: now, UTC)."""
    engine = sa.create_engine(url)
    recorded = recorded_at if recorded_at is not None else pd.Timestamp.now(tz="UTC").tz_localize(None)
    with engine.begin() as conn:
        next_id = conn.execute(sa.text("SELECT COALESCE(MAX(activity_id), 0) + 1 FROM activities")).scalar()
        conn.execute(sa.text(
            "INSERT INTO activities (activity_id, lead_id, timestamp, activity_type, direction, "
            "duration_sec, page, note, recorded_at) "
            "VALUES (:id, :lead, :ts, :kind, :direction, NULL, NULL, :note, :rec)"),
            {"id": next_id, "lead": lead_id, "ts": at.to_pydatetime(), "kind": kind, "note": note,
             "direction": "outbound" if kind in ("email_sent", "call_outbound", "meeting") else "inbound",
             "rec": recorded.to_pydatetime()})
    engine.dispose()


def current_scores(url: str) -> pd.DataFrame:
    """``lead_scores`` of the CRM database, indexed by lead id."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        frame = pd.read_sql(sa.text("SELECT * FROM lead_scores"), conn)
    engine.dispose()
    return frame.set_index("lead_id")
