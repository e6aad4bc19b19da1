"""End to end: a real table in, a DP release bundle (or a refusal) out."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import privsynth.pipeline as pipeline
from privsynth.cli import app
from privsynth.errors import BudgetExceededError, DataError, PrivacyError
from privsynth.generators.base import Generator
from privsynth.policy.loader import load_policy, parse_policy
from privsynth.privacy.ledger import Ledger
from privsynth.release.manifest import recompute_epsilon
from privsynth.release.verify import verify_bundle

ADULT_COLUMNS = ["age", "workclass", "education", "occupation", "marital_status", "relationship",
                 "sex", "hours_per_week", "capital_gain",
                 "income"]
CANARY = "Zyxwvut-canary-Qq"


def small_policy(adult_policy_path: Path, **privacy) -> str:
    """The demo policy cut down to a few columns and a short training run (fast tests)."""
    policy = load_policy(adult_policy_path).model_dump(mode="json")
    policy["columns"] = {k: v for k, v in policy["columns"].items() if k in ADULT_COLUMNS}
    policy["columns"]["workclass"]["unknown"] = "missing"
    policy["generator"].update(epochs=5, batch_size=512)
    policy["privacy"].update(privacy)
    policy["audit"].update(quasi_identifiers=["age", "sex", "education"], secrets=["income"],
                           linkability_aux=None, attacks=["exact_copy", "dcr", "mia", "unique_qi"])
    import yaml

    return yaml.safe_dump(policy, sort_keys=False)


@pytest.fixture()
def table(adult) -> pd.DataFrame:
    sample = adult[ADULT_COLUMNS].sample(4000, random_state=3).reset_index(drop=True)
    sample.loc[0, "workclass"] = CANARY  # a value outside the declared domain: becomes missing
    return sample


@pytest.fixture()
def policy(adult_policy_path):
    return parse_policy(small_policy(adult_policy_path), "small.yaml")


def test_release_end_to_end(table, policy, tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    release = pipeline.synthesize(table, policy, ledger=ledger)
    assert release.passed, release.decision.reasons
    out = release.write(tmp_path / "bundle", audits_dir=tmp_path / "audits")
    public = out / "public"
    assert sorted(p.name for p in public.iterdir()) == [
        "manifest.json", "synthetic.csv", "synthetic.parquet"]
    synthetic = pd.read_csv(public / "synthetic.csv")
    assert list(synthetic.columns) == list(policy.columns) and len(synthetic) == 2000
    manifest = json.loads((public / "manifest.json").read_text())
    privacy = manifest["privacy"]
    assert privacy["epsilon"] <= policy.privacy.epsilon + 1e-12
    assert recompute_epsilon(manifest) == pytest.approx(privacy["epsilon"], rel=1e-9)
    assert privacy["seed_mode"] == "dev-seed"
    assert {"encoding", "training"} <= set(privacy["stages"])
    assert verify_bundle(out) == []
    with Ledger.open(ledger) as book:
        assert book.spent(book.entries()[0]["fingerprint"]) == pytest.approx(policy.privacy.epsilon)
    for path in [*out.rglob("*"), *(tmp_path / "audits").rglob("*")]:
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path


def test_dev_seed_reproduces_the_release_byte_for_byte(table, policy, tmp_path):
    a = pipeline.synthesize(table, policy, ledger=tmp_path / "a.sqlite").synthetic
    b = pipeline.synthesize(table, policy, ledger=tmp_path / "b.sqlite").synthetic
    pd.testing.assert_frame_equal(a, b)


class CopyGenerator(Generator):
    """A planted leak: 'samples' the training rows themselves."""

    name = "copy"

    def fit(self, codes, widths, config, *, generator, device, progress=None):
        self.codes_ = codes.copy()
        self.charges_ = []
        return self

    def sample(self, n, *, generator):
        return self.codes_[:n]


def test_a_copying_synthesizer_is_blocked_and_writes_no_data(table, policy, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "make_generator", lambda config: CopyGenerator())
    release = pipeline.synthesize(table, policy, ledger=tmp_path / "l.sqlite")
    assert not release.passed
    assert any("exact_copy" in r or "dcr" in r for r in release.decision.reasons)
    assert not release.decision.dp_claim  # it recorded no DP-SGD charge
    out = release.write(tmp_path / "bundle", audits_dir=None)
    assert sorted(p.name for p in (out / "public").iterdir()) == ["manifest.json"]
    assert (out / "internal" / "report.html").exists()


def test_over_budget_release_is_refused_before_training(table, policy, tmp_path, monkeypatch):
    ledger = tmp_path / "l.sqlite"
    tight = parse_policy(small_policy_text(policy, total_epsilon=1.5))
    pipeline.synthesize(table, tight, ledger=ledger)
    trained = []
    monkeypatch.setattr(pipeline, "make_generator",
                        lambda config: trained.append(1) or CopyGenerator())
    with pytest.raises(BudgetExceededError) as info:
        pipeline.synthesize(table.sample(frac=1.0, random_state=9), tight, ledger=ledger)
    assert "Requested" in str(info.value) and "Remaining" in str(info.value)
    assert trained == []


def small_policy_text(policy, **budget) -> str:
    import yaml

    data = policy.model_dump(mode="json")
    data["budget"].update(budget)
    return yaml.safe_dump(data, sort_keys=False)


def test_delta_must_be_below_one_over_ten_n(table, adult_policy_path, tmp_path):
    loose = parse_policy(small_policy(adult_policy_path, delta=1e-4))
    with pytest.raises(PrivacyError, match="delta"):
        pipeline.synthesize(table, loose, ledger=tmp_path / "l.sqlite")
    with Ledger.open(tmp_path / "l.sqlite") as book:
        assert book.entries() == []


def test_bad_input_leaves_no_bundle_and_no_charge(table, policy, tmp_path):
    bad = table.copy()
    bad["age"] = bad["age"].astype(object)
    bad.loc[5, "age"] = CANARY
    with pytest.raises(DataError) as info:
        pipeline.synthesize(bad, policy, ledger=tmp_path / "l.sqlite")
    assert "'age'" in str(info.value) and CANARY not in str(info.value)
    with Ledger.open(tmp_path / "l.sqlite") as book:
        assert book.entries() == []


def test_cli_exit_codes(table, adult_policy_path, tmp_path, monkeypatch):
    data = tmp_path / "t.csv"
    table.to_csv(data, index=False)
    policy_file = tmp_path / "p.yaml"
    policy_file.write_text(small_policy(adult_policy_path))
    runner = CliRunner()
    args = ["release", str(data), "--policy", str(policy_file), "--ledger",
            str(tmp_path / "l.sqlite"), "--audits", str(tmp_path / "audits")]
    ok = runner.invoke(app, [*args, "--out", str(tmp_path / "r1")])
    assert ok.exit_code == 0, ok.output
    again = runner.invoke(app, [*args, "--out", str(tmp_path / "r1")])
    assert again.exit_code == 1 and "already exists" in again.output
    broken = tmp_path / "broken.yaml"
    broken.write_text(policy_file.read_text().replace("epsilon: 1.0", "epsilon: -1"))
    bad = runner.invoke(app, ["policy", "check", str(broken)])
    assert bad.exit_code == 1
    monkeypatch.setattr(pipeline, "make_generator", lambda config: CopyGenerator())
    blocked = runner.invoke(app, [*args, "--out", str(tmp_path / "r2")])
    assert blocked.exit_code == 2, blocked.output
    assert not (tmp_path / "r2" / "public" / "synthetic.csv").exists()


def test_dp_claim_needs_a_noisy_dp_sgd_charge_within_the_allotment(policy):
    from privsynth.privacy.events import Charge, PrivacySpend

    def spend(*charges):
        book = PrivacySpend()
        for charge in charges:
            book.add(charge)
        return book

    dp = Charge("training", "dp_sgd", 0.9, 1e-6, None, {"sigma": 1.2, "q": 0.1, "steps": 10})
    noiseless = Charge("training", "dp_sgd", 0.9, 1e-6, None, {"sigma": 0.0})
    too_much = Charge("training", "dp_sgd", 5.0, 1e-6, None, {"sigma": 0.3})
    assert pipeline.dp_claim(spend(dp), policy)
    assert not pipeline.dp_claim(spend(), policy)
    assert not pipeline.dp_claim(spend(noiseless), policy)
    assert not pipeline.dp_claim(spend(too_much), policy)
