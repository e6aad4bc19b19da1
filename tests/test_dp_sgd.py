"""Layer 2: white-box checks of privsynth's own DP-SGD training path.

Each check drives :class:`DPSGDTrainer` (Opacus ghost clipping + DPOptimizerFastGradientClipping,
Poisson mask) on the modules privsynth actually trains: the DP-VAE (encoder and decoder) and, when
``privsynth/generators/gan.py`` exists, the DP-GAN discriminator with its (real, fake) pair unit.
Independent references are computed here with plain autograd, one row at a time.

The same checks are run with each seeded bug of ``tests/_dp_mutations.py`` patched in,
and must then fail: that is how we know they would catch the bug in the real code.
"""

from __future__ import annotations

import copy
import importlib.util
import math
import warnings

import numpy as np
import pytest
import torch
from _backends import tiny_backend, tiny_config
from _dp_mutations import mutation
from torch.nn import functional as F

from privsynth.generators.base import block_offsets, one_hot_blocks
from privsynth.generators.dp_sgd import DPSGDConfig, DPSGDPlan, DPSGDTrainer
from privsynth.generators.vae import VAEModule
from privsynth.privacy.rng import RandomSource

warnings.filterwarnings("ignore", message="Full backward hook is firing")
warnings.filterwarnings("ignore", category=RuntimeWarning, module="opacus")

WIDTHS = [3, 4, 2, 5]
TOTAL = sum(WIDTHS)
OFFSETS = torch.tensor(block_offsets(WIDTHS))
HAS_GAN = importlib.util.find_spec("privsynth.generators.gan") is not None
NO_GAN = "privsynth/generators/gan.py is absent: DP-GAN discriminator checks not run"


def codes(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randint(0, w, (n,), generator=g) for w in WIDTHS], dim=1)


# ------------------------------------------------------------------ the modules under test
def vae_case(hidden: int = 16):
    """The DP-VAE module and its per-row negative ELBO (latent noise fixed at 0 so the loss is
    a deterministic function of the row)."""
    torch.manual_seed(1)
    module = VAEModule(WIDTHS, [hidden], latent_dim=4, kl_weight=0.5)

    def loss_fn(model, batch):
        return model(one_hot_blocks(batch, OFFSETS, TOTAL), batch, torch.zeros(len(batch), 4))

    return module, loss_fn


def gan_case(hidden: int = 16):
    """The DP-GAN discriminator and its per-row unit loss on a (real, fake) pair, with the fake
    row a fixed function of the row and the null condition (so the loss is deterministic)."""
    from privsynth.generators.gan import Discriminator  # noqa: PLC0415 (optional backend)

    torch.manual_seed(1)
    module = Discriminator(TOTAL, [hidden])
    shift = torch.tensor([1] * len(WIDTHS))

    def loss_fn(model, batch):
        real = one_hot_blocks(batch, OFFSETS, TOTAL)
        fake = one_hot_blocks((batch + shift) % torch.tensor(WIDTHS), OFFSETS, TOTAL) * 0.7
        cond = torch.zeros(len(batch), TOTAL)
        pairs = torch.stack([torch.cat([real, cond], 1), torch.cat([fake, cond], 1)], 1)
        scores = model(pairs)
        return F.softplus(-scores[:, 0]) + F.softplus(scores[:, 1])

    return module, loss_fn


CASES = [
    pytest.param(vae_case, id="vae"),
    pytest.param(gan_case, id="gan-discriminator",
                 marks=pytest.mark.skipif(not HAS_GAN, reason=NO_GAN)),
]


def make_trainer(module, *, n, q=1.0, sigma=0.0, clip=1e6, lr=0.1, optimizer=torch.optim.SGD,
                 seed=0, steps=50):
    plan = DPSGDPlan(n_rows=n, sample_rate=q, steps=steps, noise_multiplier=sigma)
    config = DPSGDConfig(epsilon=1.0, delta=1e-6, expected_batch_size=max(1, round(q * n)),
                         epochs=1.0, max_grad_norm=clip, learning_rate=lr)
    return DPSGDTrainer(module, plan, config, generator=torch.Generator().manual_seed(seed),
                        device=torch.device("cpu"), optimizer=optimizer)


