"""The DP-safe table encoder: public facts are used as declared, estimated facts are charged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from privsynth.data.table import prepare_table
from privsynth.encoding.categorical import OTHER
from privsynth.encoding.table_encoder import (
    TableEncoder,
    count_encoding_mechanisms,
    encoding_budget,
)
from privsynth.policy.loader import parse_policy
from privsynth.privacy.events import PrivacySpend
from privsynth.privacy.noise import SeededNoise

POLICY = """
name: t
dataset: {id: t}
privacy: {epsilon: 2.0, delta: 1.0e-9, encoding_share: 0.5}
budget: {}
columns:
  age:    {kind: integer, bounds: [17, 90]}
  gain:   {kind: integer, bounds: [0, 99999], binning: quantile, bins: 10}
  hours:  {kind: integer, bounds: dp, binning: uniform}
  job:    {kind: categorical, domain: dp}
  sex:    {kind: categorical, domain: [Female, Male]}
"""


@pytest.fixture(scope="module")
def data(adult) -> pd.DataFrame:
    sample = adult.sample(5000, random_state=0)
    return pd.DataFrame({"age": sample["age"], "gain": sample["capital_gain"],
                         "hours": sample["hours_per_week"], "job": sample["occupation"],
                         "sex": sample["sex"]})


def fit(data, seed=0):
    policy = parse_policy(POLICY)
    spend = PrivacySpend()
    prepared = prepare_table(data, policy).frame
    encoder = TableEncoder.fit(prepared, policy, encoding_budget(policy), spend,
                               SeededNoise(np.random.default_rng(seed)))
    return policy, prepared, encoder, spend


def test_charges_follow_the_policy_and_sum_to_the_encoding_share(data):
    policy, _, _, spend = fit(data)
    # age: quantile bins (1); gain: quantile bins (1); hours: dp bounds (1); job: dp domain (1);
    # plus the DP row count N̂ that the pipeline releases from the same share
    assert count_encoding_mechanisms(policy) == (5, 1)
    assert len(spend.charges) == 4
    share = policy.privacy.epsilon * policy.privacy.encoding_share
    assert spend.epsilon == pytest.approx(share * 4 / 5)
    assert spend.delta <= policy.privacy.delta * policy.privacy.encoding_share
    assert {c.column for c in spend.charges} == {"age", "gain", "hours", "job"}


def test_declared_domain_is_used_verbatim_and_dp_domain_gets_other(data):
    _, _, encoder, _ = fit(data)
    schema = encoder.schema
    assert schema["sex"].domain == ("Female", "Male") and schema["sex"].domain_source == "policy"
    assert schema["job"].domain_source == "dp" and schema["job"].domain[-1] == OTHER
    # frequent occupations (hundreds of rows each) pass the threshold
    assert {"Prof-specialty", "Craft-repair", "Sales"} <= set(schema["job"].domain)


def test_round_trip_stays_in_bounds_and_keeps_missing(data):
    _, prepared, encoder, _ = fit(data)
    codes = encoder.transform(prepared)
    assert codes.shape == (len(prepared), 5)
    assert (codes < np.array(encoder.widths)).all() and (codes >= 0).all()
    decoded = encoder.inverse_transform(codes, np.random.default_rng(1))
    assert decoded["age"].between(17, 90).all()
    assert decoded["gain"].between(0, 99999).all()
    # each decoded integer lands in its row's bin, so re-encoding gives the same codes
    again = encoder.transform(decoded.assign(
        **{c: decoded[c].astype(float) for c in ("age", "gain", "hours")}))
    assert (again[:, :3] == codes[:, :3]).mean() > 0.99
    assert decoded["job"].isna().sum() == prepared["job"].isna().sum()


def test_quantile_bins_split_mass_roughly_evenly(data):
    _, prepared, encoder, _ = fit(data)
    ages = encoder.encoders[0]
    counts = np.bincount(ages.encode(prepared["age"]), minlength=ages.width)[:-1]
    share = counts / counts.sum()
    # 20 DP quantile bins on integer cells: each bin holds at most a few times 1/20 of the rows
    assert share.max() < 4 / 20


def test_values_outside_public_bounds_are_clipped_not_errors():
    policy = parse_policy(POLICY)
    extreme = pd.DataFrame({"age": [5, 200, 40], "gain": [0, 10**9, 5], "hours": [1, 2, 3],
                            "job": ["a", "b", "a"], "sex": ["Male", "Female", "Male"]})
    prepared = prepare_table(extreme, policy).frame
    encoder = TableEncoder.fit(prepared, policy, encoding_budget(policy), PrivacySpend(),
                               SeededNoise(np.random.default_rng(0)))
    codes = encoder.transform(prepared)
    ages = encoder.encoders[0]
    assert codes[0, 0] == 0 and codes[1, 0] == ages.width - 2


def test_point_masses_at_the_bounds_decode_exactly(data):
    _, prepared, encoder, _ = fit(data)
    decoded = encoder.inverse_transform(encoder.transform(prepared), np.random.default_rng(2))
    # capital gain is 0 for ~92% of people: the bound value has a cell of its own, so a zero
    # decodes to exactly 0 (not to a value smeared over a 1,500-wide cell)
    real_zeros = (prepared["gain"] == 0).mean()
    assert real_zeros > 0.8
    assert (decoded["gain"] == 0).mean() == pytest.approx(real_zeros, abs=0.01)
    assert str(decoded["age"].dtype) == "Int64"


LAB = """
name: lab
dataset: {id: lab}
privacy: {epsilon: 2.0, delta: 1.0e-9, encoding_share: 0.5}
columns:
  creatinine: {kind: numeric, bounds: [0, 15], binning: uniform, bins: 20, decimals: 1,
               transform: asinh, complete: true}
"""


def test_a_declared_precision_is_kept_at_decode():
    """A lab value recorded to 0.1 (flchain's creatinine: 1.0 is 20% of the rows) decoded
    uniformly inside a bin never recurs exactly; with ``decimals: 1`` every synthetic value sits
    on the recorded grid, inside the bounds, and the frequent exact values recur."""
    from privsynth.generators.persist import _encoder_from_dict, _encoder_to_dict

    rng = np.random.default_rng(3)
    values = np.round(rng.lognormal(0.0, 0.3, 4000), 1)
    frame = pd.DataFrame({"creatinine": values})
    policy = parse_policy(LAB)
    prepared = prepare_table(frame, policy).frame
    encoder = TableEncoder.fit(prepared, policy, encoding_budget(policy), PrivacySpend(),
                               SeededNoise(np.random.default_rng(0)))
    decoded = encoder.inverse_transform(encoder.transform(prepared), np.random.default_rng(4))
    x = decoded["creatinine"].to_numpy(float)
    assert not np.isnan(x).any()  # complete: no missing slot
    assert np.allclose(x, np.round(x, 1)) and x.min() >= 0 and x.max() <= 15
    assert (x == 1.0).mean() > 0.05  # a frequent recorded value recurs
    plain = parse_policy(LAB.replace(" decimals: 1,", ""))
    loose = TableEncoder.fit(prepare_table(frame, plain).frame, plain, encoding_budget(plain),
                             PrivacySpend(), SeededNoise(np.random.default_rng(0)))
    y = loose.inverse_transform(loose.transform(prepared), np.random.default_rng(4))
    assert (y["creatinine"].to_numpy(float) == 1.0).mean() < 0.001  # the failure it fixes
    numeric = encoder.encoders[0]
    assert _encoder_from_dict(_encoder_to_dict(numeric)).decimals == 1  # saved with the model
