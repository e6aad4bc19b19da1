"""Layer 4: a one-step white-box canary audit of privsynth's DP-SGD step, with seeded bugs.

The audit runs privsynth's own :class:`DPSGDTrainer` (ghost clipping, Opacus noise, Poisson mask)
on a one-layer model, once per trial, in two neighbouring worlds:

* world 0: one row whose gradient is zero;
* world 1: that row replaced by a *Dirac canary*: its gradient is ``1000·C·e_0`` (a single
  coordinate, far above the clipping norm C). A zero-gradient row contributes nothing, so the
  pair is exactly the add/remove pair of the canary that the accountant's epsilon covers.

With q = 1 and one step the mechanism is the plain Gaussian mechanism, whose claimed epsilon is
what privsynth's accountant reports for (sigma, q=1, steps=1, delta). The observation is the
updated weight on the canary coordinate, rescaled to units of C: ``o = clip(g)/C + sigma·Z``.

For each of K thresholds t fixed before the run (no data-dependent choice), the test "o > t"
has a false-positive rate (world 0) and true-positive rate (world 1); an (eps, delta)-DP
mechanism forces TPR <= e^eps·FPR + delta. Clopper-Pearson bounds at level alpha/(2K) (Bonferroni
over both rates and all thresholds) turn this into the empirical lower bound

    eps_lb = max_t ln((TPR_lower(t) - delta) / FPR_upper(t)),

which, with probability at least 1 - alpha, is below the true epsilon of the mechanism. So it
must stay below the claim for the real mechanism, and each seeded bug must push it above.
Trials use a fixed dev seed so CI is deterministic.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from _dp_mutations import KINDS, mutation
from scipy.stats import beta

from privsynth.generators.dp_sgd import DPSGDConfig, DPSGDPlan, DPSGDTrainer
from privsynth.privacy.accounting import dpsgd_epsilon

SIGMA = 2.0
DELTA = 1e-5
C = 1.0
LR = 1.0
DIM = 4
CANARY_SCALE = 1000.0
TRIALS = 3000  # per world
ALPHA = 0.05
THRESHOLDS = np.linspace(0.25, 8.0, 32)  # fixed before any trial, in units of C


def clopper_pearson(k: int, n: int, alpha: float) -> tuple[float, float]:
    """Two-sided exact binomial confidence interval (each tail alpha/2)."""
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def empirical_epsilon(world0: np.ndarray, world1: np.ndarray, delta: float,
                      thresholds: np.ndarray = THRESHOLDS, alpha: float = ALPHA) -> float:
    """Lower confidence bound (1 - alpha) on epsilon from the threshold tests ``o > t``."""
    level = alpha / len(thresholds)  # Bonferroni: FPR and TPR intervals per threshold
    best = 0.0
    for t in thresholds:
        fp, tp = int((world0 > t).sum()), int((world1 > t).sum())
        fpr_high = clopper_pearson(fp, len(world0), level)[1]
        tpr_low = clopper_pearson(tp, len(world1), level)[0]
        if tpr_low - delta > 0 and fpr_high > 0:
            best = max(best, math.log((tpr_low - delta) / fpr_high))
    return best


def _trainer(seed: int) -> tuple[DPSGDTrainer, torch.nn.Linear]:
    torch.manual_seed(0)
    layer = torch.nn.Linear(DIM, 1, bias=False)
    plan = DPSGDPlan(n_rows=1, sample_rate=1.0, steps=10 * TRIALS, noise_multiplier=SIGMA)
    config = DPSGDConfig(epsilon=1.0, delta=DELTA, expected_batch_size=1, epochs=1.0,
                         max_grad_norm=C, learning_rate=LR, accountant="prv")
    generator = torch.Generator().manual_seed(seed)
    trainer = DPSGDTrainer(layer, plan, config, generator=generator, device=torch.device("cpu"),
                           optimizer=torch.optim.SGD)
    return trainer, layer


def _loss(module: torch.nn.Module, rows: torch.Tensor) -> torch.Tensor:
    return module(rows).squeeze(1)  # per-row loss w·x, so the row's gradient is x


def run_world(canary: bool, seed: int) -> np.ndarray:
    """``TRIALS`` one-step runs; returns o = -Δw_0·E[B]/(lr·C) per trial."""
    trainer, layer = _trainer(seed)
    row = torch.zeros(1, DIM)
    if canary:
        row[0, 0] = CANARY_SCALE * C
    out = np.empty(TRIALS)
    for i in range(TRIALS):
        with torch.no_grad():
            layer.weight.zero_()
        trainer.step(row, _loss)
        out[i] = -float(layer.weight.detach()[0, 0]) / (LR * C)  # E[B] = 1
    return out


def audit(kind: str | None) -> tuple[float, np.ndarray, np.ndarray]:
    """(empirical eps lower bound, world-0 observations, world-1 observations)."""
    if kind is None:
        w0, w1 = run_world(False, seed=11), run_world(True, seed=12)
    else:
        with mutation(kind):
            w0, w1 = run_world(False, seed=11), run_world(True, seed=12)
    return empirical_epsilon(w0, w1, DELTA), w0, w1


@pytest.fixture(scope="module")
def claimed_epsilon() -> float:
    return dpsgd_epsilon(sigma=SIGMA, q=1.0, steps=1, delta=DELTA, accountant="prv")


def test_clopper_pearson_matches_known_values():
    low, high = clopper_pearson(0, 3000, 0.05)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 3000), rel=1e-9)
    low, high = clopper_pearson(50, 100, 0.05)
    assert low == pytest.approx(0.3983, abs=1e-4) and high == pytest.approx(0.6017, abs=1e-4)


def test_real_mechanism_stays_below_its_claim(claimed_epsilon):
    eps_lb, w0, w1 = audit(None)
    # The observations are what the mechanism promises: N(0, sigma²) and N(1, sigma²).
    se = SIGMA / math.sqrt(TRIALS)
    assert abs(w0.mean()) < 4 * se and abs(w1.mean() - 1.0) < 4 * se
    assert w0.std() == pytest.approx(SIGMA, rel=4 / math.sqrt(2 * TRIALS))
    assert eps_lb <= claimed_epsilon, (eps_lb, claimed_epsilon)


@pytest.mark.parametrize("kind", KINDS)
def test_each_seeded_bug_breaks_the_claim(kind, claimed_epsilon):
    eps_lb, _, _ = audit(kind)
    assert eps_lb > claimed_epsilon, (
        f"mutant {kind}: empirical eps lower bound {eps_lb:.2f} did not exceed the claim "
        f"{claimed_epsilon:.2f}; the audit would miss this bug")


def test_production_code_has_no_mutation_switch():
    """Seeded bugs are patched in from tests/_dp_mutations.py; privsynth itself has no switch,
    no test-only module and no policy field that could turn a mechanism off."""
    import pathlib

    import privsynth
    from privsynth.policy.model import policy_json_schema

    root = pathlib.Path(privsynth.__file__).parent
    pattern = re.compile(r"\bmutant|\bmutation|_testing_only", re.IGNORECASE)
    offenders = [p.name for p in root.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
    assert not re.search(r"\bmutat", str(policy_json_schema()).lower())  # "permutation" is fine
