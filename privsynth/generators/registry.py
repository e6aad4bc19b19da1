"""The generator backends, by the name a policy uses (``generator.backend``)."""

from __future__ import annotations

from privsynth.generators.base import Generator
from privsynth.generators.vae import DPVAE
from privsynth.policy.model import GeneratorPolicy


def make_generator(config: GeneratorPolicy) -> Generator:
    """A fresh, unfitted generator for the policy's backend and architecture."""
    if config.backend == "vae":
        return DPVAE(hidden=config.hidden, latent_dim=config.latent_dim,
                     kl_weight=config.kl_weight)
    from privsynth.generators.gan import DPGAN  # noqa: PLC0415 (optional backend module)

    return DPGAN.from_policy(config)


BACKENDS = ("vae", "gan")
