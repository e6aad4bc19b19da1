"""DP-SGD checks written for the mutation panel (``benchmarks/mutation_panel.py``).

* **The plan spends what it is allotted, at the δ it is allotted.** σ is calibrated before
  training; recomputing ε from (σ, q, steps) with the *allotted* δ must give at most the
  allotted ε, and not much less (the calibration is to 1%, so at least 0.9 ε: a σ calibrated
  for a larger ε or a larger δ recomputes far above the allotment, one for a much smaller ε far
  below it).
* **Noise is divided by E[B], not by the realised batch size.** The update of a zero-gradient
  step is N(0, σ²C²)/E[B]·lr on every coordinate. With P = 16,512 parameters, the sample std
  s of one step's update estimates that std with relative standard error ≈ 1/sqrt(2P) =
  0.0055; each step must be within 5 of those (2.8%). At q = 0.25, N = 40 (E[B] = 10,
  B ~ Binomial(40, 0.25), sd 2.7) a divisor B ≠ 10 is off by at least 9%, and the test
  requires that most of its steps had B ≠ 10 (so it is not vacuous).

Seeded; each test well under 10 s.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from privsynth.generators.dp_sgd import DPSGDConfig, DPSGDPlan, DPSGDTrainer
from privsynth.privacy.accounting import dpsgd_epsilon

warnings.filterwarnings("ignore", message="Full backward hook is firing")
warnings.filterwarnings("ignore", category=RuntimeWarning, module="opacus")
warnings.filterwarnings("ignore", message="Optimal order is the")


@pytest.mark.parametrize(("epsilon", "delta", "batch", "rows", "epochs", "accountant"), [
    (1.0, 1e-6, 64, 1000, 2.0, "rdp"),
    (0.5, 1e-7, 500, 20_000, 3.0, "rdp"),
    (2.0, 1e-5, 128, 3000, 1.0, "prv"),
])
def test_plan_spends_at_most_its_epsilon_at_its_delta(epsilon, delta, batch, rows, epochs,
                                                      accountant):
    config = DPSGDConfig(epsilon=epsilon, delta=delta, expected_batch_size=batch,
                         epochs=epochs, max_grad_norm=1.0, learning_rate=0.1,
                         accountant=accountant, public_rows=rows)
    plan = DPSGDPlan.calibrate(config, rows)
    spent = dpsgd_epsilon(sigma=plan.noise_multiplier, q=plan.sample_rate, steps=plan.steps,
                          delta=delta, accountant=accountant)
    assert 0.9 * epsilon <= spent <= epsilon, (spent, epsilon, plan)
    trainer = DPSGDTrainer(torch.nn.Linear(2, 1), plan, config, device=torch.device("cpu"),
                           generator=torch.Generator().manual_seed(0))
    trainer.steps_done = plan.steps  # the charge of a run that took every planned step
    charge = trainer.charge()
    assert charge.delta == delta and charge.epsilon == pytest.approx(spent, rel=1e-9)
    assert charge.epsilon <= epsilon


N, Q, SIGMA, C, STEPS, FEATURES = 40, 0.25, 1.1, 0.8, 8, 128


def test_noise_is_divided_by_the_expected_not_the_realised_batch():
    torch.manual_seed(0)
    layer = torch.nn.Linear(FEATURES, FEATURES)
    params = sum(p.numel() for p in layer.parameters())
    plan = DPSGDPlan(n_rows=N, sample_rate=Q, steps=STEPS, noise_multiplier=SIGMA)
    config = DPSGDConfig(epsilon=1.0, delta=1e-6, expected_batch_size=round(Q * N), epochs=1.0,
                         max_grad_norm=C, learning_rate=1.0)
    trainer = DPSGDTrainer(layer, plan, config, device=torch.device("cpu"),
                           generator=torch.Generator().manual_seed(3),
                           optimizer=torch.optim.SGD)
    data = torch.randn(N, FEATURES, generator=torch.Generator().manual_seed(4))
    promised = SIGMA * C / plan.expected_batch_size  # lr = 1
    tol = 5.0 / math.sqrt(2 * params)
    sizes, ratios = [], []
    for _ in range(STEPS):
        before = torch.cat([p.detach().reshape(-1).clone() for p in layer.parameters()])

        def zero_loss(module, rows):
            sizes.append(len(rows))
            return module(rows).sum(1) * 0.0

        trainer.step(data, zero_loss)
        after = torch.cat([p.detach().reshape(-1) for p in trainer.unwrapped().parameters()])
        ratios.append(float((after - before).std()) / promised)
    assert sum(size != plan.expected_batch_size for size in sizes) >= STEPS // 2, sizes
    assert np.all(np.abs(np.array(ratios) - 1.0) < tol), (ratios, sizes, tol)
