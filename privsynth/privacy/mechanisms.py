"""The only DP mechanisms that read private values outside DP-SGD.

Unit of privacy: one row of the training split; neighbouring tables differ by adding or removing
one row. Each row holds one value per column, so every count below (a histogram, category
counts, the row count) changes by at most 1 in total (L1 sensitivity 1).

Every count gets *discrete* Laplace noise DLap(1/ε) (integers: no floating-point leak) from a
:class:`~privsynth.privacy.noise.NoiseSource`: the OS CSPRNG with an exact sampler in a release,
a seeded generator in a development run. Each function returns its noisy output and the
:class:`Charge` it costs; the caller records the charge *before* using the output (or raising on
it). A charge's ``params`` hold everything :func:`charge_cost` needs to recompute its (ε, δ):
``noise``, ``scale``, ``sensitivity``, ``sampler`` and, for a threshold, ``threshold``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from privsynth.errors import PrivacyError
from privsynth.privacy.events import Charge
from privsynth.privacy.noise import NoiseSource

SENSITIVITY = 1.0  # add/remove one row moves one count by one


def _scale(epsilon: float) -> float:
    """The noise scale for ``epsilon``: 1/ε, nudged up if 1/scale would round above ε."""
    _positive(epsilon, "epsilon")
    scale = SENSITIVITY / epsilon
    while SENSITIVITY / scale > epsilon:
        scale = math.nextafter(scale, math.inf)
    return scale


def _params(scale: float, noise: NoiseSource, **extra: Any) -> dict[str, Any]:
    return {"noise": "discrete_laplace", "scale": float(scale), "sensitivity": SENSITIVITY,
            "sampler": noise.name, **extra}


def _draw(noise: NoiseSource, scale: float, size: int) -> np.ndarray:
    if not isinstance(noise, NoiseSource):
        raise PrivacyError("counting mechanisms need a NoiseSource (privsynth.privacy.noise), "
                           f"not {type(noise).__name__}")
    draws = np.asarray(noise.discrete_laplace(scale, size))
    if draws.shape != (size,) or draws.dtype != np.int64:
        raise PrivacyError(f"noise source {noise.name!r} returned {draws.dtype} {draws.shape}, "
                           f"not int64 ({size},)")
    return draws


def noisy_count(n: int, epsilon: float, noise: NoiseSource, *,
                stage: str = "encoding") -> tuple[int, Charge]:
    """The number of rows plus DLap(1/ε), clipped at 0 (post-processing). ε-DP, δ = 0."""
    scale = _scale(epsilon)
    value = max(int(n) + int(_draw(noise, scale, 1)[0]), 0)
    charge = Charge(stage, "noisy_count", SENSITIVITY / scale, 0.0, None, _params(scale, noise))
    return value, charge


def laplace_histogram(
    values: np.ndarray, edges: np.ndarray, epsilon: float, noise: NoiseSource,
    *, column: str | None = None, stage: str = "encoding",
) -> tuple[np.ndarray, Charge]:
    """Counts of ``values`` in the cells between ``edges`` (clipped into range), plus
    DLap(1/ε) per cell: int64, may be negative. Missing values (NaN) are not counted.
    ε-DP with δ = 0."""
    scale = _scale(epsilon)
    x = np.asarray(values, dtype=float)
    x = np.clip(x[~np.isnan(x)], edges[0], edges[-1])
    counts = np.histogram(x, bins=edges)[0].astype(np.int64)
    noisy = counts + _draw(noise, scale, len(counts))
    charge = Charge(stage, "laplace_histogram", SENSITIVITY / scale, 0.0, column,
                    _params(scale, noise, cells=int(len(counts))))
    return noisy, charge


def noisy_category_counts(
    values: np.ndarray, domain: list[str], epsilon: float, noise: NoiseSource,
    *, column: str | None = None, stage: str = "encoding",
) -> tuple[np.ndarray, Charge]:
    """DLap(1/ε)-noised counts (int64) of each category of a *public* domain (e.g. GAN
    conditioning). ε-DP with δ = 0."""
    scale = _scale(epsilon)
    index = {v: i for i, v in enumerate(domain)}
    codes = np.array([index.get(v, -1) for v in values if v is not None], dtype=int)
    counts = np.bincount(codes[codes >= 0], minlength=len(domain)).astype(np.int64)
    noisy = counts + _draw(noise, scale, len(counts))
    charge = Charge(stage, "laplace_category_counts", SENSITIVITY / scale, 0.0, column,
                    _params(scale, noise, categories=len(domain)))
    return noisy, charge


def threshold_for(scale: float, delta: float) -> int:
    """The smallest integer threshold τ at which a count of 1 plus DLap(scale) reaches τ with
    probability at most ``delta``.

    Derivation. With p = exp(-1/scale), Z ~ DLap(scale) has P(Z = k) = (1-p)/(1+p) · p^|k|, so
    for an integer m >= 0::

        P(Z >= m) = (1-p)/(1+p) · Σ_{k>=m} p^k = p^m / (1 + p).

    A category held by one row has noisy count 1 + Z and passes τ = 1 + m with probability
    p^m/(1+p) <= δ  ⇔  m >= ln(1/(δ(1+p))) / (1/scale), i.e. (with ε = 1/scale)
    m = max(0, ceil(ln(1/(δ(1 + e^{-ε}))) / ε)). The float ``ceil`` is then checked against the
    tail itself and m raised while the tail exceeds δ.
    """
    _positive(delta, "delta")
    eps = 1.0 / scale
    p = math.exp(-eps)
    m = max(0, math.ceil(math.log(1.0 / (delta * (1.0 + p))) / eps))
    while threshold_tail(scale, 1 + m) > delta:
        m += 1
    return 1 + m


def threshold_tail(scale: float, threshold: float) -> float:
    """P(1 + DLap(scale) >= threshold): the chance a category held by one row passes."""
    m = math.ceil(threshold - 1)
    p = math.exp(-1.0 / scale)
    if m <= 0:
        # P(Z >= m) = 1 - P(Z <= m - 1) = 1 - P(Z >= 1 - m) by symmetry
        return 1.0 - math.exp(-(1 - m) / scale) / (1.0 + p)
    return math.exp(-m / scale) / (1.0 + p)


def threshold_domain(
    values: np.ndarray, epsilon: float, delta: float, noise: NoiseSource,
    *, column: str | None = None, stage: str = "encoding",
) -> tuple[list[str], np.ndarray, Charge]:
    """Discover a category set: keep the categories whose DLap(1/ε)-noised count reaches the
    threshold τ = :func:`threshold_for` (1/ε, δ).

    (ε, δ)-DP for one value per row (Korolova et al. 2009; Wilson et al. 2020): categories present
    in both neighbours get ε-DP counts; a category held only by the added row passes with
    probability at most δ (the exact tail p^{τ-1}/(1+p), recorded as the charge's δ).
    """
    _positive(delta, "delta")
    scale = _scale(epsilon)
    present = [v for v in values if v is not None]
    uniques, counts = np.unique(np.asarray(present, dtype=object).astype(str), return_counts=True)
    noisy = counts.astype(np.int64) + _draw(noise, scale, len(counts))
    tau = threshold_for(scale, delta)
    keep = noisy >= tau
    kept = [str(u) for u in uniques[keep]]
    order = np.argsort(kept, kind="stable")
    charge = Charge(stage, "threshold_domain", SENSITIVITY / scale, threshold_tail(scale, tau),
                    column, _params(scale, noise, threshold=tau))
    return [kept[i] for i in order], noisy[keep][order], charge


def dp_quantile_edges(
    values: np.ndarray, bounds: tuple[float, float], n_bins: int, epsilon: float,
    noise: NoiseSource, *, column: str | None = None, grid_cells: int = 64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Charge]:
    """Bin edges at DP quantiles: one noisy histogram on a fine uniform grid over public bounds.

    Returns (bin edges, grid edges, noisy grid counts clipped at 0 (int64), charge). Quantiles
    are post-processing of the noisy histogram; repeated edges collapse, so fewer bins may come
    back.
    """
    grid = np.linspace(bounds[0], bounds[1], grid_cells + 1)
    noisy, charge = laplace_histogram(values, grid, epsilon, noise, column=column)
    mass = np.clip(noisy, 0, None)
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
    values: np.ndarray, epsilon: float, noise: NoiseSource, *, column: str | None = None,
    coverage: float = 0.99,
) -> tuple[tuple[float, float] | None, Charge]:
    """Estimate bounds covering ~``coverage`` of the values, from a noisy histogram on a
    symmetric log grid (±1e-3 … ±1e15, quarter decades). One extreme value moves no edge by more
    than the noise allows.

    Returns ``(None, charge)`` when the noisy histogram has no mass: the charge is due all the
    same, so the caller records it and only then raises.
    """
    mags = 10.0 ** np.arange(-3, 15.25, 0.25)
    grid = np.concatenate([-mags[::-1], [0.0], mags])
    noisy, charge = laplace_histogram(values, grid, epsilon, noise, column=column)
    mass = np.clip(noisy, 0, None)
    total = int(mass.sum())
    if total <= 0:
        return None, charge
    cdf = np.cumsum(mass) / total
    tail = (1.0 - coverage) / 2.0
    lo_cell = int(np.searchsorted(cdf, tail, side="left"))
    hi_cell = int(np.searchsorted(cdf, 1.0 - tail, side="left"))
    low, high = float(grid[lo_cell]), float(grid[min(hi_cell + 1, len(grid) - 1)])
    if not low < high:
        high = low + 1.0
    return (low, high), charge


LAPLACE_FAMILY = ("noisy_count", "laplace_histogram", "laplace_category_counts")


def charge_cost(mechanism: str, params: dict[str, Any], delta: float) -> tuple[float, float]:
    """(ε, δ) of one charge, recomputed from its recorded ``params`` alone.

    * ``noisy_count``, ``laplace_histogram``, ``laplace_category_counts``: ε = sensitivity/scale,
      δ = 0 (discrete or continuous Laplace alike).
    * ``threshold_domain``: ε = sensitivity/scale and δ = the chance a count of 1 plus the noise
      reaches the recorded threshold (discrete: p^{τ-1}/(1+p); continuous: e^{-(τ-1)/scale}/2).
    * ``dp_sgd``: ε from the recorded accountant at (sigma, q, steps) for the recorded
      ``delta``, which is returned as δ.
    * ``dp_sgd_tuned``: ε of random stopping over the recorded ``runs`` (sigma, q, steps each)
      at the recorded η and γ (:mod:`privsynth.privacy.random_stopping`), δ as for dp_sgd.

    Unknown mechanisms, noise kinds or missing parameters raise :class:`PrivacyError`.
    """
    try:
        if mechanism == "dp_sgd":
            from privsynth.privacy.accounting import dpsgd_epsilon  # noqa: PLC0415

            eps = dpsgd_epsilon(sigma=float(params["sigma"]), q=float(params["q"]),
                                steps=int(params["steps"]), delta=float(delta),
                                accountant=str(params["accountant"]))
            return float(eps), float(delta)
        if mechanism == "dp_sgd_tuned":
            from privsynth.privacy.random_stopping import tuned_epsilon  # noqa: PLC0415

            runs = [(float(s), float(q), int(k)) for s, q, k in params["runs"]]
            eps = tuned_epsilon(runs, float(params["eta"]), float(params["gamma"]),
                                float(delta))
            return float(eps), float(delta)
        if mechanism not in (*LAPLACE_FAMILY, "threshold_domain"):
            raise PrivacyError(f"cannot recompute the cost of unknown mechanism {mechanism!r}")
        kind = params["noise"]
        if kind not in ("discrete_laplace", "laplace"):
            raise PrivacyError(f"cannot recompute {mechanism!r} with noise {kind!r}")
        scale, sensitivity = float(params["scale"]), float(params["sensitivity"])
        _positive(scale, "scale")
        _positive(sensitivity, "sensitivity")
        eps = sensitivity / scale
        if mechanism in LAPLACE_FAMILY:
            return eps, 0.0
        if sensitivity != SENSITIVITY:
            raise PrivacyError("threshold_domain is only defined for sensitivity 1")
        tau = float(params["threshold"])
        if kind == "discrete_laplace":
            return eps, threshold_tail(scale, tau)
        gap = tau - 1.0  # continuous Laplace(scale): P(Z >= gap)
        tail = 0.5 * math.exp(-gap / scale) if gap >= 0 else 1.0 - 0.5 * math.exp(gap / scale)
        return eps, tail
    except KeyError as missing:
        raise PrivacyError(f"{mechanism!r} charge lacks parameter {missing}") from None


def _positive(value: float, name: str) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise PrivacyError(f"{name} must be a positive finite number. Got {value} instead.")
