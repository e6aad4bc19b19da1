"""DP one-way marginals, matched at sampling, so each column keeps its shares.

A DP-SGD generator learns joint structure, but its one-column shares drift: mean TVD 0.06-0.16
per declared column at ε = 10 (docs/marginals_study.md), where MST and AIM, which measure
one-way marginals directly, sit near the metric's own noise. This module closes that gap with
part of ε:

1. **Measure** (paid). Before DP-SGD, each generator column's slot counts are measured once,
   merged into at most ``g`` cells, with discrete Laplace noise
   (:func:`privsynth.privacy.mechanisms.noisy_category_counts`). The share of ε is split evenly
   over the columns (basic composition); DP-SGD trains on what is left.
2. **Match** (post-processing, free). At sampling, ``POOL`` × n rows are drawn from the
   generator, weighted by raking (iterative proportional fitting) so that every measured
   column's cell shares equal the noisy ones, and n of them kept by systematic sampling without
   replacement. Each kept row is a whole generated row: relations and the joint structure the
   model learned stay, only re-weighted.

**Cells from public facts.** With per-column budget ε_c the noise scale is b = 1/ε_c, and the
expected TVD that the noise adds to a column of g cells is about g·b / (2·N̂). ``g`` is the
largest count that keeps this under ``NOISE_TVD`` (N̂ is the DP row count, so this reads no
cell). A numeric column keeps its point masses and missing slot as cells of their own and
merges neighbouring bins into the rest; a categorical column with more slots than ``g`` merges
neighbouring slots (the model's split inside a merged cell stays). Columns are not measured at
all when fewer than 2 cells are affordable: the share then goes back to DP-SGD.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from privsynth.encoding.numeric import NumericEncoder
from privsynth.privacy import mechanisms
from privsynth.privacy.events import PrivacySpend
from privsynth.privacy.noise import NoiseSource

#: Expected total-variation distance the measurement noise may add to one column.
NOISE_TVD = 0.02
#: ``marginals_share: auto`` spends this share of ε when it affords ``AUTO_MIN_CELLS`` cells.
AUTO_SHARE = 0.2
AUTO_MIN_CELLS = 4
#: Generated rows per kept row at sampling: the raking's room to re-weight.
POOL = 4
RAKE_ITERATIONS = 50


def affordable_cells(n_public: int, epsilon_each: float) -> int:
    """Cells per column whose expected noise TVD (g·b/(2·N̂), b = 1/ε_c) stays ≤ NOISE_TVD."""
    if epsilon_each <= 0 or n_public <= 0:
        return 0
    return int(2.0 * NOISE_TVD * n_public * epsilon_each)


def resolve_share(share: float | str, *, epsilon: float, n_public: int, columns: int,
                  unit: str) -> float:
    """The share of ε the measurement gets: the policy's number, or for ``auto`` AUTO_SHARE
    when it affords at least AUTO_MIN_CELLS cells per column at row level, else 0. Public
    facts only (ε, the DP count N̂, the number of generator columns)."""
    if share != "auto":
        return float(share)
    if unit != "row" or columns == 0:
        return 0.0
    cells = affordable_cells(n_public, AUTO_SHARE * epsilon / columns)
    return AUTO_SHARE if cells >= AUTO_MIN_CELLS else 0.0


def cell_map(encoder: Any, cells: int) -> np.ndarray:
    """Slot → cell for one column with at most ``cells`` cells (see the module docstring)."""
    width = int(encoder.width)
    if cells >= width:
        return np.arange(width)
    if isinstance(encoder, NumericEncoder):
        bins = encoder.n_bins
        special = width - bins  # point masses, then missing
        groups = max(1, cells - special)
        return np.concatenate([(np.arange(bins) * groups) // bins,
                               groups + np.arange(special)])
    return (np.arange(width) * cells) // width


@dataclass(frozen=True)
class MarginalCalibration:
    """Noisy one-way shares of the generator's columns and the raking that matches them.

    ``columns``: generator column indices measured; ``cell_of_slot[k]`` maps that column's slots
    to cells; ``shares[k]`` the cells' noisy counts clipped at 0 and normalised (a DP output).
    """

    columns: tuple[int, ...]
    cell_of_slot: tuple[np.ndarray, ...]
    shares: tuple[np.ndarray, ...]
    pool: int = POOL

    @classmethod
    def measure(cls, codes: np.ndarray, encoders: list[Any], names: list[str], n_public: int,
                epsilon: float, spend: PrivacySpend, noise: NoiseSource,
                only: list[int] | None = None) -> MarginalCalibration | None:
        """Measure the cell counts of every generator column (or of the indices in ``only``)
        with ε/columns each, recording each charge in ``spend`` before its output is used.
        None (nothing charged) when fewer than 2 cells per column are affordable."""
        columns = list(range(len(encoders))) if only is None else list(only)
        if epsilon <= 0 or not columns:
            return None
        each = epsilon / len(columns)
        cells = affordable_cells(n_public, each)
        if cells < 2:
            return None
        maps, shares = [], []
        for j in columns:
            encoder, name = encoders[j], names[j]
            lookup = cell_map(encoder, cells)
            k = int(lookup.max()) + 1
            noisy, charge = mechanisms.noisy_category_counts(
                lookup[codes[:, j]], list(range(k)), each, noise, column=name,
                stage="marginals")
            spend.add(charge)
            mass = np.clip(noisy, 0, None).astype(float)
            maps.append(lookup)
            shares.append(mass / mass.sum() if mass.sum() > 0 else np.full(k, 1.0 / k))
        return cls(tuple(columns), tuple(maps), tuple(shares))

    def weights(self, pool: np.ndarray, n: int) -> np.ndarray:
        """Raking weights (mean 1) that give ``pool`` the measured shares where it can: a cell
        the pool never drew is dropped and the other shares renormalised. Each pass caps the
        weights at len(pool)/n times their mean (bounded raking), so no row needs to be kept
        more than once for the n kept rows to carry the shares."""
        weight = np.ones(len(pool))
        cap = len(pool) / max(n, 1)
        cells = [lookup[pool[:, j]] for j, lookup in zip(self.columns, self.cell_of_slot,
                                                          strict=True)]
        for _ in range(RAKE_ITERATIONS):
            worst = 0.0
            for cell, share in zip(cells, self.shares, strict=True):
                have = np.bincount(cell, weights=weight, minlength=len(share))
                want = np.where(have > 0, share, 0.0)
                if want.sum() <= 0 or have.sum() <= 0:
                    continue
                want = want / want.sum() * have.sum()
                worst = max(worst, 0.5 * float(np.abs(have - want).sum() / have.sum()))
                factor = np.divide(want, have, out=np.zeros_like(have), where=have > 0)
                weight = weight * factor[cell]
            mean = weight.mean()
            if mean <= 0:
                break
            weight = np.minimum(weight / mean, cap)
            if worst < 1e-4:
                break
        total = weight.sum()
        return weight * (len(pool) / total) if total > 0 else np.ones(len(pool))

    def select(self, pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` rows of ``pool`` (a generator draw of about ``self.pool`` × n), each at most
        once, with inclusion chances proportional to the raking weights (capped at 1)."""
        if len(pool) <= n:
            return pool[:n]
        chance = _inclusion(self.weights(pool, n), n)
        order = rng.permutation(len(pool))
        cumulative = np.cumsum(chance[order])
        points = rng.uniform() + np.arange(n)
        picked = np.minimum(np.searchsorted(cumulative, points, side="right"), len(pool) - 1)
        return pool[np.sort(order[picked])]

    def to_dict(self) -> dict[str, Any]:
        """JSON form for a saved model (DP outputs only)."""
        return {"columns": list(self.columns), "pool": self.pool,
                "cell_of_slot": [m.tolist() for m in self.cell_of_slot],
                "shares": [s.tolist() for s in self.shares]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MarginalCalibration:
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(int(c) for c in data["columns"]),
                   tuple(np.asarray(m, dtype=np.int64) for m in data["cell_of_slot"]),
                   tuple(np.asarray(s, dtype=float) for s in data["shares"]),
                   int(data.get("pool", POOL)))


def _inclusion(weight: np.ndarray, n: int) -> np.ndarray:
    """Inclusion chances n·w/Σw, capped at 1 with the excess spread over the others (Σ = n)."""
    chance = n * weight / weight.sum()
    capped = np.zeros(len(chance), dtype=bool)
    for _ in range(50):
        over = chance > 1.0
        if not over.any():
            break
        capped |= over
        chance[capped] = 1.0
        rest = ~capped & (chance > 0)
        room = n - capped.sum()
        if room <= 0 or not rest.any():
            break
        chance[rest] *= room / chance[rest].sum()
    return np.minimum(chance, 1.0)
