"""`privsynth audit`: any generator's output, the same attacks, gate and report, no ε spent."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from privsynth.audit.external import audit_tables
from privsynth.cli import app
from privsynth.policy.loader import load_policy, parse_policy

COLUMNS = ["age", "workclass", "education", "marital_status", "occupation", "relationship",
           "race", "sex", "capital_gain", "hours_per_week", "native_country", "income"]


def policy_text(adult_policy_path, *, require_dp_claim: bool) -> str:
    data = load_policy(adult_policy_path).model_dump(mode="json")
    data["columns"] = {k: v for k, v in data["columns"].items() if k in COLUMNS}
    data.pop("relations", None)  # the demo's relation names columns cut here
    data["audit"]["protected_attributes"] = [
        c for c in data["audit"].get("protected_attributes", []) if c in data["columns"]]
    data["audit"].update(quasi_identifiers=["age", "sex", "education"], secrets=["income"],
                         linkability_aux=None, attacks=["exact_copy", "dcr", "mia"],
                         require_dp_claim=require_dp_claim)
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture(scope="module")
def thirds(adult):
    rows = adult[COLUMNS].sample(36000, random_state=11).reset_index(drop=True)
    rows["workclass"] = rows["workclass"].fillna("Private")  # keep the table simple to read
    return rows.iloc[:12000], rows.iloc[12000:24000], rows.iloc[24000:]


def test_copies_are_blocked_and_honest_output_needs_a_dp_claim(thirds, adult_policy_path):
    train, holdout, fresh = thirds
    strict = parse_policy(policy_text(adult_policy_path, require_dp_claim=True))
    waived = parse_policy(policy_text(adult_policy_path, require_dp_claim=False))
    copied = audit_tables(train, holdout, train.copy(), waived)
    assert not copied.decision.passed
    honest_no_claim = audit_tables(train, holdout, fresh, strict)
    assert not honest_no_claim.decision.passed
    assert any("DP" in r or "dp" in r for r in honest_no_claim.decision.reasons)
    honest_waived = audit_tables(train, holdout, fresh, waived)
    assert honest_waived.decision.passed, honest_waived.decision.reasons


def test_cli_writes_the_same_report_as_a_release(thirds, adult_policy_path, tmp_path):
    paths = {}
    for name, frame in zip(("train", "holdout", "synthetic"), thirds, strict=True):
        paths[name] = tmp_path / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    policy_file = tmp_path / "p.yaml"
    policy_file.write_text(policy_text(adult_policy_path, require_dp_claim=False))
    out = tmp_path / "report"
    result = CliRunner().invoke(app, [
        "audit", "--real", str(paths["train"]), "--holdout", str(paths["holdout"]),
        "--synthetic", str(paths["synthetic"]), "--policy", str(policy_file), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["decision"]["passed"] is True
    assert {a["name"] for a in report["attacks"]} >= {"exact_copy_rate", "dcr_share"}
    assert (out / "report.html").read_text().count("INTERNAL") >= 1


def test_facts_read_from_real_rows_stay_out_of_the_report(thirds, adult_policy_path):
    train, holdout, fresh = thirds
    data = yaml.safe_load(policy_text(adult_policy_path, require_dp_claim=False))
    data["columns"]["occupation"]["domain"] = "dp"
    data["columns"]["age"]["bounds"] = "dp"
    planted = train.copy()
    planted.loc[0, "occupation"] = "Qwerty-canary-occupation"
    planted.loc[1, "age"] = 87654
    result = audit_tables(planted, holdout, fresh, parse_policy(yaml.safe_dump(data)))
    text = json.dumps(result.report)
    assert "Qwerty-canary-occupation" not in text and "87654" not in text
    assert result.report["columns"]["schema"]["occupation"]["domain_size"] > 10
