"""Identifier detection (deny by default) and pseudonyms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from privsynth.data.table import read_table
from privsynth.errors import IdentifierError
from privsynth.policy.identifiers import (
    check_identifiers,
    detect_identifiers,
    kind_by_name,
    kind_by_values,
    pseudonymize,
)
from privsynth.policy.loader import load_policy, parse_policy

ROOT = Path(__file__).resolve().parents[1]
PATIENTS = ROOT / "tests" / "fixtures" / "patients.csv"


def _leaky() -> pd.DataFrame:
    """Columns with neutral names, so only their values can give them away."""
    return pd.DataFrame({
        "contact": ["ann.lee@mail.example", "bob@x.example", "c.d@y.example", "eve@z.example"],
        "ident": ["123-45-6789", "234-56-7890", "345-67-8901", "456-78-9012"],
        "tel": ["+1 (617) 555-0101", "617-555-0102", "(617) 555 0103", "+44 20 7946 0958"],
        "pay": ["4111 1111 1111 1111", "5500-0000-0000-0004", "340000000000009",
                "6011000000000004"],
        "who": ["Ann Lee", "Bob Smith", "Carla de Souza", "Dmitri O'Neil"],
        "txt": ["patient reported mild pain after the procedure and was sent home",
                "no complaints at follow-up visit, wound healing well overall",
                "called twice about medication side effects, advised to continue",
                "referred to cardiology for further evaluation of chest pain"],
        "age": [30, 40, 50, 60],
        "sex": ["F", "M", "F", "M"],
    })


_KEEP_ALL = """\
name: t
dataset: {id: t}
privacy: {epsilon: 1}
budget: {}
columns:
  contact: {kind: categorical, domain: dp}
  ident: {kind: categorical, domain: dp}
  tel: {kind: categorical, domain: dp}
  pay: {kind: categorical, domain: dp}
  who: {kind: categorical, domain: dp}
  txt: {kind: categorical, domain: dp}
  age: {kind: integer, bounds: [0, 100]}
  sex: {kind: categorical, domain: [F, M]}
