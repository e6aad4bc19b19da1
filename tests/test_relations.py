"""Declared relations hold in every synthetic row (issue 11: deterministic relations were lost).

The codes fed to the decoder below are uniform random slots: the worst a generator can do. A
relation the policy declares must hold in every decoded row anyway, because it is enforced after
decoding; without it, Adult's education_num disagrees with education in most such rows.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import torch

from privsynth.data.table import prepare_table
from privsynth.encoding.table_encoder import TableEncoder, encoding_budget
from privsynth.errors import PolicyError
from privsynth.generators import registry
from privsynth.generators.dp_sgd import DPSGDConfig
from privsynth.generators.persist import load_generator, save_generator
from privsynth.policy.loader import parse_policy
from privsynth.privacy.events import PrivacySpend
from privsynth.privacy.noise import SeededNoise

EDUCATION = {"Preschool": 1, "1st-4th": 2, "5th-6th": 3, "7th-8th": 4, "9th": 5, "10th": 6,
             "11th": 7, "12th": 8, "HS-grad": 9, "Some-college": 10, "Assoc-voc": 11,
             "Assoc-acdm": 12, "Bachelors": 13, "Masters": 14, "Prof-school": 15,
             "Doctorate": 16}

POLICY = f"""
name: relations
dataset: {{id: relations}}
privacy: {{epsilon: 1.0, delta: 1.0e-9}}
columns:
  education: {{kind: categorical, domain: {list(EDUCATION)}}}
  education_num: {{kind: integer, bounds: [1, 16]}}
  hours_per_week: {{kind: integer, bounds: [1, 99], binning: uniform}}
  overtime_hours: {{kind: numeric, bounds: [0, 100], binning: uniform}}
  age: {{kind: integer, bounds: [17, 90], binning: uniform}}
  retire_age: {{kind: integer, bounds: [17, 90], binning: uniform}}
RELATIONS
"""

RELATIONS = f"""relations:
  - {{derive: education_num, from: education, mapping: {EDUCATION}}}
  - {{derive: overtime_hours, from: hours_per_week, scale: 1.5, offset: -60, round: 1}}
  - {{order: [age, retire_age]}}
