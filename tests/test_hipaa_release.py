"""Issue 3, last "Done when": the patients fixture (e-mail, SSN, phone, card number, name and
free-text columns) is refused without rules; with the HIPAA Safe Harbor policy, a byte scan of
every output file finds none of its real identifier values."""

from __future__ import annotations

import html
import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from ledger_helpers import registered_ledger

import privsynth.pipeline as pipeline
from privsynth.errors import DataError, IdentifierError
from privsynth.policy.loader import load_policy, parse_policy
from privsynth.privacy.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
PATIENTS = ROOT / "tests" / "fixtures" / "patients.csv"
HIPAA = ROOT / "policies" / "hipaa-safe-harbor.yaml"

# Columns whose every value identifies a person (text kept verbatim from the CSV).
DIRECT = ["mrn", "patient_name", "email", "phone", "ssn", "street_address", "health_plan_id",
          "card_number", "device_serial", "ip_address", "notes"]
DATES = ["birth_date", "admission_date", "discharge_date"]
# Every column the Safe Harbor policy drops or generalizes.
SAFE_HARBOR = [*DIRECT, "city", "zip", *DATES]


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    """The fixture as text, exactly as in the file (keeps ZIP leading zeros)."""
    return pd.read_csv(PATIENTS, dtype=str, keep_default_na=False)


def _literals(raw: pd.DataFrame) -> set[str]:
    """Identifier values that must not appear anywhere, as plain substrings."""
    values: set[str] = set()
    for column in [*DIRECT, *DATES]:
        values.update(v for v in raw[column] if v)
    # name parts only when long enough not to be an ordinary word
    values.update(v.split()[-1] for v in raw["patient_name"] if len(v.split()[-1]) >= 6)
    return {v for v in values if len(v) >= 6}


def _numbers(raw: pd.DataFrame) -> set[str]:
    """Identifiers as bare numbers: full ZIPs (with and without the leading zero a numeric
    reader drops), phone and SSN digits only."""
    zips = set(raw["zip"]) | {z.lstrip("0") for z in raw["zip"]}
    digits = {re.sub(r"\D", "", v) for v in [*raw["phone"], *raw["ssn"]]}
    return zips | digits


def _variants(value: str) -> set[str]:
    return {value, html.escape(value, quote=True), json.dumps(value)[1:-1]}


def _leaks(data: bytes, literals: set[str], numbers: set[str]) -> list[str]:
    """Identifier values found in ``data`` (plain substrings; bare numbers as whole numbers)."""
    text = data.decode("utf-8", errors="replace")
    found = sorted({v for lit in literals for v in _variants(lit) if v in text})
    # a bare number counts only when it stands alone: not inside a longer number, a decimal
    # fraction (0.60614...), a synthetic amount (60614.25) or a word: a random release id such
    # as "...-a3601a" once matched the ZIP 03601 read as 3601
    found += sorted(n for n in numbers
                    if re.search(rf"(?<![\w.]){re.escape(n)}(?![\w.])", text))
    return found


def _scan(paths: list[Path], raw: pd.DataFrame) -> dict[str, list[str]]:
    literals, numbers = _literals(raw), _numbers(raw)
    leaks: dict[str, list[str]] = {}
    for path in paths:
        blobs = [path.read_bytes()]
        if path.suffix == ".parquet":  # compressed pages: scan the decoded cells too
            buf = io.StringIO()
            pd.read_parquet(path).to_csv(buf, index=False)
            blobs.append(buf.getvalue().encode())
        found = sorted({hit for blob in blobs for hit in _leaks(blob, literals, numbers)})
        if found:
            leaks[str(path)] = found[:10]
    return leaks


def test_scanner_finds_planted_values(raw, tmp_path):
    """The scan itself works: each kind of value is found when planted in a file."""
    row = raw.iloc[7]
    planted = tmp_path / "planted.json"
    for column in [*DIRECT, *DATES, "zip"]:
        planted.write_text(json.dumps({"x": [1.5, row[column], 0.25]}))
        assert _scan([planted], raw), column
    for number in (int(raw["zip"].iloc[1]), int(re.sub(r"\D", "", row["ssn"]))):
        planted.write_text(json.dumps({"as_number": number}))
        assert _scan([planted], raw), number
    frame = pd.DataFrame({"a": [row["email"]] * 50 + [row["ssn"]] * 50})
    frame.to_parquet(tmp_path / "planted.parquet")
    assert len(_scan([tmp_path / "planted.parquet"], raw)[str(tmp_path / "planted.parquet")]) == 2