"""


def test_detects_by_value_shape():
    assert detect_identifiers(_leaky()) == {
        "contact": "email", "ident": "ssn", "tel": "phone", "pay": "card", "who": "name",
        "txt": "free_text",
    }


def test_refused_without_rules_in_one_error_naming_every_column():
    frame = _leaky()
    with pytest.raises(IdentifierError) as err:
        check_identifiers(frame, parse_policy(_KEEP_ALL))
    message = str(err.value)
    for column in ("contact", "ident", "tel", "pay", "who", "txt"):
        assert f"column '{column}'" in message
        assert f"'{column}: {{rule: drop}}'" in message
        assert f"'{column}: {{rule: pseudonymize}}'" in message
    assert "column 'age'" not in message and "column 'sex'" not in message
    assert "6" not in message  # no count of flagged columns (a fact derived from cells)
    # never a cell value
    for value in frame.drop(columns=["age", "sex"]).to_numpy().ravel():
        assert str(value) not in message
        for part in str(value).split():
            if len(part) > 3:
                assert part not in message


def test_rules_and_acknowledgement_clear_the_error():
    text = _KEEP_ALL
    for column in ("contact", "ident", "tel"):
        text = text.replace(f"  {column}: {{kind: categorical, domain: dp}}",
                            f"  {column}: {{rule: drop}}")
    text = text.replace("  pay: {kind: categorical, domain: dp}", "  pay: {rule: pseudonymize}")
    text = text.replace("  who: {kind: categorical, domain: dp}",
                        "  who: {kind: categorical, domain: dp, identifier: false}")
    with pytest.raises(IdentifierError) as err:
        check_identifiers(_leaky(), parse_policy(text))
    assert "column 'txt'" in str(err.value) and "column 'who'" not in str(err.value)
    text = text.replace("  txt: {kind: categorical, domain: dp}", "  txt: {rule: drop}")
    check_identifiers(_leaky(), parse_policy(text))


def test_declared_identifier_must_not_be_kept():
    text = _KEEP_ALL.replace("age: {kind: integer, bounds: [0, 100]}",
                             "age: {kind: integer, bounds: [0, 100], identifier: true}")
    with pytest.raises(IdentifierError, match="column 'age': the policy marks it"):
        check_identifiers(_leaky()[["age", "sex"]], parse_policy(text))


def test_by_name():
    expected = {
        "email": "email", "E-Mail": "email", "contactEmail": "email", "mobile": "phone",
        "SSN": "ssn", "passport_number": "ssn", "credit_card_number": "card", "IBAN": "iban",
        "account_number": "account", "MRN": "record", "patient_id": "record", "id": "record",
        "first_name": "name", "LastName": "name", "surname": "name", "street_address": "address",
        "zip_code": "zip", "postcode": "zip", "dob": "birth_date", "date_of_birth": "birth_date",
        "admission_date": "date", "ip_address": "ip", "website": "url", "vin": "vehicle",
        "device_serial": "device", "notes": "free_text", "home_phone": "phone",
        "patient_mrn": "record", "hospital_id": "record",
    }
    got = {name: kind_by_name(name) for name in expected}
    assert got == expected
    for harmless in ("age", "income", "education", "hours_per_week", "diagnosis", "sex",
                     "native_country", "capital_gain", "drug_name_code"):
        assert kind_by_name(harmless) is None, harmless


def test_card_needs_a_valid_luhn_and_iban_a_valid_checksum():
    rng = np.random.default_rng(0)
    random16 = pd.Series(["".join(map(str, rng.integers(0, 10, 16))) for _ in range(200)])
    assert kind_by_values(random16) != "card"  # ~10% pass Luhn by chance: below the share
    assert kind_by_values(pseudonymize("card", 200)) == "card"
    ibans = pd.Series(["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432",
                       "FR1420041010050500013M02606", "NL91ABNA0417164300"])
    assert kind_by_values(ibans) == "iban"
    broken = ibans.str.replace("89", "88").str.replace("82", "83").str.replace("14", "15")
    assert kind_by_values(broken.str.replace("91", "92")) != "iban"
    numeric_cards = pd.Series([4111111111111111, 5500000000000004, 6011000000000004] * 5)
    assert kind_by_values(numeric_cards) == "card"


def test_no_false_alarm_on_the_demo_table():
    frame = read_table(ROOT / "privsynth" / "demo" / "adult.csv.gz")
    assert detect_identifiers(frame) == {}


def test_hipaa_policy_accepts_the_patients_fixture():
    frame = read_table(PATIENTS)
    suspects = detect_identifiers(frame)
    assert {"mrn", "patient_name", "email", "phone", "ssn", "card_number", "notes",
            "zip", "birth_date"} <= set(suspects)
    check_identifiers(frame, load_policy(ROOT / "policies" / "hipaa-safe-harbor.yaml"))


@pytest.mark.parametrize("kind", ["email", "phone", "ssn", "card", "iban", "name", "record",
                                  "ip", "url", "free_text", None])
def test_pseudonyms_are_fresh_and_unlinked(kind):
    real = read_table(PATIENTS)
    fake = pseudonymize(kind, 500)
    assert len(fake) == 500 and fake.notna().all()
    assert not set(fake) & set(real.astype(str).to_numpy().ravel())
    assert fake.nunique() > 1
    again = pseudonymize(kind, 500)
    if kind not in ("ip", "phone"):  # (small number spaces: reserved ranges only)
        assert not set(fake) & set(again)  # OS entropy: a second run shares nothing
    seeded = [pseudonymize(kind, 5, np.random.default_rng(1)).tolist() for _ in range(2)]
    assert seeded[0] == seeded[1]  # a dev seed makes them reproducible
    if kind in ("email", "phone", "ssn", "card", "iban", "ip", "url"):
        assert kind_by_values(fake) == kind  # same shape as the kind they replace


def test_messages_name_column_and_kind_only_never_a_count_or_value():
    """A value-detected identifier is reported by column and pattern kind, with no digits at all
    (no count of columns or cells) and no cell value, whatever the table holds."""
    planted = {"c1": [f"user{i}@canary{i}.example" for i in range(7)],
               "c2": [f"{900 + i}-12-{3400 + i}" for i in range(7)],
               "keep": [str(i) for i in range(7)]}
    policy = parse_policy("""\
name: t
dataset: {id: t}
privacy: {epsilon: 1}
budget: {}
columns:
  c1: {kind: categorical, domain: dp}
  c2: {kind: categorical, domain: dp}
  keep: {kind: integer, bounds: [0, 100]}
""")
    with pytest.raises(IdentifierError) as err:
        check_identifiers(pd.DataFrame(planted), policy)
    message = str(err.value)
    assert "column 'c1' looks like an e-mail address" in message
    assert "column 'c2' looks like a social security" in message
    assert not any(ch.isdigit() for ch in message.replace("c1", "").replace("c2", ""))
    for value in planted["c1"] + planted["c2"]:
        assert value not in message
        assert value.split("@")[0] not in message


def test_check_identifiers_is_documented_as_a_non_dp_check_after_the_reservation():
    doc = check_identifiers.__doc__ or ""
    assert "non-DP" in doc and "after" in doc and "reservation" in doc


def test_numbers_read_as_text_are_not_records():
    """CSV cells arrive as text: a numeric code column is judged like numbers, not records."""
    codes = pd.Series([str(77516 + 7919 * i) for i in range(300)])
    assert kind_by_values(codes) is None
    cards = pd.Series(["4111111111111111", "5500000000000004", "340000000000009",
                       "6011000000000004"])
    assert kind_by_values(cards) == "card"
