"""Layer 1: the accountant. Golden values, an exact reference, monotonicity, calibration, manifests.

Tolerances, and why:

* RDP is a closed form evaluated on Opacus' fixed grid of orders, then minimised: it is
  deterministic, so the golden value is pinned to 1e-3 (the precision it was quoted at).
* PRV (Gopi et al. 2021) discretises the privacy-loss distribution and composes by FFT; Opacus
  asks for eps_error = 0.01 and reports the *upper* end of its interval, so its figure may sit
  up to 2·eps_error = 0.02 above the true epsilon, and must never sit below it.
* For one un-subsampled Gaussian step the exact epsilon is known in closed form (the analytic
  Gaussian mechanism, Balle & Wang 2018, Theorem 8). Both accountants must be *sound* (never
  below it); PRV must be within 0.02 of it; RDP's conversion to (eps, delta) is known to be loose
  by several percent at this delta (0.17 at sigma = 2, 0.44 at sigma = 0.8), so it gets 10%.
"""

from __future__ import annotations

import json
import math
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq
from scipy.stats import norm

from privsynth.data.schema import TableSchema
from privsynth.errors import PrivacyError
from privsynth.generators.dp_sgd import DPSGDConfig, DPSGDPlan
from privsynth.policy.loader import parse_policy
from privsynth.privacy.accounting import (
    calibrate_sigma,
    check_delta,
    dpsgd_charge,
    dpsgd_epsilon,
)
from privsynth.privacy.events import Charge, PrivacySpend
from privsynth.privacy.mechanisms import threshold_for, threshold_tail
from privsynth.release.manifest import build_manifest
from privsynth.release.verify import recompute_charges

warnings.filterwarnings("ignore", category=RuntimeWarning, module="opacus")
warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")


def gaussian_delta(epsilon: float, sigma: float) -> float:
    """Balle & Wang (2018), Thm 8: the exact delta(eps) of the Gaussian mechanism with
    sensitivity 1 and noise N(0, sigma²)."""
    a, b = 0.5 / sigma, epsilon * sigma
    return float(norm.cdf(a - b) - math.exp(epsilon) * norm.cdf(-a - b))


def gaussian_epsilon(sigma: float, delta: float) -> float:
    """The exact epsilon of the Gaussian mechanism at ``delta`` (root of gaussian_delta)."""
    return float(brentq(lambda e: gaussian_delta(e, sigma) - delta, 0.0, 100.0, xtol=1e-12))


# ------------------------------------------------------------------------- golden values
def test_golden_rdp():
    eps = dpsgd_epsilon(sigma=1.5, q=0.04, steps=2250, delta=1e-5, accountant="rdp")
    assert eps == pytest.approx(7.329, abs=1e-3)


def test_golden_prv():
    eps = dpsgd_epsilon(sigma=1.5, q=0.04, steps=2250, delta=1e-5, accountant="prv")
    assert eps == pytest.approx(6.77, abs=0.02)
    # PRV is the tighter accountant: it never reports more than RDP for the same inputs.
    assert eps <= dpsgd_epsilon(sigma=1.5, q=0.04, steps=2250, delta=1e-5, accountant="rdp")


def test_analytic_gaussian_reference_value():
    exact = gaussian_epsilon(2.0, 1e-5)
    assert exact == pytest.approx(1.993, abs=1e-3)
    assert gaussian_delta(exact, 2.0) == pytest.approx(1e-5, rel=1e-6)


@pytest.mark.parametrize("accountant, slack", [("prv", 0.02), ("rdp", 0.10)])
@pytest.mark.parametrize("sigma", [0.8, 2.0, 5.0])
def test_one_gaussian_step_matches_the_exact_epsilon(accountant, slack, sigma):
    delta = 1e-5
    exact = gaussian_epsilon(sigma, delta)
    reported = dpsgd_epsilon(sigma=sigma, q=1.0, steps=1, delta=delta, accountant=accountant)
    # Sound: at the reported epsilon the true delta is within the promise.
    assert reported >= exact - 1e-9, (reported, exact)
    assert gaussian_delta(reported, sigma) <= delta * (1 + 1e-6)
    # and not wastefully loose: PRV within 2·eps_error absolute, RDP within 10% relative.
    assert reported - exact <= (slack if accountant == "prv" else slack * exact), (reported, exact)


