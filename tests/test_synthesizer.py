"""The estimator API: ``Synthesizer(policy, ledger=...).fit(df).sample(n)``, audit, release,
save/load, and ``synthesize()`` as the same stages composed."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pandas as pd
import pytest
import yaml
from ledger_helpers import registered_ledger
from test_pipeline import ADULT_COLUMNS, POPULATION, small_policy
from typer.testing import CliRunner

import privsynth
import privsynth.pipeline as pipeline
from privsynth.audit.external import read_split, split_by_record
from privsynth.cli import app
from privsynth.data.table import prepare_table, read_table
from privsynth.errors import BudgetExceededError, PrivsynthError
from privsynth.policy.loader import parse_policy
from privsynth.privacy.ledger import Ledger
from privsynth.release.verify import verify_bundle
from privsynth.synthesizer import NotFittedError, Synthesizer

POLICY = """
name: canary
dataset: {id: canary}
privacy: {epsilon: 2.0, delta: 1.0e-6, encoding_share: 0.5}
generator: {backend: vae, epochs: 2, batch_size: 256, hidden: [16]}
columns:
  age:  {kind: integer, bounds: dp, binning: quantile, bins: 6}
  gain: {kind: numeric, bounds: [0, 100000], binning: quantile, bins: 6}
  job:  {kind: categorical, domain: dp}
  sex:  {kind: categorical, domain: [Female, Male]}
  id:   {rule: pseudonymize}
