"""Copy and nearest-neighbour attacks: exact copies, unique-QI copies, DCR share, NNDR.

Exact-copy rates are reported as an *excess over the holdout*: the share of synthetic rows equal
to a training row minus the share equal to a (same-sized) holdout row. A generator that never saw
the training rows matches both equally often, so the excess is about 0 even for a low-entropy table
in which many rows are common; a generator that copies makes it positive. Only copies of rows that
are rare (unique in their real table and absent from the other one; for unique_qi, unique on
the quasi-identifiers) are gated. Both rates are
measured on the same synthetic rows, so the interval is a paired one (see
``stats.paired_excess_ci``): the noise of common rows matching both tables cancels.
"""

from __future__ import annotations

import math

import numpy as np

from privsynth.audit.context import AuditContext
from privsynth.audit.distance import row_hashes
from privsynth.audit.result import RiskResult
from privsynth.audit.stats import mean_ci, newcombe_diff_ci, paired_excess_ci


def _singletons(hashes: np.ndarray) -> np.ndarray:
    """Hashes that occur exactly once."""
    values, counts = np.unique(hashes, return_counts=True)
    return values[counts == 1]


def _paired_copy_result(ctx: AuditContext, name: str, attack: str, hs: np.ndarray,
                        targets_train: np.ndarray, targets_hold: np.ndarray,
                        details: dict) -> RiskResult:
    in_train = np.isin(hs, targets_train)
    in_hold = np.isin(hs, targets_hold)
    n = len(hs)
    only_t = int(np.sum(in_train & ~in_hold))
    only_h = int(np.sum(in_hold & ~in_train))
    est, low, high = paired_excess_ci(only_t, only_h, n, ctx.confidence)
    return RiskResult(
        name=name, value=est, ci_low=low, ci_high=high, baseline=0.0, threshold_key=name,
        attack=attack,
        details={
            "synthetic_rows": n, "reference_rows": len(ctx.balanced[0]),
            "copies_of_train_rows": int(in_train.sum()),
            "copies_of_holdout_rows": int(in_hold.sum()),
            "train_only": only_t, "holdout_only": only_h, "observed_count": int(in_train.sum()),
            "interval": "paired (McNemar-style) Wilson bounds on the discordant rows",
            **details,
        },
    )


def exact_copies(ctx: AuditContext) -> list[RiskResult]:
    train, holdout = ctx.balanced
    cols = ctx.schema.names
    hs = row_hashes(ctx.synth, cols)
    h_train, h_hold = row_hashes(train, cols), row_hashes(holdout, cols)
    all_copies = int(np.isin(hs, h_train).sum())
    # rare rows: unique in their own table and absent from the other one. A row that also
    # occurs in the other sample is a common combination in the population; a fresh generator
    # reproduces it by chance, and copying it singles nobody out.
    rare_train = np.setdiff1d(_singletons(h_train), h_hold)
    rare_hold = np.setdiff1d(_singletons(h_hold), h_train)
    return [_paired_copy_result(
        ctx, "exact_copy_rate", "exact_copy", hs, rare_train, rare_hold,
        {"copies_of_any_train_row": all_copies, "rare_train_rows": int(rare_train.size),
         "definition": "share of synthetic rows equal to a rare training row (unique in train, "
                       "absent from the holdout), minus the same with the roles of train and "
                       "the same-sized holdout swapped. Copies of common rows are counted "
                       "above but not gated"},
    )]


def _unique_on(frame, qi: list[str]) -> np.ndarray:
    h = row_hashes(frame, qi)
    _, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
    return counts[inverse] == 1


def unique_qi_copies(ctx: AuditContext) -> list[RiskResult]:
    train, holdout = ctx.balanced
    cols = ctx.schema.names
    qi = [c for c in ctx.config.quasi_identifiers if c in cols] or list(cols)
    hs = row_hashes(ctx.synth, cols)
    full = [row_hashes(real, cols) for real in (train, holdout)]
    qi_h = [row_hashes(real, qi) for real in (train, holdout)]
    # rows unique on the QIs in their own table whose QI combination the other table lacks
    targets = [
        full[i][_unique_on(real, qi) & ~np.isin(qi_h[i], qi_h[1 - i])]
        for i, real in enumerate((train, holdout))
    ]
    return [_paired_copy_result(
        ctx, "unique_qi_copy_rate", "unique_qi", hs, targets[0], targets[1],
        {"quasi_identifiers": qi,
         "quasi_identifiers_source": "policy" if ctx.config.quasi_identifiers else
         "none named in the policy: all columns used",
         "qi_unique_train_rows": int(len(targets[0])),
         "definition": "share of synthetic rows copying a training row that is unique on the "
                       "quasi-identifiers (and whose QI combination the holdout lacks), minus "
                       "the same with train and holdout swapped"},
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
