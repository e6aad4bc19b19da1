"""DP-SGD accounting: wraps Opacus' PRV and RDP accountants.

``calibrate_sigma`` finds the noise multiplier for a target epsilon *before* training and checks
the result never overshoots; ``dpsgd_epsilon`` recomputes epsilon from recorded inputs, so a
manifest can be verified by anyone with Opacus.
"""

from __future__ import annotations

import math
import warnings

from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

from privsynth.errors import PrivacyError
from privsynth.privacy.events import Charge

ACCOUNTANTS = {"prv": PRVAccountant, "rdp": RDPAccountant}


def make_accountant(name: str) -> PRVAccountant | RDPAccountant:
    """A fresh Opacus accountant by name (``prv`` or ``rdp``)."""
    if name not in ACCOUNTANTS:
        raise PrivacyError(
            f"accountant must be one of {sorted(ACCOUNTANTS)}. Got {name!r} instead.")
    return ACCOUNTANTS[name]()


def dpsgd_epsilon(*, sigma: float, q: float, steps: int, delta: float, accountant: str) -> float:
    """Epsilon of ``steps`` Poisson-subsampled Gaussian steps at (sigma, q), for ``delta``."""
    if not sigma > 0:
        raise PrivacyError(f"noise multiplier sigma must be > 0. Got {sigma} instead.")
    if not 0 < q <= 1:
        raise PrivacyError(f"sample rate q must be in (0, 1]. Got {q} instead.")
    if steps <= 0:
        return 0.0
    return history_epsilon([(float(sigma), float(q), int(steps))], delta=delta,
                           accountant=accountant)


def history_epsilon(history: list[tuple[float, float, int]], *, delta: float,
                    accountant: str) -> float:
    """Epsilon of several DP-SGD runs, each (sigma, q, steps), composed under one accountant."""
    if not history:
        return 0.0
    acc = make_accountant(accountant)
    acc.history = list(history)
    with warnings.catch_warnings():
        # Opacus' PRV grid evaluates log(0) at its edge and RDP notes when the optimal order
        # sits at the end of its alpha range; both are numerical notes, not errors.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.filterwarnings("ignore", message="Optimal order is the")
        return float(acc.get_epsilon(delta=delta))


def calibrate_sigma(
    *, epsilon: float, delta: float, q: float, steps: int, accountant: str
) -> float:
    """The smallest noise multiplier (to 1%) whose epsilon is at most ``epsilon``. Never above."""
    if not epsilon > 0:
        raise PrivacyError(f"epsilon must be > 0. Got {epsilon} instead.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.filterwarnings("ignore", message="Optimal order is the")
        sigma = get_noise_multiplier(
            target_epsilon=epsilon, target_delta=delta, sample_rate=q, steps=steps,
            accountant=accountant, epsilon_tolerance=0.005,
        )
    for _ in range(60):
        spent = dpsgd_epsilon(sigma=sigma, q=q, steps=steps, delta=delta, accountant=accountant)
        if spent <= epsilon:
            return float(sigma)
        sigma *= 1.01
    raise PrivacyError("could not calibrate sigma below the target epsilon; raise epsilon")


def dpsgd_charge(*, sigma: float, q: float, steps: int, delta: float, accountant: str,
                 max_grad_norm: float, stage: str = "training") -> Charge:
    """The ledger/manifest record of one DP-SGD run, with its exact accountant inputs."""
    eps = dpsgd_epsilon(sigma=sigma, q=q, steps=steps, delta=delta, accountant=accountant)
    return Charge(stage, "dp_sgd", eps, float(delta), None,
                  {"sigma": sigma, "q": q, "steps": steps, "accountant": accountant,
                   "max_grad_norm": max_grad_norm})


def check_delta(delta: float, n_rows: int) -> None:
    """Refuse delta >= 1/(10 n): a mechanism with larger delta may publish a whole row."""
    limit = 1.0 / (10.0 * n_rows)
    if not (0 < delta < limit) or math.isnan(delta):
        raise PrivacyError(
            f"privacy.delta must be below 1/(10·n) = {limit:.3g} for n = {n_rows} training rows. "
            f"Got {delta:.3g} instead; lower privacy.delta in the policy."
        )
