from __future__ import annotations

import pandas as pd
import pytest

from leadscore.core.exceptions import DataValidationError
from leadscore.data.schema import infer_schema, prepare_features


def test_infer_schema_kinds(flat_leads):
    schema = infer_schema(flat_leads, target="converted", id_column="lead_id")
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds == {"created": "datetime", "source": "categorical", "budget": "numeric",
                     "email": "email", "region": "categorical"}
    assert "lead_id" not in kinds and "converted" not in kinds
    assert "free text" in schema.dropped["notes"]


def test_notes_column_is_presence_only_when_sometimes_empty(flat_leads):
    always = infer_schema(flat_leads, target="converted", id_column="lead_id")
    assert "notes" in always.dropped
    sometimes = flat_leads.assign(notes=flat_leads["notes"].where(flat_leads.index % 2 == 0, ""))
    schema = infer_schema(sometimes, target="converted", id_column="lead_id")
    assert "notes__present" in schema.feature_names


def test_constant_and_counter_columns_are_dropped(flat_leads):
    frame = flat_leads.assign(const="x", counter=range(len(flat_leads)))
    schema = infer_schema(frame, target="converted", id_column="lead_id")
    assert schema.dropped["const"] == "constant"
    assert "row counter" in schema.dropped["counter"]


def test_prepare_features_normalises_and_parses(flat_leads):
    schema = infer_schema(flat_leads, target="converted", id_column="lead_id")
    X = prepare_features(flat_leads, schema)
    assert X["budget"].dtype == "float64" and X["budget"].isna().sum() == (len(X) + 6) // 7
    assert set(X["region"].dropna()) == {"west", "east"}
    assert set(X["source"].dropna()) == {"web form", "referral", "paid search"}
    assert X["email__free_domain"].tolist()[:3] == [0.0, 1.0, 1.0]
    assert X["created__month"].iloc[0] == 1.0


def test_prepare_features_optional_and_required_columns(flat_leads):
    schema = infer_schema(flat_leads, target="converted", id_column="lead_id")
    assert "budget" not in schema.required_columns  # has N/A in training
    X = prepare_features(flat_leads.drop(columns=["budget"]), schema)
    assert X["budget"].isna().all()
    assert schema.required_columns == ["created", "email"]  # complete in training
    with pytest.raises(DataValidationError, match="missing required column.*created"):
        prepare_features(flat_leads.drop(columns=["created"]), schema)
    X = prepare_features(flat_leads.drop(columns=["created"]), schema, allow_missing=True)
    assert X["created__month"].isna().all()


def test_single_row_matches_batch(flat_leads):
    schema = infer_schema(flat_leads, target="converted", id_column="lead_id")
    batch = prepare_features(flat_leads, schema)
    for i in (0, 5, 17):
        one = prepare_features(flat_leads.iloc[[i]], schema)
        pd.testing.assert_frame_equal(one, batch.iloc[[i]])
