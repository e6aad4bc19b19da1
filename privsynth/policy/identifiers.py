"""Identifier detection, deny by default, and fresh pseudonyms for the output.

A column is *suspected* to identify people when its **name** says so (``email``, ``ssn``, ``mrn``,
``first_name``, ``zip`` ...) or when most of a sample of its **values** have an identifier's shape:
e-mail address, phone number, US SSN, payment card number (Luhn check), IBAN (mod-97 check), IP
address, URL, record/account number (distinct codes with digits), person name (distinct
"Firstname Lastname" values) or free text (long, distinct, many words).

:func:`check_identifiers` refuses a policy that would let a suspected identifier reach the
generator: the column must be dropped, pseudonymized (the output gets fresh random values with no
link to the real ones), generalized where that is the recognised fix (ZIP to three digits, dates to
year), or explicitly acknowledged by a human with ``identifier: false``. Every offending column is
named in one error, with the rule to add. A message names the column and the kind of pattern
only: never a cell value, never a count.

Detection by value reads a sample of each column's cells to decide a *label* for the column. That
is **not** differentially private: whether a column is refused depends on its values. It is a
safety check, run after the release's budget reservation (so a refused run is charged like any
other), and what it reveals is limited to "column X looks like kind K". The label is never
published and is used only to refuse a run; a pseudonym's shape comes from the column's name.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from privsynth.errors import IdentifierError
from privsynth.policy.model import ColumnPolicy, Policy

SAMPLE_SIZE = 1000
MATCH_SHARE = 0.6  # share of sampled values that must have the shape


@dataclass(frozen=True)
class IdentifierKind:
    """One kind of identifier: how it is described, and which generalizations fix it."""

    label: str
    generalize_ok: frozenset[str] = frozenset()

    @property
    def direct(self) -> bool:
        """Direct identifiers can only be dropped or pseudonymized."""
        return not self.generalize_ok


KINDS: dict[str, IdentifierKind] = {
    "email": IdentifierKind("an e-mail address"),
    "phone": IdentifierKind("a phone or fax number"),
    "ssn": IdentifierKind("a social security or national id number"),
    "card": IdentifierKind("a payment card number"),
    "iban": IdentifierKind("an IBAN or bank code"),
    "account": IdentifierKind("an account number"),
    "record": IdentifierKind("a record, member or customer number"),
    "name": IdentifierKind("a person's name"),
    "address": IdentifierKind("a street address or small geographic area",
                              frozenset({"map"})),
    "zip": IdentifierKind("a ZIP or postal code", frozenset({"zip3", "map"})),
    "birth_date": IdentifierKind("a date of birth", frozenset({"year"})),
    "date": IdentifierKind("a date of an event in a person's life", frozenset({"year", "month"})),
    "ip": IdentifierKind("an IP or MAC address"),
    "url": IdentifierKind("a web address"),
    "device": IdentifierKind("a device or serial number"),
    "vehicle": IdentifierKind("a vehicle identifier or licence plate"),
    "biometric": IdentifierKind("a photo or biometric identifier"),
    "free_text": IdentifierKind("free text (may contain any identifier)"),
}

_PERSON = r"(patient|person|customer|client|user|first|last|full|given|family|maiden|middle|" \
          r"holder|account_holder|employee|member|contact|mother|father|sur|nick|display|sub)"
_NAME_RULES: list[tuple[str, str]] = [
    ("email", r"(e_?mail|mail|mail_?address|email_?address)"),
    ("phone", r"(phone|phone_?n(o|um|umber)|telephone|tel|mobile|cell|cellphone|fax)"),
    ("ssn", r"(ssn|social_security(_n(o|um|umber))?|sin|nino|national_id|tax_?id|tin|"
            r"passport(_n(o|um|umber))?|drivers?_licen[cs]e(_n(o|um|umber))?|"
            r"licen[cs]e_n(o|um|umber))"),
    ("card", r"(card|card_?n(o|um|umber)|credit_?card(_n(o|um|umber))?|cc_?n(o|um|umber)|ccn|"
             r"pan|debit_?card)"),
    ("iban", r"(iban|bic|swift|swift_?code)"),
    ("account", r"(account|acct|account_?n(o|um|umber)|acct_?n(o|um|umber)|bank_?account|"
                r"routing_?n(o|um|umber)|sort_?code)"),
    ("record", r"(mrn|medical_?record(_n(o|um|umber))?|record_?(n(o|um|umber)|id)|patient_?id|"
               r"member_?id|beneficiary(_id)?|health_?plan(_id|_n(o|um|umber))?|"
               r"policy_?n(o|um|umber)|certificate(_n(o|um|umber))?|customer_?id|client_?id|"
               r"user_?id|person_?id|employee_?id|uuid|guid|id)"),
    ("name", rf"({_PERSON}_?name|name|surname|username|initials)"),
    ("address", r"(address|street|street_?address|home_?address|addr|city|town|county|"
                r"latitude|longitude|lat|lon|lng|coordinates|geo_?location)"),
    ("zip", r"(zip|zip_?code|zip5|postal|postal_?code|post_?code)"),
    ("birth_date", r"(dob|birth|birth_?date|date_of_birth|birthday|birth_?year)"),
    ("date", r"((admission|admit|admitted|discharge|discharged|death|deceased|dod|visit|"
             r"service|procedure|encounter)(_?date)?)"),
    ("ip", r"(ip|ip_?address|ipv4|ipv6|mac|mac_?address)"),
    ("url", r"(url|website|homepage|web_?page)"),
    ("device", r"(device_?id|serial|serial_?n(o|um|umber)|imei|udid)"),
    ("vehicle", r"(vin|licen[cs]e_?plate|plate|plate_?n(o|um|umber))"),
    ("biometric", r"(photo|image|face|fingerprint|voiceprint|retina|biometric)"),
    ("free_text", r"(notes?|comments?|free_?text|remarks?|narrative|message|body)"),
]
_NAME_PATTERNS = [(kind, re.compile(rf"^{rx}$")) for kind, rx in _NAME_RULES]
# Kinds whose word is an identifier even after a prefix (``contact_email``, ``patient_mrn``);
# not ``name`` (``drug_name``) nor ``date`` (``report_date``).
_TAIL_KINDS = frozenset({"email", "phone", "ssn", "card", "iban", "record", "address", "zip",
                         "birth_date", "ip", "url", "device", "vehicle"})

_PLAIN_NUMBER = r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?"
_EMAIL = r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
_SSN = r"\d{3}-\d{2}-\d{4}"
_PHONE = r"\+?\(?\d[\d ().-]{5,18}\d"
_ISO_DATE = r"\d{4}-\d{2}-\d{2}([ T].*)?"
_CARD = r"\d(?:[ -]?\d){12,18}"
_IBAN = r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}"
_IP = r"(\d{1,3}\.){3}\d{1,3}|([0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}"
_URL = r"(https?://|www\.)\S+"
_RECORD = r"[A-Za-z]{0,5}[-_/#]?\d{4,}[-_/]?[A-Za-z0-9]*|[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}" \
          r"[0-9a-fA-F]{12}"
_PERSON_NAME = r"[A-Z][a-z]+(?:['-][A-Z]?[a-z]+)?(?:\s+[A-Z]\.?)?(?:\s+(?:[a-z]{1,3}\s+)?" \
               r"[A-Z][a-z]+(?:['-][A-Z]?[a-z]+)?){1,2}"


def normalized_name(column: object) -> str:
    """``FirstName``, ``first-name``, ``First Name`` -> ``first_name``."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(column).strip())
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def kind_by_name(column: object) -> str | None:
    """The identifier kind a column's name suggests, or None."""
    name = normalized_name(column)
    for kind, rx in _NAME_PATTERNS:
        if rx.match(name):
            return kind
    # A trailing identifier word also counts: ``patient_mrn``, ``home_phone``, ``device_serial``.
    tail = name.rsplit("_", 1)[-1]
    if tail != name:
        for kind, rx in _NAME_PATTERNS:
            if kind in _TAIL_KINDS and rx.match(tail):
                return kind
    return None


