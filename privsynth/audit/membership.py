"""Membership inference: a distance attack and a DOMIAS-style density attack.

Members are *all* training rows, non-members *all* holdout rows (each capped at
``MAX_DISTANCE_ROWS``), whatever the two sizes: the AUC (Mann-Whitney, DeLong interval) and TPR
at a fixed FPR are defined for unequal groups and their null does not depend on the sizes, so
nothing is thrown away. (Balancing to the smaller side scored a 6k table with a 5% holdout on
315 vs 315 rows, and its noise blocked honest releases.) Both attacks only look at the synthetic
table, like an outsider holding a candidate record.

* distance: score = minus the distance to the nearest synthetic row;
* density (after DOMIAS, van Breugel et al. 2023): score = log p_syn(x) - log p_ref(x), where
  p_ref is estimated from half of the holdout (the reference population the attacker is assumed
  to know) and the other half serves as non-members, *cross-fitted*: each half is the reference
  for the other half and for a proportional share of the members, so every holdout row is a
  non-member (a 450-row holdout gives 450 non-members rather than 225). Members and non-members
  are compared within their stratum (same reference), and the null re-draws labels within it
  (given a reference half, the rest of the pooled rows are still a random split). Densities
  are k-NN estimates, log p(x) ~ -d log r_k(x) + const, so the score ranks as
  log r_ref(x) - log r_syn(x) with r the mean distance to the k nearest rows; no bandwidth to
  tune, same BLAS search as everything else.

Null. Each real row's score depends on the row and the synthetic table only, so re-splitting
the pooled rows into train and holdout at the same sizes (the exact null: the split is a random
permutation, ``data/split.py``) is a permutation of the member labels over the pooled scores.
It is computed on ranks and sorted scores cached once (O(n) per permutation), and each result
reports its mean (the baseline), 95th percentile and standard deviation. The AUC's null mean is
1/2 exactly (ties count one half).

AUC has a DeLong interval. TPR at 10% and 1% FPR has a one-sided interval, estimate ± z·sd with
sd the larger of the permutation null's (exact near the null, where false blocks happen) and the
members' binomial sd (far from it); the stratified bootstrap interval is reported alongside. TPR
at 1% FPR is gated (``mia_tpr_at_1pct_fpr``): it is what an attacker who must be right about the few
records they accuse achieves, and it reacts to a leak of a few percent of the rows that moves
the AUC by less than its noise. TPR at 10% FPR is reported only.
"""

from __future__ import annotations

import math

import numpy as np

from privsynth.audit.context import AuditContext
from privsynth.audit.distance import nearest_neighbors
from privsynth.audit.result import RiskResult
from privsynth.audit.stats import (
    _z,
    auc_ci_delong,
    auc_permutation_null,
    null_summary,
    roc_curve_points,
    tpr_at_fpr_ci,
    tpr_permutation_null,
)

DENSITY_K = 5
FPRS = ((0.1, "10pct"), (0.01, "1pct"))


