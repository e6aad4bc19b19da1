"""Accounted tuning: pick the best of a small grid of generator configurations under DP.

Off by default (``generator.tuning`` in the policy). When on:

1. **Score tables** (paid, stage ``tuning``). For each generator column, its cells crossed with
   the cells of ``audit.target`` (the relation the analyst will fit), or the column alone when
   no target is modelled, are counted once with discrete Laplace noise, ``score_share`` of ε
   split evenly over the tables. Cells come from public facts (N̂, ε), as in
   :mod:`privsynth.encoding.marginals`.
2. **Random stopping** (paid, stage ``training``). K is drawn from a truncated negative
   binomial with mean ``expected_runs``, from the run's secure randomness. K times: a
   candidate is drawn uniformly, trained with DP-SGD at the noise multiplier
   :func:`privsynth.privacy.random_stopping.calibrate` fixed for it, and scored: the mean
   total-variation distance between its sampled tables and the noisy ones (lower is better).
   The best run is kept. Its cost, ε'(λ) of Papernot & Steinke's Theorem 2 converted to
   (ε, δ), is one ``dp_sgd_tuned`` charge whose parameters (each candidate's σ, q and steps,
   η and γ) let ``privsynth verify`` recompute it.

What leaves: the selected candidate's index and model. K, the losing runs and their scores
never leave the process (the theorem does not cover them). The score reads DP outputs only (the
run's model and the noisy tables), so each run is DP-SGD plus post-processing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from privsynth.encoding.marginals import affordable_cells, cell_map
from privsynth.generators.base import Generator
from privsynth.generators.dp_sgd import DPSGDConfig, DPSGDPlan
from privsynth.policy.model import GeneratorPolicy
from privsynth.privacy import mechanisms, random_stopping
from privsynth.privacy.events import Charge, PrivacySpend
from privsynth.privacy.noise import NoiseSource

#: Rows each run samples to be scored (at most N̂).
SCORE_ROWS = 20_000
#: Cells of the target in each crossed table, at most.
TARGET_CELLS = 8


@dataclass(frozen=True)
class TuningScore:
    """Noisy tables that score a run: one per generator column, crossed with the target's
    cells when ``target`` (a generator column index) is set. ``shares[k]`` is table k's
    noisy counts clipped at 0 and normalised, over cells ``target_cell * size + cell``."""

    columns: tuple[int, ...]
    target: int | None
    cell_of_slot: tuple[np.ndarray, ...]
    target_cell_of_slot: np.ndarray | None
    shares: tuple[np.ndarray, ...]

    @classmethod
    def measure(cls, codes: np.ndarray, encoders: list[Any], names: list[str],
                target: int | None, n_public: int, epsilon: float, spend: PrivacySpend,
                noise: NoiseSource) -> TuningScore:
        """Count every table with ε/tables each, recording each charge in ``spend`` before its
        output is used. Each table gets at least 2 cells per side, however small ε is."""
        columns = tuple(j for j in range(len(encoders)) if j != target)
        if not columns:  # the target alone: score its one-way shares
            columns, target = (0,), None
        each = epsilon / len(columns)
        cells = affordable_cells(n_public, each)
        t_map = None
        if target is not None:
            t_map = cell_map(encoders[target], max(2, min(TARGET_CELLS, cells // 2)))
        t_count = int(t_map.max()) + 1 if t_map is not None else 1
        maps, shares = [], []
        for j in columns:
            lookup = cell_map(encoders[j], max(2, cells // t_count))
            size = int(lookup.max()) + 1
            joint = lookup[codes[:, j]]
            if t_map is not None:
                joint = t_map[codes[:, target]] * size + joint
            noisy, charge = mechanisms.noisy_category_counts(
                joint, list(range(t_count * size)), each, noise, column=names[j],
                stage="tuning")
            spend.add(charge)
            mass = np.clip(noisy, 0, None).astype(float)
            maps.append(lookup)
            shares.append(mass / mass.sum() if mass.sum() > 0 else np.full(len(mass),
                                                                           1 / len(mass)))
        return cls(columns, target, tuple(maps), t_map, tuple(shares))

    def score(self, sample: np.ndarray) -> float:
        """Mean TVD between ``sample``'s tables (generator codes) and the noisy ones."""
        tvds = []
        for j, lookup, share in zip(self.columns, self.cell_of_slot, self.shares, strict=True):
            joint = lookup[sample[:, j]]
            if self.target_cell_of_slot is not None:
                joint = self.target_cell_of_slot[sample[:, self.target]] * (lookup.max() + 1) \
                    + joint
            have = np.bincount(joint, minlength=len(share)) / max(len(sample), 1)
            tvds.append(0.5 * float(np.abs(have - share).sum()))
        return float(np.mean(tvds))


