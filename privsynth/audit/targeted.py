"""Targeted membership inference on the most vulnerable (most isolated) real records.

Why. DCR share, MIA AUC and the near-copy rate are means or shares over all rows; a generator
that memorises only its outliers (the records most at risk, Meeus et al. 2023, "Achilles' heels")
moves them by a fraction of a point. This attack looks only at the most isolated records, as
TAPAS (Houssiau et al. 2022) does for a chosen target record, and asks whether the released table
gives away if *those* records were members.

Threat model. The attacker holds a target record x, the released synthetic table S and the other
real records of the population (the pooled train and holdout rows except x): a strong auxiliary
knowledge, the one under which an outlier is easiest to single out. Everything is measured in
the audit embedding (``distance.py``: rank-scaled numerics, one-hot categories, exact float64).

Targets. Isolation of a real row = mean exact distance to its ``K_ISOLATION`` (5) nearest
*other* real rows, train and holdout pooled, so the ranking never looks at membership (ties are
broken at random, never by row index). For speed the ranking is exact for the most isolated
rows only: a screening pass measures isolation against a random ``SCREEN_REFERENCE`` (2,000) of
the pooled rows, and the top ``max(2,000, 3 m N / n_small)`` candidates are re-measured against
every real row (Adult at full size, 24k + 24k rows: 5.5-7 s on 2 shared cores; the screened top
200 equal the exact top 200 there). Targets are the first
m training rows and the first m holdout rows of the ranking: m = ``TARGETS`` (100), or
``audit.targeted_mia_targets`` where the policy sets it, at most half the smaller side.

Scores (higher = "member"), for each target x with real radii r_1 <= ... <= r_5 (nearest other
real rows) and synthetic distances s_1 <= ... <= s_5:

* ``nearest``: log(r_1 / s_1): a synthetic row much closer to x than any real neighbour is.
  Copies and near-copies of an outlier score 5-15, honest output about 0 (gated);
* ``density``: log(mean r / mean s), the k-NN density ratio of synthetic over real rows around x
  (DOMIAS-style, with the population as reference; reported only).

Statistics. Over the 2m targets: AUC with its DeLong interval and the TPR at 1% FPR (flag the
members strictly above the second-highest non-member score at m = 100) with the stratified
bootstrap interval of ``stats.tpr_at_fpr_ci``. The gate reads the upper ends.

Null (baseline). Permuting the labels of the 2m selected targets is *not* exact: the selection
used the labels (given the selected set, the few rows selected from deep in the ranking all come
from the side whose top was thinner), so the labellings are not equally likely. The exact null
of a generator that never saw which rows were members is a uniformly random re-split of the
pooled rows with the same sizes; the scores do not depend on the labels, so each re-split just
re-selects the targets and re-reads their scores (``ctx.resamples`` re-splits; only the rows
that some re-split selects are scored). Baseline = null mean; the details give its 95th
percentile and a one-sided p-value. Measured null means: AUC 0.500, TPR 0.020 with equal sides.
With unequal sides the members come from a deeper tail of the larger side, and the null AUC
moves a little (0.508 on Adult at 8,000 vs 1,000 rows, 0.523 on lending_club at 4,000 vs 800);
the baseline shows it, and the thresholds below leave room for it.

Thresholds (for ``Thresholds``): ``targeted_mia_tpr`` = 0.2, ``targeted_mia_auc`` = 0.7, at m = 100.

* Both statistics depend on the scores' ranks only, so under the null their law at a given m
  does not depend on the table. TPR: the members above the second non-member are about
  negative-binomial(2, 1/2), P(X >= j) = (j + 2) / 2^(j + 1): mean 0.02, 95th percentile 0.06.
  The bootstrap upper end (4,000 rank-null draws, 200 resamples) has median 0.07, 95th
  percentile 0.14, 99th 0.17: P(upper >= 0.2) = 0.4%. AUC: null standard error
  sqrt((2m + 1) / (12 m^2)) = 0.041, upper end about AUC + 0.080, so P(upper >= 0.7) =
  1 - Phi(2.94) = 0.2% (0.1% simulated). An honest release passes both 99.5% of the time at
  m = 100 (98.3% at m = 75, 85% at m = 50: a smaller side under 150 rows is blocked more than
  5% of the time; fail closed). Measured on real three-way splits (honest = a disjoint fresh
  sample): 1 of 200 seeds blocked (german_credit 333 rows/side x 60 seeds, lending_club 3,000
  x 40, adult 4,000 x 40, telecom_churn 1,600 x 30, health_insurance 2,900 x 30), mean AUC
  0.485-0.509, mean TPR 0.015-0.022.
* Targeted leak: j targets copied (or moved by <= 1%) score above every non-member, so every
  resampled threshold leaves them flagged and the bootstrap upper end is at least the 97.5%
  point of Binomial(m, j/m) / m: 0.28 for the 20 most isolated training rows, >= 0.2 from
  j ~ 13: blocked. Measured: each of the 20 scored above every non-member on every table tried,
  TPR 0.20-0.22, upper end 0.27-0.33, also when the 20 are chosen as the generator would see
  them (most isolated within the training rows alone). A full copy: AUC = TPR = 1.
* Uniform 1% copies are not this attack's job: about m x 1% ~ 1 target is a copy, which no
  threshold an honest release passes can tell from chance (measured: 0 of 9 blocked; upper
  ends 0.04-0.14). ``exact_copy_rate`` and ``near_copy_rate`` gate them. When the audit draws
  many more synthetic rows than there are training rows (``stats.audit_sample_rows``), a
  generator that copies 1% of its output copies many training rows, and this attack sees it.

Not implemented, versus TAPAS: no shadow models. TAPAS retrains the *actual* generator on many
auxiliary datasets with and without the target and learns a per-target classifier; the audit
cannot retrain the release's generator (and a stand-in such as a Gaussian copula would calibrate
the wrong model), and that costs minutes per target. The exact re-split null takes their place
for the target set as a whole: it calibrates what a generator that never saw the split would
score, not what this generator scores on records it did not see. No learned feature set
(TAPAS' query and closest-record features are replaced by the two distance ratios above); no
attribute-inference variant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from privsynth.audit.context import MAX_DISTANCE_ROWS, AuditContext
from privsynth.audit.distance import nearest_neighbors
from privsynth.audit.result import RiskResult
from privsynth.audit.stats import auc_ci_delong, roc_auc, tpr_at_fpr, tpr_at_fpr_ci
from privsynth.errors import AuditError

#: Targets per side (most isolated training rows, most isolated holdout rows) by default.
TARGETS = 100
#: Fewest targets per side for which the attack runs at all (below, a side of the table is tiny).
MIN_TARGETS = 10
#: Isolation = mean exact distance to this many nearest *other* real rows.
K_ISOLATION = 5
#: Neighbours in the synthetic table for the density-ratio score.
K_DENSITY = 5
#: Pooled real rows in the random reference of the screening pass.
SCREEN_REFERENCE = 2000
#: Smallest candidate pool measured exactly after the screening pass.
MIN_CANDIDATES = 2000
#: False-positive rate at which the true-positive rate is read.
FPR = 0.01
_EPS = 1e-6


@dataclass(frozen=True)
class Targets:
    """The ranking of the pooled real rows and the selected targets (indices into the pool)."""

    order: np.ndarray        # pooled row indices, most isolated first (label-free ranking)
    is_train: np.ndarray     # per pooled row: True for a training row
    members: np.ndarray      # selected training rows (pooled indices), most isolated first
    non_members: np.ndarray  # selected holdout rows
    screened: int            # rows whose isolation was measured exactly against every real row


def _pooled(ctx: AuditContext) -> tuple[np.ndarray, np.ndarray]:
    """Embedded train and holdout rows, stacked (train first), with the membership label of each.

    Uses the context's cached full-size matrices where it has them (``ctx.reference``: every
    row, each side capped at ``MAX_DISTANCE_ROWS``); an older context's ``matrix("train")`` is a
    balanced subsample, so then the rows are embedded here, with the same cap. Capping each side
    by a uniform sample keeps the split of the pooled rows uniformly random, so the re-split
    null stays exact."""
    if isinstance(getattr(type(ctx), "reference", None), property):
        tr, ho = ctx.matrix("train"), ctx.matrix("holdout")
    else:
        sides = []
        for label, frame in (("train", ctx.train), ("holdout", ctx.holdout)):
            if len(frame) > MAX_DISTANCE_ROWS:
                pick = np.sort(ctx.rng(f"targeted-cap-{label}").choice(
                    len(frame), MAX_DISTANCE_ROWS, replace=False))
                frame = frame.iloc[pick]
            sides.append(ctx.embedding.transform(frame))
        tr, ho = sides
    is_train = np.concatenate([np.ones(len(tr), bool), np.zeros(len(ho), bool)])
    return np.vstack([tr, ho]), is_train


def _synthetic_matrix(ctx: AuditContext) -> np.ndarray:
    try:
        return ctx.matrix("synthetic")
    except (KeyError, AttributeError, TypeError):
        return ctx.embedding.transform(ctx.synth)


def _knn_others(queries: np.ndarray, query_ids: np.ndarray, pool: np.ndarray,
                pool_ids: np.ndarray | None, k: int) -> np.ndarray:
    """Distances from each query row to its k nearest pool rows other than itself.

    ``query_ids``/``pool_ids`` are pooled row indices (``pool_ids`` None: the pool is the whole
    pooled table in order). A duplicate of the query counts as another row (distance 0).
    """
    k_eff = min(k, pool.shape[0] - 1)
    d, idx = nearest_neighbors(queries, pool, k_eff + 1)
    ids = idx if pool_ids is None else pool_ids[idx]
    self_hit = ids == query_ids[:, None]
    # drop the query itself where found, else the farthest of the k + 1
    drop = np.where(self_hit.any(axis=1), self_hit.argmax(axis=1), k_eff)
    keep = np.ones_like(self_hit)
    keep[np.arange(len(drop)), drop] = False
    return d[keep].reshape(len(drop), k_eff)


def _rank_key(values: np.ndarray, tie: np.ndarray) -> np.ndarray:
    """Positions sorting ``values`` descending, ties broken by the random ``tie`` key (never by
    row index: the pool lists training rows first, so an index tie-break would favour them)."""
    return np.lexsort((tie, -values))


def _first_positions(labels_in_order: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (in the ranking) of the first m training and first m holdout rows."""
    return np.flatnonzero(labels_in_order)[:m], np.flatnonzero(~labels_in_order)[:m]