"""
CANARY_TEXT = ["CANARY-Zq7x-1f9e", "CANARY-Wv3k-80aa", "CANARY-Pp0m-c41d"]
CANARY_NUMBERS = [77777.123, 65432.987, 99991.25]


@pytest.fixture(scope="module")
def canary_table(adult) -> pd.DataFrame:
    """3,000 Adult rows in four columns plus an identifier, and three canary rows whose values
    no DP output may carry."""
    rows = adult.sample(3000, random_state=2)
    frame = pd.DataFrame({"age": rows["age"], "gain": rows["capital_gain"].astype(float),
                          "job": rows["occupation"], "sex": rows["sex"]})
    canaries = pd.DataFrame({"age": [123, 124, 125], "gain": CANARY_NUMBERS,
                             "job": CANARY_TEXT, "sex": ["Female", "Male", "Female"]})
    frame = pd.concat([frame, canaries], ignore_index=True)
    frame["id"] = [f"P{i:06d}" for i in range(len(frame))]
    return frame


@pytest.fixture()
def canary_policy():
    return parse_policy(POLICY, "canary.yaml")


@pytest.fixture()
def canary_ledger(tmp_path, canary_table) -> str:
    return registered_ledger(tmp_path / "ledger.sqlite", "canary", canary_table)


def entries(location: str) -> list[dict]:
    with Ledger.open(location) as book:
        return list(book.entries())


def needles() -> list[bytes]:
    out = []
    for text in CANARY_TEXT:
        out += [text.encode("utf-8"), text.encode("utf-16-le"), text.encode("utf-32-le")]
    for x in CANARY_NUMBERS:
        out += [repr(x).encode(), struct.pack("<d", x), struct.pack("<f", x)]
    return out


def test_fit_returns_self_and_sample_gives_n_rows_in_the_released_form(
        canary_table, canary_policy, canary_ledger):
    model = Synthesizer(canary_policy, ledger=canary_ledger)
    assert model.fit(canary_table) is model
    assert privsynth.Synthesizer is Synthesizer
    for name in ("encoder_", "generator_", "schema_", "n_public_", "charges_", "release_id_"):
        assert hasattr(model, name), name
    assert abs(model.n_public_ - len(canary_table)) < 100  # a DP count at ε = 0.25 (Laplace)
    assert {c["mechanism"] for c in model.charges_} >= {"noisy_count", "dp_sgd"}
    default, some = model.sample(), model.sample(1000)
    assert len(default) == model.n_public_ and len(some) == 1000
    assert list(some.columns) == ["age", "gain", "job", "sex", "id"] == list(default.columns)
    assert dict(some.dtypes) == dict(default.dtypes)
    assert pd.api.types.is_numeric_dtype(some["age"]) and pd.api.types.is_numeric_dtype(
        some["gain"])
    assert set(some["sex"].dropna()) <= {"Female", "Male"}
    assert some["id"].is_unique and not set(some["id"]) & set(canary_table["id"])
    with pytest.raises(PrivsynthError, match="positive whole number"):
        model.sample(0)


def test_sample_is_free_post_processing(canary_table, canary_policy, canary_ledger):
    model = Synthesizer(canary_policy, ledger=canary_ledger).fit(canary_table)
    before = entries(canary_ledger)
    assert [e["kind"] for e in before].count("reserve") == 1
    model.sample(2000)
    model.sample()
    assert entries(canary_ledger) == before


def test_sample_before_fit_and_fit_beyond_the_budget_are_one_line_errors(
        canary_table, canary_policy, tmp_path):
    model = Synthesizer(canary_policy, ledger=registered_ledger(
        tmp_path / "small.sqlite", "canary", canary_table, total_epsilon=3.0))
    for call in (model.sample, lambda: model.release(holdout=canary_table),
                 lambda: model.save(tmp_path / "m")):
        with pytest.raises(NotFittedError) as caught:
            call()
        assert "\n" not in str(caught.value) and "call fit" in str(caught.value)
    model.fit(canary_table)
    first = model.release_id_
    with pytest.raises(BudgetExceededError) as caught:  # a second fit is a new reservation
        model.fit(canary_table)
    assert "\n" not in str(caught.value)
    assert model.release_id_ == first  # the refused fit left the fitted model in place
    assert len(model.sample(10)) == 10


def test_save_load_round_trip_holds_no_training_value(canary_table, adult, tmp_path):
    seeded = parse_policy(POLICY.replace("name: canary", "name: canary\nseed: 11"), "s.yaml")
    ledger = registered_ledger(tmp_path / "ledger.sqlite", "canary", canary_table)
    model = Synthesizer(seeded, ledger=ledger).fit(canary_table)
    folder = model.save(tmp_path / "model")
    blob = b"".join(p.read_bytes() for p in folder.iterdir())
    found = [n for n in needles() if n in blob]
    assert not found, f"training values found in the saved model: {found}"
    assert b"Female" in blob and b"noisy_count" in blob  # the check can see: public + charges
    assert not any(i.encode() in blob for i in canary_table["id"].head(50))
    assert yaml.safe_load((folder / "policy.yaml").read_text())["seed"] is None
    loaded = Synthesizer.load(folder, seed=11)
    assert loaded.charges_ == model.charges_ and loaded.n_public_ == model.n_public_
    a, b = model.sample(1500), loaded.sample(1500)
    pd.testing.assert_frame_equal(a.drop(columns="id"), b.drop(columns="id"))
    # OS entropy after load: other rows, same distribution. Two independent shares of 3,000
    # and 1,500 draws from one model differ by 4.5 standard errors at most but once in ~150,000
    free = Synthesizer.load(folder).sample(3000)
    p = (a["sex"] == "Male").mean()
    tolerance = 4.5 * math.sqrt(max(p * (1 - p), 0.01) * (1 / 3000 + 1 / 1500))
    assert abs((free["sex"] == "Male").mean() - p) < tolerance
    with pytest.raises(NotFittedError, match="training rows"):
        loaded.release(holdout=canary_table)
    with pytest.raises(PrivsynthError, match="not a saved privsynth synthesizer"):
        Synthesizer.load(tmp_path)


@pytest.fixture(scope="module")
def adult_rows(adult) -> pd.DataFrame:
    return adult[ADULT_COLUMNS].sample(1600, random_state=5).reset_index(drop=True)


def fast_policy(adult_policy_path, seed: int | None = None) -> str:
    """``test_pipeline.small_policy`` with 3 epochs: these tests check plumbing, not utility."""
    policy = yaml.safe_load(small_policy(adult_policy_path, seed=seed))
    policy["generator"]["epochs"] = 3
    for key in ("protected_attributes",):  # audit lists naming columns cut by small_policy
        if isinstance(policy["audit"].get(key), list):
            policy["audit"][key] = [c for c in policy["audit"][key] if c in policy["columns"]]
    return yaml.safe_dump(policy, sort_keys=False)


def test_own_holdout_is_what_the_audit_reads(adult_rows, adult, adult_policy_path, tmp_path):
    """fit on every row given, audit and release against the caller's own holdout."""
    policy = parse_policy(fast_policy(adult_policy_path), "small.yaml")
    own = adult[ADULT_COLUMNS].drop(adult_rows.index).sample(500, random_state=6)
    ledger = registered_ledger(tmp_path / "ledger.sqlite", POPULATION, adult_rows)
    model = Synthesizer(policy, ledger=ledger).fit(adult_rows)
    result = model.audit(None, own)
    assert result.risks
    release = model.release(tmp_path / "bundle", holdout=own)
    assert release.run_record["holdout_rows"] == len(own)
    assert release.run_record["training_rows"] == len(adult_rows)
    assert len(release.audit_inputs.holdout) == len(own)
    assert len(release.synthetic) == model.n_public_
    split = json.loads((tmp_path / "bundle" / "internal" / "split.json").read_text())
    assert split["mode"] == "given" and split["release_id"] == model.release_id_
    assert not (tmp_path / "bundle" / "public" / "split.json").exists()
    assert verify_bundle(tmp_path / "bundle", ledger=ledger) == []
    with pytest.raises(PrivsynthError, match="already released"):
        model.release(holdout=own)  # one gate attempt per fit
    assert [e["kind"] for e in entries(ledger)].count("reserve") == 1


