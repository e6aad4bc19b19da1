"""DP-GAN specifics: the pair is clipped as one unit, charges add up, G reads no real row."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from opacus.grad_sample import GradSampleModuleFastGradientClipping
from torch.nn import functional as F

from privsynth.generators.dp_sgd import DPSGDConfig
from privsynth.generators.gan import DPGAN, ConditionalGenerator, Discriminator

WIDTHS = [4, 3, 5, 2]
CONFIG = DPSGDConfig(epsilon=1.0, delta=1e-6, expected_batch_size=128, epochs=1,
                     max_grad_norm=1.0, learning_rate=5e-3)


def codes(n: int = 1500, seed: int = 0) -> np.ndarray:
    rs = np.random.default_rng(seed)
    first = rs.integers(0, 4, n)
    return np.stack([first, first % 3, rs.integers(0, 5, n), (first > 1).astype(int)], axis=1)


def pair_losses(module, pairs):
    scores = module(pairs)
    return F.softplus(-scores[:, 0]) + F.softplus(scores[:, 1])


def test_ghost_norm_of_a_pair_is_the_norm_of_its_summed_gradient():
    torch.manual_seed(0)
    total = sum(WIDTHS)
    disc = Discriminator(total, [8, 8])
    pairs = torch.randn(6, 2, 2 * total)
    wrapped = GradSampleModuleFastGradientClipping(disc, batch_first=True, loss_reduction="sum",
                                                   max_grad_norm=1.0, use_ghost_clipping=True)
    pair_losses(wrapped, pairs).sum().backward()
    wrapped.get_clipping_coef()
    ghost = wrapped.per_sample_gradient_norms.detach()
    wrapped.disable_hooks()
    expected = []
    for i in range(len(pairs)):
        disc.zero_grad()
        pair_losses(disc, pairs[i : i + 1]).sum().backward()
        expected.append(torch.sqrt(sum((p.grad ** 2).sum() for p in disc.parameters())))
    assert torch.allclose(ghost, torch.stack(expected), rtol=1e-4, atol=1e-6)


def test_generator_in_eval_mode_treats_rows_independently():
    torch.manual_seed(0)
    gen = ConditionalGenerator(sum(WIDTHS), 4, [16]).eval()
    z, cond = torch.randn(5, 4), torch.zeros(5, sum(WIDTHS))
    full = gen(z, cond)
    z2 = z.clone()
    z2[1:] = torch.randn(4, 4) * 10
    assert torch.allclose(gen(z2, cond)[0], full[0])


def test_dp_conditioning_charges_and_budget_split():
    model = DPGAN(hidden=[8], generator_hidden=[16], cond_share=0.1)
    model.fit(codes(), WIDTHS, CONFIG, generator=torch.Generator().manual_seed(0),
              device=torch.device("cpu"))
    laplace = [c for c in model.charges_ if c.mechanism == "laplace_category_counts"]
    dp_sgd = [c for c in model.charges_ if c.mechanism == "dp_sgd"]
    assert len(laplace) == len(WIDTHS) and len(dp_sgd) == 1
    assert all(c.stage == "training" for c in model.charges_)
    assert sum(c.epsilon for c in laplace) == pytest.approx(0.1 * CONFIG.epsilon)
    assert dp_sgd[0].epsilon <= 0.9 * CONFIG.epsilon + 1e-9
    assert sum(c.epsilon for c in model.charges_) <= CONFIG.epsilon
    for p, w in zip(model.cond_probs_, WIDTHS, strict=True):
        assert p.shape == (w,) and float(p.sum()) == pytest.approx(1.0)


def test_uniform_conditioning_spends_nothing_extra_and_samples_in_range():
    model = DPGAN(hidden=[8], generator_hidden=[16], conditioning="uniform")
    model.fit(codes(), WIDTHS, CONFIG, generator=torch.Generator().manual_seed(0),
              device=torch.device("cpu"))
    assert [c.mechanism for c in model.charges_] == ["dp_sgd"]
    assert model.charges_[0].epsilon <= CONFIG.epsilon
    out = model.sample(400, generator=torch.Generator().manual_seed(1))
    assert out.shape == (400, len(WIDTHS)) and (out < np.array(WIDTHS)).all()


def test_generator_steps_read_no_real_row(monkeypatch):
    """Every access to the training rows goes through the DP-SGD step's Poisson batch."""
    from privsynth.generators import gan  # noqa: PLC0415

    seen = []
    original = gan.DPGAN._conditions_from_rows

    def spy(self, batch, generator):
        seen.append(len(batch))
        return original(self, batch, generator)

    calls = {"g": 0}
    original_g = gan.DPGAN._generator_step

    def g_spy(self, *args, **kwargs):
        calls["g"] += 1
        before = len(seen)
        original_g(self, *args, **kwargs)
        assert len(seen) == before, "the generator step touched real rows"

    monkeypatch.setattr(gan.DPGAN, "_conditions_from_rows", spy)
    monkeypatch.setattr(gan.DPGAN, "_generator_step", g_spy)
    model = DPGAN(hidden=[8], generator_hidden=[16])
    model.fit(codes(), WIDTHS, CONFIG, generator=torch.Generator().manual_seed(0),
              device=torch.device("cpu"))
    assert calls["g"] == model.plan_.steps and len(seen) == model.plan_.steps


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="conditioning"):
        DPGAN(conditioning="raw")
    with pytest.raises(ValueError, match="cond_share"):
        DPGAN(cond_share=1.5)
