"""The only DP mechanisms that read private values outside DP-SGD.

Unit of privacy: one row (add/remove adjacency); each row holds one value per column, so every
count below has sensitivity 1. Each function returns its noisy output and the :class:`Charge` it
costs; the caller records the charge *before* using the output.
"""

from __future__ import annotations

import math

import numpy as np

from privsynth.errors import PrivacyError
from privsynth.privacy.events import Charge


def laplace_histogram(
    values: np.ndarray, edges: np.ndarray, epsilon: float, rng: np.random.Generator,
    *, column: str | None = None, stage: str = "encoding",
) -> tuple[np.ndarray, Charge]:
    """Counts of ``values`` in the cells between ``edges`` (clipped into range), plus Laplace(1/ε).

    Missing values (NaN) are not counted. epsilon-DP with delta = 0.
    """
    _positive(epsilon, "epsilon")
    x = np.asarray(values, dtype=float)
    x = np.clip(x[~np.isnan(x)], edges[0], edges[-1])
    counts = np.histogram(x, bins=edges)[0].astype(float)
    noisy = counts + rng.laplace(0.0, 1.0 / epsilon, size=counts.shape)
    charge = Charge(stage, "laplace_histogram", float(epsilon), 0.0, column,
                    {"cells": int(len(counts)), "sensitivity": 1.0})
    return noisy, charge


def noisy_category_counts(
    values: np.ndarray, domain: list[str], epsilon: float, rng: np.random.Generator,
    *, column: str | None = None, stage: str = "encoding",
) -> tuple[np.ndarray, Charge]:
    """Laplace-noised counts of each category of a *public* domain (e.g. GAN conditioning)."""
    _positive(epsilon, "epsilon")
    index = {v: i for i, v in enumerate(domain)}
    codes = np.array([index.get(v, -1) for v in values if v is not None], dtype=int)
    counts = np.bincount(codes[codes >= 0], minlength=len(domain)).astype(float)
    noisy = counts + rng.laplace(0.0, 1.0 / epsilon, size=counts.shape)
    charge = Charge(stage, "laplace_category_counts", float(epsilon), 0.0, column,
                    {"categories": len(domain), "sensitivity": 1.0})
    return noisy, charge


def threshold_domain(
    values: np.ndarray, epsilon: float, delta: float, rng: np.random.Generator,
    *, column: str | None = None, stage: str = "encoding",
) -> tuple[list[str], np.ndarray, Charge]:
    """Discover a category set: keep categories whose Laplace-noised count passes a threshold.

    With noise Laplace(1/ε) and threshold τ = 1 + ln(1/(2δ))/ε this is (ε, δ)-DP for one value
    per row (Korolova et al. 2009; Wilson et al. 2020): a category held by one person passes with
    probability at most δ.
    """
    _positive(epsilon, "epsilon")
    _positive(delta, "delta")
    present = [v for v in values if v is not None]
    uniques, counts = np.unique(np.asarray(present, dtype=object).astype(str), return_counts=True)
    noisy = counts + rng.laplace(0.0, 1.0 / epsilon, size=counts.shape)
    tau = 1.0 + math.log(1.0 / (2.0 * delta)) / epsilon
    keep = noisy >= tau
    kept = [str(u) for u in uniques[keep]]
    order = np.argsort(kept, kind="stable")
    charge = Charge(stage, "threshold_domain", float(epsilon), float(delta), column,
                    {"threshold": tau, "sensitivity": 1.0})
    return [kept[i] for i in order], noisy[keep][order], charge


def dp_quantile_edges(
    values: np.ndarray, bounds: tuple[float, float], n_bins: int, epsilon: float,
    rng: np.random.Generator, *, column: str | None = None, grid_cells: int = 64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Charge]:
    """Bin edges at DP quantiles: one Laplace histogram on a fine uniform grid over public bounds.

    Returns (bin edges, grid edges, noisy grid counts clipped at 0, charge). Quantiles are
    post-processing of the noisy histogram; repeated edges collapse, so fewer bins may come back.
    """
    grid = np.linspace(bounds[0], bounds[1], grid_cells + 1)
    noisy, charge = laplace_histogram(values, grid, epsilon, rng, column=column)
    mass = np.clip(noisy, 0.0, None)
    edges = quantile_edges_from_histogram(grid, mass, n_bins)
    return edges, grid, mass, charge


def quantile_edges_from_histogram(grid: np.ndarray, mass: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin edges (on grid edges) splitting the histogram mass into ~equal parts."""
    total = mass.sum()
    if total <= 0:
        return np.linspace(grid[0], grid[-1], n_bins + 1)
    cdf = np.concatenate([[0.0], np.cumsum(mass) / total])
    targets = np.linspace(0, 1, n_bins + 1)[1:-1]
    inner = grid[np.clip(np.searchsorted(cdf, targets, side="left"), 1, len(grid) - 2)]
    return np.unique(np.concatenate([[grid[0]], inner, [grid[-1]]]))


def dp_bounds(
    values: np.ndarray, epsilon: float, rng: np.random.Generator, *, column: str | None = None,
    coverage: float = 0.99,
) -> tuple[tuple[float, float], Charge]:
    """Estimate bounds covering ~``coverage`` of the values, from a Laplace histogram on a
    symmetric log grid (±1e-3 … ±1e15, quarter decades). One extreme value moves no edge by more
    than the noise allows.
    """
    mags = 10.0 ** np.arange(-3, 15.25, 0.25)
    grid = np.concatenate([-mags[::-1], [0.0], mags])
    noisy, charge = laplace_histogram(values, grid, epsilon, rng, column=column)
    mass = np.clip(noisy, 0.0, None)
    if mass.sum() <= 0:
        raise PrivacyError(
            f"column '{column}': the DP bounds estimate found no mass (too few rows for its "
            "epsilon); declare 'bounds: [low, high]' in the policy"
        )
    cdf = np.cumsum(mass) / mass.sum()
    tail = (1.0 - coverage) / 2.0
    lo_cell = int(np.searchsorted(cdf, tail, side="left"))
    hi_cell = int(np.searchsorted(cdf, 1.0 - tail, side="left"))
    low, high = float(grid[lo_cell]), float(grid[min(hi_cell + 1, len(grid) - 1)])
    if not low < high:
        high = low + 1.0
    return (low, high), charge


def _positive(value: float, name: str) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise PrivacyError(f"{name} must be a positive finite number. Got {value} instead.")
