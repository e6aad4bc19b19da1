"""Membership inference: a distance attack and a DOMIAS-style density attack.

Members are training rows, non-members are holdout rows (same size). Both attacks only look at
the synthetic table, like an outsider holding a candidate record.

* distance: score = minus the distance to the nearest synthetic row;
* density (after DOMIAS, van Breugel et al. 2023): score = log p_syn(x) - log p_ref(x), where
  p_ref is estimated from half of the holdout (the reference population the attacker is assumed
  to know) and the other half serves as non-members. Densities are k-NN estimates,
  log p(x) ~ -d log r_k(x) + const, so the score ranks as log r_ref(x) - log r_syn(x) with r the
  mean distance to the k nearest rows; no bandwidth to tune, same BLAS search as everything else.

AUC has a DeLong interval; TPR at 10% and 1% FPR a stratified bootstrap interval. Each TPR
carries its exact null, from permuting the member/non-member labels over the pooled scores (mean
reported as the baseline, 95th percentile in the details). TPR at 1% FPR is gated
(``mia_tpr_at_1pct_fpr``): it is what an attacker who must be right about the few records they
accuse achieves, and it reacts to a leak of a few percent of the rows that moves the AUC by less
than its noise. TPR at 10% FPR is reported only.
"""

from __future__ import annotations

import numpy as np

from privsynth.audit.context import AuditContext
from privsynth.audit.distance import nearest_neighbors
from privsynth.audit.result import RiskResult
from privsynth.audit.stats import auc_ci_delong, roc_curve_points, tpr_at_fpr, tpr_at_fpr_ci

DENSITY_K = 5


def _results(ctx: AuditContext, kind: str, members: np.ndarray, nonmembers: np.ndarray,
             detail: dict) -> list[RiskResult]:
    auc, low, high = auc_ci_delong(members, nonmembers, ctx.confidence)
    out = [RiskResult(
        name=f"mia_{kind}_auc", value=auc, ci_low=low, ci_high=high, baseline=0.5,
        threshold_key="mia_auc", attack="mia",
        details={"members": int(members.size), "non_members": int(nonmembers.size), **detail},
    )]
    rng = ctx.rng(f"mia-{kind}")
    for fpr, label in ((0.1, "10pct"), (0.01, "1pct")):
        est, lo, hi = tpr_at_fpr_ci(members, nonmembers, fpr, resamples=ctx.resamples, rng=rng,
                                    confidence=ctx.confidence)
        null = _permutation_null_tpr(members, nonmembers, fpr, ctx.resamples, rng)
        gated = fpr == 0.01
        out.append(RiskResult(
            name=f"mia_{kind}_tpr_at_{label}_fpr", value=est, ci_low=lo, ci_high=hi,
            baseline=float(np.mean(null)),
            threshold_key="mia_tpr_at_1pct_fpr" if gated else None, attack="mia",
            details={"fpr": fpr, "bootstrap_resamples": ctx.resamples,
                     "interval": "stratified percentile bootstrap",
                     "null": "member/non-member labels permuted over the pooled scores",
                     "null_mean": float(np.mean(null)),
                     "null_q95": float(np.quantile(null, 0.95)),
                     "null_permutations": int(null.size),
                     "gated": gated},
        ))
    ctx.figures.setdefault("roc", {})[kind] = {"auc": auc, **roc_curve_points(members, nonmembers)}
    return out


def _permutation_null_tpr(members: np.ndarray, nonmembers: np.ndarray, fpr: float,
                          permutations: int, rng: np.random.Generator) -> np.ndarray:
    """TPR at ``fpr`` with the member/non-member labels shuffled: the attack's exact null.

    Under the null (the synthetic table does not depend on which real rows were members) the
    labels are exchangeable given the pooled scores, so this is the distribution the observed
    TPR would have; it accounts for the ties and the discreteness of the scores at hand.
    """
    pooled = np.concatenate([members, nonmembers]).astype(float)
    nm = members.size
    out = np.empty(max(permutations, 1))
    for i in range(out.size):
        perm = rng.permutation(pooled.size)
        out[i] = tpr_at_fpr(pooled[perm[:nm]], pooled[perm[nm:]], fpr)
    return out


def mia(ctx: AuditContext) -> list[RiskResult]:
    # distance attack on the full balanced sets
    d_mem, _ = ctx.nn("train", "synthetic", DENSITY_K)
    d_non, _ = ctx.nn("holdout", "synthetic", DENSITY_K)
    out = _results(ctx, "distance", -d_mem[:, 0], -d_non[:, 0],
                   {"score": "minus distance to the nearest synthetic row"})

    # density attack: split the holdout into reference and non-member halves
    rng = ctx.rng("mia-density-split")
    n_hold = d_non.shape[0]
    perm = rng.permutation(n_hold)
    ref_idx, non_idx = perm[: n_hold // 2], perm[n_hold // 2:]
    mem_idx = rng.choice(d_mem.shape[0], size=non_idx.size, replace=False)
    ref = ctx.matrix("holdout")[ref_idx]
    eps = 1e-6

    def score(d_syn_k: np.ndarray, queries: np.ndarray) -> np.ndarray:
        d_ref, _ = nearest_neighbors(queries, ref, DENSITY_K)
        r_syn = d_syn_k.mean(axis=1)
        r_ref = d_ref.mean(axis=1)
        return np.log(r_ref + eps) - np.log(r_syn + eps)

    s_mem = score(d_mem[mem_idx], ctx.matrix("train")[mem_idx])
    s_non = score(d_non[non_idx], ctx.matrix("holdout")[non_idx])
    out += _results(ctx, "density", s_mem, s_non, {
        "score": f"log ratio of {DENSITY_K}-NN densities, synthetic over reference",
        "reference_rows": int(ref_idx.size), "k": DENSITY_K,
    })
    return out