def _results(ctx: AuditContext, kind: str, members: np.ndarray, nonmembers: np.ndarray,
             detail: dict, strata: tuple[np.ndarray, np.ndarray] | None = None
             ) -> list[RiskResult]:
    sm, sh = strata if strata is not None else (None, None)
    auc, low, high = auc_ci_delong(members, nonmembers, ctx.confidence, sm, sh)
    rng_null = ctx.rng(f"mia-{kind}-null")
    auc_null = null_summary(
        auc_permutation_null(members, nonmembers, ctx.resamples, rng_null, sm, sh), 0.5,
        exact_mean=0.5)
    out = [RiskResult(
        name=f"mia_{kind}_auc", value=auc, ci_low=low, ci_high=high, baseline=0.5,
        threshold_key="mia_auc", attack="mia",
        details={"members": int(members.size), "non_members": int(nonmembers.size),
                 "interval": "DeLong", **auc_null, **detail},
    )]
    rng = ctx.rng(f"mia-{kind}")
    nulls = tpr_permutation_null(members, nonmembers, tuple(f for f, _ in FPRS), ctx.resamples,
                                 rng_null, sm, sh)
    z1 = _z(1 - 2 * (1 - ctx.confidence))  # one-sided bound at the audit's confidence
    for fpr, label in FPRS:
        est, b_lo, b_hi = tpr_at_fpr_ci(members, nonmembers, fpr, resamples=ctx.resamples,
                                        rng=rng, confidence=ctx.confidence)
        summary = null_summary(nulls[fpr], fpr)
        # the TPR's noise: near the null, the threshold's (set by the few highest non-members:
        # 2 of 187 at 1%) plus the members' binomial, which the permutation null measures
        # exactly; far from it, the members' binomial. The bootstrap of a 1% quantile of a few
        # hundred rows is too noisy to gate on (it blocked 8 of 40 honest German-credit runs).
        sd = max(summary["null_sd"], math.sqrt(max(est * (1 - est), 0.0) / members.size))
        lo, hi = max(0.0, est - z1 * sd), min(1.0, est + z1 * sd)
        gated = fpr == 0.01
        out.append(RiskResult(
            name=f"mia_{kind}_tpr_at_{label}_fpr", value=est, ci_low=lo, ci_high=hi,
            baseline=summary["null_mean"],
            threshold_key="mia_tpr_at_1pct_fpr" if gated else None, attack="mia",
            details={"fpr": fpr, "members": int(members.size),
                     "non_members": int(nonmembers.size),
                     "interval": "one-sided: estimate ± z·max(sd of the permutation null, "
                                 "binomial sd of the members' rate)",
                     "bootstrap_interval": [b_lo, b_hi],
                     "bootstrap_resamples": ctx.resamples, **summary, "gated": gated},
        ))
    ctx.figures.setdefault("roc", {})[kind] = {"auc": auc, **roc_curve_points(members, nonmembers)}
    return out


def mia(ctx: AuditContext) -> list[RiskResult]:
    # distance attack: every training row against every holdout row
    d_mem, _ = ctx.nn("train", "synthetic", DENSITY_K)
    d_non, _ = ctx.nn("holdout", "synthetic", DENSITY_K)
    out = _results(ctx, "distance", -d_mem[:, 0], -d_non[:, 0],
                   {"score": "minus distance to the nearest synthetic row"})

    # density attack, cross-fitted: each half of the holdout is the reference for the other
    # half (non-members) and for a proportional share of the training rows (members)
    rng = ctx.rng("mia-density-split")
    n_hold, n_mem = d_non.shape[0], d_mem.shape[0]
    halves = np.array_split(rng.permutation(n_hold), 2)
    mem_perm = rng.permutation(n_mem)
    cut = int(round(n_mem * halves[1].size / n_hold))  # members scored against half 0
    mem_parts = (mem_perm[:cut], mem_perm[cut:])
    eps = 1e-6

    def score(d_syn_k: np.ndarray, queries: np.ndarray, ref: np.ndarray) -> np.ndarray:
        d_ref, _ = nearest_neighbors(queries, ref, DENSITY_K)
        r_syn = d_syn_k.mean(axis=1)
        r_ref = d_ref.mean(axis=1)
        return np.log(r_ref + eps) - np.log(r_syn + eps)

    s_mem, s_non, g_mem, g_non = [], [], [], []
    for g in (0, 1):
        ref = ctx.matrix("holdout")[halves[g]]
        mem, non = mem_parts[g], halves[1 - g]
        s_mem.append(score(d_mem[mem], ctx.matrix("train")[mem], ref))
        s_non.append(score(d_non[non], ctx.matrix("holdout")[non], ref))
        g_mem.append(np.full(mem.size, g))
        g_non.append(np.full(non.size, g))
    out += _results(ctx, "density", np.concatenate(s_mem), np.concatenate(s_non), {
        "score": f"log ratio of {DENSITY_K}-NN densities, synthetic over reference",
        "reference_rows": [int(halves[0].size), int(halves[1].size)], "k": DENSITY_K,
        "cross_fitted": "each holdout half is the reference for the other half and for a "
                        "proportional share of the members; AUC within each stratum; the "
                        "permutation null re-draws labels within each stratum",
    }, strata=(np.concatenate(g_mem), np.concatenate(g_non)))
    return out