def kind_by_values(series: pd.Series, *, sample_size: int = SAMPLE_SIZE) -> str | None:
    """The identifier kind most sampled values have the shape of, or None."""
    values = series.dropna()
    if values.empty:
        return None
    if len(values) > sample_size:
        values = values.sample(sample_size, random_state=0)
    numeric = pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(
        values.dtype)
    if numeric:
        whole = values[(values % 1 == 0)] if pd.api.types.is_float_dtype(values.dtype) else values
        if len(whole) < MATCH_SHARE * len(values):
            return None
        text = whole.astype("int64", errors="ignore").astype(str)
        return "card" if _share(_luhn_valid(text), len(values)) else None
    if not (pd.api.types.is_object_dtype(values.dtype) or pd.api.types.is_string_dtype(
            values.dtype)):
        return None
    text = values.astype(str).str.strip()
    text = text[text != ""]
    n = len(text)
    if n == 0:
        return None
    if bool(text.str.fullmatch(_PLAIN_NUMBER).all()):
        # Numbers read as text (a CSV is read cell by cell as text): judged like a numeric
        # column, where only a Luhn-valid card number counts (codes like 00123 are not records).
        whole = text.str.replace(r"\.0*$", "", regex=True)
        return "card" if _share(_luhn_valid(whole), n) else None
    distinct = text.nunique() / n

    def share(rx: str) -> bool:
        return _share(text.str.fullmatch(rx), n)

    if share(_EMAIL):
        return "email"
    if share(_URL):
        return "url"
    if share(_SSN):
        return "ssn"
    if share(_ISO_DATE):
        return None  # a date: a quasi-identifier at most; its name decides
    if share(_IBAN) and _share(_iban_valid(text), n):
        return "iban"
    if share(_CARD) and _share(_luhn_valid(text), n):
        return "card"
    if share(_IP):
        return "ip"
    if share(_PHONE) and _share(_phone_like(text), n):
        return "phone"
    if distinct >= 0.9 and share(_RECORD):
        return "record"
    if distinct >= 0.5 and share(_PERSON_NAME):
        return "name"
    words = text.str.count(r"\s+") + 1
    if distinct >= 0.5 and words.mean() >= 5 and text.str.len().mean() >= 25:
        return "free_text"
    return None


