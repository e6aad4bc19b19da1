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
from privsynth.generators.persist import CONFIG_FILE, load_generator, save_generator
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


def _saved_model(frame, folder, *, legacy: bool = False):
    """A one-epoch VAE over the relations policy saved to ``folder``; ``legacy`` models every
    column (as privsynth did before derived columns left the model). Returns the encoder."""
    policy = parse_policy(POLICY.replace("RELATIONS", RELATIONS))
    prepared = prepare_table(frame, policy).frame
    encoder = TableEncoder.fit(prepared, policy, encoding_budget(policy), PrivacySpend(),
                               SeededNoise(np.random.default_rng(0)))
    if legacy:
        encoder = TableEncoder(encoder.encoders, encoder.relations, model_derived=True)
    generator = registry.make_generator(policy.generator)
    config = DPSGDConfig(epsilon=1.0, delta=1e-6, expected_batch_size=256, epochs=1,
                         max_grad_norm=1.0, learning_rate=5e-3)
    generator.fit(encoder.transform(prepared), encoder.widths, config,
                  generator=torch.Generator().manual_seed(0), device=torch.device("cpu"),
                  noise=SeededNoise(np.random.default_rng(1)))
    save_generator(generator, encoder, folder)
    return encoder


def test_relations_survive_save_and_load(frame, tmp_path):
    encoder = _saved_model(frame, tmp_path / "model")
    _, loaded = load_generator(tmp_path / "model")
    assert loaded.relations == encoder.relations


def test_relations_do_not_change_the_digest_of_policies_without_them():
    plain = parse_policy(POLICY.replace("RELATIONS", ""))
    # the digest of a policy without relations is computed as before relations existed
    body = plain.model_dump(mode="json", exclude={"seed", "relations"})
    del body["privacy"]["person"], body["dataset"]["persons"]  # keys added since (person unit)
    del body["privacy"]["marginals_share"]  # and since (one-way marginals, default auto)
    del body["privacy"]["marginals_columns"], body["generator"]["tuning"]  # and since
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
    # several sources, chains, per-person aggregates
    ("  - {derive: overtime_hours, from: [hours_per_week, age], scale: [1]}", "one number per"),
    ("  - {derive: overtime_hours, from: hours_per_week, scale: [1, 2]}", "list of columns"),
    ("  - {derive: overtime_hours, from: [hours_per_week, age]}", "exactly one of"),
    ("  - {derive: overtime_hours, from: hours_per_week, scale: 1}\n"
     "  - {derive: hours_per_week, from: overtime_hours, scale: 1}", "cycle"),
    ("  - {derive: retire_age, from: age, scale: 1, offset: 10}\n"
     "  - {order: [age, retire_age]}", "order their sources"),
    ("  - {derive: overtime_hours, from: hours_per_week, per_person: mean}", "unit: person"),
    ("  - {derive: overtime_hours, from: hours_per_week, per_person: median}", "per_person"),
    ("  - {derive: education_num, from: education, mapping: {a: 1}}\n"
     "  - {derive: education, from: education_num, mapping: {\"1\": a}}", "cycle"),
    ("  - {missing_unless: age, when: age, in: [1]}", "two different"),
    ("  - {missing_unless: nope, when: age, in: [1]}", "not kept"),
    ("  - {missing_unless: age, when: education, in: []}", "in"),
    ("  - {derive: retire_age, from: age, scale: 1, offset: 10}\n"
     "  - {missing_unless: overtime_hours, when: retire_age, in: [60]}", "test its source"),
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


# ------------------------------------------------------------ derived columns leave the model
def test_derived_columns_are_computed_not_modelled(frame):
    """A derived column costs the generator nothing: it is not among the generator's columns
    (so its width, and DP-SGD's noise on it, go to the rest), and it is filled at decode.
    Before, every derived column was modelled and then overwritten."""
    encoder, decoded = _decode_random(frame, RELATIONS)
    assert encoder.modelled_names == ["education", "hours_per_week", "age", "retire_age"]
    assert len(encoder.widths) == 4
    assert encoder.transform(prepare_table(frame, parse_policy(
        POLICY.replace("RELATIONS", RELATIONS))).frame).shape == (len(frame), 4)
    assert list(decoded.columns) == list(encoder.schema.names)  # every column is released
    plain, _ = _decode_random(frame, "")
    assert len(plain.widths) == 6


def test_preflight_sizes_the_model_without_derived_columns():
    from privsynth.preflight import _widths
    with_relations = parse_policy(POLICY.replace("RELATIONS", RELATIONS))
    plain = parse_policy(POLICY.replace("RELATIONS", ""))
    assert len(_widths(with_relations, 1000, None)) == len(_widths(plain, 1000, None)) - 2


CHAINED = f"""relations:
  - {{derive: education_num, from: education, mapping: {EDUCATION}}}
  - {{derive: overtime_hours, from: [hours_per_week, education_num, age], scale: [1, 2, -0.5],
      offset: 3, round: 2}}
"""


