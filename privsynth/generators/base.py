"""The contract every generator backend follows (scikit-learn style: ``fit`` returns self)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch

from privsynth.generators.dp_sgd import DPSGDConfig
from privsynth.privacy.events import Charge
from privsynth.privacy.noise import NoiseSource

# (step, total steps): never a loss, which is computed on real rows without noise (not DP).
ProgressFn = Callable[[int, int], None]


class Generator(ABC):
    """Learns from slot-index codes under DP-SGD and samples new codes.

    ``fit(codes, widths, config, rng, device)`` trains on an (N, C) integer matrix whose column
    j holds slot indices below ``widths[j]``; it records its DP-SGD charge in ``charges_``.
    ``sample(n, generator)`` returns an (n, C) integer matrix of the same form.
    """

    name: str = "base"
    charges_: list[Charge]

    @abstractmethod
    def fit(self, codes: np.ndarray, widths: list[int], config: DPSGDConfig, *,
            generator: torch.Generator, device: torch.device,
            progress: ProgressFn | None = None, noise: NoiseSource | None = None) -> Generator:
        """Train under DP-SGD at the config's epsilon and delta. ``noise`` draws the discrete
        Laplace noise of any count a backend releases (release runs: the OS CSPRNG)."""

    @abstractmethod
    def sample(self, n: int, *, generator: torch.Generator) -> np.ndarray:
        """Draw ``n`` synthetic rows as slot indices."""

    def _keep_fitted(self, trainer, widths: list[int]) -> None:  # noqa: ANN001 - DPSGDTrainer
        """Keep what a DP-SGD run leaves: the trained module (hooks removed, eval mode), the
        widths, the plan and the charge."""
        self.module_ = trainer.unwrapped().eval()
        self.widths_ = list(widths)
        self.plan_ = trainer.plan
        self.charges_ = [trainer.charge()]


def one_hot_blocks(codes: torch.Tensor, offsets: torch.Tensor, total: int) -> torch.Tensor:
    """(B, C) slot indices to a (B, total) concatenation of one-hot blocks, on codes' device."""
    out = torch.zeros(codes.shape[0], total, device=codes.device)
    out.scatter_(1, codes + offsets, 1.0)
    return out


def block_offsets(widths: list[int]) -> list[int]:
    """Start of each block in the concatenated one-hot vector."""
    return [int(x) for x in np.concatenate([[0], np.cumsum(widths)[:-1]])]


def sample_blocks(logits: torch.Tensor, widths: list[int],
                  generator: torch.Generator) -> torch.Tensor:
    """Draw one slot per block from softmax(logits) with ``generator``; returns (B, C) indices."""
    picks = []
    for block in torch.split(logits, widths, dim=1):
        probs = torch.softmax(block.float(), dim=1)
        picks.append(torch.multinomial(probs, 1, generator=generator).squeeze(1))
    return torch.stack(picks, dim=1)


def block_cross_entropy(logits: torch.Tensor, codes: torch.Tensor, widths: list[int],
                        weights: list[float] | None = None) -> torch.Tensor:
    """Sum over blocks (the last axis) of the true slot's cross-entropy, block j scaled by
    ``weights[j]`` (default 1): shape ``codes.shape[:-1]``, e.g. (B,) for rows or (B, k) for
    a person's k slots."""
    total = torch.zeros(codes.shape[:-1], device=logits.device)
    for j, block in enumerate(torch.split(logits, widths, dim=-1)):
        logp = torch.log_softmax(block, dim=-1)
        term = logp.gather(-1, codes[..., j : j + 1]).squeeze(-1)
        total = total - (term if weights is None else weights[j] * term)
    return total


@contextmanager
def seeded_init(generator: torch.Generator) -> Iterator[None]:
    """Run weight initialisation from a seed drawn from ``generator``, leaving torch's global
    RNG as it was: a dev seed then fixes the initial weights too (release mode: OS entropy)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
