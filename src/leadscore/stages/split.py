"""The ``split`` stage: train (older closed leads), test (the last months of closed leads), open."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from leadscore.data.crm import split_by_time
from leadscore.data.tables import read_table, write_table


def write_split(snapshots_path: str | Path, out_dir: str | Path, test_months: int) -> dict[str, Any]:
    parts = split_by_time(read_table(snapshots_path), test_months)
    out_dir = Path(out_dir)
    summary: dict[str, Any] = {}
    for name, part in parts.items():
        write_table(part, out_dir / f"{name}.parquet")
        summary[name] = {
            "rows": int(len(part)),
            "created_from": str(part["created_at"].min()), "created_to": str(part["created_at"].max()),
            "conversion_rate": None if name == "open" else round(float(part["label"].mean()), 6),
        }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
