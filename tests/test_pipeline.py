"""End to end: a real table in, a DP release bundle (or a refusal) out.

Each test of the guarantee issue names what it closes; they fail on the code before it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from ledger_helpers import registered_ledger
from typer.testing import CliRunner

import privsynth.generators.dp_sgd as dp_sgd
import privsynth.pipeline as pipeline
from privsynth.cli import app
from privsynth.errors import BudgetExceededError, PreflightRefused, PrivacyError, PrivsynthError
from privsynth.generators.base import Generator
from privsynth.policy.loader import load_policy, parse_policy
from privsynth.privacy.events import Charge, PrivacySpend
from privsynth.privacy.ledger import Ledger
from privsynth.release.verify import verify_bundle

ADULT_COLUMNS = ["age", "workclass", "education", "occupation", "marital_status", "relationship",
                 "sex", "hours_per_week", "capital_gain", "income"]
CANARY = "Zyxwvut-canary-Qq"
ROWS = 3917  # odd sizes, so exact counts are easy to look for in the public files
POPULATION = "uci-adult"


def small_policy(adult_policy_path: Path, *, seed: int | None = None, **privacy) -> str:
    """The demo policy cut down to a few columns and a short training run (fast tests)."""
    policy = load_policy(adult_policy_path).model_dump(mode="json")
    policy["columns"] = {k: v for k, v in policy["columns"].items() if k in ADULT_COLUMNS}
    policy.pop("relations", None)  # the demo's relation names columns cut here
    policy["audit"]["protected_attributes"] = [
        c for c in policy["audit"].get("protected_attributes", []) if c in policy["columns"]]
    policy["generator"].update(epochs=5, batch_size=512)
    policy["privacy"].update(privacy)
    # these tests are about the pipeline's plumbing, not utility: a 5-epoch model is near noise
    # on the target (the utility floor and its TSTR have their own tests), and a longer one on
    # 2,000 rows makes the copy checks' honest false-block rate visible (2 of 12 at 40 epochs)
    policy["audit"].update(quasi_identifiers=["age", "sex", "education"], secrets=["income"],
                           linkability_aux=None, attacks=["exact_copy", "dcr", "mia", "unique_qi"],
                           target=None)
    policy["seed"] = seed
    return yaml.safe_dump(policy, sort_keys=False)


@pytest.fixture()
def table(adult) -> pd.DataFrame:
    sample = adult[ADULT_COLUMNS].sample(ROWS, random_state=3).reset_index(drop=True)
    sample.loc[0, "workclass"] = CANARY  # a value outside the declared domain: becomes missing
    return sample


@pytest.fixture()
def policy(adult_policy_path):
    return parse_policy(small_policy(adult_policy_path), "small.yaml")


@pytest.fixture()
def seeded(adult_policy_path):
    return parse_policy(small_policy(adult_policy_path, seed=7), "seeded.yaml")


@pytest.fixture()
def ledger(tmp_path, table) -> str:
    return registered_ledger(tmp_path / "ledger.sqlite", POPULATION, table)


def reservations(ledger: str) -> list[dict]:
    with Ledger.open(ledger) as book:
        return [e for e in book.entries() if e["kind"] == "reserve"]


def test_release_end_to_end(table, policy, ledger, tmp_path):
    release = pipeline.synthesize(table, policy, ledger=ledger)
    assert release.passed, release.decision.reasons
    out = release.write(tmp_path / "bundle", audits_dir=tmp_path / "audits")
    public = out / "public"
    assert sorted(p.name for p in public.iterdir()) == [
        "manifest.json", "statement.dsse.json", "synthetic.csv", "synthetic.parquet"]
    manifest = json.loads((public / "manifest.json").read_text())
    synthetic = pd.read_csv(public / "synthetic.csv")
    assert list(synthetic.columns) == list(policy.columns)
    assert len(synthetic) == manifest["synthetic_rows"]
    privacy = manifest["privacy"]
    assert privacy["epsilon"] <= policy.privacy.epsilon + 1e-12
    assert privacy["seed_mode"] == "os-entropy"
    assert privacy["neighbouring_relation"] == "add/remove one row of the training split"
    assert {"encoding", "training"} <= set(privacy["stages"])
    assert "noisy_count" in [c["mechanism"] for c in privacy["charges"]]
    assert verify_bundle(out) == []
    (reserve,) = reservations(ledger)
    assert reserve["epsilon"] == pytest.approx(policy.privacy.epsilon)
    for path in [*out.rglob("*"), *(tmp_path / "audits").rglob("*")]:
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path


def test_public_manifest_holds_no_raw_figure(table, policy, ledger, tmp_path):
    """Item 3: gate reasons, audit figures and exact counts stay in internal/."""
    release = pipeline.synthesize(table, policy, ledger=ledger)
    out = release.write(tmp_path / "bundle", audits_dir=None)
    text = (out / "public" / "manifest.json").read_text()
    manifest = json.loads(text)
    for key in ("decision", "reasons", "training_rows", "holdout_rows", "keyed_fingerprint",
                "dataset_epsilon_spent_after", "checks"):
        assert f'"{key}"' not in text, key
    run = json.loads((out / "internal" / "run.json").read_text())
    exact = {run["training_rows"], run["holdout_rows"], ROWS}
    numbers = {int(float(n)) for n in re.findall(r"(?<![\w.])\d+(?:\.0+)?(?![\w.])", text)}
    leaked = exact & numbers - {manifest["synthetic_rows"]}  # N̂ may equal N by chance
    assert not leaked, leaked
    assert "release decision" in json.dumps(manifest["privacy"]["not_covered_by_epsilon"])
    decision = json.loads((out / "internal" / "decision.json").read_text())
    assert decision["passed"] is True and "checks" in decision


def test_row_count_is_released_under_dp_and_drives_q_and_the_output(table, policy, ledger):
    """Item 6: N̂ (a charged count), not N, sets q, the steps and the number of rows."""
    release = pipeline.synthesize(table, policy, ledger=ledger)
    charges = {c["mechanism"]: c for c in release.charges}
    n_hat = len(release.synthetic)
    sgd = charges["dp_sgd"]["params"]
    assert sgd["row_count"] == "dp"
    batch = policy.generator.schedule(n_hat).batch_size  # `auto` resolves from N̂ too
    assert sgd["q"] == pytest.approx(batch / n_hat, rel=1e-8)
    assert charges["noisy_count"]["epsilon"] > 0


def test_seeded_run_is_a_development_run(table, seeded, ledger, tmp_path):
    """Item 1: a seed means no DP claim, no public part, and it says so."""
    release = pipeline.synthesize(table, seeded, ledger=ledger)
    assert release.development_run and not release.passed
    assert not release.decision.dp_claim
    assert "development_run" in release.decision.reason_codes
    out = release.write(tmp_path / "bundle", audits_dir=None)
    assert not (out / "public").exists()
    assert "DEVELOPMENT RUN" in (out / "internal" / "report.html").read_text()
    assert verify_bundle(out) == []  # nothing public, and the internal decision agrees


def test_seed_is_not_part_of_the_public_policy_digest(policy, seeded):
    assert policy.digest() == seeded.digest()


def test_dev_seed_reproduces_the_run_byte_for_byte(table, seeded, ledger):
    a = pipeline.synthesize(table, seeded, ledger=ledger).synthetic
    b = pipeline.synthesize(table, seeded, ledger=ledger).synthetic
    pd.testing.assert_frame_equal(a, b)


class CopyGenerator(Generator):
    """A planted leak: 'samples' the training rows themselves."""

    name = "copy"

    def fit(self, codes, widths, config, *, generator, device, progress=None, noise=None):
        self.codes_ = codes.copy()
        self.charges_ = []
        return self

    def sample(self, n, *, generator):
        return self.codes_[:n]


def test_a_copying_synthesizer_is_blocked_and_writes_nothing_public(
        table, policy, ledger, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "make_generator", lambda config, **_: CopyGenerator())
    release = pipeline.synthesize(table, policy, ledger=ledger)
    assert not release.passed
    assert any("exact_copy" in r or "dcr" in r for r in release.decision.reasons)
    assert not release.decision.dp_claim  # it recorded no DP-SGD charge
    out = release.write(tmp_path / "bundle", audits_dir=None)
    assert not (out / "public").exists()
    assert (out / "internal" / "report.html").exists()


def test_over_budget_release_is_refused_before_reading(table, policy, tmp_path, monkeypatch):
    ledger = registered_ledger(tmp_path / "l.sqlite", POPULATION, table, total_epsilon=1.5)
    pipeline.synthesize(table, policy, ledger=ledger)
    read = []
    monkeypatch.setattr(pipeline, "read_table", lambda *a, **k: read.append(1))
    with pytest.raises(BudgetExceededError) as info:
        pipeline.synthesize(table, policy, ledger=ledger)
    assert "Requested" in str(info.value) and "Remaining" in str(info.value)
    assert read == []


def test_bad_cells_raise_nothing_and_the_run_is_charged(table, adult_policy_path, ledger):
    """Item 5: no data-dependent message before (or after) the charge; cell-wise checks."""
    strict = parse_policy(small_policy(adult_policy_path), "strict.yaml")
    bad = table.copy()
    bad["age"] = bad["age"].astype(object)
    bad.loc[5, "age"] = CANARY
    bad.loc[6, "income"] = "not-in-the-domain"
    release = pipeline.synthesize(bad, strict, ledger=ledger)
    assert CANARY not in json.dumps(release.report, default=str)
    assert len(reservations(ledger)) == 1


def test_delta_is_checked_against_the_dp_count_after_the_charge(table, adult_policy_path,
                                                                 tmp_path):
    ledger = registered_ledger(tmp_path / "l.sqlite", POPULATION, table, total_delta=1e-2)
    data = yaml.safe_load(small_policy(adult_policy_path, delta=1e-4))
    declared = parse_policy(yaml.safe_dump(data), "declared.yaml")
    with pytest.raises(PreflightRefused, match="δ|delta"):  # a declared size: refused for free
        pipeline.synthesize(table, declared, ledger=ledger)
    assert reservations(ledger) == []
    data["dataset"].pop("rows")
    loose = parse_policy(yaml.safe_dump(data), "loose.yaml")
    with pytest.raises(PrivacyError, match="delta") as info:
        pipeline.synthesize(table, loose, ledger=ledger)
    assert str(ROWS) not in str(info.value)
    assert len(reservations(ledger)) == 1  # the count it used was paid for


def test_failed_calibration_is_a_clear_error_and_stays_charged(table, policy, ledger,
                                                               monkeypatch):
    def broken(**kwargs):
        raise ValueError("bracket")

    monkeypatch.setattr(dp_sgd, "calibrate_sigma", broken)
    with pytest.raises(PrivacyError, match="calibrate"):
        pipeline.synthesize(table, policy, ledger=ledger)
    with Ledger.open(ledger) as book:
        kinds = [e["kind"] for e in book.entries()]
    assert "reserve" in kinds and "charge" in kinds  # the count and encoding ran and stay spent


def test_progress_callback_never_sees_a_loss(table, policy, ledger):
    seen = []
    pipeline.synthesize(table, policy, ledger=ledger, progress=lambda *a: seen.append(a))
    assert seen and all(len(a) == 2 and all(isinstance(x, int) for x in a) for a in seen)


def test_knowable_errors_cost_nothing(table, adult_policy_path, ledger, tmp_path):
    """Item 8: an existing --out, CUDA without CUDA: refused before the reservation."""
    data = tmp_path / "t.csv"
    table.to_csv(data, index=False)
    policy_file = tmp_path / "p.yaml"
    policy_file.write_text(small_policy(adult_policy_path))
    (tmp_path / "exists").mkdir()
    runner = CliRunner()
    args = ["release", str(data), "--policy", str(policy_file), "--ledger", ledger]
    taken = runner.invoke(app, [*args, "--out", str(tmp_path / "exists")])
    assert taken.exit_code == 1 and "already exists" in taken.output
    import torch

    if not torch.cuda.is_available():
        cuda = runner.invoke(app, [*args, "--out", str(tmp_path / "r"), "--device", "cuda"])
        assert cuda.exit_code == 1 and "cuda" in cuda.output.lower()
    assert reservations(ledger) == []


def test_cli_exit_codes_and_summaries(table, adult_policy_path, ledger, tmp_path, monkeypatch):
    data = tmp_path / "t.csv"
    table.to_csv(data, index=False)
    policy_file = tmp_path / "p.yaml"
    policy_file.write_text(small_policy(adult_policy_path))
    seeded_file = tmp_path / "s.yaml"
    seeded_file.write_text(small_policy(adult_policy_path, seed=3))
    runner = CliRunner()
    args = ["release", str(data), "--ledger", ledger, "--audits", str(tmp_path / "audits")]
    ok = runner.invoke(app, [*args, "--policy", str(policy_file), "--out", str(tmp_path / "r1")])
    assert ok.exit_code == 0, ok.output
    dev = runner.invoke(app, [*args, "--policy", str(seeded_file), "--out", str(tmp_path / "d")])
    assert dev.exit_code == 2 and "DEVELOPMENT RUN" in dev.output
    assert not (tmp_path / "d" / "public").exists()
    monkeypatch.setattr(pipeline, "make_generator", lambda config, **_: CopyGenerator())
    blocked = runner.invoke(app, [*args, "--policy", str(policy_file),
                                  "--out", str(tmp_path / "r2")])
    assert blocked.exit_code == 2, blocked.output
    assert not (tmp_path / "r2" / "public").exists()


def test_audit_needs_a_verified_bundle_for_a_dp_claim(table, policy, ledger, tmp_path,
                                                      monkeypatch):
    """Item 7: `privsynth audit --dp-claim` asserted a claim on its word; now it takes the
    producing bundle, verified, and the audited file must be one of its files."""
    release = pipeline.synthesize(table, policy, ledger=ledger)
    out = release.write(tmp_path / "bundle", audits_dir=None)
    half = len(table) // 2
    table.iloc[:half].to_csv(tmp_path / "train.csv", index=False)
    table.iloc[half:].to_csv(tmp_path / "hold.csv", index=False)
    policy_file = tmp_path / "p.yaml"
    policy_file.write_text(yaml.safe_dump(policy.model_dump(mode="json"), sort_keys=False))
    runner = CliRunner()
    base = ["audit", "--real", str(tmp_path / "train.csv"), "--holdout",
            str(tmp_path / "hold.csv"), "--policy", str(policy_file)]
    old = runner.invoke(app, [*base, "--synthetic", str(out / "public" / "synthetic.csv"),
                              "--dp-claim"])
    assert old.exit_code != 0 and "No such option" in old.output
    other = tmp_path / "other.csv"
    pd.read_csv(out / "public" / "synthetic.csv").head(100).to_csv(other, index=False)
    forged = runner.invoke(app, [*base, "--synthetic", str(other), "--bundle", str(out)])
    assert forged.exit_code == 1 and "not a file of" in forged.output
    # a partner at another installation backs the claim with the releaser's exported key
    exported = tmp_path / "release.pub"
    exported.write_text(runner.invoke(app, ["keys", "export"]).stdout)
    released = ["--synthetic", str(out / "public" / "synthetic.csv"), "--bundle", str(out)]
    with monkeypatch.context() as partner:
        partner.setenv("PRIVSYNTH_KEY_DIR", str(tmp_path / "partner-keys"))
        unpinned = runner.invoke(app, [*base, *released])
        assert unpinned.exit_code == 1, unpinned.output
        pinned = runner.invoke(app, [*base, *released, "--public-key", str(exported),
                                     "--out", str(tmp_path / "partner-report")])
        assert pinned.exit_code in (0, 2), pinned.output
        report = json.loads((tmp_path / "partner-report" / "report.json").read_text())
        assert report["mechanism"]["dp_claim"] is True
    manifest = out / "public" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["privacy"]["charges"][0]["epsilon"] = 0.0
    manifest.write_text(json.dumps(data))
    tampered = runner.invoke(app, [*base, "--synthetic", str(out / "public" / "synthetic.csv"),
                                   "--bundle", str(out)])
    assert tampered.exit_code == 1 and "cannot back a DP claim" in tampered.output


def test_dp_claim_needs_dp_sgd_on_the_dp_count_within_the_allotment(policy):
    def spend(*charges):
        book = PrivacySpend()
        for charge in charges:
            book.add(charge)
        return book

    count = Charge("encoding", "noisy_count", 0.05, 0.0, None, {"scale": 20.0})
    dp = Charge("training", "dp_sgd", 0.9, 1e-7, None,
                {"sigma": 1.2, "q": 0.1, "steps": 10, "row_count": "dp"})
    exact_n = Charge("training", "dp_sgd", 0.9, 1e-7, None,
                     {"sigma": 1.2, "q": 0.1, "steps": 10, "row_count": "exact"})
    noiseless = Charge("training", "dp_sgd", 0.9, 1e-7, None, {"sigma": 0.0, "row_count": "dp"})
    too_much = Charge("training", "dp_sgd", 5.0, 1e-7, None, {"sigma": 0.3, "row_count": "dp"})
    assert pipeline.dp_claim(spend(count, dp), policy)
    assert not pipeline.dp_claim(spend(count, dp), policy, "dev-seed")
    assert not pipeline.dp_claim(spend(dp), policy)
    assert not pipeline.dp_claim(spend(count, exact_n), policy)
    assert not pipeline.dp_claim(spend(), policy)
    assert not pipeline.dp_claim(spend(count, noiseless), policy)
    assert not pipeline.dp_claim(spend(count, too_much), policy)


VERIFY_TAMPERS = {
    "relation": lambda m: m["privacy"].update(neighbouring_relation="replace-one"),
    "seed mode": lambda m: m["privacy"].update(seed_mode="dev-seed"),
    "negative charge": lambda m: m["privacy"]["charges"].append(
        {**m["privacy"]["charges"][0], "epsilon": -0.5}),
    "scale": lambda m: m["privacy"]["charges"][0]["params"].update(
        scale=m["privacy"]["charges"][0]["params"]["scale"] * 4),
    "no count": lambda m: m["privacy"].update(charges=[
        c for c in m["privacy"]["charges"] if c["mechanism"] != "noisy_count"]),
    "exact N": lambda m: [c["params"].update(row_count="exact") for c in m["privacy"]["charges"]
                          if c["mechanism"] == "dp_sgd"],
    "delta": lambda m: m["privacy"].update(delta=0.0),
    "rows": lambda m: m.update(synthetic_rows=m["synthetic_rows"] + 1),
}


@pytest.mark.parametrize("case", sorted(VERIFY_TAMPERS))
def test_verify_recomputes_every_charge(case, released_bundle, tmp_path):
    """Item 7: verify used to recompute the DP-SGD charge only."""
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(released_bundle, out)
    manifest = out / "public" / "manifest.json"
    data = json.loads(manifest.read_text())
    VERIFY_TAMPERS[case](data)
    manifest.write_text(json.dumps(data))
    assert verify_bundle(out), case


@pytest.fixture(scope="module")
def released_bundle(adult, adult_policy_path, tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("released")
    sample = adult[ADULT_COLUMNS].sample(ROWS, random_state=4).reset_index(drop=True)
    ledger = registered_ledger(base / "l.sqlite", POPULATION, sample)
    policy = parse_policy(small_policy(adult_policy_path), "small.yaml")
    release = pipeline.synthesize(sample, policy, ledger=ledger)
    assert release.passed, release.decision.reasons
    return release.write(base / "bundle", audits_dir=None)


def test_write_refuses_an_existing_folder(released_bundle):
    with pytest.raises(PrivsynthError, match="already exists"):
        from privsynth.release.bundle import write_bundle

        write_bundle(object(), released_bundle)


def test_dp_bounds_without_mass_is_charged_in_the_ledger(table, adult_policy_path, tmp_path):
    """Item 7: the DP-bounds 'no mass' error used to drop its charge from the ledger. A column
    whose every cell is unusable has an all-zero histogram; at a large ε its noise is zero too."""
    text = small_policy(adult_policy_path, seed=5, epsilon=100.0, encoding_share=0.5)
    data = yaml.safe_load(text)
    data["columns"] = {"age": {"kind": "integer", "bounds": "dp", "binning": "uniform"},
                       "sex": data["columns"]["sex"]}
    data["audit"].update(quasi_identifiers=[], secrets=[], target=None)
    policy = parse_policy(yaml.safe_dump(data), "bounds.yaml")
    frame = pd.DataFrame({"age": ["unknown"] * 600, "sex": ["Male", "Female"] * 300})
    ledger = registered_ledger(tmp_path / "l.sqlite", POPULATION, frame, total_epsilon=200,
                               total_delta=1e-3)
    with pytest.raises(PrivacyError, match="no mass"):
        pipeline.synthesize(frame, policy, ledger=ledger)
    with Ledger.open(ledger) as book:
        charges = [e["details"] for e in book.entries() if e["kind"] == "charge"]
    assert {"noisy_count", "laplace_histogram"} <= {c["mechanism"] for c in charges}
    assert any(c["mechanism"] == "laplace_histogram" and c["column"] == "age" for c in charges)


def test_preflight_refusal_reserves_nothing(table, adult_policy_path, ledger):
    """Issue 10: what the policy alone shows to be useless is refused before the reservation."""
    data = yaml.safe_load(small_policy(adult_policy_path))
    data["dataset"]["rows"] = 1000
    data["columns"]["education"] = {"kind": "categorical", "domain": "dp"}
    data["privacy"]["epsilon"] = 0.05
    policy = parse_policy(yaml.safe_dump(data), "useless.yaml")
    with pytest.raises(PreflightRefused) as info:
        pipeline.synthesize(table, policy, ledger=ledger)
    assert "education" in str(info.value)
    assert reservations(ledger) == []
