"""Reading tables and applying column rules: errors name columns and counts, never values."""

from __future__ import annotations

import pandas as pd
import pytest

from privsynth.data.table import prepare_table, read_table, to_model_space
from privsynth.errors import DataError
from privsynth.policy.loader import parse_policy

SECRET = "ZQXJ-canary-7731"

POLICY = """
name: t
dataset: {id: t}
privacy: {epsilon: 1.0, delta: 1.0e-9}
budget: {}
columns:
  amount: {kind: numeric, bounds: [0, 100]}
  colour: {kind: categorical, domain: [red, blue]}
  flag:   {kind: boolean}
  day:    {kind: datetime, bounds: ["2020-01-01", "2021-01-01"]}
"""


def frame(**overrides) -> pd.DataFrame:
    data = {"amount": [1.5, 2, None], "colour": ["red", None, "blue"],
            "flag": ["yes", "no", None], "day": ["2020-02-01", None, "2020-12-31"]}
    data.update(overrides)
    return pd.DataFrame(data)


def test_prepares_every_kind_with_missing_values():
    prepared = prepare_table(frame(), parse_policy(POLICY)).frame
    assert prepared["amount"].tolist()[:2] == [1.5, 2.0]
    assert prepared["colour"].tolist() == ["red", None, "blue"]
    assert prepared["flag"].tolist() == ["true", "false", None]
    assert prepared["day"].iloc[0] == pytest.approx(18293.0)
    assert pd.isna(prepared["day"].iloc[1])


@pytest.mark.parametrize(
    ("overrides", "column", "fix"),
    [
        ({"amount": [1, SECRET, 3]}, "amount", "not a number"),
        ({"colour": ["red", SECRET, "blue"]}, "colour", "outside the declared domain"),
        ({"flag": ["yes", SECRET, "no"]}, "flag", "not true/false"),
        ({"day": ["2020-01-05", SECRET, None]}, "day", "not a date"),
        ({"amount": [None, None, None]}, "amount", "every value is missing"),
    ],
)
def test_bad_values_name_the_column_never_the_value(overrides, column, fix):
    with pytest.raises(DataError) as info:
        prepare_table(frame(**overrides), parse_policy(POLICY))
    message = str(info.value)
    assert f"'{column}'" in message and fix in message
    assert SECRET not in message


def test_policy_column_missing_from_table_and_unruled_columns_are_both_reported():
    data = frame().drop(columns=["flag"]).assign(extra=[1, 2, 3])
    with pytest.raises(DataError) as info:
        prepare_table(data, parse_policy(POLICY))
    assert "['flag']" in str(info.value) and "['extra']" in str(info.value)


def test_empty_and_headerless_files_are_refused(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        read_table(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("a,b\n")
    with pytest.raises(DataError, match="no rows"):
        read_table(header_only)
    with pytest.raises(DataError, match="no such file"):
        read_table(tmp_path / "missing.csv")


def test_csv_and_parquet_read_the_same(tmp_path):
    data = frame()
    data.to_csv(tmp_path / "t.csv", index=False)
    data.to_parquet(tmp_path / "t.parquet", index=False)
    policy = parse_policy(POLICY)
    a = prepare_table(read_table(tmp_path / "t.csv"), policy).frame
    b = prepare_table(read_table(tmp_path / "t.parquet"), policy).frame
    pd.testing.assert_frame_equal(a, b)


def test_model_space_round_trip_of_decoded_types():
    from privsynth.data.schema import ColumnSchema, TableSchema

    schema = TableSchema((ColumnSchema("n", "integer", (0, 9)), ColumnSchema("b", "boolean"),
                          ColumnSchema("d", "datetime", (0, 1000))))
    decoded = pd.DataFrame({"n": pd.array([1, None], dtype="Int64"), "b": [True, None],
                            "d": [pd.Timestamp("1970-01-11"), pd.NaT]})
    model = to_model_space(decoded, schema)
    assert model["n"].iloc[0] == 1.0 and pd.isna(model["n"].iloc[1])
    assert model["b"].tolist() == ["true", None]
    assert model["d"].iloc[0] == 10.0
