"""Audit any generator's output (SDV, a vendor, a spreadsheet) with privsynth's attacks and gate.

No training and no epsilon: the real tables are read only to measure risk, for an internal
report. Without a DP claim the gate blocks unless the policy sets ``audit.require_dp_claim:
false``, because black-box attacks alone cannot tell memorization-free output from a lucky one.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from privsynth.audit.person import run_person_audit
from privsynth.audit.result import AuditResult
from privsynth.audit.runner import run_audit
from privsynth.data.persons import person_layout, wide_records
from privsynth.data.schema import ColumnSchema, TableSchema
from privsynth.data.table import prepare_table, read_table, to_model_space
from privsynth.errors import PrivsynthError
from privsynth.gate import GateDecision, decide
from privsynth.policy.model import Policy
from privsynth.privacy.rng import RandomSource
from privsynth.release.manifest import versions
from privsynth.release.report import build_report, write_report


@dataclass(frozen=True)
class ExternalAudit:
    """The audit of a table privsynth did not make."""

    audit: AuditResult
    decision: GateDecision
    report: dict


def audit_tables(train: str | Path | pd.DataFrame, holdout: str | Path | pd.DataFrame | None,
                 synthetic: str | Path | pd.DataFrame, policy: Policy, *,
                 dp_claim: bool = False, label: str = "external",
                 split: str | Path | dict | None = None) -> ExternalAudit:
    """Audit ``synthetic`` against the rows its generator trained on and rows it never saw.

    ``split``: a privsynth bundle's ``internal/split.json`` (or its content); ``train`` is then
    the whole table the release was made from and the members and holdout are the recorded rows,
    so the release's own audit split is reproduced (``holdout`` only when the record says the
    caller gave one)."""
    if split is not None and read_split(split).get("unit", "row") == "person":
        return _person_audit(train, synthetic, policy, read_split(split), dp_claim, label)
    if split is not None:
        real = prepare_table(read_table(train, policy), policy)
        train_frame, holdout_frame = split_by_record(real.frame, read_split(split), holdout)
        if holdout_frame is None:
            holdout_frame = prepare_table(read_table(holdout, policy), policy).frame
        frames = [real, None, prepare_table(read_table(synthetic, policy), policy)]
        train_m, holdout_m, synthetic_m = train_frame, holdout_frame, frames[2].frame
    else:
        if holdout is None:
            raise PrivsynthError("no holdout: give --holdout FILE (rows the generator never "
                                 "saw) or --split internal/split.json of a privsynth bundle")
        frames = [prepare_table(read_table(t, policy), policy)
                  for t in (train, holdout, synthetic)]
        train_m, holdout_m, synthetic_m = (f.frame for f in frames)
    schema = audit_schema(policy, train_m)
    synthetic_m = to_model_space(synthetic_m, schema)
    seed = RandomSource(policy.seed).seed_int("audit")
    result = run_audit(train_m, holdout_m, synthetic_m, schema, policy.audit, seed=seed)
    decision = decide(result, policy.audit.thresholds, dp_claim=dp_claim,
                      require_dp_claim=policy.audit.require_dp_claim,
                      attacks_requested=policy.audit.attacks)
    report = build_report(
        scope={"audited_table": label, "dataset_id": policy.dataset.id, "policy": policy.name,
               "policy_digest": policy.digest(),
               "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")},
        columns={"actions": frames[0].actions, "schema": public_schema(schema)},
        mechanism={"dp_claim": dp_claim, "note": "external table: no privsynth DP mechanism"},
        audit=result, decision=decision, versions=versions())
    return ExternalAudit(result, decision, report)


def _person_audit(table: str | Path | pd.DataFrame, synthetic: str | Path | pd.DataFrame,
                  policy: Policy, record: dict, dp_claim: bool, label: str) -> ExternalAudit:
    """Re-audit a person-level release from its split record: the same persons (the recorded
    bound key keeps the same rows), split as recorded, against the released synthetic persons
    (grouped by their pseudonymous id)."""
    person = policy.privacy.person
    if person is None or policy.privacy.unit != "person":
        raise PrivsynthError("split.json is of a person-level release: give its person-level "
                             "policy (privacy.unit: person)")
    key = bytes.fromhex(str(record.get("bound_key", "")))
    if not key:
        raise PrivsynthError("split.json has no bound_key: it predates re-audits of "
                             "person-level releases; the bundle's report is their audit")
    raw = read_table(table, policy)
    real = prepare_table(raw, policy)
    wide, _ = wide_records(real.frame.reset_index(drop=True), raw[person.id].reset_index(
        drop=True), policy, key)
    positions = np.asarray(record.get("holdout_positions", []), dtype=np.int64)
    if record.get("table_persons") != len(wide) or (
            len(positions) and (positions.min() < 0 or positions.max() >= len(wide))):
        raise PrivsynthError("the table given with --real does not hold the persons split.json "
                             "records; give the table the release was made from")
    held = np.zeros(len(wide), dtype=bool)
    held[positions] = True
    syn_raw = read_table(synthetic, policy)
    if person.id not in syn_raw.columns:
        raise PrivsynthError(f"the synthetic table has no '{person.id}' column: a person-level "
                             "re-audit groups its rows by the synthetic person ids")
    syn_wide, _ = wide_records(prepare_table(syn_raw, policy).frame.reset_index(drop=True),
                               syn_raw[person.id].reset_index(drop=True), policy, key)
    schema = audit_schema(policy, real.frame)
    layout = person_layout(policy)
    seed = RandomSource(policy.seed).seed_int("audit")
    result = run_person_audit(wide[~held].reset_index(drop=True),
                              wide[held].reset_index(drop=True), syn_wide, layout, schema,
                              policy.audit, seed=seed)
    decision = decide(result, policy.audit.thresholds, dp_claim=dp_claim,
                      require_dp_claim=policy.audit.require_dp_claim,
                      attacks_requested=policy.audit.attacks)
    report = build_report(
        scope={"audited_table": label, "dataset_id": policy.dataset.id, "policy": policy.name,
               "policy_digest": policy.digest(), "unit": "person",
               "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")},
        columns={"actions": real.actions, "schema": public_schema(schema)},
        mechanism={"dp_claim": dp_claim, "note": "re-audit of a person-level release"},
        audit=result, decision=decision, versions=versions())
    return ExternalAudit(result, decision, report)


def read_split(split: str | Path | dict) -> dict:
    """The split record (``internal/split.json``), checked: format, row positions only."""
    if isinstance(split, dict):
        record, name = split, "the split record"
    else:
        name = Path(split).name
        try:
            record = json.loads(Path(split).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            raise PrivsynthError(f"{split}: cannot read a split record; give a bundle's "
                                 "internal/split.json") from None
    if not isinstance(record, dict) or record.get("format") != "privsynth-split/1":
        raise PrivsynthError(f"{name}: not a privsynth-split/1 record; give a bundle's "
                             "internal/split.json")
    return record


def split_by_record(frame: pd.DataFrame, record: dict, holdout: object = None
                    ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(members, holdout) of ``frame`` as ``record`` says. ``mode: split``: the recorded
    positions are the holdout, every other row a member; ``mode: given``: every row of
    ``frame`` trained and the holdout is the caller's table (returned as None)."""
    if record.get("mode") == "given":
        if holdout is None:
            raise PrivsynthError("split.json says the release's holdout was the caller's own "
                                 "table; give it with --holdout")
        return frame.reset_index(drop=True), None
    if holdout is not None:
        raise PrivsynthError("split.json fixes the holdout; give --split or --holdout, not both")
    positions = np.asarray(record.get("holdout_positions", []), dtype=np.int64)
    if record.get("table_rows") != len(frame) or (
            len(positions) and (positions.min() < 0 or positions.max() >= len(frame))):
        raise PrivsynthError("the table given with --real does not have the rows split.json "
                             "records; give the table the release was made from (same rows, "
                             "same order)")
    held = np.zeros(len(frame), dtype=bool)
    held[positions] = True
    return (frame.iloc[np.flatnonzero(~held)].reset_index(drop=True),
            frame.iloc[np.flatnonzero(held)].reset_index(drop=True))


