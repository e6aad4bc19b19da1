"""The gate is a pure function that fails closed."""

from __future__ import annotations

import copy
import math

import pytest

from privsynth.audit.result import AuditFailure, AuditResult, RiskResult
from privsynth.gate import decide
from privsynth.policy.model import Thresholds


def _risk(name, hi, key, attack, value=None, **details):
    value = hi - 0.01 if value is None else value
    return RiskResult(name, value, value - 0.02, hi, 0.0, key, details, attack)


def _result(*risks, errors=()):
    return AuditResult(risks=tuple(risks), errors=tuple(errors))


GOOD = _result(
    _risk("exact_copy_rate", 0.001, "exact_copy_rate", "exact_copy", observed_count=0),
    _risk("dcr_share", 0.52, "dcr_share", "dcr"),
    _risk("mia_distance_auc", 0.52, "mia_auc", "mia"),
    _risk("mia_distance_tpr_at_1pct_fpr", 0.9, None, "mia"),  # reported only: never blocks
)
ATTACKS = ["exact_copy", "dcr", "mia"]


def _decide(result, *, dp_claim=True, require=True, attacks=ATTACKS, thresholds=None):
    return decide(result, thresholds or Thresholds(), dp_claim=dp_claim,
                  require_dp_claim=require, attacks_requested=attacks)


def test_good_release_passes():
    d = _decide(GOOD)
    assert d.passed and d.reasons == ()
    assert len(d.checks) == 3 and all(c.passed for c in d.checks)
    assert "passed" in d.evidence


CASES = [
    ("upper bound over threshold",
     _result(_risk("dcr_share", 0.59, "dcr_share", "dcr", value=0.57)), ["dcr"],
     "threshold_exceeded"),
    ("estimate below but upper bound over",
     _result(_risk("mia_distance_auc", 0.61, "mia_auc", "mia", value=0.55)), ["mia"],
     "threshold_exceeded"),
    ("upper bound equal to threshold",
     _result(_risk("mia_distance_auc", 0.6, "mia_auc", "mia")), ["mia"], "threshold_exceeded"),
    ("NaN upper bound",
     _result(_risk("dcr_share", math.nan, "dcr_share", "dcr", value=0.5)), ["dcr"], "nan_result"),
    ("infinite upper bound",
     _result(_risk("dcr_share", math.inf, "dcr_share", "dcr", value=0.5)), ["dcr"], "nan_result"),
    ("missing requested attack", GOOD, ATTACKS + ["singling_out"], "missing_attack"),
    ("recorded failure",
     _result(_risk("dcr_share", 0.5, "dcr_share", "dcr"),
             errors=[AuditFailure("mia", "timeout", "ran past 600 s")]), ["dcr", "mia"],
     "timeout"),
    ("unknown threshold key",
     _result(_risk("weird", 0.1, "no_such_threshold", "dcr")), ["dcr"], "unknown_threshold"),
    ("no evidence at all", _result(), [], "no_evidence"),
]


@pytest.mark.parametrize(("label", "result", "attacks", "code"), CASES, ids=[c[0] for c in CASES])
def test_blocks(label, result, attacks, code):
    d = _decide(result, attacks=attacks)
    assert not d.passed
    assert code in d.reason_codes


def test_dp_claim_required_by_default_and_can_be_waived():
    d = _decide(GOOD, dp_claim=False)
    assert not d.passed and d.reason_codes == ("no_dp_claim",)
    assert "missing DP claim alone" in d.evidence
    waived = _decide(GOOD, dp_claim=False, require=False)
    assert waived.passed and "waived" in waived.evidence


def test_zero_tolerance_threshold_counts_events():
    zero = Thresholds(exact_copy_rate=0.0)
    assert _decide(GOOD, thresholds=zero).passed
    one_copy = _result(_risk("exact_copy_rate", 0.002, "exact_copy_rate", "exact_copy",
                             observed_count=1))
    d = _decide(one_copy, attacks=["exact_copy"], thresholds=zero)
    assert not d.passed and "threshold_exceeded" in d.reason_codes


def test_decide_is_pure():
    before = copy.deepcopy(GOOD)
    a = _decide(GOOD)
    b = _decide(GOOD)
    assert a == b
    assert before == GOOD


def test_decision_to_dict_is_json_safe():
    import json

    d = _decide(_result(_risk("dcr_share", math.nan, "dcr_share", "dcr", value=0.5)),
                attacks=["dcr"])
    text = json.dumps(d.to_dict(), allow_nan=False)
    assert '"decision": "blocked"' in text


def test_null_excess_is_subtracted_and_never_loosens_below_nominal():
    """The rule is ``upper - max(0, null_mean - null_nominal) < threshold``: a statistic whose
    null leans above its nominal value (here by 0.03) is judged on its effect; a null below the
    nominal value changes nothing; a risk without a null is judged on its upper bound."""
    leaning = _risk("dcr_share", 0.60, "dcr_share", "dcr", value=0.57, null_mean=0.53,
                    null_nominal=0.5)
    d = _decide(_result(leaning), attacks=["dcr"])
    assert d.passed and d.checks[0].null_excess == pytest.approx(0.03)
    low = _risk("dcr_share", 0.60, "dcr_share", "dcr", value=0.57, null_mean=0.47,
                null_nominal=0.5)
    d = _decide(_result(low), attacks=["dcr"])
    assert not d.passed and d.checks[0].null_excess == 0.0
    d = _decide(_result(_risk("dcr_share", 0.60, "dcr_share", "dcr", value=0.57,
                              null_mean=0.53)), attacks=["dcr"])  # no nominal: no excess
    assert not d.passed
    shifted = _risk("dcr_share", 0.62, "dcr_share", "dcr", value=0.59, null_mean=0.53,
                    null_nominal=0.5)
    d = _decide(_result(shifted), attacks=["dcr"])
    assert not d.passed and "less null excess 0.03" in d.reasons[0]
