"""DP-VAE for mixed-type tables: encoder and decoder trained together under DP-SGD.

Every column arrives as one softmax block (categories, or numeric bins with within-bin decoding),
so the decoder has one categorical output head per column and the reconstruction loss is the
sum of the blocks' cross-entropies. The whole model sees real rows, so all of it is under DP-SGD.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from privsynth.generators.base import (
    Generator,
    ProgressFn,
    block_cross_entropy,
    block_offsets,
    one_hot_blocks,
    sample_blocks,
    seeded_init,
)
from privsynth.generators.dp_sgd import DPSGDConfig, train_dp_sgd
from privsynth.privacy.noise import NoiseSource


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (no BatchNorm: it mixes rows, breaking DP-SGD)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class VAEModule(nn.Module):
    """Encoder q(z|x) and decoder p(x|z). ``forward`` returns each row's negative ELBO."""

    def __init__(self, widths: list[int], hidden: list[int], latent_dim: int,
                 kl_weight: float = 1.0, column_weights: list[float] | None = None) -> None:
        super().__init__()
        self.kl_weight = kl_weight
        self.column_weights = column_weights
        self.widths = list(widths)
        self.latent_dim = latent_dim
        total = sum(widths)
        self.encoder = mlp([total, *hidden, 2 * latent_dim])
        self.decoder = mlp([latent_dim, *hidden[::-1], total])

    def forward(self, x: torch.Tensor, codes: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Negative ELBO per row of one-hot ``x`` (whose slot indices are ``codes``)."""
        mu, log_var = self.encoder(x).chunk(2, dim=1)
        log_var = log_var.clamp(-8.0, 8.0)
        z = mu + noise * torch.exp(0.5 * log_var)
        reconstruction = block_cross_entropy(self.decoder(z), codes, self.widths,
                                             self.column_weights)
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(dim=1)
        return reconstruction + self.kl_weight * kl


class DPVAE(Generator):
    """A tabular VAE trained with DP-SGD (Opacus). Fitted attributes end in ``_``."""

    name = "vae"

    def __init__(self, *, hidden: list[int] | None = None, latent_dim: int = 32,
                 kl_weight: float = 1.0, column_weights: list[float] | None = None) -> None:
        self.hidden = list(hidden or [256, 256])
        self.latent_dim = latent_dim
        self.kl_weight = kl_weight
        # Training only: each column's weight in the reconstruction loss (``target_weight``).
        self.column_weights = column_weights

    def fit(self, codes: np.ndarray, widths: list[int], config: DPSGDConfig, *,
            generator: torch.Generator, device: torch.device,
            progress: ProgressFn | None = None, noise: NoiseSource | None = None) -> DPVAE:
        """Train on slot indices under DP-SGD; records the charge in ``charges_``."""
        data = torch.as_tensor(codes, dtype=torch.long, device=device)
        with seeded_init(generator):
            module = VAEModule(widths, self.hidden, self.latent_dim, self.kl_weight,
                               self.column_weights)
        offsets = torch.tensor(block_offsets(widths), device=device)

        def loss_fn(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
            noise = torch.randn(len(batch), self.latent_dim, generator=generator, device=device)
            return model(one_hot_blocks(batch, offsets, sum(widths)), batch, noise)

        self._keep_fitted(train_dp_sgd(module, data, loss_fn, config, generator=generator,
                                       device=device, progress=progress), widths)
        return self

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator) -> np.ndarray:
        """Decode ``n`` draws of z ~ N(0, I) and draw one slot per column."""
        device = next(self.module_.parameters()).device
        out = []
        for start in range(0, n, 65536):
            size = min(65536, n - start)
            z = torch.randn(size, self.latent_dim, generator=generator, device=device)
            out.append(sample_blocks(self.module_.decoder(z), self.widths_, generator).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.widths_)), dtype=np.int64)
