"""Shadow scoring in batch runs: the challenger scores every lead the champion scores, and both go to the
store's prediction log (the challenger's rows marked ``outputs.shadow``), never to the run's output.

This is what ``leadscore serve`` does per request, for ``leadscore score``: the champion's scores are
written where the run writes them, and the prediction log receives both versions' scores of the same
leads, so ``leadscore models promote`` can compare them once their labels mature.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa

from leadscore.monitoring.journal import ENTRY
from leadscore.monitoring.replay import json_value, write_log
from leadscore.scoring.scorer import Scorer


def _rows(scores: pd.DataFrame, inputs: list[dict[str, Any]], request_id: str, *,
          champion: str | None) -> list[dict[str, Any]]:
    """Prediction-log rows of one version's scores; ``champion`` given: shadow rows of a challenger."""
    out = []
    for record, fields in zip(scores.to_dict("records"), inputs, strict=True):
        scored_at = pd.Timestamp(record["scored_at"]).to_pydatetime()
        outputs: dict[str, Any] = {"probability": float(record["probability"]), "score": int(record["score"]),
                                   "tier": record["tier"]}
        if champion is None:
            outputs.update(action=record.get("action"), reasons=json.loads(record.get("reasons") or "{}"))
        else:
            outputs.update(shadow=True, champion=champion)
        version, lead = str(record["model_version"]), str(record["lead_id"])
        out.append({"request_id": request_id, "lead_id": lead, "model_version": version,
                    "probability": outputs["probability"], "score": outputs["score"], "tier": record["tier"],
                    "inputs": fields, "outputs": outputs, "scored_at": scored_at,
                    ENTRY: f"{request_id}:{version}:{lead}"})
    return out


class BatchShadow:
    """The ``extend`` hook of :func:`~leadscore.scoring.batch.run_batch` that scores each chunk with the
    ``challenger`` too and logs both versions' scores (one transaction per chunk, before the chunk is
    written); the chunk's output is returned unchanged.

    A lead logged again by a resumed run keeps its first row (the entry key is the run, the version and
    the lead). ``logged`` counts the rows written per side.
    """

    def __init__(self, challenger: Scorer, engine: sa.Engine, table: sa.Table,
                 run: str | None = None) -> None:
        self.challenger, self.engine, self.table = challenger, engine, table
        self.request_id = f"batch-{run or uuid.uuid4().hex[:16]}"
        self.logged = {"champion": 0, "challenger": 0}

    def __call__(self, rows: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
        inputs = [{str(k): json_value(v) for k, v in r.items()} for r in rows.to_dict("records")]
        shadow = self.challenger.score_frame(rows, reasons=0, now=datetime.now(UTC))
        shadow["lead_id"] = scores["lead_id"].to_numpy()
        champion = str(scores["model_version"].iloc[0])
        write_log(self.engine, self.table, _rows(scores, inputs, self.request_id, champion=None)
                  + _rows(shadow, inputs, self.request_id, champion=champion))
        self.logged["champion"] += len(scores)
        self.logged["challenger"] += len(shadow)
        return scores
