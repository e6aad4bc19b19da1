"""Statistics that fit the sample (issue 10, "Blocks honest small tables by construction").

* German credit (500 training rows): 0 copies in 500 synthetic rows has a 95% upper bound of
  0.0077 > 0.005, so every honest release was blocked. The audit now scores more synthetic rows
  drawn from the trained model than it releases (``audit_sample_rows``, post-processing), so an
  honest stand-in passes the copy checks and a 1%-copy leak is still blocked.
* anonymeter's singling out that cannot generate its queries (a low-cardinality table) is
  "not applicable": no crash, no block, listed in the decision and the report.
* a small-holdout MIA block says it is underpowered and how to fix it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from privsynth.audit.copies import chance_copy_share
from privsynth.audit.result import AuditResult, RiskResult
from privsynth.audit.runner import run_audit
from privsynth.audit.stats import (
    TSTR_ROWS,
    auc_min_rows,
    audit_sample_rows,
    copy_rows_needed,
)
from privsynth.audit.testing import DATASETS, load_model_space
from privsynth.data.schema import ColumnSchema, TableSchema
from privsynth.gate import decide
from privsynth.policy.model import AuditPolicy, Thresholds

GERMAN = Path(DATASETS) / "german_credit.csv.gz"
COPY_ATTACKS = ["exact_copy", "unique_qi"]


def _product_of_marginals(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """An honest stand-in generator that never saw the training rows: each column resampled
    independently from the holdout."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({c: frame[c].to_numpy()[rng.integers(0, len(frame), n)]
                         for c in frame.columns})


@pytest.fixture(scope="module")
def german():
    if not GERMAN.exists():
        pytest.skip(f"{GERMAN} is absent (shared datasets not on this machine)")
    frame, schema = load_model_space("german_credit")
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(frame))
    train = frame.iloc[idx[:500]].reset_index(drop=True)
    holdout = frame.iloc[idx[500:]].reset_index(drop=True)
    return train, holdout, schema


def _copy_gate(train, holdout, synthetic, schema):
    config = AuditPolicy(attacks=COPY_ATTACKS)
    result = run_audit(train, holdout, synthetic, schema, config, seed=1)
    return decide(result, Thresholds(), dp_claim=True, require_dp_claim=True,
                  attacks_requested=COPY_ATTACKS)


def test_audit_scores_enough_rows_to_resolve_the_copy_threshold():
    config = AuditPolicy()
    n = audit_sample_rows(500, config)
    assert n >= 7_000  # 3.84 / n well below 0.005
    assert audit_sample_rows(100_000, config) == 100_000  # never fewer than released
    assert audit_sample_rows(500, AuditPolicy(audit_rows=2_000)) == 2_000


def test_audit_draws_enough_rows_for_the_tstr_floor_to_judge_the_model():
    """Where the utility floor judges TSTR on a named target, the audit draws ``TSTR_ROWS`` from
    the model: a TSTR model fitted on one 7,683-row draw scored AUC 0.44-0.60 on the same
    holdout from draw to draw, and the floor blocked honest models on a bad draw."""
    judged = AuditPolicy(target="credit")
    assert audit_sample_rows(500, judged) >= TSTR_ROWS
    assert audit_sample_rows(500, AuditPolicy()) < TSTR_ROWS  # no target: copy checks decide
    off = AuditPolicy(target="credit", utility={"tstr": False})
    assert audit_sample_rows(500, off) < TSTR_ROWS
    assert audit_sample_rows(500, AuditPolicy(target="credit", audit_rows=2_000)) == 2_000


def test_german_credit_honest_release_is_not_blocked_by_copy_rates(german):
    train, holdout, schema = german
    n_audit = audit_sample_rows(len(train), AuditPolicy(attacks=COPY_ATTACKS))
    for seed in range(3):
        synthetic = _product_of_marginals(holdout, n_audit, seed)
        decision = _copy_gate(train, holdout, synthetic, schema)
        copy_checks = [c for c in decision.checks if c.attack in COPY_ATTACKS]
        assert copy_checks and all(c.passed for c in copy_checks), decision.reasons


def test_german_credit_copy_leak_is_still_blocked(german):
    train, holdout, schema = german
    n_audit = audit_sample_rows(len(train), AuditPolicy(attacks=COPY_ATTACKS))
    synthetic = _product_of_marginals(holdout, n_audit, 5)
    k = n_audit // 100  # 1% of the generator's output copies training rows
    rng = np.random.default_rng(5)
    synthetic.iloc[:k] = train.iloc[rng.integers(0, len(train), k)].to_numpy()
    decision = _copy_gate(train, holdout, synthetic, schema)
    assert not decision.passed
    assert any(r.startswith("threshold_exceeded: exact_copy_rate") for r in decision.reasons)


