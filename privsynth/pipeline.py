"""The release pipeline: orders the stages, nothing else.

read → identifier check → column rules → fingerprint → split → δ check → ledger reservation
(before any DP read) → DP encoding → DP training → sample → decode → audit → gate → Release.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from privsynth.audit.runner import AuditResult, run_audit
from privsynth.data.fingerprint import fingerprint, keyed_fingerprint
from privsynth.data.split import train_holdout_split
from privsynth.data.table import prepare_table, read_table, to_model_space
from privsynth.encoding.table_encoder import TableEncoder, encoding_budget
from privsynth.gate import GateDecision, decide
from privsynth.generators.dp_sgd import DPSGDConfig, resolve_device
from privsynth.generators.registry import make_generator
from privsynth.policy.identifiers import check_identifiers, kind_by_name, pseudonymize
from privsynth.policy.model import Policy
from privsynth.privacy.accounting import check_delta
from privsynth.privacy.events import PrivacySpend
from privsynth.privacy.ledger import Ledger, default_ledger_location
from privsynth.privacy.rng import RandomSource
from privsynth.release.manifest import build_manifest

log = logging.getLogger("privsynth")
ProgressFn = Callable[[int, int, float], None]


@dataclass
class Release:
    """The outcome of one run: synthetic table, audit, gate decision, manifest and report.

    ``synthetic`` stays in memory for the data controller; :meth:`write` puts it in the shareable
    bundle only when ``decision.passed``.
    """

    release_id: str
    policy: Policy
    synthetic: pd.DataFrame
    audit: AuditResult
    decision: GateDecision
    manifest: dict[str, Any]
    report: dict[str, Any]
    charges: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when the gate let the release through."""
        return self.decision.passed

    def write(self, out: str | Path, *, audits_dir: str | Path | None = "audits") -> Path:
        """Write the bundle atomically (see :mod:`privsynth.release.bundle`)."""
        from privsynth.release.bundle import write_bundle  # noqa: PLC0415 (avoid import cycle)

        return write_bundle(self, Path(out), audits_dir=audits_dir)


