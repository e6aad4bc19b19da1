"""Copy and nearest-neighbour attacks: exact copies, unique-QI copies, DCR share, NNDR.

Exact-copy rates are reported as an *excess over the holdout*: the share of synthetic rows equal
to a training row minus the share equal to a (same-sized) holdout row. A generator that never saw
the training rows matches both equally often, so the excess is about 0 even for a low-entropy table
in which many rows are common; a generator that copies makes it positive. The interval is
Newcombe's hybrid score interval for a difference of proportions.
"""

from __future__ import annotations

import math

import numpy as np

from privsynth.audit.context import AuditContext
from privsynth.audit.distance import row_hashes
from privsynth.audit.result import RiskResult
from privsynth.audit.stats import mean_ci, newcombe_diff_ci


def exact_copies(ctx: AuditContext) -> list[RiskResult]:
    train, holdout = ctx.balanced
    syn = ctx.synth
    cols = ctx.schema.names
    hs = row_hashes(syn, cols)
    in_train = np.isin(hs, row_hashes(train, cols))
    in_hold = np.isin(hs, row_hashes(holdout, cols))
    n = len(hs)
    x1, x2 = int(in_train.sum()), int(in_hold.sum())
    est, low, high = newcombe_diff_ci(x1, n, x2, n, ctx.confidence)
    return [RiskResult(
        name="exact_copy_rate", value=est, ci_low=low, ci_high=high, baseline=0.0,
        threshold_key="exact_copy_rate", attack="exact_copy",
        details={
            "synthetic_rows": n, "reference_rows": len(train),
            "copies_of_train_rows": x1, "copies_of_holdout_rows": x2, "observed_count": x1,
            "train_match_rate": x1 / n if n else math.nan,
            "holdout_match_rate": x2 / n if n else math.nan,
            "definition": "share of synthetic rows equal to a training row minus share equal to "
                          "a holdout row (same size); Newcombe interval",
        },
    )]


def _unique_on(frame, qi: list[str]) -> np.ndarray:
    h = row_hashes(frame, qi)
    _, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
    return counts[inverse] == 1


def unique_qi_copies(ctx: AuditContext) -> list[RiskResult]:
    train, holdout = ctx.balanced
    syn = ctx.synth
    cols = ctx.schema.names
    qi = [c for c in ctx.config.quasi_identifiers if c in cols] or list(cols)
    hs = row_hashes(syn, cols)
    counts = []
    for real in (train, holdout):
        unique_rows = row_hashes(real, cols)[_unique_on(real, qi)]
        counts.append(int(np.isin(hs, unique_rows).sum()))
    n = len(hs)
    est, low, high = newcombe_diff_ci(counts[0], n, counts[1], n, ctx.confidence)
    return [RiskResult(
        name="unique_qi_copy_rate", value=est, ci_low=low, ci_high=high, baseline=0.0,
        threshold_key="unique_qi_copy_rate", attack="unique_qi",
        details={
            "quasi_identifiers": qi,
            "quasi_identifiers_source": "policy" if ctx.config.quasi_identifiers else
            "none named in the policy: all columns used",
            "synthetic_rows": n,
            "copies_of_qi_unique_train_rows": counts[0], "observed_count": counts[0],
            "copies_of_qi_unique_holdout_rows": counts[1],
            "definition": "share of synthetic rows copying a training row that is unique on the "
                          "quasi-identifiers, minus the same for the holdout; Newcombe interval",
        },
    )]


def _histogram(values_a: np.ndarray, values_b: np.ndarray, bins: int = 30) -> dict:
    both = np.concatenate([values_a, values_b])
    both = both[np.isfinite(both)]
    top = float(np.quantile(both, 0.99)) if both.size else 1.0
    top = top if top > 0 else 1.0
    edges = np.linspace(0.0, top, bins + 1)
    edges[-1] = max(top, float(both.max()) if both.size else top)
    ha, _ = np.histogram(values_a, bins=edges)
    hb, _ = np.histogram(values_b, bins=edges)
    return {"edges": [round(float(e), 6) for e in edges], "train": ha.tolist(),
            "holdout": hb.tolist()}


def dcr(ctx: AuditContext) -> list[RiskResult]:
    d_train, _ = ctx.nn("synthetic", "train", 2)
    d_hold, _ = ctx.nn("synthetic", "holdout", 2)
    dt, dh = d_train[:, 0], d_hold[:, 0]
    score = np.where(dt < dh, 1.0, np.where(dt == dh, 0.5, 0.0))
    share, low, high = mean_ci(score, ctx.confidence)
    ctx.figures["dcr_histogram"] = _histogram(dt, dh)

    def nndr(d):
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(d[:, 1] > 0, d[:, 0] / d[:, 1], 1.0)
        return r

    r_train, r_hold = nndr(d_train), nndr(d_hold)
    n = len(score)
    # NNDR: small ratios mean a synthetic row sits much closer to one real row than to any other
    # (an outlier reproduced). Reported against the holdout as baseline, not gated.
    nndr_low_train = float(np.mean(r_train < 0.5)) if n else math.nan
    nndr_low_hold = float(np.mean(r_hold < 0.5)) if n else math.nan
    _, nl, nh = newcombe_diff_ci(nndr_low_train * n, n, nndr_low_hold * n, n, ctx.confidence)
    return [
        RiskResult(
            name="dcr_share", value=share, ci_low=low, ci_high=high, baseline=0.5,
            threshold_key="dcr_share", attack="dcr",
            details={
                "synthetic_rows": n, "reference_rows": int(ctx.matrix("train").shape[0]),
                "closer_to_train": int(np.sum(dt < dh)), "ties": int(np.sum(dt == dh)),
                "closer_to_holdout": int(np.sum(dt > dh)),
                "median_dcr_train": float(np.median(dt)) if n else math.nan,
                "median_dcr_holdout": float(np.median(dh)) if n else math.nan,
                "p05_dcr_train": float(np.quantile(dt, 0.05)) if n else math.nan,
                "p05_dcr_holdout": float(np.quantile(dh, 0.05)) if n else math.nan,
                "definition": "share of synthetic rows whose nearest real row is in train rather "
                              "than holdout (ties count 1/2), equal-sized sets; 0.5 is ideal",
            },
        ),
        RiskResult(
            name="nndr_low_share_excess", value=nndr_low_train - nndr_low_hold, ci_low=nl,
            ci_high=nh, baseline=0.0, threshold_key=None, attack="dcr",
            details={
                "nndr_below_0.5_train": nndr_low_train, "nndr_below_0.5_holdout": nndr_low_hold,
                "median_nndr_train": float(np.median(r_train)) if n else math.nan,
                "median_nndr_holdout": float(np.median(r_hold)) if n else math.nan,
                "definition": "share of synthetic rows with nearest/second-nearest distance ratio "
                              "below 0.5 to train, minus the same to holdout (reported only)",
            },
        ),
    ]
