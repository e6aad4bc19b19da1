"""Randomness: reproducible when a dev seed is given, unpredictable (OS entropy) otherwise.

Each consumer asks for a named stream, so adding a consumer does not shift the others' draws.
No seed is ever derived from data, and in release mode no seed is stored anywhere.
"""

from __future__ import annotations

import hashlib
import secrets

import numpy as np
import torch

from privsynth.privacy.noise import NoiseSource, SecureNoise, SeededNoise


class RandomSource:
    """Factory of independent numpy and torch generators, one per named stream."""

    def __init__(self, seed: int | None) -> None:
        self._seed = seed

    @property
    def mode(self) -> str:
        """``dev-seed`` (reproducible) or ``os-entropy`` (a release)."""
        return "dev-seed" if self._seed is not None else "os-entropy"

    def _stream_seed(self, stream: str) -> int:
        if self._seed is None:
            return secrets.randbits(63)
        digest = hashlib.sha256(f"{self._seed}:{stream}".encode()).digest()
        return int.from_bytes(digest[:8], "little") >> 1

    def numpy(self, stream: str) -> np.random.Generator:
        """A numpy Generator for ``stream``."""
        return np.random.default_rng(self._stream_seed(stream))

    def noise(self, stream: str) -> NoiseSource:
        """Integer noise for the counting mechanisms: exact draws from the OS CSPRNG in a release
        (nothing to reproduce them from), a seeded generator for ``stream`` in a dev run."""
        if self._seed is None:
            return SecureNoise()
        return SeededNoise(self.numpy(stream))

    def torch(self, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
        """A torch Generator on ``device`` for ``stream`` (64 bits of OS entropy in a release)."""
        generator = torch.Generator(device=device)
        seed = secrets.randbits(64) if self._seed is None else self._stream_seed(stream)
        generator.manual_seed(seed)
        return generator

    def seed_int(self, stream: str) -> int:
        """An integer seed for libraries that take one (e.g. scikit-learn, anonymeter)."""
        return self._stream_seed(stream) % (2**32 - 1)
