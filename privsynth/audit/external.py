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

from privsynth.audit.result import AuditResult
from privsynth.audit.runner import run_audit
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
    if record.get("unit", "row") != "row":
        raise PrivsynthError("split.json is of a person-level release (its positions are "
                             "persons after the contribution bound, whose draws are not kept); "
                             "`privsynth audit --split` re-audits row-level releases only. The "
                             "person-level audit is the bundle's report")
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
