"""The generator backends, by the name a policy uses (``generator.backend``)."""

from __future__ import annotations

from privsynth.generators.base import Generator
from privsynth.generators.vae import DPVAE
from privsynth.policy.model import GeneratorPolicy, PersonUnit


def make_generator(config: GeneratorPolicy, person: PersonUnit | None = None,
                   column_weights: list[float] | tuple[list[float], list[float]] | None = None,
                   ) -> Generator:
    """A fresh, unfitted generator for the policy's backend and architecture; with ``person``
    (``privacy.unit: person``) the VAE is the person-level one (one latent per person, a row
    decoder shared by the slots); the GAN models the wide record as it is. ``column_weights``
    (the target weight, VAEs only): one per encoded column, or for the person VAE a pair
    (row count and fixed columns, one row's columns)."""
    if config.backend == "vae" and person is not None:
        from privsynth.generators.person_vae import PersonVAE  # noqa: PLC0415

        return PersonVAE(max_rows=person.max_rows, n_fixed=len(person.fixed),
                         hidden=config.hidden, latent_dim=config.latent_dim,
                         kl_weight=config.kl_weight, column_weights=column_weights)
    if config.backend == "vae":
        return DPVAE(hidden=config.hidden, latent_dim=config.latent_dim,
                     kl_weight=config.kl_weight, column_weights=column_weights)
    from privsynth.generators.gan import DPGAN  # noqa: PLC0415 (optional backend module)

    return DPGAN.from_policy(config)


BACKENDS = ("vae", "gan")