def detect_identifiers(frame: pd.DataFrame, *, sample_size: int = SAMPLE_SIZE) -> dict[str, str]:
    """Suspected identifier columns: column name -> kind (a key of :data:`KINDS`)."""
    found: dict[str, str] = {}
    for column in frame.columns:
        kind = kind_by_name(column) or kind_by_values(frame[column], sample_size=sample_size)
        if kind:
            found[str(column)] = kind
    return found


def describe(kind: str) -> str:
    """Human description of an identifier kind."""
    return KINDS[kind].label if kind in KINDS else "an identifier"


def identifier_problems(frame: pd.DataFrame, policy: Policy) -> list[str]:
    """One message per column that would let a (suspected) identifier reach the generator."""
    suspects = detect_identifiers(frame)
    problems: list[str] = []
    for column in frame.columns:
        column = str(column)
        rule = policy.columns.get(column)
        kind = suspects.get(column)
        if rule is not None and rule.identifier and rule.modelled:
            problems.append(
                f"column '{column}': the policy marks it 'identifier: true' but keeps it "
                f"(rule {rule.rule}); use '{column}: {{rule: drop}}' or "
                f"'{column}: {{rule: pseudonymize}}'"
            )
            continue
        if kind is None or _remedied(rule, kind):
            continue
        fixes = [f"'{column}: {{rule: drop}}'", f"'{column}: {{rule: pseudonymize}}'"]
        fixes += [f"'{column}: {{rule: generalize, kind: ..., generalize: {{to: {to}}}}}'"
                  for to in sorted(KINDS[kind].generalize_ok)]
        state = "has no rule" if rule is None else f"is kept (rule {rule.rule})"
        problems.append(
            f"column '{column}' looks like {describe(kind)} and {state}: real identifiers must "
            f"never reach the generator. Add {' or '.join(fixes)}, or, if a human has checked "
            "that it is not an identifier, add 'identifier: false' to its rule"
        )
    return problems


