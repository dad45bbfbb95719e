"""Shared by the service tests: keys, models fitted for the API, registry and payload helpers."""

from __future__ import annotations

import json
import math
import textwrap
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from conftest import make_flat_leads

from leadscore.artifacts.bundle import save_bundle
from leadscore.artifacts.registry import Registry
from leadscore.data.schema import TableSchema
from leadscore.data.tables import parse_numeric
from leadscore.scoring.scorer import Scorer
from leadscore.service.auth import hash_key
from leadscore.training.fit import fit_table

with warnings.catch_warnings():  # starlette asks for httpx2, which is not installed
    warnings.simplefilter("ignore")

SCORER_KEY = "lsk_test-scorer-7d1e0c5b9a8f4e3d"
ADMIN_KEY = "lsk_test-admin-2f6b8a4c1e9d7035"
LIMITED_KEY = "lsk_test-limited-5c3a9e7b1d2f4068"
TARGET = "converted"
SCORE_FIELDS = {"lead_id", "probability", "score", "tier", "action", "confidence", "reasons", "model_version",
                "scored_at"}


# --- shared helpers (test_service_http.py and the benchmark import them) --------------------------------

def leads_v2(n: int, seed: int) -> pd.DataFrame:
    """``make_flat_leads`` plus a numeric ``employees`` column: a second schema."""
    frame = make_flat_leads(n, seed=seed)
    rng = np.random.default_rng(seed)
    employees = rng.integers(1, 5000, n).astype(float)
    employees[rng.random(n) < 0.2] = np.nan
    return frame.assign(employees=employees)


def fit_bundles(root: Path) -> tuple[Path, Path]:
    """Two small real bundles with different schemas: logistic (v1) and LightGBM with ``employees`` (v2)."""
    first = fit_table(make_flat_leads(300, seed=0), target=TARGET, id_column="lead_id",
                      candidates=["logistic"])
    first.bundle.metadata["test_metrics"] = {"roc_auc": 0.71, "pr_auc": 0.4, "brier": 0.12}
    second = fit_table(leads_v2(300, seed=1), target=TARGET, id_column="lead_id", candidates=["lightgbm"])
    return save_bundle(first.bundle, root / "v1"), save_bundle(second.bundle, root / "v2")


def write_keys(path: Path) -> Path:
    path.write_text(textwrap.dedent(f"""\
        keys:
          - name: crm
            role: scorer
            hash: {hash_key(SCORER_KEY)}
          - name: ops
            role: admin
            hash: {hash_key(ADMIN_KEY, "scrypt")}
          - name: slow-client
            role: scorer
            hash: {hash_key(LIMITED_KEY)}
            rate_limit: 2
        """))
    return path


def make_registry(root: Path, bundles: tuple[Path, Path]) -> tuple[Registry, str, str]:
    reg = Registry(root)
    v1 = reg.register(bundles[0], activate=True)
    v2 = reg.register(bundles[1])
    return reg, v1, v2


def to_payload(row: Mapping[str, Any], schema: TableSchema, omit_missing: bool) -> dict[str, Any]:
    """A raw CRM row as a JSON client sends it: numbers as numbers, empty values null or left out."""
    kinds = {c.name: c.kind for c in schema.columns}
    out: dict[str, Any] = {}
    for name, value in row.items():
        if name == TARGET:
            continue
        if kinds.get(name) == "numeric":
            number = parse_numeric(pd.Series([value], dtype=object)).iloc[0]
            value = None if pd.isna(number) else float(number)
        elif isinstance(value, float) and math.isnan(value):
            value = None
        if value is None and omit_missing:
            continue
        out[name] = value
    return out


def comparable(result: Mapping[str, Any]) -> dict[str, Any]:
    reasons = result["reasons"]
    return {"lead_id": result["lead_id"], "probability": result["probability"], "score": result["score"],
            "tier": result["tier"], "action": result["action"], "confidence": result["confidence"],
            "model_version": result["model_version"],
            "reasons": json.loads(reasons) if isinstance(reasons, str) else reasons}


def batch_results(scorer: Scorer, frame: pd.DataFrame, reasons: int = 3) -> list[dict[str, Any]]:
    """What batch scoring gives, in the API's JSON types."""
    out = scorer.score_frame(frame.drop(columns=[TARGET], errors="ignore"), reasons=reasons)
    records = []
    for rec in out.to_dict("records"):
        rec = comparable(rec)
        rec["probability"], rec["confidence"] = float(rec["probability"]), float(rec["confidence"])
        rec["score"] = int(rec["score"])
        records.append(rec)
    return records


# --- fixtures -------------------------------------------------------------------------------------------

def log_rows(url: str, table: str = "prediction_log") -> list[dict[str, Any]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f'SELECT * FROM "{table}" ORDER BY id')).mappings().all()
    finally:
        engine.dispose()
    out = []
    for row in rows:
        rec = dict(row)
        for key in ("inputs", "outputs"):
            if isinstance(rec[key], str):
                rec[key] = json.loads(rec[key])
        out.append(rec)
    return out


LEAD = {"lead_id": "L1", "created": "2024-03-04 10:30", "source": "referral", "budget": 12000.0,
        "email": "ann@acme.com", "region": "West"}


# --- scoring --------------------------------------------------------------------------------------------