def flat_params(module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).clone() for p in module.parameters()])


def per_sample_grads(module, loss_fn, batch) -> torch.Tensor:
    """(B, P) gradients of each row's loss, one backward pass per row (the reference)."""
    out = []
    for i in range(len(batch)):
        module.zero_grad(set_to_none=True)
        loss_fn(module, batch[i : i + 1]).sum().backward()
        out.append(torch.cat([p.grad.reshape(-1) for p in module.parameters()]))
    module.zero_grad(set_to_none=True)
    return torch.stack(out)


# ------------------------------------------------------------------ 1. non-private equivalence
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("optimizer", [torch.optim.SGD, torch.optim.Adam], ids=["sgd", "adam"])
def test_noise_zero_and_no_clipping_equals_the_non_private_step(case, optimizer):
    module, loss_fn = case()
    reference = copy.deepcopy(module)
    data = codes(32)
    trainer = make_trainer(module, n=32, q=1.0, sigma=0.0, clip=1e6, lr=0.05, optimizer=optimizer)
    ref_opt = optimizer(reference.parameters(), lr=0.05)
    for _ in range(3):
        trainer.step(data, loss_fn)
        ref_opt.zero_grad()
        (loss_fn(reference, data).sum() / 32).backward()  # mean over E[B] = N rows
        ref_opt.step()
        torch.testing.assert_close(flat_params(trainer.unwrapped()), flat_params(reference),
                                   rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ 2. per-sample clipping
def clipped_step(case, clip: float):
    """One noise-free SGD step at q = 1 with clipping norm ``clip``; returns what the trainer
    did and the independent reference."""
    module, loss_fn = case()
    reference = copy.deepcopy(module)
    data = codes(24, seed=3)
    before = flat_params(module)
    trainer = make_trainer(module, n=24, q=1.0, sigma=0.0, clip=clip, lr=1.0)
    trainer.step(data, loss_fn)
    update = before - flat_params(trainer.unwrapped())  # = Σ_i c_i g_i / E[B]
    grads = per_sample_grads(reference, loss_fn, data)
    return trainer, update, grads


@pytest.mark.parametrize("case", CASES)
def test_every_per_sample_contribution_has_norm_at_most_c(case):
    clip = 0.05
    trainer, update, grads = clipped_step(case, clip)
    norms = grads.norm(dim=1)
    assert (norms > clip).float().mean() > 0.5, "the check would be vacuous: nothing clipped"
    # Ghost clipping's norms are the true per-sample gradient norms (for the GAN: of the pair).
    torch.testing.assert_close(trainer.last_norms, norms, rtol=1e-3, atol=1e-6)
    contributions = trainer.last_coefficients * trainer.last_norms
    assert float(contributions.max()) <= clip * (1 + 1e-4)
    # What reached the parameters is exactly Σ min(1, C/||g_i||)·g_i / E[B].
    expected = (grads * (clip / (norms + 1e-6)).clamp(max=1.0)[:, None]).sum(0) / 24
    torch.testing.assert_close(update, expected, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_contributions_bounded_on_poisson_batches_with_noise(case):
    module, loss_fn = case()
    trainer = make_trainer(module, n=64, q=0.5, sigma=1.0, clip=0.1, lr=0.05, seed=5)
    data = codes(64, seed=4)
    for _ in range(5):
        trainer.step(data, loss_fn)
        assert float((trainer.last_coefficients * trainer.last_norms).max()) <= 0.1 * (1 + 1e-4)


def test_clipping_off_mutant_is_caught_by_the_norm_check():
    with mutation("clipping_off"):
        trainer, update, grads = clipped_step(vae_case, 0.05)
    assert float((trainer.last_coefficients * trainer.last_norms).max()) > 0.05 * 2


# ------------------------------------------------------------------ 3. noise scale
NOISE_N, NOISE_Q, SIGMA, CLIP, LR, NOISE_STEPS = 200, 0.25, 1.3, 0.7, 0.5, 4


def zero_gradient_noise(case) -> tuple[np.ndarray, float]:
    """Parameter changes of NOISE_STEPS plain-SGD steps whose per-row gradients are all zero.

    Plain SGD, because Adam divides by a running RMS and would hide the noise scale. Returns the
    changes and the std DP-SGD promises: lr·σ·C / E[B] with E[B] = q·N (not the realised batch).
    """
    module, loss_fn = case(hidden=64)
    trainer = make_trainer(module, n=NOISE_N, q=NOISE_Q, sigma=SIGMA, clip=CLIP, lr=LR, seed=9)
    data = codes(NOISE_N, seed=8)
    deltas = []
    for _ in range(NOISE_STEPS):
        before = flat_params(trainer.unwrapped())
        trainer.step(data, lambda m, b: loss_fn(m, b) * 0.0)
        deltas.append((flat_params(trainer.unwrapped()) - before).numpy())
    return np.concatenate(deltas), LR * SIGMA * CLIP / (NOISE_Q * NOISE_N)


def noise_tolerance(samples: int) -> float:
    """5 standard errors of a sample std, relative: the std of s/σ is ≈ 1/sqrt(2n)."""
    return 5.0 / math.sqrt(2 * samples)


@pytest.mark.parametrize("case", CASES)
def test_zero_gradient_run_has_noise_std_lr_sigma_c_over_expected_batch(case):
    deltas, promised = zero_gradient_noise(case)
    tol = noise_tolerance(len(deltas))
    assert len(deltas) > 4000 and tol < 0.08  # a factor 2 (or sqrt 2) error cannot hide in it
    assert abs(deltas.std() / promised - 1.0) < tol, (deltas.std(), promised, tol)
    assert abs(deltas.mean()) < 5 * promised / math.sqrt(len(deltas))


@pytest.mark.parametrize("kind", ["noise_off", "noise_quarter"])
def test_noise_mutants_are_caught_by_the_noise_scale_check(kind):
    with mutation(kind):
        deltas, promised = zero_gradient_noise(vae_case)
    assert abs(deltas.std() / promised - 1.0) >= noise_tolerance(len(deltas))


# ------------------------------------------------------------------ 4. randomness modes
def fit_backend(backend: str, seed: int | None) -> torch.Tensor:
    """Train a tiny backend end to end; its trained weights (VAE: all; GAN: G and D)."""
    config = tiny_config(50)
    model = tiny_backend(backend, 16, 4)
    source = RandomSource(seed)
    model.fit(codes(200, seed=2).numpy(), WIDTHS, config, generator=source.torch("training"),
              device=torch.device("cpu"), noise=source.noise("training"))
    trained = [model.module_] + ([model.discriminator_] if backend == "gan" else [])
    return torch.cat([flat_params(m) for m in trained])


BACKENDS = [
    pytest.param("vae", id="vae"),
    pytest.param("gan", id="gan", marks=pytest.mark.skipif(not HAS_GAN, reason=NO_GAN)),
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_release_mode_runs_differ(backend):
    a, b = fit_backend(backend, None), fit_backend(backend, None)
    assert not torch.equal(a, b)
    assert (a - b).abs().max() > 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_same_dev_seed_gives_identical_results(backend):
    torch.manual_seed(123)  # the global RNG in different states must not matter
    a = fit_backend(backend, 7)
    torch.manual_seed(456)
    b = fit_backend(backend, 7)
    assert torch.equal(a, b)
    assert not torch.equal(a, fit_backend(backend, 8))