@dataclass(frozen=True)
class TunedFit:
    """The kept run: its generator (``charges_`` holds the tuned charge), the candidate index
    and its score. Nothing about the other runs."""

    generator: Generator
    selected: int
    score: float


def plan_candidates(base: GeneratorPolicy, n_public: int) -> list[tuple[float, int]]:
    """(q, steps) of every candidate at N̂ = ``n_public``: what its DP-SGD plan will run."""
    assert base.tuning is not None
    shapes = []
    for index in range(len(base.tuning.candidates)):
        schedule = base.candidate(index).schedule(n_public)
        shapes.append(DPSGDPlan.shape(schedule.batch_size, schedule.epochs, n_public))
    return shapes


def fit_tuned(codes: np.ndarray, widths: list[int], base: GeneratorPolicy,
              config: DPSGDConfig, score: TuningScore,
              make: Callable[[GeneratorPolicy], Generator], *, uniform: Callable[[], float],
              generator: torch.Generator, device: torch.device,
              progress: Callable[[int, int], None] | None = None,
              noise: NoiseSource | None = None) -> TunedFit:
    """Random stopping over ``base.tuning.candidates`` within ``config``'s ε and δ (module
    docstring). ``uniform`` draws the secret uniforms of K and of each run's candidate."""
    tuning = base.tuning
    assert tuning is not None and config.public_rows is not None
    gamma = random_stopping.gamma_for(tuning.expected_runs, tuning.eta)
    shapes = plan_candidates(base, config.public_rows)
    sigmas = random_stopping.calibrate(shapes, epsilon=config.epsilon, delta=config.delta,
                                       eta=tuning.eta, gamma=gamma)
    runs = random_stopping.draw_runs(tuning.eta, gamma, uniform())
    best: TunedFit | None = None
    for _ in range(runs):
        index = min(int(uniform() * len(shapes)), len(shapes) - 1)
        candidate = base.candidate(index)
        schedule = candidate.schedule(config.public_rows)
        run_config = replace(config, expected_batch_size=schedule.batch_size,
                             epochs=schedule.epochs, learning_rate=candidate.learning_rate,
                             max_grad_norm=candidate.max_grad_norm, accountant="rdp",
                             noise_multiplier=sigmas[index])
        model = make(candidate).fit(codes, widths, run_config, generator=generator,
                                    device=device, progress=progress, noise=noise)
        value = score.score(model.sample(min(SCORE_ROWS, config.public_rows),
                                         generator=generator))
        if best is None or value < best.score:
            best = TunedFit(model, index, value)
    assert best is not None
    best.generator.charges_ = [tuned_charge(base, shapes, sigmas, gamma, config.delta,
                                            best.selected)]
    return best


def tuned_charge(base: GeneratorPolicy, shapes: list[tuple[float, int]], sigmas: list[float],
                 gamma: float, delta: float, selected: int) -> Charge:
    """The ``dp_sgd_tuned`` charge: ε of random stopping over every candidate (not only the
    runs that happened: the bound holds whichever ran), with its recomputable inputs and the
    selected candidate's index (part of the mechanism's output)."""
    assert base.tuning is not None
    runs = [(float(s), float(q), int(steps)) for s, (q, steps) in zip(sigmas, shapes,
                                                                      strict=True)]
    eta = float(base.tuning.eta)
    epsilon = random_stopping.tuned_epsilon(runs, eta, gamma, delta)
    grad_norms = sorted({base.candidate(i).max_grad_norm for i in range(len(runs))})
    return Charge("training", "dp_sgd_tuned", epsilon, float(delta), None,
                  {"runs": [list(r) for r in runs], "eta": eta, "gamma": gamma,
                   "expected_runs": float(base.tuning.expected_runs),
                   "accountant": "rdp_random_stopping", "max_grad_norm": grad_norms,
                   "row_count": "dp", "secure_mode": True, "selected": int(selected)})
