"""Tiny instances of each generator backend for white-box DP tests (fast on 2 cores)."""

from __future__ import annotations

from privsynth.generators.base import Generator
from privsynth.generators.dp_sgd import DPSGDConfig
from privsynth.generators.gan import DPGAN
from privsynth.generators.vae import DPVAE


def tiny_config(expected_batch_size: int) -> DPSGDConfig:
    """One epoch at ε = 2, δ = 1e-5 under the RDP accountant."""
    return DPSGDConfig(epsilon=2.0, delta=1e-5, expected_batch_size=expected_batch_size,
                       epochs=1.0, max_grad_norm=1.0, learning_rate=0.01, accountant="rdp")


def tiny_backend(backend: str, width: int, latent: int) -> Generator:
    """A VAE or GAN with one hidden layer of ``width`` and a ``latent``-sized code or noise."""
    if backend == "vae":
        return DPVAE(hidden=[width], latent_dim=latent)
    return DPGAN(hidden=[width], generator_hidden=[width], noise_dim=latent)
