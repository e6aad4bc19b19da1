"""Pre-flight: what the policy and a declared public row count already say, before any ε.

Issue 10 ("Passes pure noise", "Budget spent to learn what could be known first"): the draft of
`policy init` left every bound and domain to DP; on the shared tables each DP mechanism got
ε ≈ 0.003-0.01, every category came out ``__other__``, numbers near ±1e13, and `policy check`
said "ok". Each test here fails on the code before pre-flight (no module, no ``--rows``, exit 0).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from privsynth.cli import app
from privsynth.policy.loader import load_policy, parse_policy
from privsynth.preflight import Finding, preflight, refusals

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
DEMO = ROOT / "policies" / "adult-demo.yaml"

#: the shared tables of the issue, with their published sizes (../shared/datasets/README.md):
#: public figures, the way a user would declare them
SHARED_TABLES = {"lending_club": 9_857, "health_insurance": 8_802, "german_credit": 1_000}

BOUNDS_FIX = "declare public bounds for"
DOMAIN_FIX = "declare the public category list for"


def _draft(table: str) -> str:
    from privsynth.data.table import read_table
    from privsynth.policy.draft import draft_policy

    path = SHARED / f"{table}.csv.gz"
    if not path.exists():
        pytest.skip(f"{path} not available")
    return draft_policy(read_table(path), source_name=path.name)


@pytest.mark.parametrize("table", sorted(SHARED_TABLES))
def test_draft_of_a_shared_table_is_refused_with_the_fix(table, tmp_path):
    """Old: `policy check` on the unchanged draft said "ok" and the release spent ε on noise."""
    text = _draft(table)
    rows = SHARED_TABLES[table]
    findings = preflight(parse_policy(text), rows)
    refused = refusals(findings)
    assert refused, [str(f) for f in findings]
    # every refusal of a DP bound names its column and the free fix
    bounds = [f for f in refused if f.code == "dp_bounds_noise"]
    assert bounds, [str(f) for f in refused]
    for f in bounds:
        assert f.column and f"'{f.column}'" in f.message and BOUNDS_FIX in f.message
        assert "±1e15" in f.message  # the cause: noise mass drives the bounds to the grid's end
    for f in findings:
        if f.code == "category_threshold":
            assert DOMAIN_FIX in f.message and f"'{f.column}'" in f.message
    draft = tmp_path / "draft.yaml"
    draft.write_text(text)
    result = CliRunner().invoke(app, ["policy", "check", str(draft), "--rows", str(rows)])
    assert result.exit_code == 1, result.output
    assert "ok" in result.output and "REFUSE" in result.output
    assert BOUNDS_FIX in " ".join(result.output.split())
    assert "[low, high]" in result.output  # the fix survives the console's markup


@pytest.mark.parametrize("table", ["lending_club", "german_credit"])
def test_categories_of_the_draft_all_become_other(table):
    """The DP threshold exceeds the training rows: pre-flight says every category is lost."""
    findings = preflight(parse_policy(_draft(table)), SHARED_TABLES[table])
    lost = [f for f in findings if f.code == "category_threshold"]
    assert lost and all(f.severity == "refuse" for f in lost)
    assert all("every category becomes __other__" in f.message for f in lost)


def test_health_insurance_draft_warns_about_categories():
    table = "health_insurance"
    findings = preflight(parse_policy(_draft(table)), SHARED_TABLES[table])
    cats = {f.column: f for f in findings if f.code == "category_threshold"}
    assert set(cats) == {"gender", "region", "ethnicity", "education"}
    assert all(f.severity == "warn" and "at most 2 categories" in f.message for f in cats.values())


def test_demo_policy_passes_preflight_at_its_size():
    policy = load_policy(DEMO)
    findings = preflight(policy, 48_842)
    assert not refusals(findings), [str(f) for f in findings]
    assert not findings, [str(f) for f in findings]
    result = CliRunner().invoke(app, ["policy", "check", str(DEMO), "--rows", "48842"])
    assert result.exit_code == 0, result.output
    assert "no problem found" in result.output


SMALL = """
version: 1
name: small
dataset: {{id: small, rows: {rows}}}
privacy: {{epsilon: 1.0, delta: 1.0e-9}}
generator: {{batch_size: 256, epochs: 3}}
columns:
  age: {{kind: integer, bounds: [18, 99], binning: uniform}}
  amount: {{kind: numeric, bounds: [0, 20000], binning: uniform}}
  sex: {{kind: categorical, domain: [f, m]}}
  purpose: {{kind: categorical, domain: [car, house, other, education]}}