def test_synthesize_equals_the_composed_path_and_its_split_is_reproducible(
        adult_rows, adult_policy_path, tmp_path):
    """A seeded synthesize() and fit(its members) + release(holdout=its holdout) give the same
    rows, charges and audit; internal/split.json names exactly those members."""
    seeded = parse_policy(fast_policy(adult_policy_path, seed=7), "seeded.yaml")
    ledger = registered_ledger(tmp_path / "ledger.sqlite", POPULATION, adult_rows)
    one = pipeline.synthesize(adult_rows, seeded, ledger=ledger)
    bundle = one.write(tmp_path / "bundle")
    record = read_split(bundle / "internal" / "split.json")
    assert set(record) >= {"holdout_positions", "table_rows"} and one.split == record
    assert verify_bundle(bundle, ledger=ledger) == []
    text = (bundle / "internal" / "split.json").read_text()
    assert "Bachelors" not in text and "Male" not in text  # positions, never values
    held = np.zeros(len(adult_rows), dtype=bool)
    held[record["holdout_positions"]] = True
    members, holdout = adult_rows[~held], adult_rows[held]
    model = Synthesizer(seeded, ledger=ledger).fit(members)
    two = model.release(holdout=holdout)
    pd.testing.assert_frame_equal(one.synthetic, two.synthetic)
    assert one.charges == two.charges
    audits = [r.audit.to_dict() for r in (one, two)]
    for audit in audits:
        audit["meta"].pop("timings_s")  # wall-clock seconds
    assert audits[0] == audits[1]
    assert one.decision.to_dict() == two.decision.to_dict()
    # `privsynth audit --split` gets the same members and holdout back from the whole table
    prepared = prepare_table(read_table(adult_rows, seeded), seeded).frame
    train_m, holdout_m = split_by_record(prepared, record)
    pd.testing.assert_frame_equal(train_m, one.audit_inputs.train)
    pd.testing.assert_frame_equal(holdout_m, one.audit_inputs.holdout)
    with pytest.raises(PrivsynthError, match="same rows, same order"):
        split_by_record(prepared.iloc[1:], record)
    adult_rows.to_csv(tmp_path / "table.csv", index=False)
    one.synthetic.to_csv(tmp_path / "synthetic.csv", index=False)
    (tmp_path / "policy.yaml").write_text(fast_policy(adult_policy_path, seed=7))
    run = CliRunner().invoke(app, [
        "audit", "--real", str(tmp_path / "table.csv"), "--split",
        str(bundle / "internal" / "split.json"), "--synthetic", str(tmp_path / "synthetic.csv"),
        "-p", str(tmp_path / "policy.yaml"), "--out", str(tmp_path / "report")])
    assert run.exit_code in (0, 2), run.output
    assert (tmp_path / "report" / "report.json").is_file()
    split_file = bundle / "internal" / "split.json"
    fewer = record["holdout_positions"][1:]
    split_file.write_text(json.dumps({**record, "holdout_positions": fewer}))
    assert any("split.json" in p for p in verify_bundle(bundle))  # signed like every file


def test_synthesizer_is_not_pickled(canary_policy):
    import pickle  # noqa: PLC0415

    with pytest.raises(PrivsynthError, match="save"):
        pickle.dumps(Synthesizer(canary_policy))



def test_cli_audit_needs_a_holdout_or_a_split(canary_table, tmp_path):
    canary_table.to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "p.yaml").write_text(POLICY)
    args = ["audit", "--real", str(tmp_path / "t.csv"), "--synthetic", str(tmp_path / "t.csv"),
            "-p", str(tmp_path / "p.yaml")]
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 1 and "--split" in run.output and "CANARY" not in run.output
    (tmp_path / "s.json").write_text(json.dumps({"format": "privsynth-split/1", "mode": "split",
                                                 "table_rows": 1, "holdout_positions": [0]}))
    run = CliRunner().invoke(app, [*args, "--split", str(tmp_path / "s.json")])
    assert run.exit_code == 1 and "same rows, same order" in run.output
    assert "CANARY" not in run.output
