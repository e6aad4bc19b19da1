"""Check a release bundle months later, as an auditor who trusts only the pinned public key.

What is checked (each problem is one line; malformed input is a problem, never a traceback):

* **the signature**: the bundle's ``statement.dsse.json`` verifies under the pinned key (the
  ``public_key`` given, else this installation's own key); a key shipped in the bundle is never
  the trust anchor. ``public/statement.dsse.json`` verifies too, so a recipient's copy of
  ``public/`` stands on its own.
* **the file set**: every file the statement lists is present with its SHA-256, nothing else is
  there (no extra file, no link, no device, no staging folder or leftover), and only ``public/``,
  ``internal/`` and the statement sit at the root.
* **the gate decision**: the statement's, ``internal/decision.json``'s, ``run.json``'s and the
  report's agree; a public part exists exactly when the gate passed, never for a development
  run; every file names the same release id.
* **every charge** recomputed from its recorded inputs (discrete Laplace: scale and
  sensitivity; threshold: scale and τ; DP-SGD: σ, q, steps through the accountant), each finite
  and non-negative, their sums against the stated totals and within the policy's allotment (and
  the given policy's, when one is given); a DP-SGD charge planned from the DP row count and a
  ``noisy_count`` charge present; the synthetic CSV has exactly the stated number of rows.
* **the ledger**, when one is given: it verifies, it still holds the head the statement anchors
  (not truncated, rolled back or rewritten below it), and this release's reservations and every
  one of its charges are in it.

A public-only copy (a folder holding ``manifest.json`` and ``statement.dsse.json``, or a folder
holding only ``public/``) is checked for its signature, file set and charges.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

import pandas as pd

from privsynth.errors import PrivsynthError
from privsynth.keys import KeyStoreError, load_keys, parse_public_key
from privsynth.release.bundle import STAGING_PREFIX, sha256_file
from privsynth.release.manifest import FORMAT, PERSON_RELATION, RELATION
from privsynth.release.signing import (
    BUNDLE_PREDICATE,
    PUBLIC_PREDICATE,
    STATEMENT_FILE,
    StatementError,
    open_statement,
    subjects_of,
)

NO_PUBLIC_PART = "no public part: the release was blocked or is a development run"
ROOT_ENTRIES = {"public", "internal", STATEMENT_FILE}
_MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError, OSError,
              RecursionError, PrivsynthError)


def verify_bundle(bundle: Path, *, public_key: bytes | str | None = None,
                  ledger: Any = None, policy: Any = None) -> list[str]:
    """Problems found in ``bundle`` (empty when it verifies).

    ``public_key``: the pinned signing key (raw 32 bytes or the 64 hex characters of
    ``privsynth keys export``); ``None`` uses this installation's own key. ``ledger``: a
    :class:`~privsynth.privacy.ledger.Ledger` or its location, to check the charges are in it.
    ``policy``: a :class:`~privsynth.policy.model.Policy` whose ε and δ bound the release.
    """
    bundle = Path(bundle)
    try:
        return _verify(bundle, public_key, ledger, policy)
    except _MALFORMED as exc:
        return [f"{bundle}: malformed bundle ({type(exc).__name__}: {_short(exc)})"]


def _verify(bundle: Path, public_key, ledger, policy) -> list[str]:
    if bundle.is_symlink() or not bundle.is_dir():
        return [f"{bundle}: not a folder; give a release bundle folder"]
    if bundle.resolve().name.startswith(STAGING_PREFIX):
        return [f"{bundle}: a staging folder left by an interrupted write, not a bundle; it is "
                "removed by the next release into the same folder"]
    try:
        key = _pinned_key(public_key)
    except KeyStoreError as exc:
        return [str(exc)]
    entries, problems = _walk(bundle)
    top = {name.split("/")[0] for name in entries}
    if (bundle / STATEMENT_FILE).exists() and (bundle / "manifest.json").exists():
        return problems + _verify_public(bundle, entries, key, policy)
    if top <= {"public"} and not (bundle / "internal").exists():
        sub = {name.split("/", 1)[1]: kind for name, kind in entries.items() if "/" in name}
        if not sub:
            return problems + [f"{bundle}: neither a bundle statement nor a public part; not "
                               "a privsynth release bundle"]
        return problems + _verify_public(bundle / "public", sub, key, policy)
    return problems + _verify_full(bundle, entries, key, ledger, policy)


# ------------------------------------------------------------------------- keys and files
def _pinned_key(public_key: bytes | str | None) -> bytes:
    if public_key is None:
        try:
            return load_keys(create=False).public_key_bytes()
        except KeyStoreError:
            raise KeyStoreError(
                "no key to verify against: pass the releasing installation's public key "
                "(--public-key FILE, from `privsynth keys export` there)") from None
    if isinstance(public_key, bytes | bytearray):
        if len(public_key) == 32:
            return bytes(public_key)
        return parse_public_key(bytes(public_key).decode("ascii", "replace"))
    return parse_public_key(str(public_key))


def _walk(root: Path) -> tuple[dict[str, str], list[str]]:
    """Every entry under ``root`` (relative POSIX path -> 'file' or 'dir'), and a problem for
    each link, device, socket or staging leftover (nothing is followed)."""
    entries: dict[str, str] = {}
    problems: list[str] = []
    stack = [Path()]
    while stack:
        rel = stack.pop()
        with os.scandir(root / rel) as it:
            for item in it:
                name = (rel / item.name).as_posix()
                mode = item.stat(follow_symlinks=False).st_mode
                if stat.S_ISLNK(mode):
                    problems.append(f"{name}: a symbolic link; a bundle holds plain files only")
                elif stat.S_ISDIR(mode):
                    entries[name] = "dir"
                    stack.append(rel / item.name)
                elif stat.S_ISREG(mode):
                    entries[name] = "file"
                else:
                    problems.append(f"{name}: not a plain file (device, socket or pipe)")
                if item.name.startswith(STAGING_PREFIX) or item.name.endswith(".tmp"):
                    problems.append(f"{name}: a leftover of an interrupted write")
    return entries, problems


def _file_set(root: Path, entries: dict[str, str], listed: dict[str, str],
              label: str) -> list[str]:
    """Listed files present with their SHA-256; no unlisted file (the statement excepted)."""
    problems = []
    files = {n for n, kind in entries.items() if kind == "file"} - {STATEMENT_FILE}
    for name in sorted(listed):
        if name not in files:
            problems.append(f"{label}{name}: listed in the signed statement but missing (or not "
                            "a plain file)")
        elif sha256_file(root / name) != listed[name]:
            problems.append(f"{label}{name}: SHA-256 differs from the signed statement (file "
                            "changed)")
    extra = sorted(files - set(listed))
    if extra:
        problems.append(f"files not in the signed statement: {[label + e for e in extra]}")
    dirs = {n for n, kind in entries.items() if kind == "dir"}
    empty = sorted(d for d in dirs if not any(f.startswith(d + "/") for f in files))
    if empty:
        problems.append(f"folders not in the signed statement: {[label + d for d in empty]}")
    return problems


def _read_json(path: Path, what: str) -> Any:
    if path.is_symlink() or not path.is_file():
        raise _Fail(f"{path}: missing or not a plain file; {what}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise _Fail(f"{path}: not valid JSON ({type(exc).__name__})") from None


class _Fail(Exception):
    """One line that ends a check early."""


def _open(path: Path, key: bytes, predicate: str) -> dict[str, Any]:
    if path.is_symlink() or not path.is_file():
        raise _Fail(f"{path}: missing; a privsynth bundle carries a signed statement (bundles "
                    "written before signing cannot be verified)")
    try:
        return open_statement(path.read_text(encoding="utf-8", errors="replace"), key,
                              predicate)
    except StatementError as exc:
        raise _Fail(f"{path}: {exc}") from None


# ------------------------------------------------------------------------- public-only copy
def _verify_public(public: Path, entries: dict[str, str], key: bytes, policy) -> list[str]:
    try:
        statement = _open(public / STATEMENT_FILE, key, PUBLIC_PREDICATE)
        problems = _file_set(public, entries, subjects_of(statement), "")
        manifest = _read_json(public / "manifest.json", "not a privsynth public part")
    except (_Fail, StatementError) as exc:
        return [str(exc)]
    if manifest.get("release_id") != statement["predicate"].get("release_id"):
        problems.append("manifest.json names another release than the signed statement")
    if statement["predicate"].get("gate", {}).get("passed") is not True:
        problems.append("the signed public statement does not record a passed gate")
    return problems + _manifest_problems(public, manifest, policy)


def _manifest_problems(public: Path, manifest: dict, policy) -> list[str]:
    if not isinstance(manifest, dict):
        return ["manifest.json: not a JSON object"]
    return (_header_problems(manifest) + _charge_problems(manifest["privacy"], "manifest")
            + _policy_problems(manifest, policy) + _manifest_file_problems(public, manifest))


# ------------------------------------------------------------------------- whole bundle
def _verify_full(bundle: Path, entries: dict[str, str], key: bytes, ledger,
                 policy) -> list[str]:
    problems = [f"{name}: not part of a release bundle (only public/, internal/ and "
                f"{STATEMENT_FILE} belong at the root)"
                for name in sorted({n.split("/")[0] for n in entries} - ROOT_ENTRIES)]
    try:
        statement = _open(bundle / STATEMENT_FILE, key, BUNDLE_PREDICATE)
        problems += _file_set(bundle, entries, subjects_of(statement), "")
    except (_Fail, StatementError) as exc:
        return [*problems, str(exc)]
    predicate = statement["predicate"]
    try:
        decision = _read_json(bundle / "internal" / "decision.json", "the gate's decision")
        run = _read_json(bundle / "internal" / "run.json", "the run record")
        report = _read_json(bundle / "internal" / "report.json", "the internal report")
    except _Fail as exc:
        return [*problems, str(exc)]
    problems += _gate_problems(bundle, predicate, decision, run, report)
    problems += _split_problems(bundle, run)
    public = bundle / "public"
    if public.is_dir() and not public.is_symlink():
        sub = {n.split("/", 1)[1]: k for n, k in entries.items() if n.startswith("public/")}
        problems += [f"public/: {p}" for p in _verify_public(public, sub, key, policy)]
    else:  # a blocked release: its charges are recorded in the internal report
        problems += _charge_problems(report["mechanism"], "internal report")
    if ledger is not None:
        problems += _ledger_problems(ledger, predicate, run, _charges_of(bundle, report))
    return problems


def _gate_problems(bundle: Path, predicate: dict, decision: dict, run: dict,
                   report: dict) -> list[str]:
    problems = []
    gate = predicate.get("gate")
    if not isinstance(gate, dict) or not isinstance(gate.get("passed"), bool):
        return ["the signed statement records no gate decision"]
    passed = gate["passed"]
    if decision.get("passed") is not passed:
        problems.append("internal/decision.json disagrees with the signed gate decision")
    if run.get("decision") != decision or report.get("decision") != decision:
        problems.append("the gate decision differs between decision.json, run.json and "
                        "report.json")
    if decision.get("development_run") is not gate.get("development_run"):
        problems.append("the development-run flag differs from the signed statement")
    has_public = (bundle / "public").exists()
    if passed and gate.get("development_run"):
        problems.append("the signed statement records a passed development run; a seeded run "
                        "is never released")
    if has_public and not passed:
        problems.append("a public part, but the signed gate decision is blocked")
    if passed and not has_public:
        problems.append("the signed gate decision passed, but the public part is missing")
    ids = {predicate.get("release_id"), run.get("release_id"),
           report.get("scope", {}).get("release_id")}
    if len(ids) != 1:
        problems.append("the statement, run.json and report.json name different release ids")
    return problems


def _split_problems(bundle: Path, run: dict) -> list[str]:
    """``internal/split.json`` (optional: bundles before it lack one) names this release and
    holds row positions only, never a cell value."""
    path = bundle / "internal" / "split.json"
    if not path.exists():
        return []
    try:
        split = _read_json(path, "the train/holdout split record")
    except _Fail as exc:
        return [str(exc)]
    if not isinstance(split, dict) or split.get("format") != "privsynth-split/1":
        return ["internal/split.json: not a privsynth-split/1 record"]
    problems = []
    if split.get("release_id") != run.get("release_id"):
        problems.append("internal/split.json names another release than run.json")
    positions = split.get("holdout_positions", [])
    if not isinstance(positions, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in positions):
        problems.append("internal/split.json: holdout_positions must be row positions "
                        "(whole numbers) only")
    return problems


def _charges_of(bundle: Path, report: dict) -> list[dict]:
    manifest = bundle / "public" / "manifest.json"
    if manifest.is_file() and not manifest.is_symlink():
        with manifest.open(encoding="utf-8") as handle:
            return json.load(handle)["privacy"]["charges"]
    return report["mechanism"]["charges"]


# ------------------------------------------------------------------------- manifest content
def _header_problems(manifest: dict) -> list[str]:
    problems = []
    if manifest.get("format") != FORMAT:
        problems.append(f"format is {_short(manifest.get('format'))!r}, expected {FORMAT!r}")
    privacy = manifest["privacy"]
    bound = privacy.get("contribution_bound")
    expected = RELATION if bound is None else PERSON_RELATION
    if privacy.get("neighbouring_relation") != expected:
        problems.append(f"neighbouring relation {_short(privacy.get('neighbouring_relation'))!r}"
                        f" is not the one privsynth accounts under ({expected!r})")
    if bound is not None and not (
            isinstance(bound, dict) and isinstance(bound.get("max_rows_per_person"), int)
            and bound["max_rows_per_person"] >= 1 and isinstance(bound.get("id_column"), str)):
        problems.append("the person-level contribution bound does not state its id column and "
                        "a whole number of rows per person ≥ 1")
    if privacy.get("seed_mode") != "os-entropy":
        problems.append("seed mode is not os-entropy: a seeded development run carries no DP "
                        "claim and must never have a public part")
    return problems


def recompute_charges(manifest: dict) -> list[tuple[float, float]]:
    """(ε, δ) of every charge of a manifest, recomputed from its recorded inputs alone."""
    return _recompute(manifest["privacy"])


def _recompute(privacy: dict) -> list[tuple[float, float]]:
    from privsynth.privacy.mechanisms import charge_cost  # noqa: PLC0415 (heavy import)

    return [charge_cost(c["mechanism"], c["params"], c["delta"]) for c in privacy["charges"]]


def _charge_problems(privacy: dict, where: str) -> list[str]:
    """Each charge recomputed, finite and non-negative; totals; the allotment; DP-SGD on N̂."""
    problems: list[str] = []
    charges = privacy["charges"]
    if not isinstance(charges, list) or not all(isinstance(c, dict) for c in charges):
        return [f"{where}: the charges are not a list of objects"]
    for i, charge in enumerate(charges, start=1):
        for key in ("epsilon", "delta"):
            if not _number(charge.get(key)) or charge[key] < 0:
                problems.append(f"{where}: charge {i} ({_short(charge.get('mechanism'))}): "
                                f"{key} {_short(charge.get(key))!r} is not a finite number ≥ 0")
    for key in ("epsilon", "delta", "epsilon_allotted", "delta_allotted"):
        if not _number(privacy.get(key)) or privacy[key] < 0:
            problems.append(f"{where}: {key} {_short(privacy.get(key))!r} is not a finite "
                            "number ≥ 0")
    if problems:
        return problems
    total_eps = total_delta = 0.0
    for i, (charge, (eps, delta)) in enumerate(zip(charges, _recompute(privacy), strict=True),
                                               start=1):
        label = f"charge {i} ({_short(charge['mechanism'])}, column {_short(charge.get('column'))})"
        if not (_number(eps) and _number(delta) and eps >= 0 and delta >= 0):
            problems.append(f"{label}: its inputs give ε={eps!r}, δ={delta!r}, not a finite "
                            "cost ≥ 0")
            continue
        if not _close(eps, charge["epsilon"]):
            problems.append(f"{label}: ε stated {charge['epsilon']!r} but recomputed {eps!r}")
        if not _close(delta, charge["delta"]):
            problems.append(f"{label}: δ stated {charge['delta']!r} but recomputed {delta!r}")
        total_eps += eps
        total_delta += delta
    if not _close(total_eps, privacy["epsilon"]):
        problems.append(f"ε stated {privacy['epsilon']!r} but the charges sum to {total_eps!r}")
    if not _close(total_delta, privacy["delta"]):
        problems.append(f"δ stated {privacy['delta']!r} but the charges sum to {total_delta!r}")
    if total_eps > privacy["epsilon_allotted"] + 1e-9:
        problems.append("ε spent exceeds the policy's allotment")
    if total_delta > privacy["delta_allotted"] * (1 + 1e-9):
        problems.append("δ spent exceeds the policy's allotment")
    mechanisms = [c["mechanism"] for c in charges]
    if "noisy_count" not in mechanisms:
        problems.append("no noisy_count charge: the row count that sets q and the output size "
                        "was not released under DP")
    sgd = [c for c in charges if c["mechanism"] in ("dp_sgd", "dp_sgd_tuned")]
    if where == "manifest" and not sgd:
        problems.append("no DP-SGD charge: the generator was not trained under DP")
    for c in sgd:
        if c["params"].get("row_count") != "dp":
            problems.append("a DP-SGD charge was planned from an exact row count")
    return problems


def _policy_problems(manifest: dict, policy) -> list[str]:
    """The given policy's ε and δ bound the release, and its digest is the manifest's."""
    if policy is None:
        return []
    problems = []
    privacy = manifest["privacy"]
    if manifest.get("policy", {}).get("digest") != policy.digest():
        problems.append("the manifest's policy digest is not the given policy's")
    if privacy["epsilon"] > policy.privacy.epsilon + 1e-9:
        problems.append(f"ε {privacy['epsilon']!r} exceeds the given policy's "
                        f"{policy.privacy.epsilon!r}")
    if privacy["delta"] > policy.privacy.delta * (1 + 1e-9):
        problems.append(f"δ {privacy['delta']!r} exceeds the given policy's "
                        f"{policy.privacy.delta!r}")
    return problems + _unit_problems(privacy, policy)


def _unit_problems(privacy: dict, policy) -> list[str]:
    """The unit the manifest states is the given policy's: a person-level policy's id column
    and bound k, or one row."""
    bound = privacy.get("contribution_bound")
    person = policy.privacy.person if policy.privacy.unit == "person" else None
    if person is None:
        return [] if bound is None else [
            "the manifest states a person-level unit; the given policy is row-level"]
    if not isinstance(bound, dict) or (bound.get("id_column"), bound.get(
            "max_rows_per_person")) != (person.id, person.max_rows):
        return [f"the manifest's unit is not the given policy's (one person by column "
                f"'{person.id}', at most {person.max_rows} rows)"]
    return []


def _manifest_file_problems(public: Path, manifest: dict) -> list[str]:
    problems = []
    listed = manifest.get("files") or {}
    if not isinstance(listed, dict):
        return ["manifest.json: files is not an object of name -> SHA-256"]
    if "synthetic.csv" not in listed:
        problems.append("the manifest lists no synthetic.csv")
    for name, digest in listed.items():
        path = public / name
        if Path(name).name != name or path.is_symlink() or not path.is_file():
            problems.append(f"{_short(name)}: listed in the manifest but not a plain file in "
                            "public/")
        elif sha256_file(path) != digest:
            problems.append(f"{_short(name)}: SHA-256 differs from the manifest (file changed)")
    extra = sorted(p.name for p in public.iterdir()
                   if p.name not in listed and p.name not in ("manifest.json", STATEMENT_FILE))
    if extra:
        problems.append(f"files not in the manifest: {extra}")
    csv = public / "synthetic.csv"
    if csv.is_file() and not csv.is_symlink():
        rows = len(pd.read_csv(csv, dtype=str, keep_default_na=False))
        if rows != manifest.get("synthetic_rows"):
            problems.append(f"synthetic.csv has {rows} rows; the manifest states "
                            f"{_short(manifest.get('synthetic_rows'))}")
    return problems


# ------------------------------------------------------------------------- ledger
def _ledger_problems(ledger, predicate: dict, run: dict, charges: list[dict]) -> list[str]:
    """The ledger verifies, holds the anchored head, and holds this release's charges."""
    from privsynth.privacy.ledger import Ledger  # noqa: PLC0415

    if isinstance(ledger, Ledger):
        return _check_ledger(ledger, predicate, run, charges)
    location = str(ledger)
    if "://" not in location and not Path(location).is_file():
        return [f"ledger {location}: no such file; give the ledger the release charged"]
    with Ledger.open(location) as book:
        return _check_ledger(book, predicate, run, charges)