# ------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("sigma", [0.0, -1.0, float("nan")])
@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_refuses_sigma_zero(sigma, accountant):
    with pytest.raises(PrivacyError, match="sigma"):
        dpsgd_epsilon(sigma=sigma, q=0.01, steps=10, delta=1e-5, accountant=accountant)
    with pytest.raises(PrivacyError, match="sigma"):
        dpsgd_charge(sigma=sigma, q=0.01, steps=10, delta=1e-5, accountant=accountant,
                     max_grad_norm=1.0)


@pytest.mark.parametrize("q", [0.0, -0.1, 1.5])
def test_refuses_sample_rate_outside_unit_interval(q):
    with pytest.raises(PrivacyError, match="sample rate"):
        dpsgd_epsilon(sigma=1.0, q=q, steps=10, delta=1e-5, accountant="rdp")


def test_refuses_unknown_accountant_and_nonpositive_epsilon():
    with pytest.raises(PrivacyError, match="accountant"):
        dpsgd_epsilon(sigma=1.0, q=0.01, steps=10, delta=1e-5, accountant="moments")
    with pytest.raises(PrivacyError, match="epsilon"):
        calibrate_sigma(epsilon=0.0, delta=1e-5, q=0.01, steps=10, accountant="rdp")


def test_refuses_delta_of_one_over_ten_n_or_more():
    check_delta(9.9e-5, 1000)
    for bad in (1e-4, 0.5, 0.0, float("nan")):
        with pytest.raises(PrivacyError, match="delta"):
            check_delta(bad, 1000)


