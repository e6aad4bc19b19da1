"""Near-copies are blocked (issue 10, "Misses near-copies").

An honest release (a fresh, disjoint sample of the same real table) with 1% of its rows replaced
by training rows whose every number moved by 0.5-1% passed the gate on every table before: the
exact-copy checks hash whole rows, and DCR share and MIA AUC are means over all rows that a 1%
leak barely moves. The per-row near-copy test (``copies.near_copies``, run by the ``dcr`` attack,
gated by ``near_copy_rate``) blocks it; the same release without the planted rows passes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from privsynth.audit.runner import run_audit
from privsynth.audit.testing import DATASETS, load_model_space, three_way_split
from privsynth.gate import decide
from privsynth.policy.model import AuditPolicy, Thresholds

ATTACKS = ["exact_copy", "dcr", "mia", "unique_qi"]
# table -> rows per split (train, holdout, fresh): three sizes
TABLES = {"telecom_churn": 1500, "lending_club": 3000, "adult": 4000}


def _table(name):
    if not (DATASETS / f"{name}.csv.gz").exists():
        pytest.skip(f"{name} is not in {DATASETS}")
    return load_model_space(name)


def plant_near_copies(fresh, train, schema, share, rng):
    """Replace ``share`` of ``fresh`` by training rows with every number moved by 0.5-1%."""
    out = fresh.copy()
    k = int(round(share * len(out)))
    pos = rng.choice(len(out), k, replace=False)
    rows = train.iloc[rng.choice(len(train), k, replace=False)].reset_index(drop=True)
    for col in schema.columns:
        if col.is_numeric:
            move = rng.uniform(0.005, 0.01, k) * rng.choice([-1.0, 1.0], k)
            rows[col.name] = rows[col.name] * (1.0 + move)
    for c in out.columns:
        out.loc[pos, c] = rows[c].to_numpy()
    return out


def _gate(train, holdout, synthetic, schema, seed):
    result = run_audit(train, holdout, synthetic, schema, AuditPolicy(attacks=ATTACKS),
                       seed=seed)
    decision = decide(result, Thresholds(), dp_claim=True, require_dp_claim=True,
                      attacks_requested=ATTACKS)
    return result, decision


@pytest.mark.parametrize("name", list(TABLES))
def test_one_percent_near_copies_are_blocked_and_honest_passes(name):
    frame, schema = _table(name)
    n = TABLES[name]
    train, holdout, fresh = three_way_split(frame, n, 3)
    planted = plant_near_copies(fresh, train, schema, 0.01, np.random.default_rng(3))
    assert isinstance(planted, pd.DataFrame)

    result, decision = _gate(train, holdout, planted, schema, 3)
    assert not decision.passed
    failed = {c.name for c in decision.checks if not c.passed}
    assert "near_copy_rate" in failed, decision.reasons
    # the old gated figures miss it: no exact copy of a rare row, DCR share and AUC near 0.5
    assert "exact_copy_rate" not in failed

    result, decision = _gate(train, holdout, fresh, schema, 3)
    assert decision.passed, decision.reasons
    risk = result.risk("near_copy_rate")
    assert risk.ci_high < Thresholds().near_copy_rate