def test_fixture_without_rules_is_refused_naming_every_identifier(raw, tmp_path):
    policy = load_policy(HIPAA).model_dump(mode="json", exclude_unset=True)
    policy["columns"] = {k: v for k, v in policy["columns"].items() if k not in SAFE_HARBOR}
    policy["audit"]["quasi_identifiers"] = ["age", "sex"]
    bare = parse_policy(yaml.safe_dump(policy, sort_keys=False), "no-identifier-rules.yaml")
    out, audits = tmp_path / "out", tmp_path / "audits"
    ledger = registered_ledger(tmp_path / "ledger.sqlite", bare.dataset.id, PATIENTS)

    with pytest.raises(DataError) as caught:
        pipeline.synthesize(PATIENTS, bare, ledger=ledger)

    message = str(caught.value)
    for column in SAFE_HARBOR:
        assert f"'{column}'" in message, column
    assert not _leaks(message.encode(), _literals(raw), _numbers(raw)), message
    # the header names are public: refused before the reservation, so nothing is charged,
    # and nothing was written
    with Ledger.open(ledger) as book:
        assert [e["kind"] for e in book.entries()] == ["register"]
    assert not out.exists() and not audits.exists()


def test_identifier_values_in_a_kept_column_are_refused_after_the_charge(raw, tmp_path):
    """A column kept under an innocent rule whose values look like identifiers: the value scan
    runs after the reservation (it reads cells), names the column and the pattern only."""
    policy = load_policy(HIPAA).model_dump(mode="json", exclude_unset=True)
    policy["columns"]["email"] = {"kind": "categorical", "domain": "dp"}
    kept = parse_policy(yaml.safe_dump(policy, sort_keys=False), "email-kept.yaml")
    ledger = registered_ledger(tmp_path / "ledger.sqlite", kept.dataset.id, PATIENTS)
    with pytest.raises(IdentifierError) as caught:
        pipeline.synthesize(PATIENTS, kept, ledger=ledger)
    message = str(caught.value)
    assert "'email'" in message
    assert not _leaks(message.encode(), _literals(raw), _numbers(raw)), message
    with Ledger.open(ledger) as book:
        assert [e["kind"] for e in book.entries()][:2] == ["register", "reserve"]


def _fast_hipaa(tmp_path: Path):
    """The shipped policy, untouched in every column rule; only shorter training and audit."""
    policy = load_policy(HIPAA).model_dump(mode="json", exclude_unset=True)
    policy["generator"].update(epochs=3)
    policy["audit"]["attacks"] = ["exact_copy", "dcr", "mia", "unique_qi"]
    policy["budget"]["ledger"] = str(tmp_path / "ledger.sqlite")
    text = yaml.safe_dump(policy, sort_keys=False)
    assert policy["columns"] == load_policy(HIPAA).model_dump(
        mode="json", exclude_unset=True)["columns"]
    return parse_policy(text, "hipaa-fast.yaml")


def test_hipaa_release_byte_scan_finds_no_identifier(raw, tmp_path):
    policy = _fast_hipaa(tmp_path)
    ledger = registered_ledger(tmp_path / "ledger.sqlite", policy.dataset.id, PATIENTS)
    release = pipeline.synthesize(PATIENTS, policy, ledger=ledger)
    out = release.write(tmp_path / "bundle", audits_dir=tmp_path / "audits")

    files = sorted(p for p in [*out.rglob("*"), *(tmp_path / "audits").rglob("*")]
                   if p.is_file())
    names = {p.relative_to(out).as_posix() for p in files if p.is_relative_to(out)}
    assert {"internal/report.json", "internal/report.html", "internal/decision.json",
            "internal/run.json"} <= names
    assert {p.name for p in (tmp_path / "audits").rglob("*") if p.is_file()} == {
        "report.json", "report.html"}
    if release.passed:
        assert {"public/manifest.json", "public/synthetic.csv", "public/synthetic.parquet"} <= names
    else:  # a 240-row table may be blocked (fail closed): then no synthetic file leaves
        assert not (out / "public" / "synthetic.csv").exists()
    files += [p for p in tmp_path.glob("ledger.sqlite*") if p.is_file()]

    assert _scan(files, raw) == {}

    # the synthetic table itself, even when blocked: nothing of the real identifiers,
    # only the generalized columns, in their coarse forms
    synthetic = release.synthetic
    assert not (set(SAFE_HARBOR) - {"zip", *DATES}) & set(synthetic.columns)
    frozen = tmp_path / "synthetic-in-memory.csv"
    synthetic.to_csv(frozen, index=False)
    assert _scan([frozen], raw) == {}
    assert synthetic["zip"].dropna().astype(str).str.fullmatch(r"\d{3}|__other__").all()
    for column in DATES:
        years = pd.to_numeric(synthetic[column].dropna())
        assert years.between(1934, 2025).all() and (years % 1 == 0).all()
