"""Logical batches larger than memory: chunked clipped sums give the same DP-SGD step."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from privsynth.generators.dp_sgd import DPSGDConfig, DPSGDPlan, DPSGDTrainer

CONFIG = DPSGDConfig(epsilon=1.0, delta=1e-6, expected_batch_size=64, epochs=1,
                     max_grad_norm=0.5, learning_rate=0.1)


def squared_loss(module: nn.Module, rows: torch.Tensor) -> torch.Tensor:
    return (module(rows[:, :-1]).squeeze(1) - rows[:, -1]).pow(2)


def one_step(max_physical_batch: int | None, sigma: float, seed: int = 0):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1))
    data = torch.randn(400, 6, generator=torch.Generator().manual_seed(1))
    config = dataclasses.replace(CONFIG, max_physical_batch=max_physical_batch)
    plan = DPSGDPlan(n_rows=400, sample_rate=0.25, steps=1, noise_multiplier=sigma)
    trainer = DPSGDTrainer(model, plan, config, generator=torch.Generator().manual_seed(seed),
                           device=torch.device("cpu"), optimizer=torch.optim.SGD)
    trainer.step(data, squared_loss)
    return torch.cat([p.detach().flatten() for p in trainer.unwrapped().parameters()]), trainer


def test_chunked_step_equals_the_whole_batch_step():
    whole, trainer = one_step(None, sigma=0.0)
    chunked, chunked_trainer = one_step(17, sigma=0.0)
    assert torch.allclose(whole, chunked, atol=1e-6)
    # every row was still clipped on its own
    assert len(chunked_trainer.last_norms) == len(trainer.last_norms) > 17
    assert (chunked_trainer.last_coefficients <= 1.0).all()


def test_noise_is_added_once_per_logical_batch_not_per_chunk():
    # Zero data gradient is impossible here, so compare the noise part: (noisy - clean).
    clean, _ = one_step(17, sigma=0.0)
    noisy_whole, _ = one_step(None, sigma=1.0, seed=5)
    noisy_chunked, _ = one_step(17, sigma=1.0, seed=5)
    assert torch.allclose(noisy_whole, noisy_chunked, atol=1e-6)
    assert not torch.allclose(noisy_chunked, clean, atol=1e-3)