audit:
  attacks: [exact_copy, dcr, mia]
  thresholds: {{exact_copy_rate: {copy}}}
"""


def test_copy_threshold_that_cannot_be_met_at_the_size_is_refused(tmp_path):
    """German credit's case (500 training rows scored, 0 copies: upper bound 0.0076 > 0.005);
    here with a limit of 1e-5, which no audit sample of this table can resolve (3.84/n)."""
    path = tmp_path / "small.yaml"
    path.write_text(SMALL.format(rows=1000, copy=0.00001))
    policy = load_policy(path)
    assert policy.dataset.rows == 1000
    copy = [f for f in preflight(policy, policy.dataset.rows)
            if f.code == "copy_threshold_unreachable"]
    assert len(copy) == 1 and copy[0].severity == "refuse"
    assert "exact_copy_rate" in copy[0].message and "raise audit.thresholds" in copy[0].message
    result = CliRunner().invoke(app, ["policy", "check", str(path)])  # rows from the policy
    assert result.exit_code == 1, result.output
    assert "copy_threshold_unreachable" in result.output
    # at a size where 0 copies clear the limit (3.84/n < 1e-5): no such finding
    path.write_text(SMALL.format(rows=1000, copy=0.005))
    assert not [f for f in preflight(load_policy(path), 20_000)
                if f.code == "copy_threshold_unreachable"]
    # a raised threshold fixes it, as the message says
    path.write_text(SMALL.format(rows=1000, copy=0.01))
    assert not [f for f in preflight(load_policy(path), 1000)
                if f.code == "copy_threshold_unreachable"]
    # --rows overrides the policy's declared size
    path.write_text(SMALL.format(rows=1000, copy=0.00001))
    assert CliRunner().invoke(app, ["policy", "check", str(path)]).exit_code == 1
    path.write_text(SMALL.format(rows=1000, copy=0.005))
    assert CliRunner().invoke(app, ["policy", "check", str(path), "--rows", "20000"]).exit_code == 0


def test_preflight_never_opens_the_data(monkeypatch, tmp_path):
    import pandas as pd

    import privsynth.data.table as table

    def boom(*args, **kwargs):
        raise AssertionError("pre-flight read data")

    for name in ("read_csv", "read_parquet", "read_table", "read_excel", "read_json"):
        monkeypatch.setattr(pd, name, boom)
    monkeypatch.setattr(table, "read_table", boom)
    for table_name, rows in SHARED_TABLES.items():
        path = SHARED / f"{table_name}.csv.gz"
        if not path.exists():
            continue
        # a policy that points at nothing: only its text and the declared rows are used
        policy = parse_policy(SMALL.format(rows=rows, copy=0.005))
        assert isinstance(preflight(policy, rows), list)
    path = tmp_path / "p.yaml"
    path.write_text(SMALL.format(rows=5000, copy=0.005))
    result = CliRunner().invoke(app, ["policy", "check", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert preflight(load_policy(DEMO), 48_842) == []


def test_without_rows_preflight_says_what_it_skipped():
    findings = preflight(load_policy(DEMO), None)
    assert [f.code for f in findings] == ["rows_not_declared"]
    assert "dataset.rows" in findings[0].message and "--rows" in findings[0].message


def test_rows_must_be_positive():
    from privsynth.errors import PolicyError

    with pytest.raises(PolicyError):
        parse_policy(SMALL.format(rows=0, copy=0.005))


def test_enough_epsilon_makes_dp_bounds_and_domains_usable():
    """The rules are quantitative, not a blanket refusal of `dp`: at ε = 10 with half of it for
    the encoding, two DP mechanisms on 50,000 rows are fine."""
    text = """
version: 1
name: rich
dataset: {id: rich}
privacy: {epsilon: 10.0, delta: 1.0e-9, encoding_share: 0.5}
columns:
  amount: {kind: numeric, bounds: dp, binning: uniform}
  city: {kind: categorical, domain: dp}
  sex: {kind: categorical, domain: [f, m]}
  age: {kind: integer, bounds: [0, 120]}
