"""DP-GAN checks written for the mutation panel (``benchmarks/mutation_panel.py``).

* **Conditions and the marginal loss follow the noisy counts.** With planted noise (a noise
  source whose draws the test chooses) the condition table G trains and samples from, and the
  target of G's marginal loss, must be exactly clip(count + noise, 0) normalised, through
  :meth:`DPGAN.fit`. Raw frequencies differ from them by the planted amount.
* **D's unit loss is a function of its own row.** DP-SGD clips loss_i as the contribution of
  row i; that is only true when loss_i does not depend on any other real row. The test takes
  the loss function the GAN hands to the DP-SGD step, evaluates it on two batches that agree
  on row 0 and differ on every other row (same random draws: the generator is reseeded), and
  requires row 0's loss to be identical (to float rounding), while a change of row 0 itself
  does change it (the check is not vacuous). G in train mode during D's step (BatchNorm's
  batch statistics mix the rows' conditions) or a condition read from a neighbouring row both
  break this; so does any update of G's BatchNorm running statistics by D's step.
* **The GAN plans q from the public row count N̂**, not from len(data).

Everything is seeded; each test runs a few DP-SGD steps of a tiny GAN (well under 10 s).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from privsynth.generators.dp_sgd import DPSGDConfig, DPSGDTrainer
from privsynth.generators.gan import DPGAN
from privsynth.privacy.noise import NoiseSource

warnings.filterwarnings("ignore", message="Full backward hook is firing")
warnings.filterwarnings("ignore", category=RuntimeWarning, module="opacus")
warnings.filterwarnings("ignore", message="Optimal order is the")

WIDTHS = [4, 3, 5]
CONFIG = DPSGDConfig(epsilon=2.0, delta=1e-5, expected_batch_size=60, epochs=1.0,
                     max_grad_norm=1.0, learning_rate=5e-3, accountant="rdp")


def codes(n: int = 300, seed: int = 0) -> np.ndarray:
    rs = np.random.default_rng(seed)
    return np.stack([rs.integers(0, w, n) for w in WIDTHS], axis=1).astype(np.int64)


class PlantedNoise(NoiseSource):
    """Draws chosen by the test: +``lift`` on the last slot of every column, 0 elsewhere."""

    name = "planted-test"

    def __init__(self, lift: int) -> None:
        self.lift = lift

    def discrete_laplace(self, scale: float, size: int) -> np.ndarray:
        out = np.zeros(size, dtype=np.int64)
        out[-1] = self.lift
        return out


def fit(model: DPGAN, data: np.ndarray, config: DPSGDConfig = CONFIG, *, noise=None,
        seed: int = 0) -> DPGAN:
    return model.fit(data, WIDTHS, config, generator=torch.Generator().manual_seed(seed),
                     device=torch.device("cpu"), noise=noise)


def test_condition_frequencies_are_the_noisy_counts():
    data = codes()
    lift = 1000
    model = fit(DPGAN(hidden=[8], generator_hidden=[16]), data, noise=PlantedNoise(lift))
    expected = []
    for j, w in enumerate(WIDTHS):
        noisy = np.bincount(data[:, j], minlength=w) + np.eye(w, dtype=np.int64)[-1] * lift
        expected.append(noisy / noisy.sum())
        # what G's conditions and its marginal-loss target are drawn from
        np.testing.assert_allclose(model.cond_probs_[j].numpy(), expected[-1], rtol=1e-6)
        np.testing.assert_allclose(model.cond_probs_dev_[j].cpu().numpy(), expected[-1],
                                   rtol=1e-6)
    flat = np.concatenate([p / len(WIDTHS) for p in expected])
    np.testing.assert_allclose(model.cond_flat_.cpu().numpy(), flat / flat.sum(), rtol=1e-5)
    # The marginal loss is 0 exactly when G's batch-mean block equals the DP frequencies.
    logits = torch.log(torch.tensor(np.concatenate(expected), dtype=torch.float32))[None, :]
    assert float(model._marginal_loss(logits.repeat(8, 1))) == pytest.approx(0.0, abs=1e-5)


def _capture_d_loss(monkeypatch) -> dict:
    captured: dict = {}
    original = DPSGDTrainer.step

    def spy(self, data, loss_fn):
        captured.setdefault("loss_fn", loss_fn)
        captured.setdefault("trainer", self)
        return original(self, data, loss_fn)

    monkeypatch.setattr(DPSGDTrainer, "step", spy)
    return captured


def test_discriminator_unit_loss_depends_on_its_own_row_only(monkeypatch):
    captured = _capture_d_loss(monkeypatch)
    generator = torch.Generator().manual_seed(0)
    model = DPGAN(hidden=[8], generator_hidden=[16, 16])
    model.fit(codes(), WIDTHS, CONFIG, generator=generator, device=torch.device("cpu"))
    model.null_prob = 0.0  # every row conditions on one of its own slots
    d_loss, disc = captured["loss_fn"], captured["trainer"].unwrapped()
    widths = torch.tensor(WIDTHS)
    batch = torch.as_tensor(codes(64, seed=1))
    others = batch.clone()
    others[1:] = (others[1:] + 1) % widths  # every other row differs in every column
    own = batch.clone()
    own[0] = (own[0] + 1) % widths  # only row 0 differs
    state = {k: v.clone() for k, v in model.module_.state_dict().items()}

    def losses(rows: torch.Tensor, seed: int) -> torch.Tensor:
        generator.manual_seed(seed)  # the same j, z and Gumbel draws for both batches
        with torch.no_grad():
            return d_loss(disc, rows)

    for seed in range(5):
        base = losses(batch, seed)
        assert torch.allclose(losses(others, seed)[0], base[0], rtol=0, atol=1e-6), (
            "row 0's unit loss changed when only the other rows changed")
        assert not torch.allclose(losses(own, seed)[0], base[0], rtol=0, atol=1e-4)
    for name, value in model.module_.state_dict().items():  # D's step never updates G
        assert torch.equal(value, state[name]), f"D's step changed G's {name}"


def test_gan_plans_from_the_public_row_count():
    config = dataclasses.replace(CONFIG, public_rows=250)
    model = fit(DPGAN(hidden=[8], generator_hidden=[16], conditioning="uniform"), codes(),
                config)
    (charge,) = model.charges_
    assert model.plan_.n_rows == 250
    assert charge.params["q"] == pytest.approx(60 / 250, rel=1e-8)
    assert charge.params["row_count"] == "dp"