def test_a_linear_relation_of_several_columns_chained_on_a_derived_one_holds(frame):
    """``from: [a, b, c]`` with one scale each; its source ``education_num`` is itself derived,
    so derivations run in dependency order (the chain is written source-last on purpose)."""
    encoder, decoded = _decode_random(frame, CHAINED)
    assert encoder.modelled_names == ["education", "hours_per_week", "age", "retire_age"]
    x = {c: pd.to_numeric(decoded[c], errors="coerce").astype(float)
         for c in ("hours_per_week", "education_num", "age")}
    expected = np.round(3 + x["hours_per_week"] + 2 * x["education_num"] - 0.5 * x["age"], 2)
    got = decoded["overtime_hours"].astype(float)
    assert ((got == expected) | (got.isna() & expected.isna())).all()
    assert decoded["education"].notna().any() and got.notna().any()
    policy = parse_policy(POLICY.replace("RELATIONS", CHAINED))
    assert ("overtime_hours = 3 + hours_per_week + 2·education_num − 0.5·age, rounded to 2 "
            "decimals") in [r.describe() for r in policy.relations]


def test_per_person_keys_leave_the_digest_of_earlier_relations_alone():
    """Adding ``per_person`` to the relation model must not change a published digest."""
    policy = parse_policy(POLICY.replace("RELATIONS", RELATIONS))
    body = policy.model_dump(mode="json", exclude={"seed"}, by_alias=True)
    del body["privacy"]["person"], body["dataset"]["persons"], body["privacy"]["marginals_share"]
    del body["privacy"]["marginals_columns"], body["generator"]["tuning"]
    for rule in body["columns"].values():
        del rule["decimals"]
    for relation in body["relations"]:
        relation.pop("per_person", None)  # derive relations only
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    assert policy.digest() == hashlib.sha256(canonical.encode()).hexdigest()


def test_a_model_saved_before_derived_columns_left_it_still_loads(frame, tmp_path):
    """Saved models whose config predates ``derived_modelled`` trained on every column: they
    load with derived columns modelled, so the widths match the saved weights."""
    folder = tmp_path / "model"
    legacy = _saved_model(frame, folder, legacy=True)
    saved = json.loads((folder / CONFIG_FILE).read_text())
    del saved["derived_modelled"]  # as an older privsynth wrote it
    (folder / CONFIG_FILE).write_text(json.dumps(saved))
    loaded_generator, loaded = load_generator(folder)
    assert loaded.widths == loaded_generator.widths_ == legacy.widths
    codes = loaded_generator.sample(50, generator=torch.Generator().manual_seed(2))
    decoded = loaded.inverse_transform(codes, np.random.default_rng(0))
    assert _agreement(decoded) == 1.0


# ------------------------------------------------------------------ per-person derivations
PERSON_POLICY = """
name: persons
dataset: {id: persons}
privacy:
  epsilon: 2.0
  delta: 1.0e-6
  unit: person
  person: {id: pid, max_rows: 4, order_by: day, fixed: [sex]}
columns:
  pid: {rule: pseudonymize}
  sex: {kind: categorical, domain: [f, m]}
  day: {kind: integer, bounds: [0, 30], binning: uniform, bins: 31}
  lab: {kind: numeric, bounds: [0, 10], binning: uniform, bins: 10, decimals: 1}
  lab_mean: {kind: numeric, bounds: [0, 10]}
  lab_first: {kind: numeric, bounds: [0, 10]}
  lab_dev: {kind: numeric, bounds: [-10, 10]}
relations:
  - {derive: lab_dev, from: [lab, lab_mean], scale: [1, -1]}
  - {derive: lab_mean, from: lab, per_person: mean, round: 3}
  - {derive: lab_first, from: lab, per_person: first}
"""


