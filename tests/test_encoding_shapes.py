"""Declared column shapes: point masses, heavy tails (asinh) and complete columns (issue 11).

Each test round-trips real values through the fitted encoder (encode, then decode): the part of
the pipeline that decides what a perfect generator could at best give back. Before these rules
existed, a column with 11% exact zeros decoded with none, a lab value with median 1.3 under a
public bound of 1,000 decoded with a median near 8, and a column without missing values gained
missing cells whenever the generator picked the missing slot.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from privsynth.data.table import prepare_table
from privsynth.encoding.table_encoder import TableEncoder, encoding_budget
from privsynth.errors import PolicyError
from privsynth.generators.persist import _encoder_from_dict, _encoder_to_dict
from privsynth.policy.loader import parse_policy
from privsynth.privacy.events import PrivacySpend
from privsynth.privacy.noise import SeededNoise

DATASETS = "/work/shared/datasets"


def _policy(columns: str, epsilon: float = 4.0):
    return parse_policy(f"""
name: shapes
dataset: {{id: shapes}}
privacy: {{epsilon: {epsilon}, delta: 1.0e-9, encoding_share: 0.5}}
columns:
{columns}
""")


def _round_trip(frame: pd.DataFrame, policy, seed: int = 0):
    prepared = prepare_table(frame[list(policy.columns)], policy).frame
    encoder = TableEncoder.fit(prepared, policy, encoding_budget(policy), PrivacySpend(),
                               SeededNoise(np.random.default_rng(seed)))
    decoded = encoder.inverse_transform(encoder.transform(prepared), np.random.default_rng(seed))
    return prepared, encoder, decoded


@pytest.fixture(scope="module")
def lending() -> pd.DataFrame:
    path = f"{DATASETS}/lending_club.csv.gz"
    try:
        return pd.read_csv(path, usecols=["total_bal_il", "int_rate"])
    except FileNotFoundError:
        pytest.skip("shared datasets not present")


@pytest.fixture(scope="module")
def flchain() -> pd.DataFrame:
    try:
        return pd.read_csv(f"{DATASETS}/flchain.csv.gz", usecols=["kappa", "creatinine"])
    except FileNotFoundError:
        pytest.skip("shared datasets not present")


def test_declared_point_mass_inside_the_bounds_decodes_exactly(lending):
    # 11% of loans have exactly 0 instalment balance; 0 is not a bound here, so without a
    # point mass it shares a linear cell ~9,400 wide and no decoded value is 0
    columns = "  total_bal_il: {kind: numeric, bounds: [-1000, 600000], binning: uniform}\n"
    _, _, plain = _round_trip(lending, _policy(columns))
    assert (plain["total_bal_il"] == 0).mean() < 0.001
    shaped = columns.replace("binning: uniform", "binning: uniform, point_masses: [0]")
    prepared, encoder, decoded = _round_trip(lending, _policy(shaped))
    real = (prepared["total_bal_il"] == 0).mean()
    assert real > 0.1
    # exact: a point mass is a slot of its own, so the round trip keeps every zero
    assert (decoded["total_bal_il"] == 0).mean() == pytest.approx(real, abs=1e-12)
    assert encoder.encoders[0].width == 20 + 1 + 1  # bins, the point mass, missing


def test_point_masses_do_not_shape_the_quantile_bins(lending):
    columns = ("  total_bal_il: {kind: numeric, bounds: [-1000, 600000], "
               "point_masses: [0], bins: 8}\n")
    prepared, encoder, _ = _round_trip(lending, _policy(columns))
    codes = encoder.transform(prepared)[:, 0]
    in_bins = codes[codes < encoder.encoders[0].n_bins]
    shares = np.bincount(in_bins, minlength=8) / in_bins.size
    # the zeros are not in any bin; the DP quantile bins split the other values
    assert in_bins.size == int((prepared["total_bal_il"] != 0).sum())
    assert shares.max() < 0.5


def test_asinh_transform_keeps_the_median_of_a_heavy_tailed_lab_value(flchain):
    # kappa: median 1.27, public reportable range [0, 1000]; 64 linear cells of width 15.6
    columns = "  kappa: {kind: numeric, bounds: [0, 1000]}\n"
    prepared, _, linear = _round_trip(flchain, _policy(columns))
    real = float(prepared["kappa"].median())
    assert float(linear["kappa"].median()) > 3 * real
    asinh = columns.replace("bounds: [0, 1000]", "bounds: [0, 1000], transform: asinh")
    _, _, decoded = _round_trip(flchain, _policy(asinh))
    assert float(decoded["kappa"].median()) == pytest.approx(real, rel=0.2)
    q90_real, q90 = prepared["kappa"].quantile(0.9), decoded["kappa"].quantile(0.9)
    assert q90 == pytest.approx(q90_real, rel=0.25)


def test_complete_column_never_decodes_to_missing(lending, flchain):
    columns = "  int_rate: {kind: numeric, bounds: [0, 40], complete: true}\n"
    _, encoder, _ = _round_trip(lending, _policy(columns))
    enc = encoder.encoders[0]
    assert enc.width == enc.n_bins  # no missing slot at all: a generator cannot pick one
    every_code = np.arange(enc.width)
    assert not enc.decode(every_code, np.random.default_rng(0)).isna().any()
    # creatinine has 17% missing cells: declared complete (wrongly), each missing cell takes
    # the lower bound's slot row by row, and nothing counts them
    columns = "  creatinine: {kind: numeric, bounds: [0.1, 20], complete: true}\n"
    prepared, encoder, decoded = _round_trip(flchain, _policy(columns))
    assert prepared["creatinine"].isna().mean() > 0.1
    assert not decoded["creatinine"].isna().any()


def test_complete_categorical_has_no_missing_slot():
    policy = _policy("  sex: {kind: categorical, domain: [F, M], complete: true}\n")
    frame = pd.DataFrame({"sex": ["F", "M", None, "M"]})
    prepared, encoder, decoded = _round_trip(frame, policy)
    assert encoder.encoders[0].width == 2
    assert list(encoder.transform(prepared)[:, 0]) == [0, 1, 0, 1]
    assert decoded["sex"].notna().all()


def test_shapes_survive_save_and_load(lending):
    columns = ("  total_bal_il: {kind: numeric, bounds: [-1000, 600000], point_masses: [0], "
               "transform: asinh, transform_scale: 100, complete: true}\n")
    prepared, encoder, _ = _round_trip(lending, _policy(columns))
    enc = encoder.encoders[0]
    loaded = _encoder_from_dict(_encoder_to_dict(enc))
    assert loaded.point_masses == enc.point_masses and loaded.transform == "asinh"
    assert loaded.transform_scale == 100 and loaded.complete
    assert np.array_equal(loaded.encode(prepared["total_bal_il"]),
                          enc.encode(prepared["total_bal_il"]))


@pytest.mark.parametrize(("rule", "message"), [
    ("{kind: numeric, bounds: [0, 10], point_masses: [11]}", "outside bounds"),
    ("{kind: numeric, bounds: [0, 10], point_masses: [1, 1]}", "twice"),
    ("{kind: categorical, domain: [a], point_masses: [1]}", "numeric and integer"),
    ("{kind: categorical, domain: [a], transform: asinh}", "numeric and integer"),
    ("{kind: numeric, bounds: [0, 10], transform: log}", "transform"),
    ("{kind: numeric, bounds: [0, 10], transform: asinh, transform_scale: 0}", "transform_scale"),
])
def test_bad_shapes_are_policy_errors_naming_the_column(rule, message):
    with pytest.raises(PolicyError) as info:
        _policy(f"  x: {rule}\n")
    assert message in str(info.value) and "x" in str(info.value)


def test_dp_point_masses_find_the_frequent_exact_values_and_are_charged(lending):
    columns = ("  total_bal_il: {kind: numeric, bounds: [-1000, 600000], binning: uniform, "
               "point_masses: dp}\n"
               "  int_rate: {kind: numeric, bounds: [0, 40], binning: uniform, "
               "point_masses: dp}\n")
    policy = _policy(columns, epsilon=2.0)
    spend = PrivacySpend()
    prepared = prepare_table(lending[list(policy.columns)], policy).frame
    budget = encoding_budget(policy)
    encoder = TableEncoder.fit(prepared, policy, budget, spend,
                               SeededNoise(np.random.default_rng(3)))
    bal, rate = encoder.encoders
    # 11% zeros (about 1,100 rows) clear a threshold of a few dozen rows; interest rates are
    # set per loan grade, so dozens of exact rates clear it: the most frequent 8 are kept
    assert 0.0 in bal.point_masses
    assert len(rate.point_masses) == 8
    kinds = [(c.mechanism, c.column) for c in spend.charges]
    assert kinds.count(("threshold_domain", "total_bal_il")) == 1
    assert kinds.count(("threshold_domain", "int_rate")) == 1
    # the two thresholds took their share of the encoding budget: 1 count + 2 thresholds
    assert budget.mechanisms == 3
    assert sum(c.epsilon for c in spend.charges) == pytest.approx(2 * budget.epsilon_each)
