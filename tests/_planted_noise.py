"""A NoiseSource whose draws the test chooses: checks that an output is the noisy count (and
not the raw one) by planting known noise."""

from __future__ import annotations

import numpy as np

from privsynth.privacy.noise import NoiseSource


class PlantedNoise(NoiseSource):
    """Noise chosen by the test: ``plant(size)`` gives the int64 draws."""

    name = "planted-test"

    def __init__(self, plant) -> None:
        self.plant = plant

    def discrete_laplace(self, scale: float, size: int) -> np.ndarray:
        return np.asarray(self.plant(size), dtype=np.int64)
