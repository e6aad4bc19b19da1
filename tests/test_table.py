"""Reading tables and applying column rules: a bad cell becomes missing, never an error; errors
name columns (public), never a value or a count."""

from __future__ import annotations

from pathlib import Path

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
    ("overrides", "column"),
    [
        ({"amount": [1, SECRET, 3]}, "amount"),
        ({"colour": ["red", SECRET, "blue"]}, "colour"),
        ({"flag": ["yes", SECRET, "no"]}, "flag"),
        ({"day": ["2020-01-05", SECRET, None]}, "day"),
    ],
)
def test_a_bad_cell_becomes_missing_without_an_error(overrides, column):
    """Old code raised 'column X: 1 value(s) are not ...' (a count) before any reservation."""
    prepared = prepare_table(frame(**overrides), parse_policy(POLICY)).frame
    assert pd.isna(prepared[column].iloc[1])
    assert not pd.isna(prepared[column].iloc[0])


def test_unknown_error_no_longer_raises_and_every_value_missing_is_fine():
    policy = parse_policy(POLICY)
    assert policy.columns["colour"].unknown == "error"  # still accepted, behaves like missing
    prepared = prepare_table(frame(amount=[None, None, None], colour=["x", "y", "z"]),
                             policy).frame
    assert prepared["amount"].isna().all() and prepared["colour"].isna().all()


def test_policy_column_missing_from_table_and_unruled_columns_are_both_reported():
    data = frame().drop(columns=["flag"]).assign(extra=[1, 2, 3])
    with pytest.raises(DataError) as info:
        prepare_table(data, parse_policy(POLICY))
    assert "['flag']" in str(info.value) and "['extra']" in str(info.value)


def test_empty_files_are_refused_header_only_files_are_not(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        read_table(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("a,b\n")
    assert list(read_table(header_only).columns) == ["a", "b"]  # no row count in any error
    assert len(read_table(header_only)) == 0
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


ADULTISH = """
name: t
dataset: {id: t, missing_values: ["", "?"]}
privacy: {epsilon: 1.0, delta: 1.0e-9}
budget: {}
columns:
  age: {kind: integer, bounds: [0, 100]}
  work: {kind: categorical, domain: [Private, "?"]}
  job: {kind: categorical, domain: [Sales, Tech]}
  code: {kind: categorical, domain: dp, missing_values: ["-1"]}
"""


def test_missing_markers_come_from_the_policy_and_a_domain_value_is_never_missing(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("age,work,job,code\n30, ?,?,-1\n?,Private,Sales,?\n40,?,Tech,\n")
    policy = parse_policy(ADULTISH)
    raw = read_table(path, policy)
    assert raw["work"].tolist() == ["?", "Private", "?"]  # '?' is in work's domain
    assert raw["job"].tolist() == [None, "Sales", "Tech"]
    assert raw["code"].tolist() == [None, "?", ""]  # the column's own markers: only "-1"
    prepared = prepare_table(raw, policy).frame
    assert prepared["work"].tolist() == ["?", "Private", "?"]
    assert prepared["job"].tolist() == [None, "Sales", "Tech"]
    assert pd.isna(prepared["age"].iloc[1]) and prepared["age"].iloc[2] == 40.0
    assert prepared["code"].tolist() == [None, "?", ""]
    # the same markers apply to a DataFrame handed straight to prepare_table
    direct = prepare_table(pd.DataFrame({"age": ["30", "?"], "work": ["?", "?"],
                                         "job": ["?", "Tech"], "code": [-1, 5]}), policy).frame
    assert direct["work"].tolist() == ["?", "?"] and direct["job"].tolist() == [None, "Tech"]
    assert direct["code"].tolist() == [None, "5"]


def test_csv_cells_are_text_only_policy_markers_are_missing(tmp_path):
    """pandas' default NA words (NA, null, NaN) are data, not markers, unless the policy says so."""
    path = tmp_path / "t.csv"
    path.write_text("a,b\nNA,null\n 7 ,\n")
    raw = read_table(path)
    assert raw["a"].tolist() == ["NA", "7"] and raw["b"].tolist() == ["null", None]


def test_shipped_adult_policies_declare_the_question_mark():
    from privsynth.policy.loader import load_policy

    root = Path(__file__).resolve().parents[1]
    for path in (root / "policies" / "adult-demo.yaml", root / "privsynth" / "demo" /
                 "adult-demo.yaml"):
        assert load_policy(path).dataset.missing_values == ["", "?"], path


def test_kinds_convert_each_cell_on_its_own():
    policy = parse_policy("""
name: t
dataset: {id: t}
privacy: {epsilon: 1.0, delta: 1.0e-9}
budget: {}
columns:
  n: {kind: numeric, bounds: [0, 10]}
  d: {kind: datetime, bounds: ["2000-01-01", "2030-01-01"]}
  b: {kind: boolean}
  c: {kind: categorical, domain: dp}
""")
    data = pd.DataFrame({
        "n": ["1.5", 2, "1e400", "nan"],
        "d": ["1970-01-02", "01/03/1970", 20200101, "1970-01-01T12:00:00+00:00"],
        "b": [True, "No", 1.0, "maybe"],
        "c": [3, 3.0, "3", " 3.0 "],
    })
    prepared = prepare_table(data, policy).frame
    assert prepared["n"].tolist()[:2] == [1.5, 2.0] and prepared["n"].iloc[2:].isna().all()
    assert prepared["d"].tolist()[:2] == [1.0, 2.0] and pd.isna(prepared["d"].iloc[2])
    assert prepared["d"].iloc[3] == 0.5  # a number is not a date; zones go to UTC
    assert prepared["b"].tolist() == ["true", "false", "true", None]
    assert prepared["c"].tolist() == ["3", "3", "3", "3"]