def test_per_person_relations_hold_for_every_synthetic_person():
    """``per_person: mean|first`` computes one value per synthetic person over that person's
    rows (first in ``order_by`` order), and a relation chained on it follows; none of the
    three is modelled. Random codes stand in for the worst generator."""
    from privsynth.data.persons import (
        bound_contributions,
        one_row_per_person,
        person_keys,
        person_layout,
        to_wide,
    )
    from privsynth.encoding.person_encoder import PersonEncoder
    policy = parse_policy(PERSON_POLICY)
    rng = np.random.default_rng(0)
    pid = np.repeat([f"p{i}" for i in range(200)], 3)
    lab = np.round(rng.uniform(0, 10, len(pid)), 1)
    real = pd.DataFrame({"pid": pid, "sex": np.repeat(rng.choice(["f", "m"], 200), 3),
                         "day": rng.integers(0, 31, len(pid)), "lab": lab})
    real["lab_mean"] = real.groupby("pid")["lab"].transform("mean")
    real["lab_first"] = real.sort_values("day").groupby("pid")["lab"].transform("first")
    real["lab_dev"] = real["lab"] - real["lab_mean"]
    prepared = prepare_table(real, policy).frame
    layout = person_layout(policy)
    kept, keys, _ = bound_contributions(prepared, person_keys(real["pid"]), 4, "day", b"k" * 32)
    wide = to_wide(kept, keys, layout)
    encoder = PersonEncoder.fit(one_row_per_person(wide, layout, rng), policy,
                                encoding_budget(policy), PrivacySpend(),
                                SeededNoise(np.random.default_rng(1)))
    assert encoder.base.modelled_names == ["sex", "day", "lab"]
    assert encoder.transform(wide).shape == (len(wide), 1 + 1 + 4 * 2)
    codes = np.stack([rng.integers(0, w, size=300) for w in encoder.widths], axis=1)
    rows, owners = encoder.inverse_transform(codes, rng)
    lab_syn = rows["lab"].astype(float)
    by = pd.Series(lab_syn.to_numpy()).groupby(owners)
    np.testing.assert_allclose(rows["lab_mean"], np.round(by.transform("mean"), 3))
    np.testing.assert_array_equal(rows["lab_first"], by.transform("first"))  # NaN == NaN
    np.testing.assert_allclose(rows["lab_dev"], lab_syn - rows["lab_mean"])
    days = pd.Series(rows["day"].astype(float).to_numpy()).groupby(owners)
    assert (days.diff().dropna() >= 0).all()  # first means first in day order
    assert (pd.Series(owners).diff().dropna() >= 0).all()  # a person's rows contiguous


@pytest.mark.parametrize(("old", "new", "message"), [
    ("fixed: [sex]", "fixed: [sex, lab_mean]", "remove them from fixed"),
    ("order_by: day", "order_by: lab_first", "order a person's rows by a modelled column"),
])
def test_derived_columns_cannot_be_fixed_or_order_persons(old, new, message):
    with pytest.raises(PolicyError) as info:
        parse_policy(PERSON_POLICY.replace(old, new))
    assert message in str(info.value)


def test_a_per_person_relation_without_persons_is_an_error_not_a_skip():
    """Decoding a person-level policy's rows without their persons must not leave per-person
    columns silently missing."""
    from privsynth.data.schema import ColumnSchema, TableSchema
    from privsynth.policy.relations import apply_relations
    policy = parse_policy(PERSON_POLICY)
    schema = TableSchema(tuple(ColumnSchema(n, "numeric", bounds=(-10.0, 10.0),
                                            bounds_source="policy")
                               for n in ("lab", "lab_mean", "lab_first", "lab_dev")))
    rows = pd.DataFrame({"lab": [1.0, 3.0], "lab_mean": [None] * 2, "lab_first": [None] * 2,
                         "lab_dev": [None] * 2})
    with pytest.raises(ValueError, match="per person needs each row's person"):
        apply_relations(rows, policy.relations, schema)
    out = apply_relations(rows, policy.relations, schema, owners=np.array([0, 0]))
    assert list(out["lab_mean"]) == [2.0, 2.0] and list(out["lab_dev"]) == [-1.0, 1.0]


def test_a_column_recorded_only_for_some_rows_is_missing_in_the_others(frame):
    """flchain's cause of death (``chapter``) exists only for those who died: declared as
    ``missing_unless``, no decoded row has a cause of death without a death, while rows that
    may hold one keep what the generator gave. Without it, random output pairs them freely."""
    relation = ("relations:\n  - {missing_unless: overtime_hours, when: education, "
                "in: [Masters, Doctorate]}\n")
    _, free = _decode_random(frame, "")
    _, decoded = _decode_random(frame, relation)
    allowed = decoded["education"].isin(["Masters", "Doctorate"])
    assert free.loc[~free["education"].isin(["Masters", "Doctorate"]),
                    "overtime_hours"].notna().mean() > 0.5
    assert decoded.loc[~allowed, "overtime_hours"].isna().all()
    kept = free.loc[allowed, "overtime_hours"]
    assert decoded.loc[allowed, "overtime_hours"].notna().sum() == kept.notna().sum()
    policy = parse_policy(POLICY.replace("RELATIONS", relation))
    assert policy.relations[0].describe() == (
        "overtime_hours is missing unless education is one of: Masters, Doctorate")


def test_a_complete_column_cannot_be_blanked_by_a_relation():
    text = POLICY.replace("overtime_hours: {kind: numeric, bounds: [0, 100], binning: uniform}",
                          "overtime_hours: {kind: numeric, bounds: [0, 100], binning: uniform, "
                          "complete: true}")
    with pytest.raises(PolicyError) as info:
        parse_policy(text.replace("RELATIONS", "relations:\n  - {missing_unless: overtime_hours, "
                                  "when: education, in: [Masters]}"))
    assert "complete" in str(info.value)