def check_identifiers(frame: pd.DataFrame, policy: Policy) -> None:
    """Raise :class:`IdentifierError` naming every column that would leak an identifier.

    A **non-DP safety check**: it reads cell values (a sample per column) and its outcome depends
    on them, so it runs only after the release's budget reservation, and a refusal is charged.
    Its message names each column and the kind of pattern it matched (or the policy's own
    ``identifier: true``), never a cell value and never a count of cells or columns.
    """
    problems = identifier_problems(frame, policy)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise IdentifierError(
            "column(s) look like identifiers and have no safe rule (deny by default):\n"
            f"{lines}"
        )


def _remedied(rule: ColumnPolicy | None, kind: str) -> bool:
    if rule is None:
        return False
    if rule.rule in ("drop", "pseudonymize"):
        return True
    if "identifier" in rule.model_fields_set and rule.identifier is False:
        return True  # a human looked at it and says it is not an identifier
    if rule.rule == "generalize" and rule.generalize is not None:
        return rule.generalize.to in KINDS[kind].generalize_ok
    return False


def _share(mask: pd.Series | np.ndarray, n: int) -> bool:
    return n > 0 and float(np.asarray(mask, dtype=bool).sum()) >= MATCH_SHARE * n


def _digits_matrix(text: pd.Series, width: int) -> tuple[np.ndarray, np.ndarray]:
    digits = text.astype(str).str.replace(r"[\s-]", "", regex=True)
    ok = digits.str.fullmatch(r"\d{13,19}").to_numpy(dtype=bool)
    padded = digits.where(ok, "0").str.zfill(width).to_numpy(dtype=f"U{width}")
    matrix = padded.view(np.uint32).reshape(len(padded), width).astype(np.int64) - ord("0")
    return matrix, ok


def _luhn_valid(text: pd.Series) -> np.ndarray:
    """Vectorized Luhn check of 13-19 digit numbers (spaces and dashes ignored)."""
    if len(text) == 0:
        return np.zeros(0, dtype=bool)
    width = 19
    matrix, ok = _digits_matrix(text, width)
    double = (width - 1 - np.arange(width)) % 2 == 1
    doubled = np.where(double, matrix * 2, matrix)
    doubled = np.where(doubled > 9, doubled - 9, doubled)
    return ok & (doubled.sum(axis=1) % 10 == 0)


def _iban_valid(text: pd.Series) -> np.ndarray:
    """ISO 13616 mod-97 check."""
    out = np.zeros(len(text), dtype=bool)
    for i, value in enumerate(text.astype(str).str.replace(" ", "", regex=False)):
        if re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", value):
            moved = value[4:] + value[:4]
            number = "".join(str(int(ch, 36)) for ch in moved)
            out[i] = int(number) % 97 == 1
    return out


def _phone_like(text: pd.Series) -> np.ndarray:
    digits = text.str.count(r"\d")
    return ((digits >= 7) & (digits <= 15)).to_numpy(dtype=bool)


