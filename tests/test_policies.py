"""Shipped policies load; broken policies give the expected message at the right line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from privsynth.errors import PolicyError
from privsynth.policy.export import SCHEMA_PATH, schema_text
from privsynth.policy.loader import load_policy, parse_policy

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "policies").glob("*.yaml"))

BASE = """\
version: 1
name: base
dataset:
  id: base-data
privacy:
  epsilon: 1.0
  delta: 1.0e-6
budget:
  ledger: null
columns:
  age: {kind: integer, bounds: [0, 120]}
  sex: {kind: categorical, domain: [F, M]}
  email: {rule: drop}
audit:
  quasi_identifiers: [age, sex]
"""


def test_the_expected_policies_ship():
    names = {p.stem for p in SHIPPED}
    assert {"hipaa-safe-harbor", "gdpr-strict", "finance", "research-sandbox"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_policy_loads_and_is_commented(path):
    policy = load_policy(path)
    assert policy.name == path.stem or path.stem == "adult-demo"
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    commented = sum("#" in ln for ln in lines)
    assert lines[0].startswith("#")
    assert commented >= len(lines) // 3 or any("note:" in ln for ln in lines)


def test_hipaa_policy_covers_safe_harbor():
    policy = load_policy(ROOT / "policies" / "hipaa-safe-harbor.yaml")
    cols = policy.columns
    for dropped in ("mrn", "patient_name", "street_address", "city", "phone", "email", "ssn",
                    "health_plan_id", "card_number", "device_serial", "ip_address", "notes"):
        assert cols[dropped].rule == "drop", dropped
    assert cols["zip"].generalize.to == "zip3"
    for date in ("birth_date", "admission_date", "discharge_date"):
        assert cols[date].generalize.to == "year"
    assert cols["age"].generalize.to == "topcode" and cols["age"].generalize.above == 90
    assert cols["birth_date"].bounds[0] == 1934  # born 1933 or earlier = 90+: one group


def test_gdpr_policy_requires_all_three_risks():
    policy = load_policy(ROOT / "policies" / "gdpr-strict.yaml")
    assert {"singling_out", "linkability", "inference"} <= set(policy.audit.attacks)
    assert policy.privacy.epsilon <= 1.0
    assert policy.audit.thresholds.singling_out_risk <= 0.05


def test_finance_policy_removes_payment_identifiers():
    cols = load_policy(ROOT / "policies" / "finance.yaml").columns
    assert cols["card_number"].rule == "pseudonymize"
    assert cols["iban"].rule == "pseudonymize"
    assert cols["account_number"].rule == "drop"


def _edit(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new)


BROKEN = [
    ("unknown key", _edit("  delta: 1.0e-6\n", "  delta: 1.0e-6\n  epsilonn: 2\n"),
     8, "privacy.epsilonn", "remove this key or check its spelling"),
    ("bad kind", _edit("{kind: integer, bounds", "{kind: number, bounds"),
     11, "columns.age.kind", "use one of"),
    ("total in a policy", _edit("  ledger: null\n", "  total_epsilon: 0.5\n"),
     9, "budget.total_epsilon is no longer read from a policy", None),
    ("missing bounds", _edit("{kind: integer, bounds: [0, 120]}", "{kind: integer}"),
     11, "columns.age", "needs 'bounds: [low, high]' or 'bounds: dp'"),
    ("missing domain", _edit("{kind: categorical, domain: [F, M]}", "{kind: categorical}"),
     12, "columns.sex", "needs 'domain: [...]' or 'domain: dp'"),
    ("yaml syntax", _edit("  id: base-data\n", "  id: [base-data\n"),
     5, "fix the YAML syntax", None),
    ("unknown audit column", _edit("quasi_identifiers: [age, sex]",
                                   "quasi_identifiers: [age, zip]"),
     15, "audit names column(s) ['zip']", None),
    ("audit names a dropped column", _edit("quasi_identifiers: [age, sex]",
                                           "quasi_identifiers: [age, email]"),
     15, "['email']", None),
    ("negative epsilon", _edit("epsilon: 1.0\n", "epsilon: -1\n"),
     6, "privacy.epsilon", "use a larger value"),
    ("bounds reversed", _edit("bounds: [0, 120]", "bounds: [120, 0]"),
     11, "low < high", None),
    ("missing dataset", _edit("dataset:\n  id: base-data\n", ""),
     1, "dataset", "add this key"),
    ("bad rule", _edit("email: {rule: drop}", "email: {rule: delete}"),
     13, "columns.email.rule", "use one of"),
    ("delta too large", _edit("delta: 1.0e-6", "delta: 0.5"),
     7, "privacy.delta", "use a smaller value"),
    ("generalize without spec", _edit("email: {rule: drop}",
                                      "email: {rule: generalize, kind: categorical, domain: dp}"),
     13, "needs a 'generalize:' block", None),
    ("bad attack name", _edit("  quasi_identifiers: [age, sex]\n",
                              "  quasi_identifiers: [age, sex]\n  attacks: [dcr, guess]\n"),
     16, "audit.attacks.1", "use one of"),
]


@pytest.mark.parametrize(("case", "text", "line", "message", "fix"), BROKEN,
                         ids=[b[0] for b in BROKEN])
def test_broken_policies(case, text, line, message, fix):
    with pytest.raises(PolicyError) as err:
        parse_policy(text, source="broken.yaml")
    problems = err.value.problems
    hit = [p for p in problems if message in p]
    assert hit, f"{case}: {problems}"
    assert hit[0].startswith(f"line {line}:"), f"{case}: {hit[0]}"
    if fix:
        assert fix in hit[0], f"{case}: {hit[0]}"
    assert str(err.value).startswith("broken.yaml:")


def test_all_problems_reported_at_once():
    text = _edit("{kind: integer, bounds", "{kind: number, bounds")
    text = text.replace("  delta: 1.0e-6\n", "  delta: 1.0e-6\n  typo: 1\n")
    text = text.replace("email: {rule: drop}", "email: {rule: delete}")
    with pytest.raises(PolicyError) as err:
        parse_policy(text)
    assert len(err.value.problems) == 3


def test_the_shipped_json_schema_is_current():
    assert SCHEMA_PATH.exists()
    assert SCHEMA_PATH.read_text() == schema_text(), (
        "privsynth/schemas/policy.schema.json is stale: run `python -m privsynth.policy.export`"
    )
    schema = json.loads(schema_text())
    assert schema["additionalProperties"] is False
    assert {"name", "dataset", "privacy", "columns"} <= set(schema["required"])


# --------------------------------------------------------------------- the default schedule
def _plan(policy_text: str, n_public: int):
    from privsynth.generators.dp_sgd import DPSGDConfig, DPSGDPlan
    from privsynth.policy.loader import parse_policy

    policy = parse_policy(policy_text, "schedule.yaml")
    schedule = policy.generator.schedule(n_public)
    config = DPSGDConfig(epsilon=0.9, delta=1e-6, expected_batch_size=schedule.batch_size,
                         epochs=schedule.epochs, max_grad_norm=1.0, learning_rate=0.01,
                         public_rows=n_public)
    return schedule, DPSGDPlan.calibrate(config, n_public)


_BARE = """
version: 1
name: bare
dataset: {id: bare}
privacy: {epsilon: 1.0, delta: 1.0e-6}
columns: {x: {kind: numeric, bounds: [0, 1]}}
"""


@pytest.mark.parametrize("n_public", [500, 2_500, 6_000, 24_421])
@pytest.mark.parametrize("backend", ["vae", "gan"])
def test_a_policy_without_a_schedule_gets_enough_steps_at_any_size(n_public, backend):
    """Issue 11: the defaults were 30 epochs at E[B] = 4,096 whatever the size (tuned on Adult):
    a 500-row table got 30 full-batch steps and a 6k-row one 44. The rule gives every size the
    backend's steps at a sampling rate that keeps Poisson amplification working."""
    from privsynth.generators.schedule import RATE, STEPS

    text = _BARE + f"generator: {{backend: {backend}}}\n"
    schedule, plan = _plan(text, n_public)
    assert schedule.source == "auto"
    assert plan.steps == STEPS[backend]
    assert plan.sample_rate == pytest.approx(max(RATE[backend], 16 / n_public), rel=0.01)


