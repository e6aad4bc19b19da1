"""Numbers and dates as bins: clipped to bounds, one slot per bin, per point mass, and missing.

Bin edges come from public bounds (uniform bins, free) or from DP quantiles (one Laplace
histogram, paid). Decoding draws a value inside the bin, following the DP histogram's mass where
there is one, so skewed columns keep their shape inside a bin.

What the policy declares about a column shapes its slots (all public facts, so free):

* ``point_masses``: exact values analysts rely on (0, an assay limit, a top code) get a slot
  each, so they decode to exactly that value instead of being smeared across a bin;
* ``transform: asinh``: heavy tails are binned on ``asinh(x / transform_scale)``, a log scale
  for large values that stays linear near 0 and accepts any sign, so a median of 2 under a
  bound of 60,000 is not lost in the first of 64 linear cells;
* ``complete: true``: no missing slot, so no synthetic row is ever missing there;
* ``decimals``: decoded values are rounded to the recorded precision (post-processing).
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
    point_masses: tuple[float, ...] = ()
    transform: str = "linear"
    transform_scale: float = 1.0
    complete: bool = False
    decimals: int | None = None

    @property
    def n_bins(self) -> int:
        """Bins between the edges (slots ``0 .. n_bins - 1``)."""
        return len(self.edges) - 1

    @property
    def width(self) -> int:
        """Slots: one per bin, one per point mass, plus one for missing unless complete."""
        return self.n_bins + len(self.point_masses) + (0 if self.complete else 1)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Model value -> the axis the edges and grid live on (identity, or asinh)."""
        return np.arcsinh(x / self.transform_scale) if self.transform == "asinh" else x

    def inverse(self, y: np.ndarray) -> np.ndarray:
        """The axis of the edges -> model value."""
        return np.sinh(y) * self.transform_scale if self.transform == "asinh" else y

    def encode(self, values: pd.Series) -> np.ndarray:
        """Slot index per row: bins, then point masses, then missing (the last slot).

        In a column declared complete a missing cell takes the lower bound's slot: a row-local
        rule, so no count of such cells exists anywhere.
        """
        x = values.to_numpy(dtype=float)
        missing = np.isnan(x)
        low, high = self.schema.bounds
        clipped = np.clip(np.where(missing, low, x), low, high)
        codes = np.clip(np.searchsorted(self.edges, self.forward(clipped), side="right") - 1, 0,
                        self.n_bins - 1)
        for j, value in enumerate(self.point_masses):
            codes = np.where(clipped == value, self.n_bins + j, codes)
        if not self.complete:
            codes = np.where(missing, self.width - 1, codes)
        return codes.astype(np.int64)

    def decode(self, codes: np.ndarray, rng: np.random.Generator) -> pd.Series:
        """Draw a value inside each code's bin; a point mass decodes to exactly its value, the
        missing slot to a missing value."""
        out = np.full(len(codes), np.nan)
        for j, value in enumerate(self.point_masses):
            out[codes == self.n_bins + j] = value
        cell_of_bin = np.clip(np.searchsorted(self.edges, self.grid[:-1], side="right") - 1, 0,
                              len(self.edges) - 2)
        drawn = np.full(len(codes), np.nan)
        for b in np.unique(codes[codes < self.n_bins]):
            rows = np.flatnonzero(codes == b)
            cells = np.flatnonzero(cell_of_bin == b)
            if len(cells) == 0:
                drawn[rows] = rng.uniform(self.edges[b], self.edges[b + 1], size=len(rows))
                continue
            mass = self.grid_mass[cells]
            p = mass / mass.sum() if mass.sum() > 0 else np.full(len(cells), 1 / len(cells))
            chosen = cells[rng.choice(len(cells), size=len(rows), p=p)]
            lo = np.maximum(self.grid[chosen], self.edges[b])
            hi = np.minimum(self.grid[chosen + 1], self.edges[b + 1])
            drawn[rows] = rng.uniform(lo, np.maximum(hi, lo))
        in_bin = codes < self.n_bins
        out[in_bin] = self.inverse(drawn[in_bin])
        return self._to_kind(out)

    def _to_kind(self, x: np.ndarray) -> pd.Series:
        low, high = self.schema.bounds
        x = np.where(np.isnan(x), np.nan, np.clip(x, low, high))
        if self.schema.kind == "integer":
            return pd.Series(np.round(x), name=self.schema.name).astype("Int64")
        if self.schema.kind == "datetime":
            return pd.Series(EPOCH + pd.to_timedelta(np.round(x), unit="D"), name=self.schema.name)
        if self.decimals is not None:  # keeps point masses exact; a value rounded past a
            x = np.clip(np.round(x, self.decimals), low, high)  # bound is put back inside
        return pd.Series(x, name=self.schema.name)


def value_grid(schema: ColumnSchema, cells: int = 64, *, transform: str = "linear",
               transform_scale: float = 1.0) -> np.ndarray:
    """Fine grid over the bounds (public, so data-independent), on the transform's axis.

    Integer-valued columns of small range get one cell per value. Wider ones get a cell of
    their own for each bound value, because amounts pile up there (zero, top-coded values):
    decoding then gives exactly 0 or 99999 instead of a value smeared across a wide cell.
    With ``transform="asinh"`` the cells are equal on ``asinh(x / transform_scale)``.
    """
    low, high = schema.bounds
    if transform == "asinh":
        return np.linspace(np.arcsinh(low / transform_scale), np.arcsinh(high / transform_scale),
                           cells + 1)
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


def geometric_edges(grid: np.ndarray, n_bins: int) -> np.ndarray:
    """Up to ``n_bins`` bins snapped to the grid, one grid cell wide at the lower bound and
    widening geometrically (equal on log(1 + cells from the low bound)).

    For counts and amounts that pile up near their lower bound (0, 1, 2 visits; small balances):
    on an integer grid the small values each get a bin of their own and decode exactly, where
    equal-width bins would spread 0, 1 and 2 evenly over one bin. Public (the grid and n_bins
    only), so free.
    """
    cells = len(grid) - 1
    if cells <= n_bins:
        return grid.copy()
    index = np.round(np.expm1(np.linspace(0.0, np.log1p(cells), n_bins + 1))).astype(int)
    for k in range(1, len(index)):  # at least one grid cell per bin
        index[k] = max(index[k], index[k - 1] + 1)
    index = np.unique(np.minimum(index, cells))
    if index[-1] != cells:
        index = np.append(index, cells)
    return grid[index]