def dp_claim_from_bundle(bundle: Path, synthetic: Path, *,
                         public_key: bytes | str | None = None) -> bool:
    """True when ``bundle`` (or a copy of its public part) verifies under the pinned key
    (``public_key``, else this installation's) and its public manifest lists ``synthetic`` (by
    SHA-256).

    A DP claim is never taken on someone's word: it comes from a signed, verified privsynth
    manifest whose recomputed charges back it. Raises PrivsynthError saying what is wrong
    otherwise.
    """
    from privsynth.release.bundle import sha256_file  # noqa: PLC0415
    from privsynth.release.verify import verify_bundle  # noqa: PLC0415

    problems = verify_bundle(bundle, public_key=public_key)
    manifest = Path(bundle) / "public" / "manifest.json"
    if not manifest.is_file():
        manifest = Path(bundle) / "manifest.json"  # a recipient's copy of public/
    if problems or not manifest.is_file():
        detail = "; ".join(problems) or "it has no public part (blocked or development run)"
        raise PrivsynthError(f"{bundle}: cannot back a DP claim: {detail}")
    listed = set(json.loads(manifest.read_text(encoding="utf-8")).get("files", {}).values())
    if sha256_file(Path(synthetic)) not in listed:
        raise PrivsynthError(f"{synthetic}: not a file of {bundle} (its SHA-256 is not listed "
                             "in the bundle's manifest); audit the bundle's own synthetic.csv")
    return True


