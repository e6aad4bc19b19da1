"""DP-VAE over persons: one latent per person, one row decoder shared by the k slots.

Under ``privacy.unit: person`` a training example is a person's wide record (row count, fixed
columns, k slots of the varying columns; :mod:`privsynth.encoding.person_encoder`). A plain VAE
on the wide record has a separate output head per slot, so its size, and the DP-SGD noise
spread over it, grows with k, while no slot learns from another. This model instead:

* encodes each present row with one shared row encoder (a slot's position is an input), averages
  them over the person's present rows (a presence mask), and adds the person-level inputs (row
  count and fixed columns) before the latent z;
* decodes the row count and fixed columns from z, and every slot's row from (z, slot position)
  with one shared row decoder, so each of a person's rows trains the same weights and the rows
  of one person are tied together through z;
* scores only the rows a person has (the mask): an empty slot costs nothing.

Privacy: the slot axis is a *sequence* axis of the person's example. Opacus' ghost clipping
computes each example's gradient norm over all of its positions (``nn.Linear`` on (B, k, F)
inputs), so a person's rows are clipped together, to C, as one example; Poisson sampling and the
accountant run over persons exactly as for rows.
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
    sample_blocks,
    seeded_init,
)
from privsynth.generators.dp_sgd import DPSGDConfig, train_dp_sgd
from privsynth.generators.vae import mlp
from privsynth.privacy.noise import NoiseSource


def _one_hot(codes: torch.Tensor, widths: list[int]) -> torch.Tensor:
    """(..., C) slot indices to (..., sum(widths)) concatenated one-hot blocks."""
    offsets = torch.tensor(block_offsets(widths), device=codes.device)
    out = torch.zeros(*codes.shape[:-1], sum(widths), device=codes.device)
    out.scatter_(-1, codes + offsets, 1.0)
    return out


class PersonVAEModule(nn.Module):
    """q(z | person) and p(person | z); ``forward`` returns each person's negative ELBO."""

    def __init__(self, person_widths: list[int], row_widths: list[int], max_rows: int,
                 hidden: int, latent_dim: int, kl_weight: float,
                 weights: tuple[list[float] | None, list[float] | None] = (None, None)) -> None:
        super().__init__()
        self.person_weights, self.row_weights = weights
        self.person_widths, self.row_widths = list(person_widths), list(row_widths)
        self.max_rows, self.latent_dim, self.kl_weight = max_rows, latent_dim, kl_weight
        self.row_in = mlp([sum(row_widths) + max_rows, hidden])
        self.person_in = mlp([sum(person_widths), hidden])
        self.to_latent = mlp([2 * hidden, hidden, 2 * latent_dim])
        self.person_out = mlp([latent_dim, hidden, sum(person_widths)])
        self.row_out = mlp([latent_dim + max_rows, hidden, sum(row_widths)])
        self.register_buffer("positions", torch.eye(max_rows))

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(person logits (B, P), row logits (B, k, R)) from latents (B, L)."""
        size = z.shape[0]
        slots = self.positions.expand(size, -1, -1)
        rows = self.row_out(torch.cat([z.unsqueeze(1).expand(-1, self.max_rows, -1), slots],
                                      dim=-1))
        return self.person_out(z), rows

    def forward(self, person: torch.Tensor, rows: torch.Tensor, mask: torch.Tensor,
                noise: torch.Tensor) -> torch.Tensor:
        """Negative ELBO per person: ``person`` (B, 1 + P) codes, ``rows`` (B, k, V) codes,
        ``mask`` (B, k) 1.0 where the person has that row."""
        size = person.shape[0]
        slots = self.positions.expand(size, -1, -1)
        h_rows = self.row_in(torch.cat([_one_hot(rows, self.row_widths), slots], dim=-1))
        h_rows = torch.relu(h_rows)
        pooled = (h_rows * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        h_person = torch.relu(self.person_in(_one_hot(person, self.person_widths)))
        mu, log_var = self.to_latent(torch.cat([pooled, h_person], dim=-1)).chunk(2, dim=-1)
        log_var = log_var.clamp(-8.0, 8.0)
        z = mu + noise * torch.exp(0.5 * log_var)
        person_logits, row_logits = self.decode(z)
        reconstruction = block_cross_entropy(person_logits, person, self.person_widths,
                                    self.person_weights) + (
            block_cross_entropy(row_logits, rows, self.row_widths, self.row_weights) * mask).sum(1)
        kl = 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(dim=-1)
        return reconstruction + self.kl_weight * kl


class PersonVAE(Generator):
    """The person-level VAE; codes in :class:`~privsynth.encoding.person_encoder.PersonEncoder`
    layout (row count, ``n_fixed`` fixed columns, ``max_rows`` slots of the others)."""

    name = "person_vae"

    def __init__(self, *, max_rows: int, n_fixed: int, hidden: list[int] | None = None,
                 latent_dim: int = 16, kl_weight: float = 1.0,
                 column_weights: tuple[list[float], list[float]] | None = None) -> None:
        self.max_rows, self.n_fixed = int(max_rows), int(n_fixed)
        self.hidden = list(hidden or [64])
        self.latent_dim = latent_dim
        self.kl_weight = kl_weight
        # Training only: (row count and fixed blocks, one row's blocks) loss weights.
        self.column_weights = column_weights

    def _split_widths(self, widths: list[int]) -> tuple[list[int], list[int]]:
        person = list(widths[:1 + self.n_fixed])
        varying = len(widths) - len(person)
        if varying % self.max_rows or widths[0] != self.max_rows:
            raise ValueError("codes are not in the person encoder's layout")
        return person, list(widths[len(person):len(person) + varying // self.max_rows])

    def _module(self, widths: list[int]) -> PersonVAEModule:
        person, row = self._split_widths(widths)
        return PersonVAEModule(person, row, self.max_rows, self.hidden[0], self.latent_dim,
                               self.kl_weight, self.column_weights or (None, None))

    def _parts(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        width = 1 + self.n_fixed
        person = codes[:, :width]
        rows = codes[:, width:].reshape(len(codes), self.max_rows, -1)
        mask = (torch.arange(self.max_rows, device=codes.device)[None, :]
                <= codes[:, :1]).float()  # slot j present when j < count = code + 1
        return person, rows, mask

    def fit(self, codes: np.ndarray, widths: list[int], config: DPSGDConfig, *,
            generator: torch.Generator, device: torch.device,
            progress: ProgressFn | None = None, noise: NoiseSource | None = None) -> PersonVAE:
        """Train on wide person records under DP-SGD (one example per person)."""
        data = torch.as_tensor(codes, dtype=torch.long, device=device)
        with seeded_init(generator):
            module = self._module(widths)

        def loss_fn(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
            eps = torch.randn(len(batch), self.latent_dim, generator=generator, device=device)
            return model(*self._parts(batch), eps)

        self._keep_fitted(train_dp_sgd(module, data, loss_fn, config, generator=generator,
                                       device=device, progress=progress), widths)
        return self

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator) -> np.ndarray:
        """``n`` synthetic persons as wide codes (every slot drawn; the encoder keeps the first
        ``count``)."""
        device = next(self.module_.parameters()).device
        person_w, row_w = self._split_widths(self.widths_)
        out = []
        for start in range(0, n, 16384):
            size = min(16384, n - start)
            z = torch.randn(size, self.latent_dim, generator=generator, device=device)
            person_logits, row_logits = self.module_.decode(z)
            person = sample_blocks(person_logits, person_w, generator)
            rows = sample_blocks(row_logits.reshape(size * self.max_rows, -1), row_w, generator)
            out.append(torch.cat([person, rows.reshape(size, -1)], dim=1).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.widths_)), np.int64)
