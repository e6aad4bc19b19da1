"""Copy and nearest-neighbour attacks: exact copies, unique-QI copies, DCR share, near-copies, NNDR.

The DCR attack also runs the per-row near-copy test (``near_copies``, gated as
``near_copy_rate``): it reuses the same nearest-neighbour searches, so every policy that asks for
``dcr`` gets it at no extra cost.

All of them use *every* training row against *every* holdout row (``AuditContext.reference``),
whatever the two sizes, and are defined so that their null value is exact with unequal sizes.
The null is the only exact one there is: train and holdout are a uniformly random split of the
pooled real rows (``data/split.py``), so a generator that learned nothing specific to the
training rows leaves the labels exchangeable given the real rows and the synthetic table.

**Event rates** (exact copies, unique-QI copies, near-copies). Each synthetic row either is an
*event* attached to one real row (it equals a rare real row; it is a near-copy of one) or not,
and whether it is an event does not depend on the labels: for copies, a *rare* row is one that
occurs once in the pooled real rows (for unique_qi: unique on the quasi-identifiers in the
pooled rows); for near-copies the event is defined on the pooled nearest neighbours. Under the
null the attached row is a training row with probability ``π = n_train / n_pooled`` exactly, so
with ``a`` of the ``m`` events on training rows among n synthetic rows the statistic is
``f = (a - π m) / ((1 - π) n)`` (``stats.excess_share_ci``): 0 in expectation under the null,
and the share of synthetic rows copying training rows beyond chance under a leak. With equal
sizes it is the paired excess (train events - holdout events) / n used before. A generator that
never saw the training rows matches both sides in proportion, so f stays about 0 even on a
low-entropy table where many rows are common.

**Per synthetic row, or per real record.** Each event is a synthetic row attached to one real
row. The gated count is per synthetic row: the rate at which the release emits copies, so a
model that emits a few training records over and over (the isolated-record leak) is caught.
On a table where honest output hits many rare real rows by chance, some of them many times,
that count's null is too wide to resolve the threshold whatever the number of rows drawn: on
health_insurance (11 mostly binary columns) 11% of an honest model's rows equal a real row that
is unique in the pooled data, up to 13 times each in 30,000 rows, and the per-row null sd stays
near 0.0035 (the labels of those few rows decide it) against the 0.005 limit. There (z·sd of
the per-row null at least half the threshold, estimated from the *holdout* rows' hit counts
alone, so that a leak, which adds hits to training records only, cannot trigger the switch)
the gate counts each real row once instead: the number of training records reproduced
beyond chance per synthetic row scored, whose null sd falls as 1/n (0.0014 at 30,000 rows); a
leak of k fresh copied records still moves it by about k / n. Few records repeated many times
then count once each; that is what the targeted attack on isolated records (``targeted.py``)
looks at, and on health_insurance it blocks 1% near-copies of the 1% most isolated training
rows at TPR 0.38. ``details`` has both counts and says which was gated (``counted_per``).

**How many rows.** The statistic's null sd is about ``sqrt(q π / ((1 - π) n))``, q the share of
synthetic rows that hit a distinct rare real row, so on a table where honest output hits many
rare rows by chance (q ≈ 0.09 on health_insurance against about 0 on German credit or telecom
churn) the audit draws more synthetic rows from the trained model (post-processing; see
``stats.copy_rows_needed``), which ``Synthesizer.release`` does from a first draw's q, a
statistic that reads no train/holdout label.

**Intervals and null.** The Wilson-based interval treats each event's label as independent; the
permutation null re-draws the labels at the same sizes over the cached matches and neighbour
lists (never a new search), giving the null's mean, 95th percentile and standard deviation
(``details``). The upper end gated is the larger of the Wilson bound and ``f + z·sd_null``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from privsynth.audit.context import AuditContext, PooledNeighbours
from privsynth.audit.distance import row_hashes
from privsynth.audit.result import RiskResult
from privsynth.audit.stats import _z, excess_share_ci, newcombe_diff_ci, null_summary


def _pooled_unique(hashes: np.ndarray) -> np.ndarray:
    """Mask of the rows whose hash occurs exactly once."""
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    return counts[inverse] == 1


def _match(hs: np.ndarray, pooled_hashes: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Pooled index of the target row each synthetic row equals (-1: none). Targets are unique
    rows, so a synthetic row equals at most one."""
    out = np.full(hs.size, -1, dtype=np.int64)
    t_idx = np.nonzero(targets)[0]
    if t_idx.size == 0 or hs.size == 0:
        return out
    t_hash = pooled_hashes[t_idx]
    order = np.argsort(t_hash)
    t_hash, t_idx = t_hash[order], t_idx[order]
    pos = np.minimum(np.searchsorted(t_hash, hs), t_hash.size - 1)
    found = t_hash[pos] == hs
    out[found] = t_idx[pos[found]]
    return out


