"""Shadow scoring in batch runs: the challenger scores every lead the champion scores, and both go to the
store's prediction log (the challenger's rows marked ``outputs.shadow``), never to the run's output.

This is what ``leadscore serve`` does per request, for ``leadscore score``: the champion's scores are
written where the run writes them, and the prediction log receives both versions' scores of the same
leads, so ``leadscore models promote`` can compare them once their labels mature.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa

from leadscore.monitoring.log_rows import input_fields, insert_rows, score_rows
from leadscore.scoring.scorer import Scorer


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
        inputs = input_fields(rows)
        shadow = self.challenger.score_frame(rows, reasons=0, now=datetime.now(UTC))
        shadow["lead_id"] = scores["lead_id"].to_numpy()
        champion = str(scores["model_version"].iloc[0])
        insert_rows(self.engine, self.table, score_rows(scores, inputs, self.request_id)
                    + score_rows(shadow, inputs, self.request_id, champion=champion))
        self.logged["champion"] += len(scores)
        self.logged["challenger"] += len(shadow)
        return scores