class _Pool:
    """The pooled real rows with their label-free isolation ranking (exact radii where needed)."""

    def __init__(self, ctx: AuditContext) -> None:
        self.matrix, self.is_train = _pooled(ctx)
        n = self.matrix.shape[0]
        rng = ctx.rng("targeted-mia-rank")
        tie = rng.random(n)
        self.radii = np.full((n, K_ISOLATION), np.nan)
        self.measured = np.zeros(n, bool)
        n_min = int(min(self.is_train.sum(), (~self.is_train).sum()))
        m = _targets_per_side(ctx, n_min)
        candidates = min(n, max(MIN_CANDIDATES, math.ceil(3 * m * n / max(n_min, 1))))
        if candidates >= n or n <= SCREEN_REFERENCE:
            self._measure(np.arange(n))
            iso = self.radii.mean(axis=1)
            self.order = _rank_key(iso, tie)
        else:
            # screening pass: isolation against a random reference of the pooled rows, then the
            # exact isolation (against every real row) of the most isolated candidates
            ref = np.sort(rng.choice(n, SCREEN_REFERENCE, replace=False))
            proxy = _knn_others(self.matrix, np.arange(n), self.matrix[ref], ref,
                                K_ISOLATION).mean(axis=1)
            by_proxy = _rank_key(proxy, tie)
            cand, rest = by_proxy[:candidates], by_proxy[candidates:]
            self._measure(cand)
            iso = self.radii[cand].mean(axis=1)
            self.order = np.concatenate([cand[_rank_key(iso, tie[cand])], rest])
        self.m = m
        self.screened = int(self.measured.sum())

    def _measure(self, rows: np.ndarray) -> None:
        rows = rows[~self.measured[rows]]
        if rows.size:
            self.radii[rows] = _knn_others(self.matrix[rows], rows, self.matrix, None,
                                           K_ISOLATION)
            self.measured[rows] = True

    def radii_at(self, positions: np.ndarray) -> np.ndarray:
        """Exact isolation radii of the rows at these ranking positions (measured on demand)."""
        rows = self.order[positions]
        self._measure(rows)
        return self.radii[rows]