def audit_schema(policy: Policy, train: pd.DataFrame) -> TableSchema:
    """Public facts from the policy; where the policy leaves a fact to DP, the audit (internal,
    not covered by epsilon) takes it from the real training rows to scale distances.
    """
    columns = []
    for name, rule in policy.columns.items():
        if not rule.modelled:
            continue
        if rule.kind in ("categorical", "boolean"):
            domain = (("false", "true") if rule.kind == "boolean" else
                      tuple(str(v) for v in rule.domain) if isinstance(rule.domain, list)
                      else tuple(sorted(train[name].dropna().astype(str).unique())))
            columns.append(ColumnSchema(name, rule.kind, domain=domain,
                                        domain_source="policy" if rule.domain != "dp" else None))
        else:
            bounds = _bounds(rule, train[name])
            columns.append(ColumnSchema(name, rule.kind, bounds=bounds,
                                        bounds_source="policy" if rule.bounds != "dp" else None))
    return TableSchema(tuple(columns))


def public_schema(schema: TableSchema) -> dict:
    """The schema for the report: facts read from the real rows (source None) are withheld, and
    only the size of such a domain is shown, so no real value reaches the report."""
    out = schema.to_dict()
    for entry in out.values():
        if entry["bounds"] is not None and entry["bounds_source"] is None:
            entry["bounds"] = None
        if entry["domain"] is not None and entry["domain_source"] is None:
            entry["domain_size"] = len(entry["domain"])
            entry["domain"] = None
    return out


def _bounds(rule, values: pd.Series) -> tuple[float, float]:
    if isinstance(rule.bounds, tuple):
        frame = pd.DataFrame({"v": list(rule.bounds)})
        low, high = to_model_space(frame, TableSchema((ColumnSchema("v", rule.kind),)))["v"]
        return float(low), float(high)
    finite = values.to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    low, high = float(finite.min()), float(finite.max())
    return (low, high if high > low else low + 1.0)


def write_external_report(result: ExternalAudit, out_dir: Path) -> list[Path]:
    """Write report.json and report.html into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_report(result.report, out_dir)
