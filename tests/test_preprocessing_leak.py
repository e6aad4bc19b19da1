"""Layer 6: preprocessing does not leak one row.

* A category held by one row (a canary token) enters a DP-learned domain only at the rate the
  threshold mechanism allows: with discrete Laplace DLap(1/eps) noise and the integer threshold
  tau of ``mechanisms.threshold_for``, a count of 1 passes with probability exactly
  p^(tau-1)/(1+p) <= delta (p = e^-eps), the charge's recorded delta. Over many seeds the
  observed rate's Clopper-Pearson interval must not lie above it (and, as the mechanism is
  tight, should contain it). With a declared domain the canary never appears, and nothing is
  charged.
* Moving one value to 1e12 does not move declared bounds at all, and moves DP bounds only within
  their noise: for the event "the upper bound is far above the data", the probability under the
  moved table is at most e^(2 eps) times that under the original (moving a value = removing one
  row and adding one), checked with Clopper-Pearson bounds; a non-private max() fails this.
* The bounds and the domain are post-processing of the *noisy* counts: a noise source that
  plants mass far above the data must move the DP upper bound there, and planted noise must
  decide which categories pass. Exact bounds (``np.sort``/quantiles of the raw values) or
  thresholds on raw category counts ignore the planted noise and fail.

Seeds are fixed; alpha = 0.001 per interval.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from _planted_noise import PlantedNoise
from scipy.stats import beta

from privsynth.data.table import prepare_table
from privsynth.encoding.table_encoder import TableEncoder, encoding_budget
from privsynth.errors import PrivacyError
from privsynth.policy.loader import parse_policy
from privsynth.privacy import mechanisms
from privsynth.privacy.events import PrivacySpend
from privsynth.privacy.noise import SeededNoise

ALPHA = 1e-3
CANARY = "CANARY-7f3a9"


def clopper_pearson(k: int, n: int, alpha: float = ALPHA) -> tuple[float, float]:
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def _policy(domain: str, delta: float = 0.009, share: float = 0.9, bounds: str = "[0, 1000]"):
    return parse_policy(f"""
name: leak
dataset: {{id: leak}}
privacy: {{epsilon: 1.0, delta: {delta}, encoding_share: {share}}}
budget: {{}}
columns:
  city: {{kind: categorical, domain: {domain}, unknown: missing}}
  amount: {{kind: numeric, bounds: {bounds}, binning: uniform}}