def _targets_per_side(ctx: AuditContext, n_min: int) -> int:
    asked = getattr(ctx.config, "targeted_mia_targets", None)
    m = int(asked) if isinstance(asked, int) and asked > 0 else TARGETS
    return max(0, min(m, n_min // 2))


def _scores(radii: np.ndarray, d_syn: np.ndarray) -> dict[str, np.ndarray]:
    """The attacker's two scores per target (higher = more likely a member)."""
    return {
        "nearest": np.log(radii[:, 0] + _EPS) - np.log(d_syn[:, 0] + _EPS),
        "density": np.log(radii.mean(axis=1) + _EPS) - np.log(d_syn.mean(axis=1) + _EPS),
    }


def select_targets(ctx: AuditContext) -> Targets:
    """The most isolated training and holdout rows (same rule for both; label-free ranking)."""
    pool = _pool(ctx)
    mem, non = _first_positions(pool.is_train[pool.order], pool.m)
    return Targets(pool.order, pool.is_train, pool.order[mem], pool.order[non], pool.screened)


def _pool(ctx: AuditContext) -> _Pool:
    getter = getattr(ctx, "_get", None)
    return getter("targeted_pool", lambda: _Pool(ctx)) if callable(getter) else _Pool(ctx)


_SCORE_TEXT = {
    "nearest": "log of (distance from the target to its nearest other real row) over (distance "
               "to its nearest synthetic row)",
    "density": f"log ratio of {K_DENSITY}-NN densities around the target, synthetic rows over "
               "the other real rows",
}


def targeted_mia(ctx: AuditContext) -> list[RiskResult]:
    """Membership inference against the most isolated real records (see the module docstring)."""
    pool = _pool(ctx)
    m = pool.m
    n_train, n_hold = int(pool.is_train.sum()), int((~pool.is_train).sum())
    if m < MIN_TARGETS:
        raise AuditError(
            f"targeted_mia needs at least {2 * MIN_TARGETS} training and {2 * MIN_TARGETS} "
            f"holdout rows to pick {MIN_TARGETS} targets per side; it got {n_train} and "
            f"{n_hold}: raise audit.holdout_fraction or release a larger table")
    labels = pool.is_train[pool.order]
    obs = _first_positions(labels, m)
    rng = ctx.rng("targeted-mia-null")
    draws = [_first_positions(rng.permutation(labels), m) for _ in range(max(ctx.resamples, 1))]
    depth = 1 + max(int(max(a[-1], b[-1])) for a, b in (obs, *draws))
    radii = pool.radii_at(np.arange(depth))
    d_syn, _ = nearest_neighbors(pool.matrix[pool.order[:depth]], _synthetic_matrix(ctx),
                                 K_DENSITY)
    out: list[RiskResult] = []
    common = {
        "targets_per_side": m, "members": m, "non_members": m,
        "train_rows": n_train, "holdout_rows": n_hold,
        "isolation": f"mean exact distance to the {K_ISOLATION} nearest other real rows "
                     "(train and holdout pooled)",
        "rows_measured_exactly": pool.screened, "ranking_depth": depth,
        "null": "exact re-split null: train/holdout labels re-drawn at random over the pooled "
                "real rows (same sizes), targets re-selected, same scores",
        "null_resplits": len(draws),
    }
    rng_ci = ctx.rng("targeted-mia-ci")
    for kind, s in _scores(radii, d_syn).items():
        mem, non = s[obs[0]], s[obs[1]]
        null_auc = np.array([roc_auc(s[a], s[b]) for a, b in draws])
        null_tpr = np.array([tpr_at_fpr(s[a], s[b], FPR) for a, b in draws])
        auc, lo, hi = auc_ci_delong(mem, non, ctx.confidence)
        tpr, tlo, thi = tpr_at_fpr_ci(mem, non, FPR, resamples=ctx.resamples, rng=rng_ci,
                                      confidence=ctx.confidence)
        above = int(np.sum(mem > non.max()))
        detail = {**common, "score": _SCORE_TEXT[kind],
                  "members_above_every_non_member": above}
        out.append(RiskResult(
            name=f"targeted_mia_{kind}_auc", value=auc, ci_low=lo, ci_high=hi,
            baseline=float(null_auc.mean()), threshold_key=_GATES.get((kind, "auc")),
            attack="targeted_mia",
            details={**detail, "interval": "DeLong", "null_mean": float(null_auc.mean()),
                     "null_q95": float(np.quantile(null_auc, 0.95)),
                     "null_p_value": _p_value(null_auc, auc)},
        ))
        out.append(RiskResult(
            name=f"targeted_mia_{kind}_tpr_at_{FPR * 100:g}pct_fpr", value=tpr,
            ci_low=tlo, ci_high=thi, baseline=float(null_tpr.mean()),
            threshold_key=_GATES.get((kind, "tpr")), attack="targeted_mia",
            details={**detail, "fpr": FPR, "interval": "stratified percentile bootstrap",
                     "bootstrap_resamples": ctx.resamples,
                     "null_mean": float(null_tpr.mean()),
                     "null_q95": float(np.quantile(null_tpr, 0.95)),
                     "null_p_value": _p_value(null_tpr, tpr)},
        ))
    return out


def _p_value(null: np.ndarray, observed: float) -> float:
    """One-sided permutation p-value (the observed draw counted among the null's)."""
    return float((1 + np.sum(null >= observed)) / (1 + null.size))


#: (score, statistic) -> Thresholds field that gates it; the rest are reported only.
_GATES: dict[tuple[str, str], str] = {("nearest", "tpr"): "targeted_mia_tpr",
                                      ("nearest", "auc"): "targeted_mia_auc"}
