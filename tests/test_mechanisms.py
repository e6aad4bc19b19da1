"""The counting mechanisms: noise of the right size on every count, and charges that recompute.

Variance checks. For every count a mechanism publishes, noisy − true must be DLap(1/ε): mean 0,
variance σ² = 2p/(1-p)² (p = e^{-ε}). Over n residuals the mean square M2 = mean(R²) has
variance (μ4 − σ⁴)/n, μ4 the DLap fourth moment (summed from the PMF below). The check accepts
|M2 − σ²| <= 6 sd(M2): under a correct mechanism a false failure has probability ~2e-9 (normal
approximation, n >= 20,000; Chebyshev's bound 1/36 holds regardless), and most checks are
seeded, hence deterministic. At ε = 0.5 (σ² = 7.84, sd(M2) ≈ 0.13 at n = 20,000) the check
catches half the noise (σ² → 1.84 at half the scale, or ~2.0 for halved draws), noise on half
the cells (σ² → 3.9) and no noise at all (0).

Threshold. For DLap(t) noise and integer threshold τ, a category held by one row passes with
probability P(Z >= τ-1) = p^{τ-1}/(1+p); it is checked against a direct summation of the PMF,
for minimality (τ-1 would exceed δ), and by Monte Carlo (many one-row categories in one call).

Charges. Every charge names its noise, scale, sensitivity and sampler; ``charge_cost``
recomputes its (ε, δ) from those alone, so a verifier needs nothing else.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from _planted_noise import PlantedNoise
from scipy.stats import beta

from privsynth.encoding.table_encoder import (
    TableEncoder,
    count_encoding_mechanisms,
    encoding_budget,
)
from privsynth.errors import PrivacyError
from privsynth.generators.dp_sgd import DPSGDConfig
from privsynth.generators.gan import DPGAN
from privsynth.policy.loader import parse_policy
from privsynth.privacy import mechanisms
from privsynth.privacy.accounting import dpsgd_epsilon
from privsynth.privacy.events import PrivacySpend
from privsynth.privacy.noise import NoiseSource, SecureNoise, SeededNoise

EPS = 0.5
Z_TOL = 6.0


def seeded(seed: int = 0) -> SeededNoise:
    return SeededNoise(np.random.default_rng(seed))




def dlap_moments(scale: float) -> tuple[float, float]:
    """(σ², μ4) of DLap(scale), summed from the PMF."""
    p = math.exp(-1.0 / scale)
    k = np.arange(1, int(200 * scale) + 200, dtype=float)
    pmf = (1 - p) / (1 + p) * p**k
    return 2 * math.fsum(pmf * k**2), 2 * math.fsum(pmf * k**4)


def assert_dlap_residuals(residuals: np.ndarray, epsilon: float) -> None:
    """noisy − true is DLap(1/ε): integer, centred, with the right mean square (see header)."""
    r = np.asarray(residuals)
    assert r.dtype.kind == "i", r.dtype
    n = len(r)
    assert n >= 20_000
    var, mu4 = dlap_moments(1.0 / epsilon)
    m2 = float(np.mean(r.astype(float) ** 2))
    sd_m2 = math.sqrt((mu4 - var**2) / n)
    assert abs(m2 - var) <= Z_TOL * sd_m2, (m2, var, sd_m2)
    assert abs(float(r.mean())) <= Z_TOL * math.sqrt(var / n)


def test_dlap_moments_match_the_closed_form():
    var, _ = dlap_moments(1 / EPS)
    p = math.exp(-EPS)
    assert var == pytest.approx(2 * p / (1 - p) ** 2, rel=1e-12)


# ------------------------------------------------------------------ noise of the right size
def test_histogram_noise_has_the_full_variance():
    values = np.random.default_rng(1).uniform(0, 1000, 5000)
    edges = np.linspace(0, 1000, 501)
    true = np.histogram(values, bins=edges)[0]
    noise = seeded(2)
    residuals = []
    for _ in range(40):
        noisy, charge = mechanisms.laplace_histogram(values, edges, EPS, noise)
        assert noisy.dtype == np.int64
        residuals.append(noisy - true)
    assert_dlap_residuals(np.concatenate(residuals), EPS)
    assert charge.params["cells"] == 500


def test_histogram_noise_from_the_secure_source_has_the_full_variance():
    values = np.random.default_rng(3).uniform(0, 1000, 5000)
    edges = np.linspace(0, 1000, 20_001)
    noisy, charge = mechanisms.laplace_histogram(values, edges, EPS, SecureNoise())
    assert_dlap_residuals(noisy - np.histogram(values, bins=edges)[0], EPS)
    assert charge.params["sampler"] == "os-csprng-exact"


def test_category_counts_are_noised_with_the_full_variance():
    rng = np.random.default_rng(4)
    domain = [f"c{i}" for i in range(400)]
    values = rng.choice(domain, size=8000).tolist() + [None, "not-in-domain"]
    true = np.array([values.count(c) for c in domain])
    noise = seeded(5)
    residuals = []
    for _ in range(50):
        noisy, _ = mechanisms.noisy_category_counts(values, domain, EPS, noise)
        assert noisy.dtype == np.int64
        residuals.append(noisy - true)
    assert_dlap_residuals(np.concatenate(residuals), EPS)


def test_threshold_domain_noisy_counts_have_the_full_variance():
    domain = [f"c{i:03d}" for i in range(400)]
    values = np.array(domain * 200, dtype=object)  # 200 each, far above tau: all kept
    noise = seeded(6)
    residuals = []
    for _ in range(50):
        kept, noisy, _ = mechanisms.threshold_domain(values, EPS, 1e-6, noise)
        assert kept == domain
        residuals.append(noisy - 200)
    assert_dlap_residuals(np.concatenate(residuals), EPS)


def test_noisy_count_is_noised_with_the_full_variance():
    noise = seeded(7)
    draws = []
    for _ in range(20_000):
        value, charge = mechanisms.noisy_count(1000, EPS, noise)
        draws.append(value - 1000)
    assert isinstance(value, int)
    assert_dlap_residuals(np.array(draws, dtype=np.int64), EPS)
    assert charge.mechanism == "noisy_count" and charge.stage == "encoding"
    assert charge.delta == 0.0 and charge.epsilon == pytest.approx(EPS)
    assert mechanisms.noisy_count(0, EPS, PlantedNoise(lambda size: [-3]))[0] == 0  # clipped


def test_the_variance_check_catches_half_the_noise_and_no_noise():
    """Power of ``assert_dlap_residuals`` against the bugs it is there for."""
    rng = np.random.default_rng(8)
    full = SeededNoise(rng).discrete_laplace(1 / EPS, 20_000)
    half_scale = SeededNoise(rng).discrete_laplace(0.5 / EPS, 20_000)
    half_cells = np.where(np.arange(20_000) % 2 == 0, full, 0)
    for broken in (half_scale, full // 2, half_cells, np.zeros(20_000, dtype=np.int64)):
        with pytest.raises(AssertionError):
            assert_dlap_residuals(broken, EPS)


def test_mechanisms_refuse_a_plain_numpy_generator():
    """The old API took a numpy Generator (and drew float Laplace noise from it)."""
    with pytest.raises(PrivacyError, match="NoiseSource"):
        mechanisms.laplace_histogram(np.array([1.0]), np.array([0.0, 2.0]), EPS,
                                     np.random.default_rng(0))
    with pytest.raises(PrivacyError, match="NoiseSource"):
        mechanisms.noisy_count(10, EPS, np.random.default_rng(0))


def test_outputs_are_the_counts_plus_the_drawn_noise():
    """Planted noise comes out exactly: no other (raw or float) term enters a count."""
    values = np.array([0.5, 1.5, 1.6, 2.5, np.nan])
    plant = PlantedNoise(lambda size: np.arange(size) * 10 - 7)
    noisy, _ = mechanisms.laplace_histogram(values, np.array([0.0, 1.0, 2.0, 3.0]), EPS, plant)
    np.testing.assert_array_equal(noisy, [1 - 7, 2 + 3, 1 + 13])
    noisy, _ = mechanisms.noisy_category_counts(["a", "b", "b", None], ["a", "b", "c"], EPS,
                                                plant)
    np.testing.assert_array_equal(noisy, [1 - 7, 2 + 3, 0 + 13])
    assert mechanisms.noisy_count(40, EPS, plant)[0] == 33


# ------------------------------------------------------------------ threshold
def direct_tail(scale: float, m: int) -> float:
    """P(Z >= m), Z ~ DLap(scale), by summing the PMF term by term (no closed form)."""
    p = math.exp(-1.0 / scale)
    c = (1 - p) / (1 + p)
    terms, k = [], m
    while True:
        term = c * math.exp(-abs(k) / scale)
        terms.append(term)
        if k > 0 and term < 1e-40:
            return math.fsum(terms)
        k += 1


@pytest.mark.parametrize("epsilon", [0.05, 0.1, 0.45, 1.0, 2.0])
@pytest.mark.parametrize("delta", [1e-9, 1e-6, 1e-3, 0.05])
def test_threshold_bounds_the_one_row_pass_probability_exactly(epsilon, delta):
    scale = 1 / epsilon
    tau = mechanisms.threshold_for(scale, delta)
    assert isinstance(tau, int)
    tail = direct_tail(scale, tau - 1)
    assert tail <= delta * (1 + 1e-12)
    assert direct_tail(scale, tau - 2) > delta  # the smallest such threshold
    assert mechanisms.threshold_tail(scale, tau) == pytest.approx(tail, rel=1e-9)
    closed = 1 + math.ceil(math.log(1 / (delta * (1 + math.exp(-epsilon)))) / epsilon)
    assert tau == closed


def clopper_pearson(k: int, n: int, alpha: float) -> tuple[float, float]:
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


@pytest.mark.parametrize("noise", [seeded(9), SecureNoise()], ids=["seeded", "secure"])
def test_one_row_categories_pass_at_the_recorded_delta(noise):
    """20,000 categories of one row each, in one call: the number kept is Binomial(n, tail).
    alpha = 1e-7 for the Clopper-Pearson interval (SecureNoise: false failure < 1e-7)."""
    n, epsilon, delta = 20_000, 1.0, 0.05
    values = np.array([f"solo-{i}" for i in range(n)], dtype=object)
    kept, noisy, charge = mechanisms.threshold_domain(values, epsilon, delta, noise)
    assert (noisy >= charge.params["threshold"]).all()
    low, high = clopper_pearson(len(kept), n, 1e-7)
    assert low <= charge.delta <= high and charge.delta <= delta


# ------------------------------------------------------------------ charges
def _all_charges(noise: NoiseSource):
    values = np.random.default_rng(10).lognormal(3, 1, 3000)
    cats = np.array(["a"] * 300 + ["b"] * 200 + ["c"], dtype=object)
    edges = np.linspace(0, 100, 11)
    yield mechanisms.noisy_count(3000, 0.3, noise)[1]
    yield mechanisms.laplace_histogram(values, edges, 1 / 3, noise, column="x")[1]
    yield mechanisms.noisy_category_counts(cats, ["a", "b"], 0.45, noise, stage="training")[1]
    yield mechanisms.threshold_domain(cats, 0.1, 1e-7, noise, column="y")[2]
    yield mechanisms.dp_bounds(values, 0.2, noise, column="x")[1]
    yield mechanisms.dp_quantile_edges(values, (0, 100), 4, 0.7, noise)[3]


@pytest.mark.parametrize("noise", [seeded(11), SecureNoise()], ids=["seeded", "secure"])
def test_every_charge_records_what_recomputes_it(noise):
    for charge in _all_charges(noise):
        p = charge.params
        assert p["noise"] == "discrete_laplace" and p["sensitivity"] == 1.0
        assert p["sampler"] == noise.name and p["scale"] > 0
        eps, delta = mechanisms.charge_cost(charge.mechanism, p, charge.delta)
        assert (eps, delta) == (charge.epsilon, charge.delta), charge
        if charge.mechanism == "threshold_domain":
            assert isinstance(p["threshold"], int) and 0 < delta <= 1e-7
        else:
            assert delta == 0.0


@pytest.mark.parametrize("epsilon", [0.1, 0.3, 1 / 3, 0.45, 0.7, 1e-3, 0.9 * 0.1 / 7])
def test_the_recorded_epsilon_never_exceeds_the_allotted_one(epsilon):
    _, charge = mechanisms.noisy_count(5, epsilon, seeded())
    assert charge.epsilon == 1.0 / charge.params["scale"] <= epsilon
    assert charge.epsilon == pytest.approx(epsilon, rel=1e-15)


def test_charge_cost_follows_the_params_not_the_recorded_figures():
    _, charge = mechanisms.noisy_count(5, 0.5, seeded())
    doubled = {**charge.params, "scale": 2 * charge.params["scale"]}
    assert mechanisms.charge_cost("noisy_count", doubled, 0.0) == (0.25, 0.0)
    charge = mechanisms.threshold_domain(np.array(["a"] * 50, dtype=object), 0.5, 1e-6,
                                         seeded())[2]
    lower = {**charge.params, "threshold": charge.params["threshold"] - 4}
    assert mechanisms.charge_cost("threshold_domain", lower, charge.delta)[1] == pytest.approx(
        charge.delta * math.exp(4 * 0.5))
    # A legacy continuous-Laplace threshold 1 + ln(1/(2δ))/ε costs exactly δ.
    legacy = {"noise": "laplace", "scale": 2.0, "sensitivity": 1.0,
              "threshold": 1 + 2.0 * math.log(1 / (2 * 1e-6))}
    assert mechanisms.charge_cost("threshold_domain", legacy, 1e-6) == pytest.approx((0.5, 1e-6))


def test_charge_cost_recomputes_dp_sgd_with_its_accountant():
    params = {"sigma": 1.1, "q": 0.01, "steps": 500, "accountant": "rdp"}
    eps, delta = mechanisms.charge_cost("dp_sgd", params, 1e-6)
    assert delta == 1e-6
    assert eps == dpsgd_epsilon(sigma=1.1, q=0.01, steps=500, delta=1e-6, accountant="rdp")
    assert 0 < eps < mechanisms.charge_cost("dp_sgd", {**params, "sigma": 0.8}, 1e-6)[0]


@pytest.mark.parametrize("mechanism,params", [
    ("laplace_magic", {"noise": "discrete_laplace", "scale": 1.0, "sensitivity": 1.0}),
    ("noisy_count", {"noise": "gaussian", "scale": 1.0, "sensitivity": 1.0}),
    ("noisy_count", {"noise": "discrete_laplace", "sensitivity": 1.0}),
    ("laplace_histogram", {"cells": 72, "sensitivity": 1.0}),  # the old record: no scale
    ("threshold_domain", {"noise": "discrete_laplace", "scale": 1.0, "sensitivity": 1.0}),
    ("noisy_count", {"noise": "discrete_laplace", "scale": 0.0, "sensitivity": 1.0}),
    ("dp_sgd", {"sigma": 1.0, "q": 0.1}),
])
def test_charge_cost_refuses_what_it_cannot_recompute(mechanism, params):
    with pytest.raises(PrivacyError):
        mechanisms.charge_cost(mechanism, params, 1e-6)


# ------------------------------------------------------------------ encoder and GAN wiring
POLICY = """
name: mech
dataset: {{id: mech}}
privacy: {{epsilon: 1.0, delta: 1.0e-6, encoding_share: 0.2}}
budget: {{}}
columns:
  city: {{kind: categorical, domain: {domain}}}
  amount: {{kind: numeric, bounds: {bounds}, binning: {binning}}}