def _low_cardinality(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({c: rng.choice(["yes", "no"], n).astype(object)
                         for c in ("smoker", "insured", "female")})


LOW_SCHEMA = TableSchema(tuple(
    ColumnSchema(c, "categorical", domain=("no", "yes"), domain_source="policy")
    for c in ("smoker", "insured", "female")))


def test_singling_out_without_queries_is_not_applicable_not_a_failure():
    attacks = ["exact_copy", "singling_out"]
    real = _low_cardinality(1200, 0)
    config = AuditPolicy(attacks=attacks)
    # its run time is measured by benchmarks/audit_speed.py, not asserted here (a shared CI
    # machine under load took 25 s for what takes 3 s alone)
    result = run_audit(real.iloc[:600], real.iloc[600:], _low_cardinality(8000, 1), LOW_SCHEMA,
                       config, seed=0)
    assert not result.errors, result.errors
    na = [n for n in result.not_applicable if n.attack == "singling_out"]
    assert na and "not applicable" in na[0].reason and "queries" in na[0].reason
    decision = decide(result, Thresholds(), dp_claim=True, require_dp_claim=True,
                      attacks_requested=attacks)
    assert "too_few_attacks" not in decision.reason_codes
    assert "missing_attack" not in decision.reason_codes
    assert any(s.startswith("singling_out:") for s in decision.not_applicable)
    assert decision.passed, decision.reasons
    assert result.to_dict()["not_applicable"][0]["attack"] == "singling_out"


def test_not_applicable_alone_is_no_evidence():
    from privsynth.audit.result import NotApplicable

    result = AuditResult(risks=(), not_applicable=(NotApplicable("singling_out", "no queries"),),
                         attacks_requested=("singling_out",))
    decision = decide(result, Thresholds(), dp_claim=True, require_dp_claim=True,
                      attacks_requested=["singling_out"])
    assert not decision.passed and decision.reason_codes == ("no_evidence",)


def test_small_holdout_mia_block_names_the_fix():
    assert 315 < auc_min_rows(0.6) < 400
    risk = RiskResult("mia_distance_auc", 0.556, 0.511, 0.601, 0.5, "mia_auc",
                      {"members": 315, "non_members": 315}, "mia")
    decision = decide(AuditResult(risks=(risk,), attacks_requested=("mia",)), Thresholds(),
                      dp_claim=True, require_dp_claim=True, attacks_requested=["mia"])
    assert not decision.passed
    assert "underpowered" in decision.reasons[0] and "holdout_fraction" in decision.reasons[0]


def _with_constant(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["country"] = "x"
    return out


CONST_SCHEMA = TableSchema((*LOW_SCHEMA.columns, ColumnSchema(
    "country", "categorical", domain=("x",), domain_source="policy")))


def test_inference_on_a_constant_secret_is_not_applicable():
    """A secret that never varies leaves nothing to infer (anonymeter divides by 1 - c = 0):
    before, the attack failed and blocked the release; now it is not applicable, in seconds,
    and the other secret is still attacked and gated."""
    attacks = ["exact_copy", "inference"]
    real = _with_constant(_low_cardinality(1200, 0))
    config = AuditPolicy(attacks=attacks, secrets=["country", "smoker"], anonymeter_attacks=500)
    start = time.perf_counter()
    result = run_audit(real.iloc[:600], real.iloc[600:], _with_constant(_low_cardinality(8000, 1)),
                       CONST_SCHEMA, config, seed=0)
    assert time.perf_counter() - start < 30
    assert not result.errors, result.errors
    na = [n for n in result.not_applicable if n.attack == "inference"]
    assert len(na) == 1 and "'country'" in na[0].reason and "constant" in na[0].reason
    assert [r.name for r in result.risks if r.attack == "inference"] == ["inference_smoker"]
    decision = decide(result, Thresholds(), dp_claim=True, require_dp_claim=True,
                      attacks_requested=attacks)
    assert decision.passed, decision.reasons
    assert any(s.startswith("inference:") for s in decision.not_applicable)


@pytest.mark.parametrize("aux,why", [
    ((["country"], ["smoker", "insured"]), "same values"),       # a constant half
    ((["smoker"], ["smoker"]), "two disjoint auxiliary halves"),  # no disjoint halves
])
def test_linkability_the_table_cannot_support_is_not_applicable(aux, why):
    attacks = ["exact_copy", "linkability"]
    real = _with_constant(_low_cardinality(1200, 0))
    config = AuditPolicy(attacks=attacks, linkability_aux=aux, anonymeter_attacks=500)
    result = run_audit(real.iloc[:600], real.iloc[600:], _with_constant(_low_cardinality(8000, 1)),
                       CONST_SCHEMA, config, seed=0)
    assert not result.errors, result.errors
    na = [n for n in result.not_applicable if n.attack == "linkability"]
    assert na and why in na[0].reason
    decision = decide(result, Thresholds(), dp_claim=True, require_dp_claim=True,
                      attacks_requested=attacks)
    assert decision.passed and "missing_attack" not in decision.reason_codes


def test_inference_attacks_every_row_it_can():
    """The demo's inference flake (upper bound 0.222 > 0.2 at 2,500 attacks; the half-width is
    1.96 sqrt(8/n) at control success 0.8): inference now attacks every ori row with a control
    row to pair, never fewer than asked."""
    rng = np.random.default_rng(0)
    n = 1500
    x = rng.integers(0, 5, 3 * n)
    frame = pd.DataFrame({
        "a": x.astype(str).astype(object),
        "b": rng.integers(0, 4, 3 * n).astype(str).astype(object),
        "secret": np.where(rng.random(3 * n) < 0.8, x % 2, 1 - x % 2).astype(str).astype(object),
    })
    schema = TableSchema(tuple(ColumnSchema(c, "categorical",
                                            domain=tuple(sorted(frame[c].unique())),
                                            domain_source="policy") for c in frame.columns))
    config = AuditPolicy(attacks=["inference"], secrets=["secret"], anonymeter_attacks=500)
    result = run_audit(frame.iloc[:n], frame.iloc[n:2 * n], frame.iloc[2 * n:], schema, config,
                       seed=0)
    assert not result.errors, result.errors
    r = result.risk("inference_secret")
    assert r.details["n_attacks"] == n and r.details["n_attacks_asked"] == 500
    c = r.details["control_success_rate"]
    # anonymeter's delta-method half-width over n attacks, at the control rate measured
    assert r.ci_high - r.value <= 1.96 * math.sqrt(2 * c / (n * (1 - c))) * 1.2 + 0.01


def test_four_column_finance_table_is_not_blocked_by_too_few_queries():
    """Issue 10: a 4-column finance table was blocked on every run by too_few_attacks
    (multivariate singling out built ~110 of 500 queries, in minutes)."""
    from test_audit_distance import SCHEMA as FIN_SCHEMA
    from test_audit_distance import _finance

    rng = np.random.default_rng(4)
    train, holdout, fresh = _finance(1500, rng), _finance(1500, rng), _finance(1500, rng)
    attacks = ["exact_copy", "dcr", "mia", "singling_out"]
    start = time.perf_counter()
    result = run_audit(train, holdout, fresh, FIN_SCHEMA, AuditPolicy(attacks=attacks), seed=0)
    assert time.perf_counter() - start < 60
    decision = decide(result, Thresholds(), dp_claim=True, require_dp_claim=True,
                      attacks_requested=attacks)
    assert "too_few_attacks" not in decision.reason_codes, decision.reasons
    assert decision.passed, decision.reasons


def test_preflight_power_fits_german_credit_and_a_small_holdout():
    """Before, the pre-flight warned that an honest DCR share on German credit's 500 + 500 rows
    could reach 0.581 > 0.56: the DCR bound is now one-sided with limit 0.58, and MIA scores
    every row (a 6k table with a 5% holdout has no MIA power finding either)."""
    from privsynth.policy.loader import load_policy
    from privsynth.preflight import preflight

    demo = load_policy(Path(__file__).resolve().parents[1] / "policies" / "adult-demo.yaml")
    codes = {f.code for f in preflight(demo, 1000)}
    assert not codes & {"dcr_power", "mia_power"}, codes
    small = demo.model_copy(update={"audit": demo.audit.model_copy(
        update={"holdout_fraction": 0.06})})
    codes = {f.code for f in preflight(small, 6000)}
    assert "mia_power" not in codes, codes


# --------------------------------------------------------------------------- low entropy
# health_insurance: 11 mostly binary columns. About 5-10% of an honest generator's rows equal a
# real row that is unique in the pooled data, some of them many times; counted per synthetic
# row, the labels of those few rows made the copy rates' null sd about 0.0035-0.0047 whatever
# the rows drawn, so honest releases were blocked on 11 of 12 audits (leak panel, 2026-12-04).

HEALTH = Path(DATASETS) / "health_insurance.csv.gz"
LOW_ENTROPY_ATTACKS = ["exact_copy", "unique_qi", "dcr"]


@pytest.fixture(scope="module")
def health():
    if not HEALTH.exists():
        pytest.skip(f"{HEALTH} is absent (shared datasets not on this machine)")
    return load_model_space("health_insurance")


def _three_way(frame: pd.DataFrame, seed: int):
    """Train, holdout and a third split the honest stand-in resamples: it never saw train."""
    idx = np.random.default_rng(seed).permutation(len(frame))
    k = len(frame) // 3
    return tuple(frame.iloc[idx[i * k:(i + 1) * k]].reset_index(drop=True) for i in range(3))


def _audit_size(train, holdout, first_draw, schema, config) -> int:
    """The audit's size as ``Synthesizer`` picks it: at least ``audit_sample_rows``, topped up
    from the first draw's label-free chance-copy share."""
    share = chance_copy_share(train, holdout, first_draw, list(schema.names))
    return max(len(first_draw), copy_rows_needed(share, len(train) / (len(train) + len(holdout)),
                                                 config))


def _low_entropy_gate(health, seed: int, leak: float = 0.0):
    frame, schema = health
    train, holdout, source = _three_way(frame, seed)
    config = AuditPolicy(attacks=LOW_ENTROPY_ATTACKS)
    rng = np.random.default_rng(seed)
    first = source.iloc[rng.integers(0, len(source), audit_sample_rows(len(train), config))]
    n = _audit_size(train, holdout, first.reset_index(drop=True), schema, config)
    synthetic = source.iloc[rng.integers(0, len(source), n)].reset_index(drop=True)
    k = int(leak * n)
    if k:
        synthetic.iloc[:k] = train.iloc[rng.choice(len(train), k, replace=False)].to_numpy()
    result = run_audit(train, holdout, synthetic, schema, config, seed=seed)
    decision = decide(result, Thresholds(), dp_claim=True, require_dp_claim=True,
                      attacks_requested=LOW_ENTROPY_ATTACKS)
    return n, result, decision


def test_low_entropy_table_draws_more_audit_rows(health):
    frame, schema = health
    train, holdout, source = _three_way(frame, 0)
    config = AuditPolicy(attacks=LOW_ENTROPY_ATTACKS)
    n0 = audit_sample_rows(len(train), config)
    first = source.iloc[np.random.default_rng(0).integers(0, len(source), n0)]
    share = chance_copy_share(train, holdout, first.reset_index(drop=True), list(schema.names))
    assert 0.02 < share < 0.2   # honest output hits many rare real rows by chance
    assert _audit_size(train, holdout, first, schema, config) > 2 * n0
    # a table whose honest output hits no rare row keeps the default size
    assert copy_rows_needed(0.0, 0.5, config) == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_low_entropy_honest_release_passes_the_copy_checks(health, seed):
    _, result, decision = _low_entropy_gate(health, seed)
    checks = {c.name: c for c in decision.checks}
    for name in ("exact_copy_rate", "unique_qi_copy_rate", "near_copy_rate"):
        assert checks[name].passed, decision.reasons
        # the holdout rows' hit counts show clustering: each real record counted once
        assert result.risk(name).details["counted_per"] == "real_records"


def test_low_entropy_copy_leak_is_blocked(health):
    _, _, decision = _low_entropy_gate(health, 3, leak=0.01)
    failed = {c.name for c in decision.checks if not c.passed}
    assert {"exact_copy_rate", "near_copy_rate"} <= failed, decision.reasons


def test_few_records_repeated_many_times_are_counted_per_row(german):
    """A model that emits the same few training records over and over: counting each record
    once would see 5 records in 7,683 rows (0.0007); the holdout rows show no clustering, so
    the gate counts per synthetic row (0.01) and blocks. A leak cannot switch the count."""
    train, holdout, schema = german
    n_audit = audit_sample_rows(len(train), AuditPolicy(attacks=COPY_ATTACKS))
    synthetic = _product_of_marginals(holdout, n_audit, 6)
    k = n_audit // 100
    rng = np.random.default_rng(6)
    synthetic.iloc[:k] = train.iloc[rng.choice(5, k)].to_numpy()
    config = AuditPolicy(attacks=COPY_ATTACKS)
    result = run_audit(train, holdout, synthetic, schema, config, seed=6)
    risk = result.risk("exact_copy_rate")
    assert risk.details["counted_per"] == "synthetic_rows"
    assert risk.value > 0.008
    assert risk.details["per_count"]["real_records"]["estimate"] < 0.002
    decision = _copy_gate(train, holdout, synthetic, schema)
    assert not decision.passed
    assert any(r.startswith("threshold_exceeded: exact_copy_rate") for r in decision.reasons)
