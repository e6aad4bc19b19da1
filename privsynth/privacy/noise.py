"""Integer noise for the counting mechanisms: the discrete Laplace distribution.

``DLap(t)`` has P(k) = (1 - p)/(1 + p) · p^|k| on the integers, with p = exp(-1/t). Added to a
count of sensitivity Δ it gives (Δ/t)-DP, and since both the count and the noise are integers
there is no floating-point leak (Mironov 2012 showed how the low-order bits of a floating-point
Laplace sample reveal the value it was added to).

Two sources:

* :class:`SecureNoise` (release runs): every random bit comes from the operating system's CSPRNG
  (``secrets.SystemRandom``) and the sampler is the exact one of Canonne, Kamath and Steinke,
  "The Discrete Gaussian for Differential Privacy" (NeurIPS 2020), Algorithms 1 and 2: only
  integer and rational arithmetic on the scale, read as an exact ``fractions.Fraction``, so the
  output follows DLap(scale) exactly (the float ``scale`` is itself the parameter). Nothing
  about it can be reproduced from a seed.
* :class:`SeededNoise` (development runs): the difference of two geometric draws of a seeded
  ``numpy.random.Generator``, which is DLap(scale) (up to numpy's floating-point geometric
  sampler) and reproducible. A seeded run is not a DP release.
"""

from __future__ import annotations

import math
import secrets
from abc import ABC, abstractmethod
from fractions import Fraction

import numpy as np

from privsynth.errors import PrivacyError


class NoiseSource(ABC):
    """Where a counting mechanism draws its noise. ``name`` is recorded in each charge."""

    name: str

    @abstractmethod
    def discrete_laplace(self, scale: float, size: int) -> np.ndarray:
        """``size`` independent int64 draws with P(k) ∝ exp(-|k|/scale)."""


def _check(scale: float, size: int) -> None:
    if not (isinstance(scale, int | float) and scale > 0 and math.isfinite(scale)):
        raise PrivacyError(f"noise scale must be a positive finite number. Got {scale} instead.")
    if int(size) != size or size < 0:
        raise PrivacyError(f"noise size must be a non-negative integer. Got {size} instead.")


class SecureNoise(NoiseSource):
    """Exact discrete Laplace draws from the OS CSPRNG (Canonne–Kamath–Steinke 2020)."""

    name = "os-csprng-exact"

    def __init__(self) -> None:
        self._random = secrets.SystemRandom()

    def discrete_laplace(self, scale: float, size: int) -> np.ndarray:
        """``size`` exact DLap(scale) draws; ``scale`` is read as the exact rational it is."""
        _check(scale, size)
        fraction = Fraction(scale)
        # DLap(t/s) with integers t, s (CKS Algorithm 2's notation): scale = t / s.
        t, s = fraction.numerator, fraction.denominator
        draw = self._discrete_laplace
        return np.fromiter((draw(t, s) for _ in range(int(size))), dtype=np.int64,
                           count=int(size))

    # -- CKS 2020 Algorithm 2 and its building blocks (Algorithm 1), integers only ----------
    def _bernoulli(self, num: int, den: int) -> bool:
        """Bernoulli(num/den), 0 <= num <= den."""
        return self._random.randrange(den) < num

    def _bernoulli_exp_unit(self, num: int, den: int) -> bool:
        """Bernoulli(exp(-γ)) for γ = num/den in [0, 1]: K odd at the first failure of
        Bernoulli(γ/K), K = 1, 2, …"""
        k = 1
        while self._bernoulli(num, den * k):
            k += 1
        return k % 2 == 1

    def _discrete_laplace(self, t: int, s: int) -> int:
        """One DLap(t/s) draw (CKS 2020, Algorithm 2)."""
        while True:
            u = self._random.randrange(t)
            if not self._bernoulli_exp_unit(u, t):
                continue
            v = 0
            while self._bernoulli_exp_unit(1, 1):
                v += 1
            y = (u + t * v) // s  # geometric with success probability 1 - exp(-s/t)
            negative = self._random.getrandbits(1) == 1
            if negative and y == 0:
                continue
            return -y if negative else y


class SeededNoise(NoiseSource):
    """Reproducible discrete Laplace draws for development runs (not a DP release)."""

    name = "seeded-dev"

    def __init__(self, generator: np.random.Generator) -> None:
        if not isinstance(generator, np.random.Generator):
            raise TypeError("SeededNoise needs a numpy.random.Generator")
        self._generator = generator

    def discrete_laplace(self, scale: float, size: int) -> np.ndarray:
        """``size`` draws of G1 - G2, G1, G2 geometric on {0, 1, …} with P(g) ∝ exp(-g/scale)."""
        _check(scale, size)
        success = -math.expm1(-1.0 / scale)  # 1 - p, computed without cancellation
        # numpy's geometric counts trials (support 1, 2, …); the offsets cancel in the difference.
        first = self._generator.geometric(success, size=int(size))
        second = self._generator.geometric(success, size=int(size))
        return (first - second).astype(np.int64)