# ---------------------------------------------------------------------- pseudonyms
def pseudonymize(kind: str | None, n: int, rng: np.random.Generator | None = None) -> pd.Series:
    """``n`` fresh random identifiers shaped like ``kind``; no link to any real value.

    The shape comes from the kind alone (never from the real column), and values are drawn from
    OS entropy unless a generator is given (dev seed). Numbers are from ranges that are never
    issued to real people (SSN area 9xx, phone 555-01xx, card prefix 999, e-mail in
    ``example.invalid``), so a pseudonym cannot collide with a real person's identifier.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
    make = _MAKERS.get(kind or "", _token)
    return pd.Series(make(rng, n) if n else [], dtype=object)


_HEX = np.array(list("0123456789abcdef"))
_DEC = np.array(list(string.digits))
_B36 = np.array(list(string.digits + string.ascii_uppercase))


def _chars(rng: np.random.Generator, alphabet: np.ndarray, n: int, k: int) -> np.ndarray:
    """``n`` random strings of ``k`` characters from ``alphabet``, vectorized."""
    picks = np.ascontiguousarray(alphabet[rng.integers(0, len(alphabet), size=(n, k))])
    return picks.view(f"<U{k}").ravel().astype(object)


def _token(rng: np.random.Generator, n: int) -> np.ndarray:
    return "ID-" + _chars(rng, _HEX, n, 12)


def _email(rng: np.random.Generator, n: int) -> np.ndarray:
    return "user-" + _chars(rng, _HEX, n, 10) + "@example.invalid"


def _phone(rng: np.random.Generator, n: int) -> np.ndarray:
    return "+1-" + _chars(rng, _DEC, n, 3) + "-555-01" + _chars(rng, _DEC, n, 2)


def _ssn(rng: np.random.Generator, n: int) -> np.ndarray:
    return ("9" + _chars(rng, _DEC, n, 2) + "-" + _chars(rng, _DEC, n, 2) + "-"
            + _chars(rng, _DEC, n, 4))


def _card(rng: np.random.Generator, n: int) -> np.ndarray:
    body = np.concatenate([np.full((n, 3), 9), rng.integers(0, 10, size=(n, 12))], axis=1)
    double = (np.arange(15)[::-1] % 2) == 0  # rightmost body digit is doubled
    doubled = np.where(double, body * 2, body)
    doubled = np.where(doubled > 9, doubled - 9, doubled)
    check = (10 - doubled.sum(axis=1) % 10) % 10
    digits = np.concatenate([body, check[:, None]], axis=1)
    return np.ascontiguousarray(_DEC[digits]).view("<U16").ravel().astype(object)


def _iban(rng: np.random.Generator, n: int) -> np.ndarray:
    codes = rng.integers(0, 36, size=(n, 18))
    remainder = np.zeros(n, dtype=np.int64)
    # mod 97 of BBAN + "XX00", letters as two digits (A=10 ... Z=35), one character at a time
    for col in [*codes.T, *np.full((2, n), 33), *np.zeros((2, n), dtype=np.int64)]:
        scale = np.where(col >= 10, 100, 10)
        remainder = (remainder * scale + col) % 97
    check = 98 - remainder
    bban = np.ascontiguousarray(_B36[codes]).view("<U18").ravel().astype(object)
    tens = _DEC[check // 10].astype(object)
    ones = _DEC[check % 10].astype(object)
    return "XX" + tens + ones + bban


_FIRST = np.array(["Alex", "Sam", "Robin", "Kim", "Jordan", "Casey", "Morgan", "Taylor", "Avery",
                   "Quinn"], dtype=object)
_LAST = np.array(["Example", "Sample", "Placeholder", "Synthetic", "Fictive", "Testcase"],
                 dtype=object)


def _name(rng: np.random.Generator, n: int) -> np.ndarray:
    return (_FIRST[rng.integers(0, len(_FIRST), n)] + " " + _LAST[rng.integers(0, len(_LAST), n)]
            + "-" + _chars(rng, _HEX, n, 8))


def _ip(rng: np.random.Generator, n: int) -> np.ndarray:
    return "192.0.2." + rng.integers(1, 255, n).astype(str).astype(object)  # TEST-NET-1


def _url(rng: np.random.Generator, n: int) -> np.ndarray:
    return "https://" + _chars(rng, _HEX, n, 8) + ".example.invalid/"


def _text(rng: np.random.Generator, n: int) -> np.ndarray:
    return "[synthetic placeholder " + _chars(rng, _HEX, n, 8) + "]"


_MAKERS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "email": _email, "phone": _phone, "ssn": _ssn, "card": _card, "iban": _iban, "name": _name,
    "ip": _ip, "url": _url, "free_text": _text, "record": _token, "account": _token,
    "device": _token, "vehicle": _token,
}