# ------------------------------------------------------------------------- monotonicity
sigmas = st.floats(0.5, 10.0)
rates = st.floats(0.001, 0.5)
step_counts = st.integers(1, 3000)
PROPERTY = settings(max_examples=20, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def _eps(sigma, q, steps, accountant="rdp"):
    return dpsgd_epsilon(sigma=sigma, q=q, steps=steps, delta=1e-5, accountant=accountant)


@PROPERTY
@given(sigmas, sigmas, rates, step_counts)
def test_rdp_epsilon_decreases_in_sigma(s1, s2, q, steps):
    lo, hi = sorted((s1, s2))
    assert _eps(hi, q, steps) <= _eps(lo, q, steps) + 1e-9


@PROPERTY
@given(sigmas, rates, rates, step_counts)
def test_rdp_epsilon_increases_in_q(sigma, q1, q2, steps):
    lo, hi = sorted((q1, q2))
    assert _eps(sigma, lo, steps) <= _eps(sigma, hi, steps) + 1e-9


@PROPERTY
@given(sigmas, rates, step_counts, step_counts)
def test_rdp_epsilon_increases_in_steps(sigma, q, t1, t2):
    lo, hi = sorted((t1, t2))
    assert _eps(sigma, q, lo) <= _eps(sigma, q, hi) + 1e-9


# PRV is numerical (eps_error 0.01, reported as an upper bound): monotone up to 2·eps_error.
@settings(max_examples=8, deadline=None, derandomize=True)
@given(st.floats(0.7, 4.0), st.floats(0.005, 0.1), st.integers(10, 500),
       st.sampled_from(["sigma", "q", "steps"]))
def test_prv_epsilon_is_monotone(sigma, q, steps, axis):
    base = _eps(sigma, q, steps, "prv")
    if axis == "sigma":
        assert _eps(sigma * 1.3, q, steps, "prv") <= base + 0.02
    elif axis == "q":
        assert _eps(sigma, min(1.0, q * 1.3), steps, "prv") >= base - 0.02
    else:
        assert _eps(sigma, q, steps * 2, "prv") >= base - 0.02


# ------------------------------------------------------------------------- calibration
@settings(max_examples=15, deadline=None, derandomize=True)
@given(st.floats(0.3, 8.0), st.floats(0.002, 0.2), st.integers(10, 2000))
def test_rdp_calibration_never_overshoots(epsilon, q, steps):
    sigma = calibrate_sigma(epsilon=epsilon, delta=1e-6, q=q, steps=steps, accountant="rdp")
    reached = dpsgd_epsilon(sigma=sigma, q=q, steps=steps, delta=1e-6, accountant="rdp")
    assert reached <= epsilon
    # and does not waste budget: 3% less noise would overshoot, or the budget is nearly used.
    assert (dpsgd_epsilon(sigma=sigma / 1.03, q=q, steps=steps, delta=1e-6, accountant="rdp")
            > epsilon or reached >= 0.97 * epsilon)


@pytest.mark.parametrize("epsilon, q, steps", [(1.0, 0.08, 375), (0.3, 0.01, 100),
                                               (4.0, 0.25, 120)])
def test_prv_calibration_never_overshoots(epsilon, q, steps):
    sigma = calibrate_sigma(epsilon=epsilon, delta=1e-6, q=q, steps=steps, accountant="prv")
    assert dpsgd_epsilon(sigma=sigma, q=q, steps=steps, delta=1e-6, accountant="prv") <= epsilon


def test_plan_uses_the_calibrated_sigma_for_its_own_q_and_steps():
    config = DPSGDConfig(epsilon=0.9, delta=1e-6, expected_batch_size=256, epochs=5,
                         max_grad_norm=1.0, learning_rate=1e-2, accountant="prv")
    plan = DPSGDPlan.calibrate(config, 10_000)
    assert plan.sample_rate == pytest.approx(256 / 10_000, rel=1e-8)
    assert plan.sample_rate <= 256 / 10_000 and plan.steps == math.ceil(5 / (256 / 10_000))
    assert dpsgd_epsilon(sigma=plan.noise_multiplier, q=plan.sample_rate, steps=plan.steps,
                         delta=1e-6, accountant="prv") <= 0.9


# ------------------------------------------------------------------------- manifests
POLICY = """
name: t
dataset: {id: t}
privacy: {epsilon: 2.0, delta: 1.0e-6, accountant: prv}
budget: {}
columns:
  a: {kind: integer, bounds: dp}
  b: {kind: categorical, domain: dp}
"""


def _manifest(spend: PrivacySpend) -> dict:
    return build_manifest(
        release_id="r", policy=parse_policy(POLICY), spend=spend, schema=TableSchema(()),
        synthetic_rows=1000, seed_mode="os-entropy", column_actions={})



def recompute_epsilon(manifest: dict) -> float:
    """What `privsynth verify` does: every charge's ε from its recorded inputs, summed."""
    return sum(eps for eps, _ in recompute_charges(manifest))


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_epsilon_recomputed_from_a_manifest_equals_the_reported_epsilon(accountant):
    spend = PrivacySpend()
    laplace = {"noise": "discrete_laplace", "scale": 10.0, "sensitivity": 1.0}
    tau = threshold_for(10.0, 5e-8)
    spend.add(Charge("encoding", "laplace_histogram", 0.1, 0.0, "a", {**laplace, "cells": 72}))
    spend.add(Charge("encoding", "threshold_domain", 0.1, threshold_tail(10.0, tau), "b",
                     {**laplace, "threshold": tau}))
    sigma = calibrate_sigma(epsilon=1.8, delta=9e-7, q=0.05, steps=400, accountant=accountant)
    spend.add(dpsgd_charge(sigma=sigma, q=0.05, steps=400, delta=9e-7, accountant=accountant,
                           max_grad_norm=1.0))
    manifest = json.loads(json.dumps(_manifest(spend)))  # as written to and read from disk
    assert recompute_epsilon(manifest) == pytest.approx(manifest["privacy"]["epsilon"], abs=1e-9)
    assert manifest["privacy"]["epsilon"] == pytest.approx(spend.epsilon, abs=1e-12)
    assert manifest["privacy"]["epsilon"] <= 2.0

    # The recomputation really uses the recorded inputs: halve sigma and it disagrees.
    manifest["privacy"]["charges"][-1]["params"]["sigma"] = sigma / 2
    assert recompute_epsilon(manifest) > manifest["privacy"]["epsilon"] + 0.5
