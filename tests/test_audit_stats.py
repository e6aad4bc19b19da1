"""Intervals and mixed-type distances against slow, obvious reference implementations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from privsynth.audit.distance import fit_embedding, nearest_neighbors, row_hashes
from privsynth.audit.stats import (
    auc_ci_delong,
    clopper_pearson_ci,
    newcombe_diff_ci,
    paired_excess_ci,
    roc_auc,
    tpr_at_fpr,
    wilson_ci,
)
from privsynth.data.schema import ColumnSchema, TableSchema


def test_wilson_known_values():
    low, high = wilson_ci(0, 100)
    assert low == pytest.approx(0, abs=1e-12) and high == pytest.approx(0.03699, abs=1e-4)
    low, high = wilson_ci(50, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)


def test_clopper_pearson_matches_scipy():
    res = stats.binomtest(7, 60).proportion_ci(0.95, method="exact")
    assert clopper_pearson_ci(7, 60) == pytest.approx((res.low, res.high))


def test_newcombe_contains_zero_for_equal_rates_and_not_for_copies():
    d, low, high = newcombe_diff_ci(0, 2000, 0, 2000)
    assert d == 0 and low < 0 < high < 0.005
    d, low, high = newcombe_diff_ci(20, 2000, 0, 2000)
    assert low > 0.005


def test_paired_excess_ci():
    est, low, high = paired_excess_ci(0, 0, 2000)
    assert est == 0 and high == pytest.approx(wilson_ci(0, 2000)[1]) and high < 0.002
    est, low, high = paired_excess_ci(20, 0, 2000)  # 1% copies, no natural matches
    assert est == 0.01 and 0 < low < 0.01 < high and high > 0.005
    est, low, high = paired_excess_ci(200, 200, 3000)  # many natural matches cancel
    assert est == 0 and low < 0 < high
    # coverage under the null: discordant rows split evenly at random
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(300):
        m = rng.binomial(3000, 0.05)
        a = rng.binomial(m, 0.5)
        _, lo, hi = paired_excess_ci(a, m - a, 3000)
        covered += lo <= 0 <= hi
    assert covered >= 285


def test_auc_matches_brute_force_and_delong_covers():
    rng = np.random.default_rng(0)
    m, h = rng.normal(0.3, 1, 300).round(1), rng.normal(0, 1, 250).round(1)
    brute = np.mean([(a > b) + 0.5 * (a == b) for a, b in itertools.product(m, h)])
    assert roc_auc(m, h) == pytest.approx(brute)
    auc, low, high = auc_ci_delong(m, h)
    assert auc == pytest.approx(brute) and low < auc < high
    # coverage of the null: AUC 0.5 inside the interval in ~95% of draws
    hits = 0
    for s in range(200):
        r = np.random.default_rng(s)
        _, lo, hi = auc_ci_delong(r.normal(size=200), r.normal(size=200))
        hits += lo <= 0.5 <= hi
    assert hits >= 180


def test_tpr_at_fpr():
    h = np.arange(100.0)
    m = np.arange(100.0) + 50
    assert tpr_at_fpr(m, h, 0.1) == pytest.approx(0.6)  # threshold 89: members 90..149


SCHEMA = TableSchema((
    ColumnSchema("x", "numeric", bounds=(0.0, 10.0)),
    ColumnSchema("d", "datetime", bounds=(0.0, 365.0)),
    ColumnSchema("c", "categorical", domain=("a", "b")),
    ColumnSchema("flag", "boolean"),
))


def _slow_distance(r1, r2, real) -> float:
    """Reference: numerics at their mid-rank CDF among the pooled real rows ``real``."""
    total = 0.0

    def rank(name, v):
        vals = real[name].dropna().to_numpy()
        uniq = np.unique(vals)
        mids = np.array([(np.sum(vals < u) + 0.5 * np.sum(vals == u)) / vals.size for u in uniq])
        mids = (mids - mids[0]) / (mids[-1] - mids[0])
        return float(np.interp(v, uniq, mids))

    for name in ("x", "d"):
        a, b = r1[name], r2[name]
        if math.isnan(a) and math.isnan(b):
            continue
        if math.isnan(a) or math.isnan(b):
            v = a if math.isnan(b) else b
            total += (rank(name, v) - 0.5) ** 2 + 0.25
        else:
            total += (rank(name, a) - rank(name, b)) ** 2
    for name in ("c", "flag"):
        total += 0.0 if r1[name] == r2[name] else 1.0
    return math.sqrt(total)


def _frame(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 11, n)
    x[rng.random(n) < 0.2] = np.nan
    d = rng.uniform(0, 365, n)
    d[rng.random(n) < 0.1] = np.nan
    c = rng.choice(np.array(["a", "b", "zz", None], dtype=object), n)
    flag = rng.choice(np.array(["True", "False"], dtype=object), n)
    return pd.DataFrame({"x": x, "d": d, "c": c, "flag": flag})


def test_mixed_distance_matches_slow_reference():
    q, r = _frame(40, 1), _frame(60, 2)
    emb = fit_embedding(SCHEMA, q, r)
    dist, idx = nearest_neighbors(emb.transform(q), emb.transform(r), 3)
    for i in range(len(q)):
        slow = sorted(_slow_distance(q.iloc[i], r.iloc[j], pd.concat([q, r]))
                      for j in range(len(r)))
        assert dist[i] == pytest.approx(slow[:3], abs=1e-9)


def test_missing_matches_missing_and_copies_are_at_zero():
    r = _frame(50, 3)
    emb = fit_embedding(SCHEMA, r)
    dist, idx = nearest_neighbors(emb.transform(r), emb.transform(r), 1)
    assert np.all(dist[:, 0] == 0)
    h1, h2 = row_hashes(r, SCHEMA.names), row_hashes(r.copy(), SCHEMA.names)
    assert np.array_equal(h1, h2)
    r2 = r.copy()
    r2.loc[0, "c"] = "b" if r.loc[0, "c"] != "b" else "a"
    assert row_hashes(r2, SCHEMA.names)[0] != h1[0]