""")


def _frame(rng: np.random.Generator, n: int = 300, canary: bool = True) -> pd.DataFrame:
    cities = rng.choice(["north", "south", "east", "west"], size=n).astype(object)
    if canary:
        cities[0] = CANARY
    return pd.DataFrame({"city": cities, "amount": rng.uniform(0, 1000, size=n)})


def _learned_domain(policy, prepared, seed: int) -> tuple[tuple[str, ...], PrivacySpend]:
    spend = PrivacySpend()
    encoder = TableEncoder.fit(prepared, policy, encoding_budget(policy), spend,
                               SeededNoise(np.random.default_rng(seed)))
    return encoder.schema["city"].domain, spend


def test_canary_enters_a_dp_domain_at_most_at_rate_delta():
    policy = _policy("dp")
    budget = encoding_budget(policy)
    assert budget.delta_each == pytest.approx(0.009 * 0.9)
    frame = prepare_table(_frame(np.random.default_rng(0)), policy).frame
    seeds = 10_000
    hits = 0
    common_kept = 0
    for seed in range(seeds):
        domain, spend = _learned_domain(policy, frame, seed)
        hits += CANARY in domain
        common_kept += {"north", "south", "east", "west"} <= set(domain)
    (charge,) = spend.charges
    assert charge.mechanism == "threshold_domain"
    # The recorded delta is the exact pass probability of a count of 1, within the allotment.
    assert charge.delta <= budget.delta_each
    assert charge.delta == pytest.approx(
        mechanisms.threshold_tail(charge.params["scale"], charge.params["threshold"]))
    low, high = clopper_pearson(hits, seeds)
    assert low <= charge.delta, (hits, seeds, charge.delta)
    # The threshold is tight (a count of 1 passes with probability exactly charge.delta): the
    # rate is not far below it either, so the test would notice a threshold computed wrongly
    # (or a threshold applied to the raw counts: then the canary never passes).
    assert high >= charge.delta
    assert common_kept == seeds  # ~75 rows each: always found


def test_threshold_mechanism_power_against_a_missing_threshold():
    """The same estimate catches a leaky variant (threshold 1: any present category passes)."""
    noise = SeededNoise(np.random.default_rng(1))
    leaks = int((1 + noise.discrete_laplace(1.0, 2000) >= 1).sum())  # P = 1/(1 + e^-1) ~ 0.73
    assert clopper_pearson(leaks, 2000)[0] > 0.0081




def test_domain_follows_the_noisy_counts_not_the_raw_ones():
    """A category passes iff its count plus the drawn noise reaches tau: planted noise that lifts
    the canary (count 1) to tau lets it in, noise that sinks the 60-row category keeps it out.
    A threshold on raw counts would keep the big one and drop the canary."""
    values = np.array(["big"] * 60 + ["mid"] * 30 + [CANARY], dtype=object)
    eps, delta = 0.5, 1e-6
    tau = mechanisms.threshold_for(1 / eps, delta)
    order = sorted(["big", "mid", CANARY])  # np.unique order of the categories
    lift = {"big": -60, "mid": tau - 30, CANARY: tau - 1}
    kept, noisy, charge = mechanisms.threshold_domain(
        values, eps, delta, PlantedNoise(lambda size: [lift[c] for c in order]))
    assert kept == sorted(["mid", CANARY]) and list(noisy) == [tau, tau]
    assert charge.params["threshold"] == tau
    lift[CANARY] = tau - 2  # one short of the threshold
    kept, _, _ = mechanisms.threshold_domain(
        values, eps, delta, PlantedNoise(lambda size: [lift[c] for c in order]))
    assert kept == ["mid"]


def test_canary_never_in_a_declared_domain_and_nothing_charged():
    policy = _policy('["north", "south", "east", "west"]')
    frame = prepare_table(_frame(np.random.default_rng(2)), policy).frame
    assert frame["city"].isna().sum() == 1  # the canary became missing ('unknown: missing')
    for seed in range(200):
        domain, spend = _learned_domain(policy, frame, seed)
        assert domain == ("north", "south", "east", "west")
        assert spend.charges == ()


# ------------------------------------------------------------------ bounds
def _amounts(moved: bool) -> np.ndarray:
    values = np.random.default_rng(3).lognormal(mean=4.0, sigma=1.0, size=20_000).clip(0, 1000)
    if moved:
        values = values.copy()
        values[0] = 1e12
    return values


def test_declared_bounds_do_not_move():
    policy = _policy('["north", "south", "east", "west"]')
    original = pd.DataFrame({"city": ["north"] * 500, "amount": _amounts(False)[:500]})
    moved = original.copy()
    moved.loc[0, "amount"] = 1e12
    for seed in range(20):
        enc_a = TableEncoder.fit(original, policy, encoding_budget(policy), PrivacySpend(),
                                 SeededNoise(np.random.default_rng(seed)))
        enc_b = TableEncoder.fit(moved, policy, encoding_budget(policy), PrivacySpend(),
                                 SeededNoise(np.random.default_rng(seed)))
        a, b = enc_a.encoders[1], enc_b.encoders[1]
        assert a.schema.bounds == b.schema.bounds == (0.0, 1000.0)
        np.testing.assert_array_equal(a.edges, b.edges)


def _high_bounds(values: np.ndarray, eps: float, seeds: int) -> np.ndarray:
    return np.array([mechanisms.dp_bounds(values, eps, SeededNoise(np.random.default_rng(s)))[0][1]
                     for s in range(seeds)])


def test_dp_bounds_move_only_within_their_noise():
    eps, seeds, far = 0.5, 1500, 1e4  # data lie in [0, 1000]; "far" is 10x above
    base = _high_bounds(_amounts(False), eps, seeds)
    moved = _high_bounds(_amounts(True), eps, seeds)
    p_base_high = clopper_pearson(int((base > far).sum()), seeds)[1]
    p_moved_low = clopper_pearson(int((moved > far).sum()), seeds)[0]
    assert p_moved_low <= math.exp(2 * eps) * p_base_high
    # Coupled noise (same seed): the one moved value shifts the upper edge by at most one
    # quarter-decade cell, and rarely at all.
    shift = np.abs(np.log10(moved) - np.log10(base))
    assert shift.max() <= 0.25 + 1e-9 and (shift > 0).mean() < 0.05
    # Power: a non-private bound (the max) moves to 1e12 every time.
    assert _amounts(True).max() > far


def _log_grid_cell(value: float) -> int:
    """Index of the dp_bounds grid cell holding ``value`` (the grid of mechanisms.dp_bounds)."""
    mags = 10.0 ** np.arange(-3, 15.25, 0.25)
    grid = np.concatenate([-mags[::-1], [0.0], mags])
    return int(np.searchsorted(grid, value, side="right")) - 1


def test_dp_bounds_are_post_processing_of_the_noisy_histogram():
    """Planted noise decides the DP bounds: 10^6 extra in the cell at 1e13 must pull the upper
    bound there; exact bounds (np.sort, quantiles of the raw values) stay near 1000."""
    values = _amounts(False)[:2000]
    far = _log_grid_cell(1e13)

    def plant(size: int) -> np.ndarray:
        out = np.zeros(size, dtype=np.int64)
        out[far] = 10**6
        return out

    (low, high), charge = mechanisms.dp_bounds(values, 0.5, PlantedNoise(plant))
    assert high >= 1e13 and charge.params["sampler"] == "planted-test"
    # And with zero noise they are the histogram's own coverage bounds: within the data's range.
    (low0, high0), _ = mechanisms.dp_bounds(values, 0.5, PlantedNoise(
        lambda size: np.zeros(size, dtype=np.int64)))
    assert 0 < low0 <= 10 and 1000 <= high0 < 2000


def test_dp_bounds_without_mass_still_charge_the_spend():
    """The "no mass" refusal comes after its charge is in the spend (the pipeline records the
    spend in the ledger on failure); the old code raised inside the mechanism and lost it."""
    policy = _policy('["north", "south", "east", "west"]', bounds="dp")
    frame = pd.DataFrame({"city": ["north"] * 3, "amount": [1.0, 2.0, 3.0]})
    spend = PrivacySpend()
    sink = PlantedNoise(lambda size: np.full(size, -10, dtype=np.int64))  # all mass removed
    with pytest.raises(PrivacyError, match="no mass"):
        TableEncoder.fit(frame, policy, encoding_budget(policy), spend, sink)
    (charge,) = spend.charges
    assert charge.mechanism == "laplace_histogram" and charge.column == "amount"
    assert charge.epsilon == pytest.approx(encoding_budget(policy).epsilon_each)
    bounds, direct = mechanisms.dp_bounds(np.array([1.0]), 0.5, sink, column="amount")
    assert bounds is None and direct.epsilon == pytest.approx(0.5)