def _event_risk(ctx: AuditContext, name: str, attack: str, attached: np.ndarray, n: int,
                n_train: int, n_holdout: int, confidence: float, details: dict,
                threshold_key: str | None = None) -> RiskResult:
    """Excess event rate over chance with its interval and permutation null.

    ``attached``: the pooled index (train rows first) of the real row each event is attached
    to, one entry per synthetic row that is an event; ``n`` synthetic rows in all. Two counts
    are formed over the same permutations (module docstring): per synthetic row, and per real
    row (each counted once). The per-row count is gated unless honest output's clustering,
    read from the holdout rows alone (``_honest_row_sd``), makes its null too wide to resolve
    the threshold (z·sd ≥ threshold / 2); then the per-record count is."""
    n_pooled = n_train + n_holdout
    share = n_train / n_pooled
    is_train = np.arange(n_pooled) < n_train
    records = np.unique(attached)
    rng = ctx.rng(f"null-{name}")
    nulls = np.empty((max(ctx.resamples, 1), 2))
    for i in range(nulls.shape[0]):
        labels = np.zeros(n_pooled, dtype=bool)
        labels[rng.permutation(n_pooled)[:n_train]] = True
        nulls[i] = [(labels[ev].sum() - share * ev.size) / ((1.0 - share) * n)
                    for ev in (attached, records)]
    z = _z(confidence)
    limit = getattr(ctx.config.thresholds, threshold_key or name)
    counts = {}
    for col, (unit, ev) in enumerate((("synthetic_rows", attached), ("real_records", records))):
        a, m = int(is_train[ev].sum()), int(ev.size)
        est, low, high = excess_share_ci(a, m, n, share, confidence)
        summary = null_summary(nulls[:, col], 0.0, exact_mean=0.0)
        counts[unit] = {"estimate": est, "ci_low": min(low, est - z * summary["null_sd"]),
                        "ci_high": max(high, est + z * summary["null_sd"]), "events": m,
                        "train_events": a, "holdout_events": m - a, "summary": summary}
    honest_sd = _honest_row_sd(attached, n, n_train, n_holdout)
    unit = "synthetic_rows" if z * honest_sd < limit / 2 else "real_records"
    pick = counts[unit]
    return RiskResult(
        name=name, value=pick["estimate"], ci_low=pick["ci_low"], ci_high=pick["ci_high"],
        baseline=0.0, threshold_key=threshold_key or name, attack=attack,
        details={"synthetic_rows": n, "train_rows": n_train, "holdout_rows": n_holdout,
                 "train_share": share, "counted_per": unit,
                 "per_row_null_sd_from_holdout": honest_sd, "events": pick["events"],
                 "train_events": pick["train_events"],
                 "holdout_events": pick["holdout_events"],
                 "observed_count": pick["train_events"], **pick["summary"],
                 "per_count": {u: {k: v for k, v in c.items() if k != "summary"}
                               | {"null_sd": c["summary"]["null_sd"]}
                               for u, c in counts.items()},
                 **details},
    )


