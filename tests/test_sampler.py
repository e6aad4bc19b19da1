"""Layer 3: the sampler is what the accountant assumes.

The subsampled-Gaussian accountant assumes Poisson sampling: every row in each batch
independently with probability q, so batch sizes are Binomial(N, q) and no row is favoured; and
the q it is told must be E[B]/N with N the number of rows actually trained on (Opacus #813 burned
budgets far too fast through a wrong sample rate).

Statistical tests use fixed seeds (deterministic in CI) and a stated alpha = 0.001; each test's
power against a plausible bug is checked on that bug's sampler.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import warnings

import numpy as np
import pytest
import torch
from _backends import tiny_backend, tiny_config
from scipy import stats

from privsynth.generators.dp_sgd import DPSGDConfig, DPSGDPlan, DPSGDTrainer
from privsynth.privacy.accounting import dpsgd_epsilon

warnings.filterwarnings("ignore", category=RuntimeWarning, module="opacus")
warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")

ALPHA = 1e-3
N, Q, DRAWS = 400, 0.05, 5000
HAS_GAN = importlib.util.find_spec("privsynth.generators.gan") is not None


def trainer(n: int = N, q: float = Q, seed: int = 2024) -> DPSGDTrainer:
    plan = DPSGDPlan(n_rows=n, sample_rate=q, steps=10, noise_multiplier=1.0)
    config = DPSGDConfig(epsilon=1.0, delta=1e-6, expected_batch_size=round(q * n), epochs=1,
                         max_grad_norm=1.0, learning_rate=0.1)
    return DPSGDTrainer(torch.nn.Linear(2, 1), plan, config, device=torch.device("cpu"),
                        generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def masks() -> np.ndarray:
    t = trainer()
    return torch.stack([t.poisson_mask(N) for _ in range(DRAWS)]).numpy()


def binomial_chi2_pvalue(sizes: np.ndarray, n: int, q: float) -> float:
    """χ² goodness of fit of ``sizes`` to Binomial(n, q), tail cells merged to expected >= 5."""
    ks = np.arange(n + 1)
    expected = stats.binom.pmf(ks, n, q) * len(sizes)
    observed = np.bincount(sizes, minlength=n + 1).astype(float)
    cells_o, cells_e, acc_o, acc_e = [], [], 0.0, 0.0
    for o, e in zip(observed, expected, strict=True):
        acc_o, acc_e = acc_o + o, acc_e + e
        if acc_e >= 5:
            cells_o.append(acc_o)
            cells_e.append(acc_e)
            acc_o = acc_e = 0.0
    cells_o[-1] += acc_o
    cells_e[-1] += acc_e
    statistic = sum((o - e) ** 2 / e for o, e in zip(cells_o, cells_e, strict=True))
    return float(stats.chi2.sf(statistic, len(cells_o) - 1))


def test_batch_sizes_follow_binomial(masks):
    sizes = masks.sum(axis=1)
    assert binomial_chi2_pvalue(sizes, N, Q) > ALPHA
    # Power: a fixed-size sampler (shuffle and take E[B]) and a wrong rate both fail.
    assert binomial_chi2_pvalue(np.full(DRAWS, round(N * Q)), N, Q) < ALPHA
    wrong = np.random.default_rng(0).binomial(N, Q * 1.1, size=DRAWS)
    assert binomial_chi2_pvalue(wrong, N, Q) < ALPHA


def uniformity_pvalue(masks: np.ndarray, q: float) -> float:
    """Each row's inclusion count is Binomial(draws, q), independently across rows:
    Σ (c_i − T q)² / (T q (1−q)) is then ≈ χ² with N degrees of freedom."""
    draws = masks.shape[0]
    counts = masks.sum(axis=0)
    statistic = ((counts - draws * q) ** 2 / (draws * q * (1 - q))).sum()
    return float(stats.chi2.sf(statistic, masks.shape[1]))


def test_inclusion_is_uniform_across_rows(masks):
    assert uniformity_pvalue(masks, Q) > ALPHA
    # Power: a sampler that favours the first half of the table (q·1.2 vs q·0.8) fails.
    rng = np.random.default_rng(1)
    rates = np.where(np.arange(N) < N // 2, Q * 1.2, Q * 0.8)
    biased = rng.random((DRAWS, N)) < rates
    assert uniformity_pvalue(biased, Q) < ALPHA


def test_rows_are_included_independently(masks):
    """Pairs of rows: joint inclusion rate q² (no with/without-replacement coupling)."""
    joint = (masks[:, 0::2] & masks[:, 1::2]).mean()
    pairs = masks.shape[0] * (N // 2)
    se = np.sqrt(Q**2 * (1 - Q**2) / pairs)
    assert abs(joint - Q**2) < 4 * se


def test_masks_cover_the_whole_table_and_nothing_else():
    t = trainer(n=50, q=1.0)
    assert t.poisson_mask(50).shape == (50,) and bool(t.poisson_mask(50).all())


@pytest.mark.parametrize("n_rows, batch", [(1000, 64), (777, 100), (60_001, 4096)])
def test_plan_q_is_expected_batch_over_counted_rows(n_rows, batch):
    config = DPSGDConfig(epsilon=1.0, delta=1e-7, expected_batch_size=batch, epochs=2,
                         max_grad_norm=1.0, learning_rate=0.1, accountant="rdp")
    plan = DPSGDPlan.calibrate(config, n_rows)
    assert plan.n_rows == n_rows
    assert plan.sample_rate == pytest.approx(batch / n_rows, rel=1e-8)
    # q is a multiple of 2**-32, never above E[B]/N: the mask then keeps rows at exactly q
    assert (plan.sample_rate * 2**32).is_integer() and plan.sample_rate <= batch / n_rows


@pytest.mark.parametrize("backend", [
    "vae", pytest.param("gan", marks=pytest.mark.skipif(
        not HAS_GAN, reason="privsynth/generators/gan.py is absent"))])
def test_q_handed_to_the_accountant_is_expected_batch_over_rows_trained_on(backend):
    rows = 300
    codes = np.random.default_rng(3).integers(0, 3, size=(rows, 3))
    config = tiny_config(60)
    model = tiny_backend(backend, 8, 2)
    model.fit(codes, [3, 3, 3], config, generator=torch.Generator().manual_seed(0),
              device=torch.device("cpu"))
    sgd = [c for c in model.charges_ if c.mechanism == "dp_sgd"]
    assert len(sgd) == 1
    p = sgd[0].params
    assert p["q"] == pytest.approx(60 / rows, rel=1e-8)
    assert model.plan_.n_rows == rows and p["steps"] == model.plan_.steps == 5
    assert sgd[0].epsilon == pytest.approx(
        dpsgd_epsilon(sigma=p["sigma"], q=p["q"], steps=5, delta=1e-5, accountant="rdp"))
    assert p["row_count"] == "exact"  # no public_rows given: no DP claim can rest on it
    assert sum(c.epsilon for c in model.charges_) <= 2.0 + 1e-12


def test_trainer_tells_its_accountant_exactly_the_planned_q_each_step():
    t = trainer(n=120, q=0.25)
    data = torch.zeros(120, 2)
    for _ in range(4):
        t.step(data, lambda m, b: m(b).squeeze(1))
    assert t.accountant.history == [(1.0, 0.25, 4)]
    charge = t.charge()
    assert charge.params["q"] == 0.25 and charge.params["steps"] == 4
    assert t.accountant.get_epsilon(delta=1e-6) == pytest.approx(charge.epsilon, abs=0.02)


def test_plan_uses_the_public_row_count_not_the_rows_it_is_given():
    """A release plans q and the steps from the DP count N̂; the exact N never enters them."""
    codes = np.random.default_rng(3).integers(0, 3, size=(300, 3))
    config = dataclasses.replace(tiny_config(60), public_rows=250)
    model = tiny_backend("vae", 8, 2)
    model.fit(codes, [3, 3, 3], config, generator=torch.Generator().manual_seed(0),
              device=torch.device("cpu"))
    (charge,) = model.charges_
    assert charge.params["q"] == pytest.approx(60 / 250, rel=1e-8)
    assert charge.params["row_count"] == "dp"
    assert model.plan_.expected_batch_size == 60


def test_a_tiny_rate_is_kept_exactly_not_at_a_float_floor():
    """q = 2**-30: a float32 ``rand() < q`` keeps a row whenever rand() is 0, i.e. at 2**-24,
    64 times too often. Over 2**27 row draws the exact sampler expects 0.125 inclusions
    (P[>= 4] < 1e-6); the float32 sampler expects 8."""
    t = trainer(n=1 << 21, q=2.0**-30)
    kept = sum(int(t.poisson_mask(1 << 21).sum()) for _ in range(64))
    assert kept < 4


def test_every_step_draws_a_fresh_batch():
    """The rows a step trains on change from step to step, and each row is used at rate q
    (a mask drawn once and reused would repeat the same batch every step)."""
    n, q, steps = 64, 0.5, 40
    t = trainer(n=n, q=q, seed=5)
    t.plan = DPSGDPlan(n_rows=n, sample_rate=q, steps=steps, noise_multiplier=1.0)
    data = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 2)
    batches = []

    def loss(module, rows):
        batches.append(frozenset(rows[:, 0].long().tolist()))
        return module(rows).squeeze(1)

    for _ in range(steps):
        t.step(data, loss)
    assert len(set(batches)) == steps  # all distinct: a repeat has probability ~ 2**-64
    uses = np.array([sum(i in b for b in batches) for i in range(n)])
    se = np.sqrt(steps * q * (1 - q))
    assert np.all(np.abs(uses - steps * q) < 5 * se)