def test_the_schedule_depends_on_public_facts_only():
    """The rule reads N̂ and the backend: nothing else of the table (two calls, same answer;
    the function has no access to data)."""
    import inspect

    from privsynth.generators.schedule import resolve_schedule

    assert list(inspect.signature(resolve_schedule).parameters) == [
        "batch_size", "epochs", "n_public", "backend"]
    assert resolve_schedule("auto", "auto", 6000, "vae") == resolve_schedule(
        "auto", "auto", 6000, "vae")


def test_numbers_in_the_policy_override_the_rule():
    from privsynth.generators.schedule import STEPS

    fixed, plan = _plan(_BARE + "generator: {epochs: 30, batch_size: 4096}\n", 24_421)
    assert (fixed.batch_size, fixed.epochs, fixed.source) == (4096, 30.0, "policy")
    assert plan.steps == 179  # Adult's tuned schedule, kept where a policy says so
    batch_only, plan = _plan(_BARE + "generator: {batch_size: 64}\n", 500)
    assert batch_only.batch_size == 64 and plan.steps == STEPS["vae"]
    assert batch_only.source == "policy batch, auto epochs"


def test_auto_is_the_only_word_a_schedule_accepts():
    from privsynth.errors import PolicyError
    from privsynth.policy.loader import parse_policy

    with pytest.raises(PolicyError, match="epochs"):
        parse_policy(_BARE + "generator: {epochs: automatic}\n", "bad.yaml")


def test_errors_survive_a_process_boundary():
    """A policy error raised in a worker process (multiprocessing pickles it) keeps its list of
    problems; it used to come back as one problem per character of its message."""
    import pickle

    from privsynth.errors import BudgetExceededError, PreflightRefused

    for error in (PolicyError(["line 6: generator.schedule: unknown key"], "x.yaml"),
                  PreflightRefused(["[dpsgd_noise] too noisy"]),
                  BudgetExceededError("adult", 2.0, 0.5)):
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error) and str(back) == str(error)
    assert pickle.loads(pickle.dumps(PolicyError(["a", "b"]))).problems == ["a", "b"]