"""


def _policy(domain="dp", bounds="dp", binning="quantile"):
    return parse_policy(POLICY.format(domain=domain, bounds=bounds, binning=binning))


def test_the_encoding_budget_includes_the_noisy_row_count():
    assert count_encoding_mechanisms(_policy()) == (4, 1)  # N̂, domain, bounds, quantiles
    declared = _policy(domain='["n", "s"]', bounds="[0, 10]", binning="uniform")
    assert count_encoding_mechanisms(declared) == (1, 0)  # N̂ alone
    budget = encoding_budget(declared)
    assert budget.mechanisms == 1 and budget.epsilon_each == pytest.approx(0.2)
    assert encoding_budget(_policy()).epsilon_each == pytest.approx(0.05)


@pytest.mark.parametrize("binning", ["quantile", "uniform"])
def test_encoder_histogram_mass_is_integer(binning):
    """Only integer noisy counts reach the model (old code: float Laplace-noised masses)."""
    frame = pd.DataFrame({"city": ["n"] * 200, "amount": np.linspace(0, 10, 200)})
    policy = _policy(domain='["n", "s"]', bounds="[0, 10]", binning=binning)
    spend = PrivacySpend()
    encoder = TableEncoder.fit(frame, policy, encoding_budget(policy), spend, seeded())
    mass = encoder.encoders[1].grid_mass
    assert mass.dtype == np.int64 and (mass >= 0).all()
    assert len(spend.charges) == (binning == "quantile")


def test_encoder_refuses_a_plain_numpy_generator():
    frame = pd.DataFrame({"city": ["n"] * 20, "amount": np.linspace(0, 10, 20)})
    policy = _policy()
    with pytest.raises(PrivacyError, match="NoiseSource"):
        TableEncoder.fit(frame, policy, encoding_budget(policy), PrivacySpend(),
                         np.random.default_rng(0))


def test_encoder_charges_carry_its_noise_source():
    frame = pd.DataFrame({"city": ["n"] * 300 + ["s"] * 300,
                          "amount": np.random.default_rng(0).uniform(0, 10, 600)})
    policy = _policy()
    spend = PrivacySpend()
    TableEncoder.fit(frame, policy, encoding_budget(policy), spend, seeded())
    assert [c.mechanism for c in spend.charges] == [
        "threshold_domain", "laplace_histogram", "laplace_histogram"]
    assert {c.params["sampler"] for c in spend.charges} == {"seeded-dev"}
    assert spend.epsilon <= 0.2 * 3 / 4 + 1e-12  # three of the four shares; N̂ is the lead's


def test_gan_condition_frequencies_come_from_the_noisy_counts():
    """Planted noise shows in the frequencies exactly: the raw ones never reach them."""
    codes = np.array([[0, 1]] * 30 + [[1, 1]] * 10, dtype=np.int64)
    config = DPSGDConfig(epsilon=1.0, delta=1e-6, expected_batch_size=8, epochs=1.0,
                         max_grad_norm=1.0, learning_rate=1e-3)
    plant = PlantedNoise(lambda size: np.array([10, -10, 5][:size], dtype=np.int64))
    probs, charges = DPGAN(cond_share=0.1)._noisy_frequencies(
        codes, [2, 3], config, torch.Generator(), noise=plant)
    np.testing.assert_allclose(probs[0].numpy(), [40 / 40, 0 / 40])  # 30+10, 10-10
    np.testing.assert_allclose(probs[1].numpy(), [10 / 45, 30 / 45, 5 / 45])  # 0+10, 40-10, 0+5
    assert [c.params["sampler"] for c in charges] == ["planted-test"] * 2
    assert sum(c.epsilon for c in charges) <= 0.1 + 1e-12


def test_gan_condition_frequencies_default_to_the_secure_source():
    codes = np.zeros((50, 1), dtype=np.int64)
    config = DPSGDConfig(epsilon=1.0, delta=1e-6, expected_batch_size=8, epochs=1.0,
                         max_grad_norm=1.0, learning_rate=1e-3)
    _, charges = DPGAN()._noisy_frequencies(codes, [3], config, torch.Generator())
    assert charges[0].params["sampler"] == "os-csprng-exact"