def _honest_row_sd(attached: np.ndarray, n: int, n_train: int, n_holdout: int) -> float:
    """The per-row count's null sd as an honest release would have it, from the holdout rows'
    hit counts alone: sd = sqrt(π (1 - π) Σ c²) / ((1 - π) n) over the pooled rows' hit counts
    c, with Σ c² estimated by the holdout rows' sum / (1 - π). A leak adds hits to training
    records only, so it cannot widen this estimate and switch the gate to the per-record count
    (whose power against a few records repeated many times is low); honest clustering shows on
    both sides alike."""
    n_pooled = n_train + n_holdout
    share = n_train / n_pooled
    if n <= 0 or not 0.0 < share < 1.0:
        return 0.0
    hold = np.bincount(attached[attached >= n_train] - n_train, minlength=n_holdout)
    sum_sq = float(np.sum(hold.astype(float) ** 2)) / (1.0 - share)
    return math.sqrt(share * (1.0 - share) * sum_sq) / ((1.0 - share) * n)


def _rare_copies(train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame,
                 cols: list[str], target_cols: list[str]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic rows' hashes, the pooled real rows' hashes (train first), the rare-row mask
    (unique on ``target_cols`` in the pooled rows) and the pooled index each synthetic row
    equals among the rare rows (-1: none)."""
    hs = row_hashes(synthetic, cols)
    pooled = np.concatenate([row_hashes(train, cols), row_hashes(holdout, cols)])
    key = pooled if target_cols == cols else np.concatenate(
        [row_hashes(train, target_cols), row_hashes(holdout, target_cols)])
    targets = _pooled_unique(key)
    return hs, pooled, targets, _match(hs, pooled, targets)


def _copy_risk(ctx: AuditContext, name: str, attack: str, cols: list[str],
               target_cols: list[str], details: dict) -> RiskResult:
    train, holdout = ctx.reference
    hs, pooled, targets, match = _rare_copies(train, holdout, ctx.synth, cols, target_cols)
    attached = match[match >= 0]
    any_train = int(np.isin(hs, pooled[: len(train)]).sum())
    return _event_risk(
        ctx, name, attack, attached, len(hs), len(train), len(holdout), ctx.confidence,
        {"copies_of_any_train_row": any_train, "rare_rows": int(targets.sum()),
         "copies_of_train_rows": int((attached < len(train)).sum()),
         "copies_of_holdout_rows": int((attached >= len(train)).sum()),
         "interval": "larger of the Wilson-based excess interval (stats.excess_share_ci) and "
                     "estimate ± z·sd of the permutation null", **details})


def chance_copy_share(train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame,
                      columns: list[str], quasi_identifiers: list[str] | None = None) -> float:
    """Share of ``synthetic`` rows' worth of distinct rare real rows they reproduce:
    (distinct real rows, unique in train and holdout pooled, that some synthetic row equals) / n,
    the larger of the exact-copy and the unique-QI rule. It reads no train/holdout label (the
    two frames are pooled), so choosing the audit's size from it leaves both checks' null exact.
    """
    if len(synthetic) == 0:
        return 0.0
    qi = [c for c in (quasi_identifiers or []) if c in columns]
    hits = 0
    for target_cols in ([list(columns), qi] if qi else [list(columns)]):
        match = _rare_copies(train, holdout, synthetic, list(columns), target_cols)[3]
        hits = max(hits, int(np.unique(match[match >= 0]).size))
    return hits / len(synthetic)


def exact_copies(ctx: AuditContext) -> list[RiskResult]:
    cols = list(ctx.schema.names)
    # rare rows: those that occur once in the pooled real rows. A row that occurs more than once
    # is a common combination in the population; a fresh generator reproduces it by chance, and
    # copying it singles nobody out.
    return [*column_value_copies(ctx), _copy_risk(
        ctx, "exact_copy_rate", "exact_copy", cols, cols,
        {"definition": "share of synthetic rows equal to a rare training row (one that occurs "
                       "once in the pooled train and holdout rows) beyond the share expected "
                       "by chance, (a - π·m) / ((1 - π)·n) with π = n_train / n_pooled; equal "
                       "to train copies minus holdout copies over n when the sizes are equal; "
                       "copies of common rows are counted but not gated"},
    )]


#: A column is tested when at least this many of its values are held by one real row each.
#: The share's sd is at most 1/sqrt(T); with the Bonferroni z of ~3.2 over a wide table plus
#: 1.645 of headroom, an honest release stays under the 0.3 limit 95% of the time only from
#: T ≈ 250 (a leak of fewer unique values is what the whole-row checks and the targeted
#: attack look at). Columns below it are listed as not tested.
MIN_UNIQUE_VALUES = 250


def _powered(n_targets: int, n_train: int, n_holdout: int, confidence: float,
             limit: float) -> bool:
    """True when an honest release passes the column's check with probability at least
    ``confidence`` even at the share's largest sd, sqrt(π / ((1 - π) T)) (every target hit):
    with unequal halves the share's sd grows as π → 1 (a 5% holdout needs about 20 times as
    many unique values). ``confidence`` is Bonferroni's 1 - α/C, so by the union bound an
    honest release passes all C columns 95% of the time; with a per-column 95% (z = 1.645)
    an honest person-level release of wages, 28 columns tested, was blocked 1 time in 9."""
    share = n_train / (n_train + n_holdout)
    sd_max = math.sqrt(share / ((1.0 - share) * n_targets))
    return 2.0 * _z(confidence) * sd_max < limit


def column_value_copies(ctx: AuditContext) -> list[RiskResult]:
    """Per column: values only one real row holds, reproduced from train vs from holdout.

    For each column, the *targets* are the values held by exactly one real row (train and
    holdout pooled, missing cells excluded); a target that at least one synthetic row equals is
    an event attached to the real row holding it (counted once, however many rows repeat it).
    With a of the m events on training rows and T targets, the statistic is the copy rates'
    excess over chance per target, ``(a - π m) / ((1 - π) T)``: the share of the column's
    unique training values that the synthetic table reproduces beyond what a generator that
    never saw them would. Exactly 0 in expectation under the null; about the share of unique
    training values reproduced (0.5-1) when a column is copied from training rows. Its sd is at
    most sqrt(π / ((1 - π) T)) (1/sqrt(T) with equal halves), so only columns with at least
    ``MIN_UNIQUE_VALUES`` targets whose worst-case honest bound stays under the limit are
    tested (``_powered``; the others are listed as not tested); the gated risk is the tested
    column with the largest upper bound, each at confidence ``1 - α/C`` (Bonferroni over the C
    columns with enough targets).
    """
    train, holdout = ctx.reference
    tested: list[RiskResult] = []
    per_column = {}
    for name in ctx.schema.names:
        pooled = np.concatenate([row_hashes(train, [name]), row_hashes(holdout, [name])])
        targets = _pooled_unique(pooled) & ~np.concatenate(
            [train[name].isna().to_numpy(), holdout[name].isna().to_numpy()])
        per_column[name] = {"unique_values": int(targets.sum()), "tested": False}
        if targets.sum() >= MIN_UNIQUE_VALUES:
            match = _match(row_hashes(ctx.synth, [name]), pooled, targets)
            tested.append((name, np.unique(match[match >= 0]), int(targets.sum())))
    confidence = 1.0 - (1.0 - ctx.confidence) / max(len(tested), 1)
    tested = [t for t in tested if _powered(t[2], len(train), len(holdout), confidence,
                                            ctx.config.thresholds.column_value_copy_rate)]
    if not tested:
        return []
    worst: RiskResult | None = None
    for name, attached, n_targets in tested:
        risk = _event_risk(
            ctx, f"column_value_copy_rate:{name}", "exact_copy", attached, n_targets,
            len(train), len(holdout), confidence, {"column": name},
            threshold_key="column_value_copy_rate")
        per_column[name].update(tested=True, estimate=risk.value, upper=risk.ci_high,
                                values_reproduced=risk.details["events"])
        if worst is None or risk.ci_high > worst.ci_high:
            worst = risk
    assert worst is not None
    details = {**worst.details, "columns": per_column, "confidence_per_column": confidence,
               "unique_values": worst.details["synthetic_rows"],
               "definition": "the tested column whose share of unique real training values "
                             "(held by one real row) reproduced by the synthetic table beyond "
                             "chance is largest (Bonferroni-adjusted upper bound)"}
    details.pop("synthetic_rows", None)
    return [RiskResult("column_value_copy_rate", worst.value, worst.ci_low, worst.ci_high, 0.0,
                       "column_value_copy_rate", details, "exact_copy")]


def unique_qi_copies(ctx: AuditContext) -> list[RiskResult]:
    cols = list(ctx.schema.names)
    qi = [c for c in ctx.config.quasi_identifiers if c in cols] or list(cols)
    return [_copy_risk(
        ctx, "unique_qi_copy_rate", "unique_qi", cols, qi,
        {"quasi_identifiers": qi,
         "quasi_identifiers_source": "policy" if ctx.config.quasi_identifiers else
         "none named in the policy: all columns used",
         "definition": "share of synthetic rows copying a real row that is unique on the "
                       "quasi-identifiers in the pooled train and holdout rows and is a training "
                       "row, beyond the share expected by chance (as exact_copy_rate)"},
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


def _subsample_scores(pn: PooledNeighbours, small: np.ndarray) -> np.ndarray:
    """Each synthetic row's DCR score: P(its nearest row in train is closer than its nearest
    row in holdout) + 1/2 P(equal), averaged over every subsample of the larger set to the size
    of the smaller one (closed form, see ``dcr``). ``small``: pooled mask of the smaller set
    (any set of that size, for the permutation null)."""
    dist = pn.dist
    in_small = small[pn.idx]
    n = dist.shape[0]
    has = in_small.any(axis=1)
    first = in_small.argmax(axis=1)
    d_small = dist[np.arange(n), first][:, None]
    large = ~in_small
    k_lt = np.count_nonzero(large & (dist < d_small), axis=1)
    k_le = np.count_nonzero(large & (dist <= d_small), axis=1)
    miss = pn.miss
    top = miss.size - 1
    if pn.train_is_larger and dist.shape[1] < pn.n_pooled:
        # the list may end inside the tie group at d_small: larger rows tied beyond it are
        # unseen, so k_<= is only a lower bound; take the score's upper bound (q = 0)
        k_le = np.where(dist[:, -1] <= d_small[:, 0], top, k_le)
    q = 0.5 * (miss[np.minimum(k_lt, top)] + miss[np.minimum(k_le, top)])
    if pn.train_is_larger:
        score = 1.0 - q
        score[~has] = 1.0  # beyond the list: an upper bound (exact when pn.exact)
    else:
        score = q
        score[~has] = miss[min(dist.shape[1], top)]
    return score


def dcr(ctx: AuditContext) -> list[RiskResult]:
    """DCR share: the share of synthetic rows closer to a training row than to a holdout row.

    With equal sizes a synthetic row scores 1 when its nearest real row is a training row, 1/2
    on a tie, 0 otherwise, and 1/2 is the exact null value. With unequal sizes the larger set
    would win by its size alone, so the score is the same comparison *averaged over every
    subsample of the larger set to the size of the smaller one* (the limit of re-drawing the
    subsample forever), in closed form: with the larger set L (size n_L) and the smaller S (n_S),
    d_S the distance from the synthetic row to its nearest row of S, and k_< (k_<=) the number
    of rows of L strictly closer than (at most as far as) d_S, a random n_S-subset of L misses
    all k given rows with probability q(k) = C(n_L - k, n_S) / C(n_L, n_S)
    (``stats.subsample_miss_probabilities``), so

        score = 1 - (q(k_<) + q(k_<=)) / 2  when train is the larger set,
        score =     (q(k_<) + q(k_<=)) / 2  when holdout is.

    Each subsample is a balanced random split of its pooled rows, so by the train/holdout swap
    the null mean is 1/2 exactly, for any sizes. The counts come from each synthetic row's K
    nearest pooled rows (``AuditContext.pooled_neighbours``): exact when the sizes differ by at
    most one (K = 2) or K > n_L - n_S; otherwise a row with no smaller-set row among its K
    gets the bound q(K) <= 0.1% (fail-closed; likewise a row whose list ends among rows tied
    with its nearest smaller-set row), and the permutation null, computed the same way,
    carries that bias into ``null_mean``, which the gate subtracts.

    Interval: the share is a mean over synthetic rows, but its noise comes mostly from the
    labels of the real rows they sit next to (many synthetic rows can share one nearest real
    row; with 7,700 audit rows on 1,000 real rows most do). The permutation null (labels re-drawn
    at the same sizes over the cached lists) measures exactly that variance; the per-row
    standard error measures the synthetic sampling. The interval is share ± z·max(the two), with
    z one-sided at the audit's confidence (1.645 at 95%): only its upper end is gated, and a
    leak pushes the share up. At 450 + 450 German-credit rows with 7,683 audit rows the null sd
    is 0.017-0.024 (the per-row standard error would claim 0.0057), which is why the default
    limit is 0.58 (``Thresholds``).
    Power: a balanced-audit effect, so a small holdout dilutes a copy's contribution by
    n_S / n_L; copies and near-copies are caught by their own per-row tests, and MIA uses every
    row.
    """
    d_train, _ = ctx.nn("synthetic", "train", 2)
    d_hold, _ = ctx.nn("synthetic", "holdout", 2)
    dt, dh = d_train[:, 0], d_hold[:, 0]
    pn = ctx.pooled_neighbours()
    small_obs = ~pn.is_train if pn.train_is_larger else pn.is_train
    score = _subsample_scores(pn, small_obs)
    n = int(score.size)
    share = float(score.mean()) if n else math.nan
    sd_rows = float(score.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    rng = ctx.rng("null-dcr_share")
    n_small, n_pooled = min(pn.n_train, pn.n_holdout), pn.n_pooled
    null = np.empty(max(ctx.resamples, 1))
    for i in range(null.size):
        small = np.zeros(n_pooled, dtype=bool)
        small[rng.permutation(n_pooled)[:n_small]] = True
        null[i] = _subsample_scores(pn, small).mean()
    summary = null_summary(null, 0.5, exact_mean=0.5 if pn.exact else None)
    sd = max(summary["null_sd"], sd_rows)
    z = _z(1 - 2 * (1 - ctx.confidence))  # one-sided: only the upper end is gated
    low, high = share - z * sd, share + z * sd
    ctx.figures["dcr_histogram"] = _histogram(dt, dh)

    def nndr(d):
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(d[:, 1] > 0, d[:, 0] / d[:, 1], 1.0)
        return r

    r_train, r_hold = nndr(d_train), nndr(d_hold)
    # NNDR: small ratios mean a synthetic row sits much closer to one real row than to any other
    # (an outlier reproduced). Reported against the holdout as baseline, not gated (with
    # unequal sizes its null is not 0: the near-copy test is the calibrated version).
    nndr_low_train = float(np.mean(r_train < 0.5)) if n else math.nan
    nndr_low_hold = float(np.mean(r_hold < 0.5)) if n else math.nan
    _, nl, nh = newcombe_diff_ci(nndr_low_train * n, n, nndr_low_hold * n, n, ctx.confidence)
    return near_copies(ctx) + [
        RiskResult(
            name="dcr_share", value=share, ci_low=low, ci_high=high,
            baseline=summary["null_mean"], threshold_key="dcr_share", attack="dcr",
            details={
                "synthetic_rows": n, "train_rows": pn.n_train, "holdout_rows": pn.n_holdout,
                "closer_to_train": int(np.sum(dt < dh)), "ties": int(np.sum(dt == dh)),
                "closer_to_holdout": int(np.sum(dt > dh)),
                "median_dcr_train": float(np.median(dt)) if n else math.nan,
                "median_dcr_holdout": float(np.median(dh)) if n else math.nan,
                "p05_dcr_train": float(np.quantile(dt, 0.05)) if n else math.nan,
                "p05_dcr_holdout": float(np.quantile(dh, 0.05)) if n else math.nan,
                "neighbours_per_row": int(pn.dist.shape[1]), "exact": pn.exact,
                "sd_synthetic_rows": sd_rows, **summary,
                "interval": "one-sided: share ± z·max(sd of the permutation null, per-row "
                            "standard error)",
                "definition": "share of synthetic rows whose nearest real row is in train "
                              "rather than holdout (ties 1/2), averaged over every subsample "
                              "of the larger set to the size of the smaller; 0.5 under the "
                              "null for any sizes",
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


#: A synthetic row is a near-copy of a real row when that row is closer than this fraction of
#: the distance to any other real row (see near_copies).
NEAR_COPY_RATIO = 0.05


def near_copies(ctx: AuditContext) -> list[RiskResult]:
    """Per-row near-copy test: synthetic rows far closer to one real row than to any other.

    For each synthetic row s let ``d1 <= d2`` be its exact distances (rank-scaled numerics,
    categorical mismatches; ``distance.py``) to its two nearest rows among the *pooled* train
    and holdout rows. s is a near-copy *event* when ``d1 < rho * d2``: its nearest real row is
    ``1/rho`` = 20 times closer than any other real row it could be a blend of (ties, including
    two real rows at distance 0, are never events). The event does not depend on the labels;
    it is a *train* near-copy when the nearest row is a training row. (This is exactly the
    former rule ``dT1 < rho * min(dT2, dH1)``, with its holdout mirror.) The statistic is the
    excess over chance ``(a - π m) / ((1 - π) n)`` of the module docstring, with m events, a
    of them on training rows, n synthetic rows and π = n_train / n_pooled: with equal sizes,
    (train near-copies - holdout near-copies) / n, as before.

    Null and calibration. A generator whose output does not depend on which rows fell into the
    training half leaves the labels exchangeable given the real and synthetic rows, so each
    event's row is a training row with probability π exactly and the excess has mean 0 for any
    table, its ties and duplicates, sizes, or how close honest output sits to real rows in
    general. The interval is one-sided at the audit's confidence (the upper end of a 90%
    two-sided interval is a 95% one-sided bound: leaks push the excess up, and only the upper
    end is gated): the larger of the Wilson-based bound (``stats.excess_share_ci``, labels
    independent) and the estimate plus z·sd of the permutation null (which sees several
    synthetic rows sharing a nearest real row).

    Power, measured (``tests/test_near_copies.py``, three disjoint real splits, 1% of a fresh
    sample replaced by training rows with every numeric moved by 0.5-1%): on tables whose real
    rows are far apart (telecom churn, lending club) every planted row is detected and no honest
    row is an event, so the excess is 0.01 against an honest upper bound of about 2.7/n. On
    Adult, where many real rows agree on every category and differ only in one weight, about
    half of the planted rows are detected and under 1% of honest rows are events: at 2,000
    rows per set the one-sided upper bound of 1% near-copies had median 0.0087 (20 of 20 seeds
    blocked) and that of honest output 0.0023 (0 of 20 blocked). Hence the ``near_copy_rate``
    limit of 0.005: it blocks 1% near-copies from about 2,000 rows on (sparser tables from
    about 550: 2.7/n < 0.005) and passes honest output. (rho = 0.1 detected more planted rows
    on Adult but blocked 7 of 20 honest seeds at 2,000 rows.) With a small holdout (π near 1)
    the chance events of a dense table weigh 1/(1 - π) more: such a table needs more rows.
    It is an effect size on the share of rows, unlike DCR share and MIA AUC, which are means over
    all rows that a 1% leak moves by half a point.
    """
    pn = ctx.pooled_neighbours()
    rho = NEAR_COPY_RATIO
    event = pn.dist[:, 0] < rho * pn.dist[:, 1]
    attached = pn.idx[event, 0]
    n = int(pn.dist.shape[0])
    # one-sided: the gate reads the upper end, so a two-sided (1 - 2 alpha) interval gives the
    # one-sided (1 - alpha) upper bound
    return [_event_risk(
        ctx, "near_copy_rate", "dcr", attached, n, pn.n_train, pn.n_holdout,
        1 - 2 * (1 - ctx.confidence),
        {"ratio": rho, "train_near_copies": int((attached < pn.n_train).sum()),
         "holdout_near_copies": int((attached >= pn.n_train).sum()),
         "interval": "one-sided upper bound: the larger of the Wilson-based excess bound "
                     "(stats.excess_share_ci) and estimate + z·sd of the permutation null; the "
                     "lower end is the matching one-sided lower bound",
         "definition": "share of synthetic rows whose nearest real row is a training row "
                       f"closer than {rho:g} x the distance to any other real row, beyond the "
                       "share expected by chance, (a - π·m) / ((1 - π)·n), π = n_train / "
                       "n_pooled; train minus holdout near-copies over n when the sizes are "
                       "equal; 0 under the null"},
    )]
