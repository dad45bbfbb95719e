"""The ``features`` stage: the point-in-time snapshot of every lead, with its label and status."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from leadscore.core.config import Params
from leadscore.data.crm import load_crm, snapshot_table
from leadscore.data.tables import write_table


def build_features(raw_dir: str | Path, out_path: str | Path, params: Params) -> pd.DataFrame:
    """Snapshot rows of every lead in the CRM tables of ``raw_dir``, written to ``out_path``."""
    snap = snapshot_table(load_crm(raw_dir), params)
    write_table(snap, out_path)
    return snap
