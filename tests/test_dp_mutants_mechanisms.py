"""Encoding and randomness checks written for the mutation panel
(``benchmarks/mutation_panel.py``).

* **The encoding charges fit their share.** The encoding stage gets ε·share and δ·share, split
  evenly over its mechanisms, the release's DP row count N̂ included. Fitting a table that uses
  every charged mechanism (two DP domains, DP bounds, quantile bins) and adding the N̂ count
  at ``epsilon_each`` must spend at most ε·share and δ·share, and (the split is even and
  complete) at least ε·share·(1 - 1e-9). A split that forgets a mechanism overspends by a whole
  ``epsilon_each``. Each DP domain's δ is the exact pass probability of a one-row category at
  its integer threshold, at most δ_each and (the threshold is the smallest that works) above
  δ_each·e^{-ε_each}, so giving every domain the whole δ·share overspends δ by ~2×.
* **Public bins stay public.** With declared bounds, ``uniform`` bin edges and the fine grid of
  a quantile histogram are functions of the policy only: two unrelated tables give identical
  edges (uniform) and an identical grid (quantile).
* **A release draws its count noise from the OS CSPRNG** (exact sampler), a dev run from a
  seeded generator.

Seeded; each test well under 10 s.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from privsynth.encoding.table_encoder import TableEncoder, encoding_budget
from privsynth.policy.loader import parse_policy
from privsynth.privacy import mechanisms
from privsynth.privacy.events import PrivacySpend
from privsynth.privacy.noise import SecureNoise, SeededNoise
from privsynth.privacy.rng import RandomSource

EPSILON, DELTA, SHARE = 1.0, 1e-6, 0.2

ALL_CHARGED = f"""
name: split
dataset: {{id: split}}
privacy: {{epsilon: {EPSILON}, delta: {DELTA}, encoding_share: {SHARE}}}
budget: {{}}
columns:
  city: {{kind: categorical, domain: dp}}
  job: {{kind: categorical, domain: dp}}
  amount: {{kind: numeric, bounds: dp, binning: quantile}}
  hours: {{kind: numeric, bounds: [0, 100], binning: quantile}}
  age: {{kind: numeric, bounds: [0, 120], binning: uniform}}
"""

PUBLIC_BINS = """
name: bins
dataset: {{id: bins}}
privacy: {{epsilon: 1.0, delta: 1.0e-6, encoding_share: 0.2}}
budget: {{}}
columns:
  amount: {{kind: numeric, bounds: [0, 1000], binning: {binning}, bins: 8}}
"""


def table(n: int, seed: int) -> pd.DataFrame:
    rs = np.random.default_rng(seed)
    return pd.DataFrame({
        "city": rs.choice(["north", "south", "east"], n).astype(object),
        "job": rs.choice(["a", "b", "c", "d"], n).astype(object),
        "amount": rs.lognormal(4.0, 1.0, n),
        "hours": rs.uniform(0, 80, n),
        "age": rs.integers(18, 90, n).astype(float),
    })


def test_encoding_charges_with_the_row_count_fit_their_share():
    policy = parse_policy(ALL_CHARGED)
    budget = encoding_budget(policy)
    frame = table(4000, seed=0)
    spend = PrivacySpend()
    noise = SeededNoise(np.random.default_rng(1))
    TableEncoder.fit(frame, policy, budget, spend, noise)
    _, count_charge = mechanisms.noisy_count(len(frame), budget.epsilon_each, noise)
    spend.add(count_charge)  # what the pipeline adds: the N̂ count at epsilon_each
    mechs = [c.mechanism for c in spend.charges]
    assert mechs.count("threshold_domain") == 2 and "noisy_count" in mechs
    # N̂, two domains, the DP bounds and two quantile histograms
    assert len(spend.charges) == budget.mechanisms == 6
    eps_share, delta_share = EPSILON * SHARE, DELTA * SHARE
    assert eps_share * (1 - 1e-9) <= spend.epsilon <= eps_share * (1 + 1e-12)
    assert spend.delta <= delta_share * (1 + 1e-12)
    for charge in spend.charges:
        if charge.mechanism == "threshold_domain":
            assert charge.delta <= budget.delta_each * (1 + 1e-12)
            assert charge.delta > budget.delta_each * math.exp(-budget.epsilon_each) * 0.999


def test_uniform_bins_do_not_depend_on_the_data():
    policy = parse_policy(PUBLIC_BINS.format(binning="uniform"))
    rs = np.random.default_rng(2)
    skewed = pd.DataFrame({"amount": rs.lognormal(3.0, 1.2, 3000)})
    flat = pd.DataFrame({"amount": rs.uniform(400, 1000, 3000)})
    encoders = []
    for frame in (skewed, flat):
        spend = PrivacySpend()
        encoders.append(TableEncoder.fit(frame, policy, encoding_budget(policy), spend,
                                         SeededNoise(np.random.default_rng(3))).encoders[0])
        assert spend.charges == ()  # nothing estimated, nothing charged
    np.testing.assert_array_equal(encoders[0].edges, encoders[1].edges)
    np.testing.assert_allclose(encoders[0].edges, np.linspace(0, 1000, 9))


def test_quantile_grid_does_not_depend_on_the_data():
    policy = parse_policy(PUBLIC_BINS.format(binning="quantile"))
    rs = np.random.default_rng(4)
    grids = []
    for frame in (pd.DataFrame({"amount": rs.lognormal(3.0, 1.2, 3000)}),
                  pd.DataFrame({"amount": rs.uniform(400, 900, 3000)})):
        encoder = TableEncoder.fit(frame, policy, encoding_budget(policy), PrivacySpend(),
                                   SeededNoise(np.random.default_rng(5))).encoders[0]
        grids.append(encoder.grid)
        assert encoder.grid[0] == 0.0 and encoder.grid[-1] == 1000.0
    np.testing.assert_array_equal(grids[0], grids[1])


def test_release_noise_comes_from_the_os_csprng():
    release = RandomSource(None)
    assert release.mode == "os-entropy"
    noise = release.noise("encoding")
    assert isinstance(noise, SecureNoise) and noise.name == "os-csprng-exact"
    _, charge = mechanisms.noisy_count(100, 1.0, noise)
    assert charge.params["sampler"] == "os-csprng-exact"
    dev = RandomSource(7)
    assert dev.mode == "dev-seed"
    assert isinstance(dev.noise("encoding"), SeededNoise)
    np.testing.assert_array_equal(dev.noise("encoding").discrete_laplace(2.0, 50),
                                  RandomSource(7).noise("encoding").discrete_laplace(2.0, 50))


@pytest.mark.parametrize("seed", [None, 7])
def test_streams_are_independent_of_each_other(seed):
    source = RandomSource(seed)
    a = source.noise("encoding").discrete_laplace(5.0, 200)
    b = source.noise("row-count").discrete_laplace(5.0, 200)
    assert not np.array_equal(a, b)
