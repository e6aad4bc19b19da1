"""The population fingerprint: same people, same key, whatever the file looks like."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from privsynth.data.fingerprint import fingerprint, keyed_fingerprint
from privsynth.data.table import read_table

DEMO = Path(__file__).resolve().parents[1] / "privsynth" / "demo" / "adult.csv.gz"


@pytest.fixture(scope="module")
def adult() -> pd.DataFrame:
    return read_table(DEMO).head(5000)


def _patients() -> pd.DataFrame:
    return pd.DataFrame({
        "age": [34, 71, None, 45],
        "weight": [70.5, 81.0, 66.25, None],
        "admitted": pd.to_datetime(["2020-01-03", "2021-11-30", None, "2019-07-14 10:30"],
                                   format="ISO8601"),
        "ward": ["A", " B ", None, "C"],
        "smoker": [True, False, True, False],
    })


def test_row_order_column_order_and_name_do_not_matter(adult, tmp_path):
    base = fingerprint(adult)
    shuffled = adult.sample(frac=1.0, random_state=3).reset_index(drop=True)
    assert fingerprint(shuffled) == base
    assert fingerprint(adult[list(reversed(adult.columns))]) == base
    renamed = tmp_path / "completely-different-name.csv"
    adult.to_csv(renamed, index=False)
    assert fingerprint(read_table(renamed)) == base


def test_csv_parquet_round_trips(adult, tmp_path):
    base = fingerprint(adult)
    adult.to_parquet(tmp_path / "a.parquet")
    assert fingerprint(read_table(tmp_path / "a.parquet")) == base
    adult.sample(frac=1.0, random_state=9).to_csv(tmp_path / "b.csv.gz", index=False)
    from_csv = read_table(tmp_path / "b.csv.gz")
    from_csv.to_parquet(tmp_path / "c.parquet")
    assert fingerprint(read_table(tmp_path / "c.parquet")) == base


def test_mixed_kinds_round_trip(tmp_path):
    frame = _patients()
    base = fingerprint(frame)
    frame.to_csv(tmp_path / "p.csv", index=False)
    assert fingerprint(read_table(tmp_path / "p.csv")) == base
    frame.to_parquet(tmp_path / "p.parquet")
    assert fingerprint(read_table(tmp_path / "p.parquet")) == base


def test_canonical_values():
    a = pd.DataFrame({"n": [3, 4, None], "s": [" x", "y", ""], "d": ["2020-01-01", None, None]})
    b = pd.DataFrame({"n": ["3.0", 4.0, np.nan], "s": ["x", "y ", None],
                      "d": pd.to_datetime(["2020-01-01", None, None])})
    c = pd.DataFrame({"n": pd.array([3, 4, None], dtype="Int64"), "s": ["x", "y", np.nan],
                      "d": ["2020-01-01T00:00:00", None, ""]})
    assert fingerprint(a) == fingerprint(b) == fingerprint(c)


def test_any_change_changes_it(adult):
    base = fingerprint(adult)
    edited = adult.copy()
    edited.iloc[17, 3] = "Doctorate" if edited.iloc[17, 3] != "Doctorate" else "HS-grad"
    assert fingerprint(edited) != base
    number = adult.copy()
    number.loc[number.index[5], "age"] += 1
    assert fingerprint(number) != base
    assert fingerprint(adult.iloc[1:]) != base  # a row fewer
    assert fingerprint(pd.concat([adult, adult.iloc[:1]])) != base  # a duplicated row
    assert fingerprint(adult.rename(columns={"age": "years"})) != base
    # Swapping two values within a column keeps the column multiset but breaks the rows.
    swapped = adult.copy()
    i, j = swapped.index[0], swapped.index[1]
    if swapped.at[i, "age"] == swapped.at[j, "age"]:
        j = swapped.index[swapped["age"] != swapped.at[i, "age"]][0]
    swapped.loc[[i, j], "age"] = swapped.loc[[j, i], "age"].to_numpy()
    assert fingerprint(swapped) != base


def test_keyed_fingerprint():
    fp = fingerprint(_patients())
    k1, k2 = b"\x01" * 32, b"\x02" * 32
    assert keyed_fingerprint(fp, k1) == keyed_fingerprint(fp, k1)
    assert keyed_fingerprint(fp, k1) != keyed_fingerprint(fp, k2)
    assert fp not in keyed_fingerprint(fp, k1)
    with pytest.raises(ValueError):
        keyed_fingerprint(fp, b"")


def test_fast_on_the_whole_demo_table():
    frame = read_table(DEMO)
    start = time.perf_counter()
    fingerprint(frame)
    assert time.perf_counter() - start < 5.0  # ~0.25 s measured on 2 cores for 48,842 rows
