"""`privsynth policy init`: a draft that loads, flags identifiers and reads no values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from privsynth.data.table import read_table
from privsynth.policy.draft import draft_policy, infer_kind
from privsynth.policy.loader import parse_policy

ROOT = Path(__file__).resolve().parents[1]


def test_draft_of_the_patients_fixture_loads_and_drops_identifiers():
    frame = read_table(ROOT / "tests" / "fixtures" / "patients.csv")
    text = draft_policy(frame, source_name="patients.csv")
    policy = parse_policy(text, source="draft.yaml")
    cols = policy.columns
    for ident in ("mrn", "patient_name", "email", "phone", "ssn", "card_number", "notes",
                  "zip", "birth_date", "ip_address"):
        assert cols[ident].rule == "drop", ident
    assert "SUSPECTED IDENTIFIER: an e-mail address" in text
    assert "rule: generalize with to: zip3" in text
    assert cols["age"].kind == "integer" and cols["age"].bounds == "dp"
    assert cols["total_charges"].kind == "numeric" and cols["total_charges"].bounds == "dp"
    assert cols["sex"].kind == "categorical" and cols["sex"].domain == "dp"
    assert cols["readmitted"].kind == "boolean"
    assert policy.dataset.id == "patients"


def test_draft_never_contains_a_cell_value():
    frame = read_table(ROOT / "tests" / "fixtures" / "patients.csv")
    text = draft_policy(frame, source_name="patients.csv")
    body = "\n".join(ln.split("#")[0] for ln in text.splitlines())
    words = set(body.replace("{", " ").replace("}", " ").replace(",", " ").split())
    for column in frame.columns:
        for value in frame[column].dropna().astype(str).unique():
            if len(value) >= 3 and value not in {"true", "false"}:
                assert value not in words, column
    for value in ("respiratory", "Garcia", "example.com", "617"):
        assert value not in text


def test_draft_of_adult_declares_nothing_from_data():
    frame = read_table(ROOT / "privsynth" / "demo" / "adult.csv.gz")
    policy = parse_policy(draft_policy(frame, source_name="adult.csv.gz"))
    for rule in policy.columns.values():
        assert rule.rule == "keep"
        assert rule.bounds in (None, "dp") and rule.domain in (None, "dp")


def test_awkward_names_and_kinds():
    frame = pd.DataFrame({
        "yes": [1.5, 2.5, None], "Weird name: #1": ["a", "b", "a"], "flag": ["Y", "n", None],
        "when": ["2020-01-01", "2021-06-30", None], "n": [0, 1, 1], "x": [1.0, 2.0, np.nan],
    })
    text = draft_policy(frame, source_name="my data (v2).CSV")
    policy = parse_policy(text)
    assert set(policy.columns) == set(frame.columns)
    assert policy.columns["when"].kind == "datetime"
    assert policy.columns["flag"].kind == "boolean"
    assert policy.columns["n"].kind == "boolean"
    assert policy.columns["x"].kind == "integer"
    assert policy.columns["yes"].kind == "numeric"
    assert policy.dataset.id == "my-data-v2"


def test_infer_kind_on_dtypes():
    assert infer_kind(pd.Series(pd.to_datetime(["2020-01-01"]))) == "datetime"
    assert infer_kind(pd.Series([True, False])) == "boolean"
    assert infer_kind(pd.Series(["3", "4.5"])) == "numeric"
    assert infer_kind(pd.Series(["a", "b"])) == "categorical"


def test_policy_init_and_schema_commands(tmp_path):
    from typer.testing import CliRunner

    from privsynth.cli import app

    runner = CliRunner()
    out = tmp_path / "draft.yaml"
    made = runner.invoke(app, ["policy", "init", str(ROOT / "tests" / "fixtures" / "patients.csv"),
                               "--out", str(out)])
    assert made.exit_code == 0, made.output
    assert parse_policy(out.read_text()).columns["email"].rule == "drop"
    again = runner.invoke(app, ["policy", "init", str(ROOT / "tests" / "fixtures" /
                                                      "patients.csv"), "--out", str(out)])
    assert again.exit_code == 1  # never overwrites a reviewed draft without --force
    checked = runner.invoke(app, ["policy", "check", str(out)])
    assert checked.exit_code == 0, checked.output
    schema = runner.invoke(app, ["policy", "schema"])
    assert schema.exit_code == 0 and '"additionalProperties": false' in schema.output


def test_header_says_what_was_read_and_that_it_is_not_a_dp_output():
    """Old header: 'Nothing below was read from cell values' although every cell was read."""
    frame = read_table(ROOT / "tests" / "fixtures" / "patients.csv")
    text = draft_policy(frame, source_name="patients.csv")
    header = " ".join(ln for ln in text.splitlines() if ln.startswith("#"))
    assert "Nothing below was read" not in text
    assert "every cell" in header and "not a DP output" in header
    assert "not differentially private" in header and "no cell value and no count" in header


def test_draft_carries_no_row_count():
    """Old drafts chose delta from the number of rows: a count in the file."""
    small = pd.DataFrame({"a": [1.5, 2.5] * 5, "b": ["x", "y"] * 5})
    large = pd.DataFrame({"a": [1.5, 2.5] * 50_000, "b": ["x", "y"] * 50_000})
    assert draft_policy(small, source_name="t.csv") == draft_policy(large, source_name="t.csv")