"""


@pytest.fixture(scope="module")
def frame(adult) -> pd.DataFrame:
    sample = adult.sample(3000, random_state=1).reset_index(drop=True)
    return pd.DataFrame({
        "education": sample["education"], "education_num": sample["education_num"],
        "hours_per_week": sample["hours_per_week"],
        "overtime_hours": (sample["hours_per_week"] * 1.5 - 60).clip(0, 100),
        "age": sample["age"], "retire_age": np.minimum(sample["age"] + 10, 90)})


def _decode_random(frame, relations: str, seed: int = 0):
    policy = parse_policy(POLICY.replace("RELATIONS", relations))
    prepared = prepare_table(frame, policy).frame
    encoder = TableEncoder.fit(prepared, policy, encoding_budget(policy), PrivacySpend(),
                               SeededNoise(np.random.default_rng(seed)))
    rng = np.random.default_rng(seed)
    codes = np.stack([rng.integers(0, w, size=5000) for w in encoder.widths], axis=1)
    return encoder, encoder.inverse_transform(codes, rng)


def _agreement(decoded: pd.DataFrame) -> float:
    present = decoded["education"].notna() & decoded["education_num"].notna()
    mapped = decoded.loc[present, "education"].map(EDUCATION)
    return float((mapped == decoded.loc[present, "education_num"]).mean())


def test_without_relations_random_output_breaks_them(frame):
    _, decoded = _decode_random(frame, "")
    assert _agreement(decoded) < 0.2
    assert (decoded["age"] > decoded["retire_age"]).mean() > 0.3


def test_declared_relations_hold_in_every_decoded_row(frame):
    _, decoded = _decode_random(frame, RELATIONS)
    # a derived column is missing exactly where its source is
    assert (decoded["education"].isna() == decoded["education_num"].isna()).all()
    assert _agreement(decoded) == 1.0
    hours = decoded["hours_per_week"].astype(float)
    expected = np.round(1.5 * hours - 60, 1)
    ok = decoded["overtime_hours"].isna() | (decoded["overtime_hours"] == expected)
    assert ok.all()
    both = decoded["age"].notna() & decoded["retire_age"].notna()
    assert (decoded.loc[both, "age"] <= decoded.loc[both, "retire_age"]).all()
    assert str(decoded["education_num"].dtype) == "Int64"


def test_relations_survive_save_and_load(frame, tmp_path):
    policy = parse_policy(POLICY.replace("RELATIONS", RELATIONS))
    prepared = prepare_table(frame, policy).frame
    encoder = TableEncoder.fit(prepared, policy, encoding_budget(policy), PrivacySpend(),
                               SeededNoise(np.random.default_rng(0)))
    generator = registry.make_generator(policy.generator)
    config = DPSGDConfig(epsilon=1.0, delta=1e-6, expected_batch_size=256, epochs=1,
                         max_grad_norm=1.0, learning_rate=5e-3)
    generator.fit(encoder.transform(prepared), encoder.widths, config,
                  generator=torch.Generator().manual_seed(0), device=torch.device("cpu"),
                  noise=SeededNoise(np.random.default_rng(1)))
    save_generator(generator, encoder, tmp_path / "model")
    _, loaded = load_generator(tmp_path / "model")
    assert loaded.relations == encoder.relations


def test_relations_do_not_change_the_digest_of_policies_without_them():
    plain = parse_policy(POLICY.replace("RELATIONS", ""))
    # the digest of a policy without relations is computed as before relations existed
    body = plain.model_dump(mode="json", exclude={"seed", "relations"})
    del body["privacy"]["person"], body["dataset"]["persons"]  # keys added since (person unit)
    for rule in body["columns"].values():
        del rule["decimals"]  # and since (a column's recorded precision)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    assert plain.digest() == hashlib.sha256(canonical.encode()).hexdigest()
    with_relations = parse_policy(POLICY.replace("RELATIONS", RELATIONS))
    assert plain.digest() != with_relations.digest()


@pytest.mark.parametrize(("relations", "message"), [
    ("  - {derive: nope, from: education, mapping: {a: 1}}", "not kept"),
    ("  - {derive: education_num, from: education}", "exactly one of"),
    ("  - {derive: education_num, from: education, mapping: {a: 1}, scale: 2}", "exactly one"),
    ("  - {derive: education_num, from: education, scale: 2}", "numeric columns"),
    ("  - {order: [education, age]}", "ordered"),
    ("  - {order: [age, age]}", "two different"),
    ("  - {derive: overtime_hours, from: hours_per_week, scale: .inf}", "finite"),
    ("  - {derive: education_num, from: education, mapping: {a: 1}}\n"
     "  - {derive: education_num, from: education, mapping: {b: 1}}", "more than one"),
])
def test_bad_relations_are_policy_errors(relations, message):
    with pytest.raises(PolicyError) as info:
        parse_policy(POLICY.replace("RELATIONS", "relations:\n" + relations))
    assert message in str(info.value)


def test_manifest_and_report_list_the_relations(frame):
    """The declared relations are policy facts a recipient needs (education_num is a function
    of education in every row): the public manifest and the report state them, one line each."""
    from privsynth.data.schema import TableSchema
    from privsynth.release.manifest import build_manifest
    policy = parse_policy(POLICY.replace("RELATIONS", RELATIONS))
    manifest = build_manifest(release_id="r", policy=policy, spend=PrivacySpend(),
                              schema=TableSchema(()), synthetic_rows=1, seed_mode="dev-seed",
                              column_actions={})
    lines = manifest["relations"]
    assert len(lines) == len(policy.relations)
    assert any("education_num is derived from education" in line for line in lines)
    assert "overtime_hours = -60 + 1.5·hours_per_week, rounded to 1 decimals" in lines
    assert "age ≤ retire_age in every row where both are present" in lines
    plain = parse_policy(POLICY.replace("RELATIONS", ""))
    assert "relations" not in build_manifest(
        release_id="r", policy=plain, spend=PrivacySpend(), schema=TableSchema(()),
        synthetic_rows=1, seed_mode="dev-seed", column_actions={})