def new_release_id(dataset_id: str) -> str:
    """``<dataset>-<UTC time>-<random>``: unique, sortable, and free of any data value."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{dataset_id}-{stamp}-{secrets.token_hex(3)}"


def synthesize(
    data: str | Path | pd.DataFrame,
    policy: Policy,
    *,
    policy_path: str | Path | None = None,
    ledger: Ledger | str | Path | None = None,
    device: str | None = None,
    progress: ProgressFn | None = None,
    release_id: str | None = None,
) -> Release:
    """Run the whole pipeline on ``data`` under ``policy`` and return the :class:`Release`.

    The release's epsilon is reserved in the ledger before any private value is read by a DP
    mechanism; it is never refunded, even when training fails or the gate blocks.
    """
    release_id = release_id or new_release_id(policy.dataset.id)
    rng = RandomSource(policy.seed)
    raw = read_table(data)
    check_identifiers(raw, policy)
    prepared = prepare_table(raw, policy)
    train, holdout = train_holdout_split(prepared.frame, policy.audit.holdout_fraction,
                                         rng.numpy("split"))
    check_delta(policy.privacy.delta, len(train))
    book = _open_ledger(ledger, policy, policy_path)
    fp = fingerprint(raw)
    reservation = book.reserve(
        fingerprint=fp, dataset_id=policy.dataset.id, release_id=release_id,
        epsilon=policy.privacy.epsilon, delta=policy.privacy.delta,
        total_epsilon=policy.budget.total_epsilon, composition=policy.budget.composition)
    log.info("reserved ε=%.4g for release %s", policy.privacy.epsilon, release_id)
    spend = PrivacySpend()
    try:
        encoder, generator = _fit(train, policy, spend, rng, device, progress)
    finally:
        book.record_charges(reservation, spend.charges)
    codes = generator.sample(len(train), generator=rng.torch("sample", _device(policy, device)))
    synthetic = encoder.inverse_transform(codes, rng.numpy("decode"))
    schema = encoder.schema
    audit = run_audit(train, holdout, to_model_space(synthetic, schema), schema, policy.audit,
                      seed=rng.seed_int("audit"))
    decision = decide(audit, policy.audit.thresholds, dp_claim=dp_claim(spend, policy),
                      require_dp_claim=policy.audit.require_dp_claim,
                      attacks_requested=policy.audit.attacks)
    output = _output_table(synthetic, prepared.pseudonymized, policy, rng)
    manifest = build_manifest(
        release_id=release_id, policy=policy, spend=spend, schema=schema,
        n_train=len(train), n_holdout=len(holdout), seed_mode=rng.mode,
        keyed_fingerprint=keyed_fingerprint(fp, book.installation_key()), decision=decision,
        ledger_spent=book.spent(fp), column_actions=prepared.actions)
    report = _report(manifest, prepared.actions, audit, decision, schema)
    book.close()
    return Release(release_id, policy, output, audit, decision, manifest, report,
                   [c.to_dict() for c in spend.charges])


def dp_claim(spend: PrivacySpend, policy: Policy) -> bool:
    """True only when the ledger of this run shows a DP-trained generator within the policy's ε:
    a DP-SGD charge with positive noise, every charge finite, the total within the allotment.
    A backend that trained without noise (or recorded nothing) gets no claim, and the gate
    blocks it unless the policy waives the claim.
    """
    charges = spend.charges
    trained = any(c.mechanism == "dp_sgd" and c.params.get("sigma", 0) > 0 for c in charges)
    finite = all(0 <= c.epsilon < float("inf") for c in charges)
    return trained and finite and spend.epsilon <= policy.privacy.epsilon + 1e-9


def _open_ledger(ledger, policy: Policy, policy_path) -> Ledger:
    if isinstance(ledger, Ledger):
        return ledger
    return Ledger.open(ledger or default_ledger_location(policy, policy_path))


def _device(policy: Policy, override: str | None) -> torch.device:
    return resolve_device(override or policy.generator.device)


def _fit(train: pd.DataFrame, policy: Policy, spend: PrivacySpend, rng: RandomSource,
         device: str | None, progress: ProgressFn | None):
    """DP encoding, then DP training on what is left of epsilon and delta."""
    budget = encoding_budget(policy)
    encoder = TableEncoder.fit(train, policy, budget, spend, rng.numpy("encoding"))
    target = _device(policy, device)
    g = policy.generator
    config = DPSGDConfig(
        epsilon=policy.privacy.epsilon - spend.epsilon,
        delta=policy.privacy.delta - spend.delta,
        expected_batch_size=g.batch_size, epochs=g.epochs, max_grad_norm=g.max_grad_norm,
        learning_rate=g.learning_rate, accountant=policy.privacy.accountant,
        max_physical_batch=g.max_physical_batch)
    generator = make_generator(g)
    generator.fit(encoder.transform(train), encoder.widths, config,
                  generator=rng.torch("training", target), device=target, progress=progress)
    for charge in generator.charges_:
        spend.add(charge)
    return encoder, generator


def _output_table(synthetic: pd.DataFrame, pseudonymized: list[str], policy: Policy,
                  rng: RandomSource) -> pd.DataFrame:
    """Synthetic columns in the policy's order, with fresh identifiers where asked.

    A pseudonym's shape comes from the column's *name* (public), never from its values.
    """
    out = synthetic.copy()
    for name in pseudonymized:
        out[name] = pseudonymize(kind_by_name(name), len(out),
                                 rng.numpy(f"pseudonym:{name}")).to_numpy()
    order = [n for n, rule in policy.columns.items() if rule.rule != "drop"]
    return out[order]


def _scope(manifest: dict) -> dict:
    """Flat scope lines for the report: what was released, from which population, when."""
    dataset, policy = manifest["dataset"], manifest["policy"]
    return {"release_id": manifest["release_id"], "dataset_id": dataset["id"],
            "dataset_fingerprint (keyed)": dataset["keyed_fingerprint"],
            "training_rows": dataset["training_rows"], "holdout_rows": dataset["holdout_rows"],
            "policy": policy["name"], "policy_digest": policy["digest"],
            "created_at": manifest["created_at"]}


def _report(manifest: dict, actions: dict, audit: AuditResult, decision: GateDecision,
            schema) -> dict:
    from privsynth.release.report import build_report  # noqa: PLC0415

    return build_report(
        scope=_scope(manifest),
        columns={"actions": actions, "schema": schema.to_dict()},
        mechanism=manifest["privacy"], audit=audit, decision=decision,
        versions=manifest["versions"])
