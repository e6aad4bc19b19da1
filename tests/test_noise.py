"""The integer noise sources: exact discrete Laplace, secure in a release, reproducible in dev.

Goodness of fit. Each sampler is checked against the exact PMF of DLap(t),
P(k) = (1-p)/(1+p) · p^|k| with p = e^{-1/t}, by Pearson's chi-square over the cells
k = -K..K plus the two tails, K chosen so that every cell expects at least 20 draws (so the
chi-square approximation of the statistic's null distribution is good).

* ``SeededNoise`` is seeded: the test is deterministic; the threshold p >= 1e-4 is fixed.
* ``SecureNoise`` cannot be seeded. Each of its four checks rejects only when p < 2.5e-7, so
  under the null (a correct sampler) the test fails with probability below 4 · 2.5e-7 = 1e-6.
  Power: with 40,000 draws the same test rejects the classic wrong samplers with p-values
  below 1e-20 (rounded continuous Laplace, 3/4 of the scale, halved draws; measured: a 0.9x
  scale gives p < 1e-50), shown in ``test_chi_square_has_power``.

Release noise cannot be reproduced: two SecureNoise draws differ even after every global seed is
reset, and ``RandomSource(None)`` hands out SecureNoise (old code: a numpy Generator seeded from
``secrets``, whose 63-bit seed the process could leak or a mutant could fix).
"""

from __future__ import annotations

import math
import random
import time

import numpy as np
import pytest
import torch
from scipy.stats import chi2

from privsynth.errors import PrivacyError
from privsynth.privacy.noise import NoiseSource, SecureNoise, SeededNoise
from privsynth.privacy.rng import RandomSource

SCALES = (0.5, 1 / 0.45, 1 / 0.3, 20.0)  # eps = 2, 0.45, 0.3 (a non-dyadic float), 0.05
SECURE_ALPHA = 2.5e-7  # four checks: family-wise false failure < 1e-6
MIN_EXPECTED = 20


def dlap_pmf(k: np.ndarray, scale: float) -> np.ndarray:
    p = math.exp(-1.0 / scale)
    return (1 - p) / (1 + p) * p ** np.abs(k)


def dlap_upper_tail(m: int, scale: float) -> float:
    """P(Z >= m) for m >= 0: p^m / (1 + p)."""
    p = math.exp(-1.0 / scale)
    return p**m / (1 + p)


def chi_square_p(draws: np.ndarray, scale: float) -> float:
    """p-value of Pearson's chi-square of ``draws`` against DLap(scale)."""
    n = len(draws)
    k = 0
    while n * dlap_pmf(np.array([k + 1]), scale)[0] >= MIN_EXPECTED and \
            n * dlap_upper_tail(k + 2, scale) >= MIN_EXPECTED:
        k += 1
    cells = np.arange(-k, k + 1)
    expected = np.concatenate([[dlap_upper_tail(k + 1, scale)], dlap_pmf(cells, scale),
                               [dlap_upper_tail(k + 1, scale)]]) * n
    observed = np.concatenate([[(draws < -k).sum()],
                               [(draws == c).sum() for c in cells],
                               [(draws > k).sum()]])
    assert expected.min() >= MIN_EXPECTED * 0.99 and abs(expected.sum() - n) < 1e-6 * n
    stat = float(((observed - expected) ** 2 / expected).sum())
    return float(chi2.sf(stat, len(cells) + 1))


@pytest.mark.parametrize("scale", SCALES)
def test_seeded_noise_fits_the_exact_pmf(scale):
    draws = SeededNoise(np.random.default_rng(12345)).discrete_laplace(scale, 200_000)
    assert draws.dtype == np.int64 and draws.shape == (200_000,)
    assert chi_square_p(draws, scale) >= 1e-4


@pytest.mark.parametrize("scale", SCALES)
def test_secure_noise_fits_the_exact_pmf(scale):
    draws = SecureNoise().discrete_laplace(scale, 40_000)
    assert draws.dtype == np.int64 and draws.shape == (40_000,)
    assert chi_square_p(draws, scale) >= SECURE_ALPHA


def test_chi_square_has_power():
    """The check above rejects plausible wrong samplers at the draw counts it uses."""
    rng = np.random.default_rng(7)
    scale = 1 / 0.45
    rounded = np.rint(rng.laplace(0, scale, 40_000)).astype(np.int64)  # the classic shortcut
    assert chi_square_p(rounded, scale) < 1e-15
    smaller = SeededNoise(rng).discrete_laplace(0.75 * scale, 40_000)
    assert chi_square_p(smaller, scale) < 1e-12
    halved = SeededNoise(rng).discrete_laplace(scale, 40_000) // 2
    assert chi_square_p(halved, scale) < 1e-12


def test_secure_noise_is_not_reproducible_from_any_seed():
    source = SecureNoise()
    assert source.name == "os-csprng-exact" and isinstance(source, NoiseSource)
    draws = []
    for _ in range(2):
        random.seed(0)
        np.random.seed(0)
        torch.manual_seed(0)
        draws.append(SecureNoise().discrete_laplace(100.0, 64))
    # Two equal vectors of 64 draws at scale 100 have probability < (max pmf)^64 = 0.005^64.
    assert not np.array_equal(*draws)
    assert isinstance(source._random, random.SystemRandom)


def test_random_source_hands_out_secure_noise_in_a_release_and_seeded_in_dev():
    assert isinstance(RandomSource(None).noise("encoding"), SecureNoise)
    dev = RandomSource(7)
    a, b = dev.noise("encoding"), dev.noise("encoding")
    assert isinstance(a, SeededNoise) and a.name == "seeded-dev"
    np.testing.assert_array_equal(a.discrete_laplace(5.0, 50), b.discrete_laplace(5.0, 50))
    other = dev.noise("conditioning").discrete_laplace(5.0, 50)
    assert not np.array_equal(dev.noise("encoding").discrete_laplace(5.0, 50), other)


def test_release_torch_generators_use_64_bits_of_os_entropy():
    """64 fresh bits per stream: over 64 streams some seed is >= 2^63 (old code: 63 bits, never;
    a correct one misses with probability 2^-64), and no two coincide."""
    seeds = [RandomSource(None).torch("training").initial_seed() for _ in range(64)]
    assert len(set(seeds)) == 64 and max(seeds) >= 2**63
    assert RandomSource(3).torch("x").initial_seed() == RandomSource(3).torch("x").initial_seed()


@pytest.mark.parametrize("source", [SecureNoise(), SeededNoise(np.random.default_rng(0))])
@pytest.mark.parametrize("scale", [0.0, -1.0, math.inf, math.nan])
def test_bad_scales_are_refused(source, scale):
    with pytest.raises(PrivacyError):
        source.discrete_laplace(scale, 3)


def test_secure_noise_is_fast_enough_for_a_release():
    """A release draws a few thousand values (histogram cells, categories, the row count):
    5,000 draws take well under a second (measured ~15 µs per draw); allow 5 s."""
    start = time.perf_counter()
    SecureNoise().discrete_laplace(1 / 0.05, 5_000)
    assert time.perf_counter() - start < 5.0
