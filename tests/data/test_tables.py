from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadscore.core.exceptions import DataValidationError, InputFileError, TargetError
from leadscore.data.tables import clean_placeholders, coerce_target, parse_numeric, read_table, write_table


@pytest.mark.parametrize("value", ["Select", " select ", "SELECT", "", "  ", "N/A", "n/a", "Unknown",
                                   "null", "-", "?"])
def test_placeholders_become_missing(value):
    cleaned = clean_placeholders(pd.Series([value, "Health"]), ["", "select", "n/a", "unknown",
                                                               "null", "-", "?"])
    assert pd.isna(cleaned.iloc[0]) and cleaned.iloc[1] == "Health"


def test_placeholders_are_configurable():
    cleaned = clean_placeholders(pd.Series(["TBD", "Select"]), ["tbd"])
    assert pd.isna(cleaned.iloc[0]) and cleaned.iloc[1] == "Select"


@given(st.text(max_size=12))
def test_clean_placeholders_never_invents_values(text):
    cleaned = clean_placeholders(pd.Series([text]), ["select", ""])
    value = cleaned.iloc[0]
    assert pd.isna(value) or value == text.strip()


@pytest.mark.parametrize("raw,expected", [("1,200", 1200.0), ("$5,000", 5000.0), ("12%", 12.0),
                                          ("3,5", 3.5), ("-7", -7.0), ("€ 10", 10.0),
                                          ("abc", np.nan), ("inf", np.nan)])
def test_parse_numeric(raw, expected):
    value = parse_numeric(pd.Series([raw])).iloc[0]
    assert (np.isnan(value) and np.isnan(expected)) or value == expected


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12))
def test_parse_numeric_roundtrips_plain_numbers(x):
    assert parse_numeric(pd.Series([repr(x)])).iloc[0] == pytest.approx(x)


@pytest.mark.parametrize("values,expected", [
    (["yes", "No", " YES "], [1, 0, 1]), (["true", "False", "TRUE"], [1, 0, 1]),
    ([1, 0, 1], [1, 0, 1]), (["1", "0", "0"], [1, 0, 0]), ([True, False, True], [1, 0, 1]),
])
def test_coerce_target_accepts_binary_spellings(values, expected):
    assert coerce_target(pd.Series(values), "y").tolist() == expected


def test_coerce_target_keeps_blank_as_unknown():
    target = coerce_target(pd.Series(["yes", "", None, "no"]), "y")
    assert target.isna().tolist() == [False, True, True, False]


def test_coerce_target_rejects_non_binary():
    with pytest.raises(TargetError, match="not binary.*'maybe'"):
        coerce_target(pd.Series(["yes", "no", "maybe"]), "y")


def test_coerce_target_rejects_one_class():
    with pytest.raises(TargetError, match="both classes"):
        coerce_target(pd.Series(["yes", "yes"]), "y")


def test_read_table_formats(tmp_path, flat_leads):
    semicolon = tmp_path / "leads.csv"
    flat_leads.to_csv(semicolon, sep=";", index=False, encoding="utf-8-sig")
    latin = tmp_path / "latin.csv"
    flat_leads.assign(region="Zürich").to_csv(latin, index=False, encoding="cp1252")
    parquet = write_table(flat_leads, tmp_path / "leads.parquet")
    for path in (semicolon, latin, parquet):
        frame = read_table(path)
        assert frame.shape == flat_leads.shape and list(frame.columns) == list(flat_leads.columns)
    assert read_table(latin)["region"].iloc[0] == "Zürich"


@pytest.mark.parametrize("content,match", [
    (None, "file not found"), ("", "empty"), ("a,b\n", "no data rows"),
    ('a,b\n1,"unterminated\n', "cannot parse"),
])
def test_read_table_errors(tmp_path, content, match):
    path = tmp_path / "x.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputFileError, match=match):
        read_table(path)


def test_read_table_rejects_unknown_format(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{}")
    with pytest.raises(InputFileError, match="unsupported file type"):
        read_table(path)


def test_write_table_is_atomic(tmp_path, monkeypatch, flat_leads):
    target = tmp_path / "out.csv"
    target.write_text("old\n")

    def explode(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", explode)
    with pytest.raises(InputFileError, match="No space left"):
        write_table(flat_leads, target)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_repeated_column_names_are_refused(tmp_path, suffix):
    path = tmp_path / f"dupes{suffix}"
    if suffix == ".csv":
        path.write_text("lead_id,age,age\nA1,30,31\n")
    else:
        from openpyxl import Workbook

        book = Workbook()
        book.active.append(["lead_id", "age", "age"])
        book.active.append(["A1", 30, 31])
        book.save(path)
    with pytest.raises(DataValidationError, match="duplicate column names: age"):
        read_table(path)


def test_utc_timestamp_reads_dates_as_utc_and_names_the_option_when_it_cannot():
    from leadscore.core.exceptions import ConfigError
    from leadscore.data.tables import utc_timestamp

    assert utc_timestamp("2025-06-01", "--since") == pd.Timestamp("2025-06-01", tz="UTC")
    assert utc_timestamp("2025-06-01T02:00+02:00", "--now") == pd.Timestamp("2025-06-01", tz="UTC")
    with pytest.raises(ConfigError, match=r"^--since 'someday': expected a date such as 2025-06-01$"):
        utc_timestamp("someday", "--since")