audit: {attacks: [exact_copy, dcr, mia]}
"""
    findings = preflight(parse_policy(text), 50_000)
    codes = {f.code for f in findings}
    assert "dp_bounds_noise" not in codes and not refusals(findings), [str(f) for f in findings]


def test_too_few_columns_for_singling_out_and_too_few_rows_for_linkability():
    text = """
version: 1
name: narrow
dataset: {id: narrow}
privacy: {epsilon: 1.0, delta: 1.0e-9}
columns:
  a: {kind: boolean}
  b: {kind: categorical, domain: [x, y, z]}
audit:
  attacks: [singling_out, linkability]
  linkability_aux: [[a], [b]]
  anonymeter_attacks: 2500
"""
    findings = preflight(parse_policy(text), 3000)
    codes = {(f.severity, f.code) for f in findings}
    assert ("refuse", "singling_out_queries") in codes
    assert ("refuse", "anonymeter_rows") in codes


def test_finding_text():
    f = Finding("refuse", "x", "column 'a': fix it", "a")
    assert str(f) == "REFUSE [x] column 'a': fix it"


BENCH = ROOT / "benchmarks" / "policies"


def _at(policy, epsilon: float, **utility):
    audit = policy.audit.model_copy(update={"utility": policy.audit.utility.model_copy(
        update=utility)}) if utility else policy.audit
    return policy.model_copy(update={"audit": audit, "privacy": policy.privacy.model_copy(
        update={"epsilon": epsilon})})


def test_a_target_dp_sgd_cannot_learn_at_the_size_is_refused_with_the_epsilon_that_can():
    """Issue 10 ("budget spent to learn what could be known first"): German credit at ε = 1
    (500 training rows) passed pre-flight, then the utility floor blocked most honest releases
    on TSTR (honest models met it 1 time in 6; at ε = 5, 6 in 6). Now refused before any ε,
    naming the ε that brings the noise ratio under ``REFUSE_TARGET_RATIO``."""
    german = load_policy(BENCH / "german_credit.yaml")
    refused = [f for f in refusals(preflight(_at(german, 1.0), 1_000))
               if f.code == "target_unlearnable"]
    assert len(refused) == 1, refused
    msg = refused[0].message
    assert "'credit'" in msg and "roc_auc" in msg and "privacy.epsilon to about" in msg
    suggested = float(msg.split("privacy.epsilon to about ")[1].split(",")[0])
    assert 4.0 < suggested < 8.0
    # the suggested ε passes this rule; the floor switched off lifts it too
    assert not [f for f in preflight(_at(german, suggested), 1_000)
                if f.code == "target_unlearnable"]
    assert not [f for f in preflight(_at(german, 1.0, tstr=False), 1_000)
                if f.code == "target_unlearnable"]


def test_accuracy_targets_and_large_tables_are_not_refused_for_their_target():
    """A multi-class target is judged by accuracy against the majority share less a slack, which
    a model predicting the majority class meets: nothing to refuse. Adult (r ≈ 0.003) learns."""
    pbc = load_policy(BENCH / "pbc_visits.yaml")  # status: three classes
    assert not [f for f in preflight(pbc, pbc.dataset.rows) if f.code == "target_unlearnable"]
    adult = load_policy(BENCH / "adult.yaml")
    assert not [f for f in preflight(adult, adult.dataset.rows)
                if f.code == "target_unlearnable"]


def test_the_suggested_epsilon_survives_a_failing_calibration():
    """The ε in the refusal is an estimate for the message: a σ calibration that fails on the
    way leaves the 1/ε estimate, never an error instead of the refusal."""
    from privsynth.preflight import REFUSE_TARGET_RATIO, _epsilon_for

    def broken(_epsilon: float) -> float:
        raise ValueError("no σ")

    assert _epsilon_for(1.0, 2 * REFUSE_TARGET_RATIO, broken) == pytest.approx(2.1)
    # a ratio that falls exactly as 1/ε is met at the first step
    assert _epsilon_for(1.0, 0.4, lambda e: 0.4 / e) == pytest.approx(2.1)
