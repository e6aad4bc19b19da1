"""Fault injection: every way an attack can fail blocks the release with its reason code."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest

from privsynth.audit import runner
from privsynth.audit.anonymeter import TooFewAttacks
from privsynth.audit.result import RiskResult
from privsynth.audit.runner import run_audit
from privsynth.data.schema import ColumnSchema, TableSchema
from privsynth.gate import decide
from privsynth.policy.model import AuditPolicy, Thresholds

SCHEMA = TableSchema((
    ColumnSchema("age", "integer", bounds=(17.0, 90.0)),
    ColumnSchema("income", "numeric", bounds=(0.0, 1e5)),
    ColumnSchema("city", "categorical", domain=("a", "b", "c")),
))


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "age": rng.integers(17, 91, n).astype(float),
        "income": rng.uniform(0, 1e5, n),
        "city": rng.choice(["a", "b", "c"], n).astype(object),
    })


def _ok(ctx):
    return [RiskResult("dcr_share", 0.5, 0.45, 0.52, 0.5, "dcr_share", {}, "dcr")]


def _raise(ctx):
    raise ValueError("boom with a cell value CANARY-XYZ")


def _sleep(ctx):
    time.sleep(3)
    return _ok(ctx)


def _nan(ctx):
    return [RiskResult("dcr_share", math.nan, math.nan, math.nan, 0.5, "dcr_share", {}, "dcr")]


def _few(ctx):
    return [RiskResult("dcr_share", 0.5, 0.45, 0.52, 0.5, "dcr_share",
                       {"n_attacks": 120, "n_attacks_requested": 500}, "dcr")]


def _few_anonymeter(ctx):
    raise TooFewAttacks(37, 500, "singling out (univariate)")


def _empty(ctx):
    return []


FAULTS = [
    ("raise", _raise, {}, "attack_error"),
    ("timeout", _sleep, {"timeout_s": 0.3}, "timeout"),
    ("nan", _nan, {}, "nan_result"),
    ("too_few_attacks", _few, {}, "too_few_attacks"),
    ("too_few_anonymeter", _few_anonymeter, {}, "too_few_attacks"),
    ("no_results", _empty, {}, "attack_error"),
]


@pytest.mark.parametrize(("label", "fault", "extra", "code"), FAULTS, ids=[f[0] for f in FAULTS])
def test_attack_fault_blocks_with_reason(monkeypatch, label, fault, extra, code):
    monkeypatch.setitem(runner.ATTACKS, "dcr", fault)
    monkeypatch.setitem(runner.ATTACKS, "exact_copy", _ok_copy)
    config = AuditPolicy(attacks=["exact_copy", "dcr"], **extra)
    result = run_audit(_frame(200, 0), _frame(200, 1), _frame(200, 2), SCHEMA, config, seed=0)
    assert [(e.attack, e.reason_code) for e in result.errors] == [("dcr", code)]
    assert "CANARY" not in repr(result.to_dict())  # third-party messages are withheld
    decision = decide(result, Thresholds(), dp_claim=True, require_dp_claim=True,
                      attacks_requested=config.attacks)
    assert not decision.passed
    assert code in decision.reason_codes


def _ok_copy(ctx):
    return [RiskResult("exact_copy_rate", 0.0, -0.001, 0.001, 0.0, "exact_copy_rate",
                       {"observed_count": 0}, "exact_copy")]


def _drop_col(f):
    return f.drop(columns=["city"])


def _extra_col(f):
    return f.assign(extra=1.0)


def _text_in_numeric(f):
    return f.assign(age=f["age"].astype(object).where(f.index > 0, "seventeen"))


TABLE_FAULTS = [
    ("empty_train", "train", lambda f: f.iloc[:0], "empty_table"),
    ("empty_holdout", "holdout", lambda f: f.iloc[:0], "empty_table"),
    ("empty_synthetic", "synthetic", lambda f: f.iloc[:0], "empty_table"),
    ("missing_column", "synthetic", _drop_col, "schema_mismatch"),
    ("extra_column", "train", _extra_col, "schema_mismatch"),
    ("wrong_type", "synthetic", _text_in_numeric, "schema_mismatch"),
]


@pytest.mark.parametrize(("label", "which", "mutate", "code"), TABLE_FAULTS,
                         ids=[f[0] for f in TABLE_FAULTS])
def test_table_fault_blocks_with_reason(label, which, mutate, code):
    frames = {"train": _frame(150, 0), "holdout": _frame(150, 1), "synthetic": _frame(150, 2)}
    frames[which] = mutate(frames[which])
    config = AuditPolicy(attacks=["exact_copy", "dcr", "mia"])
    result = run_audit(frames["train"], frames["holdout"], frames["synthetic"], SCHEMA, config,
                       seed=0)
    assert result.errors and {e.reason_code for e in result.errors} == {code}
    decision = decide(result, Thresholds(), dp_claim=True, require_dp_claim=True,
                      attacks_requested=config.attacks)
    assert not decision.passed and code in decision.reason_codes


def test_missing_config_blocks():
    config = AuditPolicy(attacks=["linkability", "inference"])
    result = run_audit(_frame(150, 0), _frame(150, 1), _frame(150, 2), SCHEMA, config, seed=0)
    assert {(e.attack, e.reason_code) for e in result.errors} == {
        ("linkability", "missing_config"), ("inference", "missing_config")}
    decision = decide(result, Thresholds(), dp_claim=True, require_dp_claim=True,
                      attacks_requested=config.attacks)
    assert not decision.passed


def test_requested_attack_that_never_ran_blocks(monkeypatch):
    monkeypatch.setitem(runner.ATTACKS, "dcr", _ok)
    config = AuditPolicy(attacks=["dcr"])
    result = run_audit(_frame(150, 0), _frame(150, 1), _frame(150, 2), SCHEMA, config, seed=0)
    decision = decide(result, Thresholds(), dp_claim=True, require_dp_claim=True,
                      attacks_requested=["dcr", "mia"])
    assert not decision.passed and "missing_attack" in decision.reason_codes


def test_real_attacks_on_small_synthetic_table_all_run():
    config = AuditPolicy(attacks=["exact_copy", "dcr", "mia", "unique_qi"])
    result = run_audit(_frame(300, 0), _frame(300, 1), _frame(300, 2), SCHEMA, config, seed=0)
    assert result.errors == ()
    assert {r.attack for r in result.risks} == set(config.attacks)


def test_every_attack_runs_on_all_column_kinds_with_missing_values():
    schema = TableSchema((*SCHEMA.columns,
                          ColumnSchema("seen", "datetime", bounds=(17000.0, 20000.0)),
                          ColumnSchema("member", "boolean")))

    def frame(n, seed):
        rng = np.random.default_rng(seed)
        f = _frame(n, seed)
        f["seen"] = rng.uniform(17000, 20000, n).round()
        f.loc[rng.random(n) < 0.1, "seen"] = np.nan
        f["member"] = rng.choice(np.array(["True", "False", None], dtype=object), n)
        f.loc[rng.random(n) < 0.1, "city"] = None
        return f

    config = AuditPolicy(
        attacks=["exact_copy", "dcr", "mia", "unique_qi", "singling_out", "linkability",
                 "inference"],
        quasi_identifiers=["age", "city"], secrets=["income", "member"],
        linkability_aux=(["age", "city"], ["seen", "member"]), target="member",
        anonymeter_attacks=50, singling_out_attacks=50)
    result = run_audit(frame(400, 0), frame(400, 1), frame(400, 2), schema, config, seed=0)
    assert result.errors == (), result.errors
    assert {r.attack for r in result.risks} == set(config.attacks)
    assert {"inference_income", "inference_member"} <= {r.name for r in result.risks}
    assert "tstr" in result.utility and "error" not in result.utility
    marg = result.figures["marginals"]["member"]
    assert set(marg["labels"]) <= {"True", "False", "(missing)"}