def _check_ledger(book, predicate: dict, run: dict, charges: list[dict]) -> list[str]:
    problems = [f"ledger: {p}" for p in book.verify()[:3]]
    head = predicate.get("ledger_head")
    if not isinstance(head, dict) or not isinstance(head.get("count"), int):
        return [*problems, "the signed statement anchors no ledger head"]
    entries = book.entries()
    by_seq = {int(e["seq"]): e for e in entries}
    count = head["count"]
    if count > 0:
        anchor = by_seq.get(count)
        if anchor is None:
            problems.append(f"ledger: entry {count} (this bundle's anchored head) is missing: "
                            "the ledger was truncated or rolled back")
        elif anchor.get("hash") != head.get("hash"):
            problems.append(f"ledger: entry {count} differs from this bundle's anchored head: "
                            "the ledger was rewritten or replaced")
    release_id = predicate.get("release_id")
    wanted = [r.get("reservation_id") for r in run.get("reservations", [])
              if isinstance(r, dict)]
    if not wanted:
        problems.append("run.json records no reservation")
    for reservation in wanted:
        mine = [e for e in entries if e.get("reservation_id") == reservation]
        if not any(e["kind"] == "reserve" and e["release_id"] == release_id for e in mine):
            problems.append(f"ledger: reservation {_short(reservation)} of this release is not "
                            "in the ledger")
            continue
        if any(int(e["seq"]) > count for e in mine):
            problems.append(f"ledger: reservation {_short(reservation)} has entries after the "
                            "anchored head")
        recorded = sorted(_charge_key(e["details"]) for e in mine if e["kind"] == "charge")
        stated = sorted(_charge_key(c) for c in charges)
        if recorded != stated:
            problems.append(f"ledger: the charges recorded under reservation "
                            f"{_short(reservation)} differ from the bundle's")
    return problems


def _charge_key(charge: dict) -> tuple:
    return (str(charge.get("mechanism")), str(charge.get("column")),
            round(float(charge.get("epsilon")), 9))


# ------------------------------------------------------------------------- small helpers
def _number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _close(a: float, b: float) -> bool:
    return _number(b) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _short(value: Any, limit: int = 60) -> str:
    """A bounded, single-line rendering of a value read from a (possibly hostile) file."""
    text = str(value).encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "…"

