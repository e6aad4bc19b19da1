"""Private selection by random stopping (Papernot & Steinke, ICLR 2022), accounted in RDP.

Tuning a DP-SGD generator by training several configurations and keeping the best one leaks
through the choice: the best of K runs can cost K times one run. Papernot and Steinke showed
that when the *number* of runs is itself random and secret, the cost is a small constant times
one run's, whatever the grid:

    A: draw K ~ TNB(η, γ) (truncated negative binomial on {1, 2, ...}); K times run Q, where Q
    picks a configuration uniformly at random, trains it with DP-SGD and scores it; release
    the best-scoring run's output.

**Theorem 2** of the paper: if Q is (λ, ε(λ))-RDP for every order λ, A is (λ, ε'(λ))-RDP with

    ε'(λ) = ε(λ) + min over λ̂ ≥ 1 of [(1 + η)(1 − 1/λ̂) ε(λ̂) + (1 + η) log(1/γ) / λ̂]
            + log(E[K]) / (λ − 1),

    E[K] = η(1 − γ) / (γ(1 − γ^η)) for η ≠ 0,  (1/γ − 1) / log(1/γ) for η = 0.

Q's RDP curve is the pointwise maximum of its configurations' curves (Q's choice of
configuration is data-independent, and Rényi divergence is quasi-convex in the pair of
distributions). ε'(λ) is converted to (ε, δ) by Opacus' RDP conversion, the one its RDP
accountant uses. The score must be computed from DP outputs only (the run's model and
statistics already paid for), so Q's output is post-processing of DP-SGD.

What the theorem does *not* cover, and the pipeline therefore never publishes: K itself and
the runs that lost (their scores, models or number). Only the selected run's configuration,
model and score leave.

Everything here is a pure function of public numbers, so ``privsynth verify`` recomputes a
tuned release's charge from its recorded parameters (:func:`tuned_epsilon`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
from opacus.accountants.utils import get_noise_multiplier

from privsynth.errors import PrivacyError

#: RDP orders λ (Opacus' RDP accountant's own grid) and the λ̂ the minimum is taken over.
ORDERS: tuple[float, ...] = tuple([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
                                  + [80, 96, 128, 192, 256])
HAT_ORDERS: tuple[float, ...] = (1.0, *ORDERS)

Run = tuple[float, float, int]  # (noise multiplier σ, sample rate q, steps)


def expected_runs(eta: float, gamma: float) -> float:
    """E[K] of the truncated negative binomial TNB(η, γ) on {1, 2, ...}."""
    _check(eta, gamma)
    if eta == 0:
        return (1.0 / gamma - 1.0) / math.log(1.0 / gamma)
    return eta * (1.0 - gamma) / (gamma * (1.0 - gamma**eta))


def gamma_for(expected: float, eta: float) -> float:
    """The γ whose TNB(η, γ) has mean ``expected`` (> 1), by bisection (E[K] falls as γ rises)."""
    if not expected > 1:
        raise PrivacyError(f"expected_runs must be > 1. Got {expected} instead.")
    lo, hi = 1e-12, 1.0 - 1e-12
    for _ in range(200):
        mid = (lo + hi) / 2
        if expected_runs(eta, mid) > expected:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def draw_runs(eta: float, gamma: float, uniform: float) -> int:
    """K ~ TNB(η, γ) by inversion of one uniform draw in [0, 1) (the caller's secure source).

    P[K = k] = (1 − γ)^k / (γ^−η − 1) · Π_{ℓ<k} (ℓ + η)/(ℓ + 1) for η ≠ 0 and
    (1 − γ)^k / (k log(1/γ)) for η = 0; η = 1 is the geometric distribution."""
    _check(eta, gamma)
    k, cumulative = 1, 0.0
    if eta == 0:
        mass = (1.0 - gamma) / math.log(1.0 / gamma)
    else:
        mass = (1.0 - gamma) * eta / (gamma**-eta - 1.0)
    while True:
        cumulative += mass
        if uniform < cumulative or mass < 1e-300:
            return k
        mass *= (1.0 - gamma) * ((k + eta) / (k + 1) if eta != 0 else k / (k + 1))
        k += 1


def repeated_rdp(runs: Sequence[Run], eta: float, gamma: float) -> np.ndarray:
    """ε'(λ) at every order of ``ORDERS`` for random stopping over ``runs`` (Theorem 2)."""
    _check(eta, gamma)
    if not runs:
        raise PrivacyError("random stopping needs at least one configuration")
    curve = np.max([_rdp(run, ORDERS) for run in runs], axis=0)
    hat = np.max([_rdp(run, HAT_ORDERS[1:]) for run in runs], axis=0)
    lam_hat = np.asarray(HAT_ORDERS)
    hat_curve = np.concatenate([[0.0], hat])  # λ̂ = 1: the ε(λ̂) term has weight 0
    extra = ((1 + eta) * (1 - 1 / lam_hat) * hat_curve + (1 + eta) * math.log(1 / gamma)
             / lam_hat).min()
    lam = np.asarray(ORDERS)
    return curve + extra + math.log(expected_runs(eta, gamma)) / (lam - 1)


def tuned_epsilon(runs: Sequence[Run], eta: float, gamma: float, delta: float) -> float:
    """(ε, δ)-DP ε of random stopping over ``runs`` at ``delta``: what the charge records."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the")
        eps, _ = get_privacy_spent(orders=list(ORDERS),
                                   rdp=repeated_rdp(runs, eta, gamma).tolist(), delta=delta)
    return float(eps)


def calibrate(plans: Sequence[tuple[float, int]], *, epsilon: float, delta: float,
              eta: float, gamma: float) -> list[float]:
    """One noise multiplier per configuration (each given as its (q, steps)) such that random
    stopping over all of them costs at most ``epsilon`` at ``delta``.

    Each configuration starts from the σ₀ that would spend all of ``epsilon`` on it alone
    (RDP); all are scaled by the smallest common factor s ≥ 1 (bisection to 0.1%) whose tuned
    ε stays within ``epsilon``. Raises PrivacyError when none below 100 does."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the")
        base = [float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta,
                                           sample_rate=q, steps=steps, accountant="rdp",
                                           epsilon_tolerance=0.005)) for q, steps in plans]

    def spent(scale: float) -> float:
        runs = [(scale * s, q, steps) for s, (q, steps) in zip(base, plans, strict=True)]
        return tuned_epsilon(runs, eta, gamma, delta)

    lo, hi = 1.0, 100.0
    if spent(hi) > epsilon:
        raise PrivacyError(
            f"tuning by random stopping cannot fit ε = {epsilon:.4g} for training: its own "
            "cost (log E[K], log 1/γ) leaves no room for DP-SGD; raise privacy.epsilon or "
            "lower generator.tuning.expected_runs")
    while hi / lo > 1.001:
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if spent(mid) <= epsilon else (mid, hi)
    return [hi * s for s in base]


def _rdp(run: Run, orders: Sequence[float]) -> np.ndarray:
    sigma, q, steps = run
    if not (sigma > 0 and 0 < q <= 1 and steps > 0):
        raise PrivacyError(f"a tuned configuration needs σ > 0, q in (0, 1] and steps > 0. "
                           f"Got σ = {sigma}, q = {q}, steps = {steps} instead.")
    return np.asarray(compute_rdp(q=q, noise_multiplier=sigma, steps=int(steps),
                                  orders=list(orders)), dtype=float)


def _check(eta: float, gamma: float) -> None:
    if not (eta > -1 and 0 < gamma < 1):
        raise PrivacyError(f"random stopping needs η > -1 and 0 < γ < 1. Got η = {eta}, "
                           f"γ = {gamma} instead.")
