"""The CRM database behind ``POST /v1/leads/{lead_id}/score``: read one lead where it lives, build its
features as of now with the training feature code, and write its score back onto the lead."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from leadscore.core.config import Params
from leadscore.data.crm_database import CrmDatabase
from leadscore.data.mapping import DEMO_MAPPING, load_mapping
from leadscore.monitoring.log_rows import json_value
from leadscore.scoring.crm_leads import LeadRows, as_of_time, lead_rows, model_params
from leadscore.scoring.scorer import Scorer
from leadscore.scoring.writeback import ScoreWriteBack

log = logging.getLogger(__name__)


class UnknownLead(LookupError):
    """No lead with this id in the CRM database (or created after the scoring instant)."""


@dataclass
class CrmLeads:
    """The CRM database, its write-back and the clock a server scores leads by id with."""

    db: CrmDatabase
    writeback: ScoreWriteBack | None
    params: Params
    clock: Callable[[], pd.Timestamp]

    @classmethod
    def open(cls, url: str, mapping_file: str | None, params: Params, *, as_of: str | None = None,
             scores_table: str = "lead_scores", write_back: bool = True) -> CrmLeads:
        """Connect, check the mapping against the live schema and prepare the write-back.

        Raises
        ------
        MappingError, StoreError
            If the mapping does not fit the database, or the database cannot be reached.
        """
        mapping = load_mapping(mapping_file) if mapping_file else DEMO_MAPPING
        db = CrmDatabase(url, mapping)
        db.check(values=False)
        sink = ScoreWriteBack(url, scores_table, lead_table=mapping.leads.table,
                              lead_id_column=mapping.leads.id, lead_columns=dict(mapping.leads.write_back),
                              engine=db.engine) if write_back else None
        fixed = as_of_time(as_of) if as_of else None
        return cls(db, sink, params, (lambda: fixed) if fixed is not None else (lambda: as_of_time(None)))

    def lead(self, lead_id: str, scorer: Scorer) -> tuple[dict[str, Any], LeadRows]:
        """The lead's raw row (the model's columns, JSON-ready) as of now, and what was read.

        Raises
        ------
        UnknownLead
            If the lead does not exist.
        """
        found = lead_rows(self.db, [lead_id], model_params(self.params, scorer), as_of=self.clock())
        if found.rows.empty:
            raise UnknownLead(f"no lead {lead_id!r} in the CRM database {self.db.url}")
        record = found.rows.iloc[0].to_dict()
        return {str(k): json_value(v) for k, v in record.items()}, found

    def write(self, results: list[dict[str, Any]]) -> None:
        """Write the served answers back (current-score table and mapped lead columns)."""
        if self.writeback is not None:
            self.writeback.write(results)

    def close(self) -> None:
        self.db.close()
