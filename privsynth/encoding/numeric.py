"""Numbers and dates as bins: clipped to bounds, one slot per bin plus one for missing.

Bin edges come from public bounds (uniform bins, free) or from DP quantiles (one Laplace
histogram, paid). Decoding draws a value inside the bin, following the DP histogram's mass where
there is one, so skewed columns keep their shape inside a bin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from privsynth.data.schema import ColumnSchema

EPOCH = pd.Timestamp("1970-01-01")


@dataclass(frozen=True)
class NumericEncoder:
    """Fitted bins for one numeric, integer or datetime column (DP outputs or public facts).

    ``grid``/``grid_mass`` describe the distribution inside the bins: the fine cells and their
    (noisy, non-negative) counts; uniform when the mass is all zero.
    """

    schema: ColumnSchema
    edges: np.ndarray
    grid: np.ndarray
    grid_mass: np.ndarray

    @property
    def width(self) -> int:
        """Slots: one per bin, plus one for missing."""
        return len(self.edges) - 1 + 1

    def encode(self, values: pd.Series) -> np.ndarray:
        """Slot index per row; the last slot means missing."""
        x = values.to_numpy(dtype=float)
        missing = np.isnan(x)
        clipped = np.clip(np.where(missing, self.edges[0], x), self.edges[0], self.edges[-1])
        codes = np.clip(np.searchsorted(self.edges, clipped, side="right") - 1, 0,
                        len(self.edges) - 2)
        return np.where(missing, self.width - 1, codes).astype(np.int64)

    def decode(self, codes: np.ndarray, rng: np.random.Generator) -> pd.Series:
        """Draw a value inside each code's bin; the missing slot gives a missing value."""
        out = np.full(len(codes), np.nan)
        cell_of_bin = np.clip(np.searchsorted(self.edges, self.grid[:-1], side="right") - 1, 0,
                              len(self.edges) - 2)
        for b in np.unique(codes[codes < self.width - 1]):
            rows = np.flatnonzero(codes == b)
            cells = np.flatnonzero(cell_of_bin == b)
            if len(cells) == 0:
                out[rows] = rng.uniform(self.edges[b], self.edges[b + 1], size=len(rows))
                continue
            mass = self.grid_mass[cells]
            p = mass / mass.sum() if mass.sum() > 0 else np.full(len(cells), 1 / len(cells))
            chosen = cells[rng.choice(len(cells), size=len(rows), p=p)]
            lo = np.maximum(self.grid[chosen], self.edges[b])
            hi = np.minimum(self.grid[chosen + 1], self.edges[b + 1])
            out[rows] = rng.uniform(lo, np.maximum(hi, lo))
        return self._to_kind(out)

    def _to_kind(self, x: np.ndarray) -> pd.Series:
        low, high = self.schema.bounds
        x = np.where(np.isnan(x), np.nan, np.clip(x, low, high))
        if self.schema.kind == "integer":
            return pd.Series(np.round(x), name=self.schema.name).astype("Int64")
        if self.schema.kind == "datetime":
            return pd.Series(EPOCH + pd.to_timedelta(np.round(x), unit="D"), name=self.schema.name)
        return pd.Series(x, name=self.schema.name)


def value_grid(schema: ColumnSchema, cells: int = 64) -> np.ndarray:
    """Fine grid over the bounds (public, so data-independent).

    Integer-valued columns of small range get one cell per value. Wider ones get a cell of
    their own for each bound value, because amounts pile up there (zero, top-coded values):
    decoding then gives exactly 0 or 99999 instead of a value smeared across a wide cell.
    """
    low, high = schema.bounds
    if schema.kind in ("integer", "datetime"):
        low, high = float(np.floor(low)), float(np.ceil(high))
        if high - low + 1 <= 4 * cells:
            return np.arange(low - 0.5, high + 1.0, 1.0)
        inner = np.linspace(low + 0.5, high - 0.5, cells - 1)
        return np.concatenate([[low - 0.5], inner, [high + 0.5]])
    return np.linspace(low, high, cells + 1)


def uniform_edges(grid: np.ndarray, n_bins: int) -> np.ndarray:
    """Up to ``n_bins`` bins of equal width, snapped to the grid."""
    if len(grid) - 1 <= n_bins:
        return grid.copy()
    index = np.unique(np.round(np.linspace(0, len(grid) - 1, n_bins + 1)).astype(int))
    return grid[index]
