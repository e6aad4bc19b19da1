"""Confidence intervals used by the audit: Wilson, Clopper-Pearson, Newcombe, bootstrap, AUC.

Every interval here is two-sided at ``confidence`` (default 95%); the gate compares its upper end
with a threshold, so a release passes only when the data are precise enough to show the risk is low.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import special as _sp
from scipy import stats as _st


def _z(confidence: float) -> float:
    return float(_st.norm.ppf(0.5 + confidence / 2))


def _strata(n: int, strata: np.ndarray | None) -> np.ndarray:
    """Stratum labels of n scores (one stratum when None)."""
    return np.zeros(n, dtype=np.int64) if strata is None else np.asarray(strata)


def wilson_ci(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (good at 0 and 1, unlike Wald)."""
    if n <= 0:
        return (math.nan, math.nan)
    z = _z(confidence)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1 - p) / n + z * z / (4 * n * n), 0.0)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def clopper_pearson_ci(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (conservative) binomial interval."""
    if n <= 0:
        return (math.nan, math.nan)
    alpha = 1 - confidence
    low = 0.0 if successes == 0 else float(_st.beta.ppf(alpha / 2, successes, n - successes + 1))
    high = (1.0 if successes == n
            else float(_st.beta.ppf(1 - alpha / 2, successes + 1, n - successes)))
    return (low, high)


def newcombe_diff_ci(
    x1: float, n1: int, x2: float, n2: int, confidence: float = 0.95
) -> tuple[float, float, float]:
    """Difference of two proportions p1 - p2 with Newcombe's hybrid score interval.

    Returns ``(estimate, low, high)``. Built from the two Wilson intervals, so it stays sensible
    when either count is zero (the case of an honest release and exact copies).
    """
    if n1 <= 0 or n2 <= 0:
        return (math.nan, math.nan, math.nan)
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_ci(x1, n1, confidence)
    l2, u2 = wilson_ci(x2, n2, confidence)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return (d, max(-1.0, low), min(1.0, high))


def paired_excess_ci(
    only_first: int, only_second: int, n: int, confidence: float = 0.95
) -> tuple[float, float, float]:
    """Excess rate (x1 - x2) / n of two events measured on the *same* n items (paired).

    Only discordant items carry information (McNemar): with m = only_first + only_second and
    p = only_first / m, the excess is (m / n)(2p - 1). The interval multiplies the Wilson upper
    bound of m / n by the Wilson bounds of 2p - 1, which is conservative, and with no
    discordant item at all gives [-(3.84/n), 3.84/n] rather than a zero-width interval.
    Returns ``(estimate, low, high)``. The equal-sized case of ``excess_share_ci``.
    """
    return excess_share_ci(only_first, only_first + only_second, n, 0.5, confidence)


def excess_share_ci(
    first: int, events: int, n: int, share: float, confidence: float = 0.95
) -> tuple[float, float, float]:
    """Excess ``f = (first - share·events) / ((1 - share)·n)`` of n items, with its interval.

    The setting: ``events`` of n synthetic rows are events (a copy or near-copy of one real
    row), and the real row of each event is a training row with probability ``share`` under the
    null (train and holdout a random split of the pooled rows, ``share = n_train / n_pooled``,
    the generator blind to the split); ``first`` of them are. ``f`` estimates the share of the
    n rows that copy a training row *beyond chance*: if a fraction f of the rows copy training
    rows and the others hit real rows at rate c regardless of the split, then
    E[first] = f·n + share·c·n(1 - f) and E[events] = f·n + c·n(1 - f), so
    E[first - share·events] = (1 - share)·f·n. The null value is 0 exactly, for any sizes; with
    ``share = 1/2`` it is the paired excess (train events - holdout events) / n.

    Interval: with p = first / events, f = (events / n)·(p - share)/(1 - share); the Wilson
    bounds of p are scaled by the Wilson bound of events / n that makes the product extreme
    (conservative). No event at all gives [-(m_hi·share/(1 - share)), m_hi], m_hi ≈ 3.84/n.
    Returns ``(estimate, low, high)``.
    """
    if n <= 0 or not 0.0 < share < 1.0:
        return (math.nan, math.nan, math.nan)
    est = (first - share * events) / ((1.0 - share) * n)
    m_lo, m_hi = wilson_ci(events, n, confidence)
    if events == 0:
        return (0.0, -m_hi * share / (1.0 - share), m_hi)
    p_lo, p_hi = wilson_ci(first, events, confidence)

    low = (m_hi if p_lo < share else m_lo) * (p_lo - share) / (1.0 - share)
    high = (m_hi if p_hi > share else m_lo) * (p_hi - share) / (1.0 - share)
    return (est, min(low, est), max(high, est))


def subsample_miss_probabilities(n_large: int, n_small: int, k_max: int) -> np.ndarray:
    """``q(k) = C(n_large - k, n_small) / C(n_large, n_small)`` for k = 0..k_max: the chance
    that a uniformly random ``n_small``-subset of ``n_large`` rows contains none of k given
    rows (0 once k > n_large - n_small; 1 - [k > 0] when the sizes are equal)."""
    k = np.arange(k_max + 1)
    out = np.zeros(k_max + 1)
    ok = k <= n_large - n_small
    kk = k[ok].astype(float)
    log_q = (_sp.gammaln(n_large - kk + 1) - _sp.gammaln(n_large - kk - n_small + 1)
             - _sp.gammaln(n_large + 1.0) + _sp.gammaln(n_large - n_small + 1.0))
    out[ok] = np.exp(log_q)
    return out


def null_summary(null: np.ndarray, nominal: float, exact_mean: float | None = None) -> dict:
    """Details of a permutation null: mean (``exact_mean`` where the null mean is known in
    closed form, so Monte Carlo noise never moves the gate), 95th percentile, standard
    deviation, the number of permutations and the statistic's nominal null value."""
    null = np.asarray(null, dtype=float)
    mean = float(np.mean(null)) if exact_mean is None else float(exact_mean)
    return {"null_mean": mean, "null_q95": float(np.quantile(null, 0.95)),
            "null_sd": float(np.std(null, ddof=1)) if null.size > 1 else 0.0,
            "null_permutations": int(null.size), "null_nominal": float(nominal),
            "null": "re-split of the pooled real rows into train and holdout of the same "
                    "sizes, synthetic rows fixed (labels permuted over cached distances)"}


def _draw_members(layout: list[tuple[np.ndarray, int]], n: int,
                  rng: np.random.Generator) -> np.ndarray:
    """A pooled member mask with, in each stratum (pooled indices, member count), that many
    members drawn at random: the null's re-split at the same sizes."""
    member = np.zeros(n, dtype=bool)
    for idx, nm in layout:
        member[idx[rng.permutation(idx.size)[:nm]]] = True
    return member


def _layout(m_strata: np.ndarray, h_strata: np.ndarray) -> list[tuple[np.ndarray, int]]:
    pooled = np.concatenate([m_strata, h_strata])
    return [(np.nonzero(pooled == g)[0], int(np.sum(m_strata == g)))
            for g in np.unique(pooled)]


def auc_permutation_null(member_scores: np.ndarray, nonmember_scores: np.ndarray,
                         permutations: int, rng: np.random.Generator,
                         member_strata: np.ndarray | None = None,
                         nonmember_strata: np.ndarray | None = None) -> np.ndarray:
    """``auc_ci_delong``'s AUC with the member/non-member labels re-drawn ``permutations`` times
    at the same sizes (within each stratum): the attack's exact null given the pooled scores (its
    mean is 1/2 exactly, ties counted one half). O(n) per permutation on ranks computed once."""
    m = np.asarray(member_scores, dtype=float)
    h = np.asarray(nonmember_scores, dtype=float)
    if m.size == 0 or h.size == 0:
        return np.full(max(permutations, 1), math.nan)
    pooled = np.concatenate([m, h])
    layout = _layout(_strata(m.size, member_strata), _strata(h.size, nonmember_strata))
    ranks = np.empty(pooled.size)
    pairs = 0.0
    for idx, nm in layout:
        ranks[idx] = _st.rankdata(pooled[idx])
        pairs += nm * (idx.size - nm)
    offset = sum(nm * (nm + 1) / 2 for _, nm in layout)
    out = np.empty(max(permutations, 1))
    for i in range(out.size):
        member = _draw_members(layout, pooled.size, rng)
        out[i] = (ranks[member].sum() - offset) / pairs
    return out


def tpr_permutation_null(member_scores: np.ndarray, nonmember_scores: np.ndarray,
                         fprs: tuple[float, ...], permutations: int,
                         rng: np.random.Generator, member_strata: np.ndarray | None = None,
                         nonmember_strata: np.ndarray | None = None) -> dict[float, np.ndarray]:
    """``tpr_at_fpr`` for each of ``fprs`` with the labels re-drawn at the same sizes (within
    each stratum): the exact null given the pooled scores. The scores are sorted once; each
    permutation is O(n): cumulative counts of pseudo-members and pseudo-non-members along the
    descending order give the threshold (the (k+1)-th highest non-member) and the members
    strictly above its tie group."""
    m = np.asarray(member_scores, dtype=float)
    h = np.asarray(nonmember_scores, dtype=float)
    nm, nh = m.size, h.size
    count = max(permutations, 1)
    if nm == 0 or nh == 0:
        return {f: np.full(count, math.nan) for f in fprs}
    pooled = np.concatenate([m, h])
    layout = _layout(_strata(nm, member_strata), _strata(nh, nonmember_strata))
    order = np.argsort(-pooled, kind="stable")
    sv = pooled[order]
    n = sv.size
    # first position of each value's tie group along the descending order
    new_group = np.concatenate([[True], sv[1:] != sv[:-1]])
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    ks = {f: int(math.floor(f * nh)) for f in fprs}
    out = {f: np.empty(count) for f in fprs}
    for i in range(count):
        member = _draw_members(layout, n, rng)[order]
        mem_before = np.concatenate([[0], np.cumsum(member)])  # members strictly before i
        non_cum = np.cumsum(~member)
        for f, k in ks.items():
            if k >= nh:
                out[f][i] = 1.0
                continue
            pos = int(np.searchsorted(non_cum, k + 1))
            out[f][i] = mem_before[group_start[pos]] / nm
    return out


def mean_ci(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Normal-approximation interval for a mean of bounded per-row scores."""
    values = np.asarray(values, dtype=float)
    n = values.size
    if n == 0:
        return (math.nan, math.nan, math.nan)
    m = float(values.mean())
    if n == 1:
        return (m, math.nan, math.nan)
    se = float(values.std(ddof=1)) / math.sqrt(n)
    z = _z(confidence)
    return (m, m - z * se, m + z * se)


def bootstrap_ci(
    statistic: Callable[[np.ndarray], np.ndarray],
    n: int,
    *,
    resamples: int,
    rng: np.random.Generator,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap.

    ``statistic`` takes a (resamples, n) index matrix and returns (resamples,) values.
    """
    idx = rng.integers(0, n, size=(resamples, n))
    values = np.asarray(statistic(idx), dtype=float)
    alpha = (1 - confidence) / 2
    return (float(np.nanquantile(values, alpha)), float(np.nanquantile(values, 1 - alpha)))


def roc_auc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    """Mann-Whitney AUC (ties count one half): P(score(member) > score(non-member))."""
    m = np.asarray(member_scores, dtype=float)
    h = np.asarray(nonmember_scores, dtype=float)
    if m.size == 0 or h.size == 0:
        return math.nan
    ranks = _st.rankdata(np.concatenate([m, h]))
    return float((ranks[: m.size].sum() - m.size * (m.size + 1) / 2) / (m.size * h.size))


def auc_delong(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> tuple[float, float]:
    """Mann-Whitney AUC and DeLong's variance of it (exact variance estimate, O(n log n))."""
    m = np.asarray(member_scores, dtype=float)
    h = np.asarray(nonmember_scores, dtype=float)
    nm, nh = m.size, h.size
    if nm < 2 or nh < 2:
        return (math.nan, math.nan)
    all_ranks = _st.rankdata(np.concatenate([m, h]))
    rm = _st.rankdata(m)
    rh = _st.rankdata(h)
    auc = (all_ranks[:nm].sum() - nm * (nm + 1) / 2) / (nm * nh)
    v10 = (all_ranks[:nm] - rm) / nh  # per member: share of non-members below
    v01 = 1 - (all_ranks[nm:] - rh) / nm  # per non-member: share of members above
    return (float(auc), float(v10.var(ddof=1) / nm + v01.var(ddof=1) / nh))


def auc_ci_delong(
    member_scores: np.ndarray, nonmember_scores: np.ndarray, confidence: float = 0.95,
    member_strata: np.ndarray | None = None, nonmember_strata: np.ndarray | None = None,
) -> tuple[float, float, float]:
    """AUC and its DeLong interval.

    With strata (members and non-members scored by stratum-specific rules, e.g. against
    different reference sets) the AUC compares members and non-members *within* each stratum
    only: the within-stratum Mann-Whitney counts summed over strata, over the number of
    within-stratum pairs (a weighted mean of the strata's AUCs, weights n_m·n_h); its variance
    is the weighted sum of the strata's DeLong variances (strata are disjoint rows)."""
    m = np.asarray(member_scores, dtype=float)
    h = np.asarray(nonmember_scores, dtype=float)
    sm, sh = _strata(m.size, member_strata), _strata(h.size, nonmember_strata)
    total_w, auc, var = 0.0, 0.0, 0.0
    for g in np.unique(np.concatenate([sm, sh])):
        a, v = auc_delong(m[sm == g], h[sh == g])
        if not math.isfinite(a):
            return (math.nan, math.nan, math.nan)
        w = float(np.sum(sm == g)) * float(np.sum(sh == g))
        total_w += w
        auc += w * a
        var += w * w * v
    if total_w == 0:
        return (math.nan, math.nan, math.nan)
    auc /= total_w
    half = _z(confidence) * math.sqrt(max(var, 0.0)) / total_w
    return (float(auc), max(0.0, float(auc - half)), min(1.0, float(auc + half)))


def tpr_at_fpr(member_scores: np.ndarray, nonmember_scores: np.ndarray, fpr: float) -> float:
    """True-positive rate at the threshold that flags at most ``fpr`` of the non-members."""
    h = np.sort(np.asarray(nonmember_scores, dtype=float))
    if h.size == 0 or np.size(member_scores) == 0:
        return math.nan
    k = int(math.floor(fpr * h.size))
    thr = h[h.size - k - 1] if k < h.size else -np.inf  # flag scores strictly above thr
    return float(np.mean(np.asarray(member_scores) > thr))


def tpr_at_fpr_ci(
    member_scores: np.ndarray,
    nonmember_scores: np.ndarray,
    fpr: float,
    *,
    resamples: int,
    rng: np.random.Generator,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """TPR at a fixed FPR with a stratified percentile-bootstrap interval (vectorized)."""
    m = np.asarray(member_scores, dtype=float)
    h = np.asarray(nonmember_scores, dtype=float)
    est = tpr_at_fpr(m, h, fpr)
    if m.size == 0 or h.size == 0:
        return (math.nan, math.nan, math.nan)
    hb = np.sort(h[rng.integers(0, h.size, size=(resamples, h.size))], axis=1)
    k = int(math.floor(fpr * h.size))
    thr = hb[:, h.size - k - 1]
    # share of resampled members above each threshold, via the sorted member scores
    ms = np.sort(m)
    above_full = m.size - np.searchsorted(ms, thr, side="right")
    # resample members by binomial thinning of the counts (exact for a bootstrap of a proportion)
    p = above_full / m.size
    tpr = rng.binomial(m.size, p) / m.size
    alpha = (1 - confidence) / 2
    return (est, float(np.quantile(tpr, alpha)), float(np.quantile(tpr, 1 - alpha)))


def roc_curve_points(
    member_scores: np.ndarray, nonmember_scores: np.ndarray, n_points: int = 101
) -> dict[str, list[float]]:
    """A down-sampled ROC curve (aggregates only: rates at score quantiles, never scores)."""
    m = np.sort(np.asarray(member_scores, dtype=float))
    h = np.sort(np.asarray(nonmember_scores, dtype=float))
    if m.size == 0 or h.size == 0:
        return {"fpr": [], "tpr": []}
    qs = np.unique(np.quantile(np.concatenate([m, h]), np.linspace(0, 1, n_points)))
    fpr = (h.size - np.searchsorted(h, qs, side="left")) / h.size
    tpr = (m.size - np.searchsorted(m, qs, side="left")) / m.size
    fpr = np.concatenate([[1.0], fpr, [0.0]])
    tpr = np.concatenate([[1.0], tpr, [0.0]])
    order = np.lexsort((tpr, fpr))
    return {"fpr": [round(float(x), 5) for x in fpr[order]],
            "tpr": [round(float(x), 5) for x in tpr[order]]}


#: The most synthetic rows the audit asks for (the distance attacks sample above 60,000 anyway).
MAX_AUDIT_ROWS = 60_000
#: The copy-rate interval must resolve a tenth of its threshold with zero copies observed.
COPY_RESOLUTION = 10
#: Synthetic rows the utility floor's TSTR model trains on where a target is judged: it judges
#: the *generator*, and a model fitted on one 7,683-row draw of it scored ROC AUC 0.44-0.60 on
#: the same 500 holdout rows from draw to draw (German credit, ε = 1), while 20,000-30,000
#: rows settle it (docs/leak_panel.md, "The utility floor judges the model").
TSTR_ROWS = 20_000


def audit_sample_rows(n_public: int, audit, confidence: float = 0.95) -> int:
    """How many synthetic rows to draw from the trained model for the audit (post-processing:
    the released ``n_public`` rows are among them, so every copy released is scored).

    A copy rate measured on n synthetic rows with no copy at all has a 95% upper bound of about
    z²/n (3.84/n): with n = 500 (German credit's training half) that is 0.0077, above the
    default threshold 0.005, so an honest small table could never pass. The audit therefore
    scores at least ``COPY_RESOLUTION · z² / t`` rows, t the smallest positive copy threshold
    requested (7,683 rows for t = 0.005; zero copies then bound the rate at 0.0005, and a handful
    of chance matches of common rows still pass). Where the utility floor judges TSTR on a named
    target, at least ``TSTR_ROWS``: the floor asks whether the *model* learned the target, and
    the synthetic side of TSTR is the model's to draw. At most ``MAX_AUDIT_ROWS`` either way.
    ``audit.audit_rows`` set to a number overrides this (never below ``n_public``)."""
    n_public = int(n_public)
    if audit.audit_rows != "auto":
        return max(n_public, int(audit.audit_rows))
    need = n_public
    t = _smallest_copy_threshold(audit)
    if t is not None:
        z = _z(confidence)
        need = max(need, math.ceil(COPY_RESOLUTION * z * z / t))
    if judges_tstr(audit):
        need = max(need, TSTR_ROWS)
    return max(n_public, min(need, MAX_AUDIT_ROWS))


def judges_tstr(audit) -> bool:
    """True when the gate's utility floor judges TSTR on a named target."""
    floor = audit.utility
    return bool(audit.target) and floor.enabled and floor.tstr


def _smallest_copy_threshold(audit) -> float | None:
    """The smallest positive threshold of the copy checks the policy runs (None: none runs)."""
    limits = audit.thresholds.model_dump()
    keys = {"exact_copy": "exact_copy_rate", "unique_qi": "unique_qi_copy_rate"}
    ts = [limits[k] for a, k in keys.items() if a in audit.attacks and limits.get(k, 0) > 0]
    return min(ts) if ts else None


def copy_rows_needed(chance_share: float, train_share: float, audit,
                     confidence: float = 0.95) -> int:
    """Synthetic rows at which an honest release's copy-rate upper bound sits at about half the
    smallest copy threshold, given ``chance_share`` (q: distinct rare real rows hit per synthetic
    row, ``copies.chance_copy_share``) and π = n_train / n_pooled. 0 when no copy check runs.

    With m ≈ q·n distinct events (an upper estimate: the distinct rows hit grow more slowly than
    n), the excess ``(a - π m) / ((1 - π) n)`` has null sd sqrt(q π / ((1 - π) n)); z·sd ≤ t/2
    gives n ≥ 4 z² q π / ((1 - π) t²). Health insurance (q ≈ 0.09, π = 1/2, t = 0.005): about
    39,000 rows; tables whose honest output hits rare rows rarely (q < 0.02) need fewer than
    the 7,683 that ``audit_sample_rows`` draws anyway. At most ``MAX_AUDIT_ROWS``."""
    t = _smallest_copy_threshold(audit)
    if t is None or chance_share <= 0 or not 0.0 < train_share < 1.0:
        return 0
    z = _z(confidence)
    need = 4.0 * z * z * chance_share * train_share / ((1.0 - train_share) * t * t)
    return min(math.ceil(need), MAX_AUDIT_ROWS)


def auc_min_rows(threshold: float, confidence: float = 0.95, honest_excess: float = 0.02,
                 power: float = 0.95) -> int:
    """Rows per side (members = non-members = n) at which an honest release, AUC at most
    0.5 + ``honest_excess`` (DP output is slightly above 0.5), passes the gate's rule "upper
    bound of the two-sided interval below ``threshold``" with probability ``power``.

    The Mann-Whitney null standard error is sqrt((2n + 1) / (12 n²)) ≈ 1/sqrt(6n), and the upper
    bound sits z_conf·se above an estimate that exceeds the truth by z_power·se in 1 - power of
    runs: n ≥ ((z_conf + z_power)² / 6) / (threshold - 0.5 - honest_excess)². For the default
    0.6: 339 rows; a 6k-row table with a 5% holdout (315 rows) is below it."""
    room = threshold - 0.5 - honest_excess
    if room <= 0:
        return MAX_AUDIT_ROWS
    k = _z(confidence) + float(_st.norm.ppf(power))
    return math.ceil(k * k / 6 / room / room)


def auc_se(members: int, non_members: int) -> float:
    """Null standard error of a Mann-Whitney AUC on continuous scores:
    sqrt((m + h + 1) / (12 m h)) for m members and h non-members (any sizes)."""
    if members <= 0 or non_members <= 0:
        return math.inf
    return math.sqrt((members + non_members + 1) / (12.0 * members * non_members))


def auc_holdout_rows_needed(threshold: float, members: int, confidence: float = 0.95,
                            honest_excess: float = 0.02, power: float = 0.95) -> int | None:
    """Holdout rows at which an honest AUC (0.5 + ``honest_excess``) with ``members`` training
    rows passes "upper bound below ``threshold``" with probability ``power`` (as
    ``auc_min_rows``, with the unequal-size standard error ``auc_se``). None when even an
    unlimited holdout would not do."""
    room = threshold - 0.5 - honest_excess
    if room <= 0 or members <= 0:
        return None
    k = _z(confidence) + float(_st.norm.ppf(power))
    budget = (room / k) ** 2 - 1.0 / (12.0 * members)
    if budget <= 0:
        return None
    return math.ceil(1.0 / (12.0 * budget))


def share_min_rows(threshold: float, confidence: float = 0.95, honest_excess: float = 0.0,
                   power: float = 0.95) -> int:
    """Synthetic rows at which an honest DCR share (0.5 + ``honest_excess``, standard error at
    most 0.5/sqrt(n)) passes "upper bound below ``threshold``" with probability ``power``."""
    room = threshold - 0.5 - honest_excess
    if room <= 0:
        return MAX_AUDIT_ROWS
    k = _z(confidence) + float(_st.norm.ppf(power))
    return math.ceil((k * 0.5 / room) ** 2)
