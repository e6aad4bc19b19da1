"""The release manifest: what was released, under which policy, at what privacy cost.

Two records come out of a run:

* the **public manifest** (``public/manifest.json``, written only for a released bundle): DP
  outputs and public facts only. It states the guarantee (unit, neighbouring relation, ε, δ,
  every charge with the inputs that recompute it, the randomness source), what is treated as
  public, and what ε does *not* cover (the gate's decision). It holds no exact row count, no audit
  figure, no gate reason and no fingerprint of the data.
* the **run record** (``internal/run.json``, for the data controller): exact train and holdout
  counts, the ledger reservations, the decision with its reasons.

``privsynth verify`` (or an auditor with Opacus) recomputes every charge from the public manifest.
"""

from __future__ import annotations

import datetime as dt
import platform
from importlib import metadata
from typing import Any

from privsynth.data.schema import TableSchema
from privsynth.policy.model import Policy
from privsynth.policy.relations import derived_columns
from privsynth.privacy.events import PrivacySpend

FORMAT = "privsynth-release/2"
RELATION = "add/remove one row of the training split"
PERSON_RELATION = "add/remove one person, with all of their rows, of the training split"
UNIT = "one row"
_PACKAGES = ("privsynth", "torch", "opacus", "numpy", "pandas", "scikit-learn", "anonymeter")

PUBLIC_INPUTS = (
    "everything the policy declares: column names, kinds and rules, public bounds and domains, "
    "missing-value markers, ε, δ and the generator's hyper-parameters",
    "the shipped default hyper-parameters: learning rates and network sizes chosen on the public "
    "UCI Adult table; batch size and epochs ('auto') set by a fixed rule from the DP row count "
    "and the backend, derived on the public shared benchmark tables",
    "the release id and time, the policy's name and digest (the digest excludes any seed)",
)
NOT_COVERED = (
    "the release decision: whether this bundle was released at all is a function of the raw "
    "training and holdout rows (the audit gate), which ε does not cover; only released bundles "
    "have a public part",
    "the holdout rows: they are read only by the audit gate and never by the generator; ε "
    "protects the rows of the training split",
    "the identifier-pattern scan that refuses a table whose kept columns look like identifiers "
    "(a non-DP safety check on raw values)",
)
RANDOMNESS = {
    "counts": "discrete Laplace noise from an exact sampler (Canonne, Kamath & Steinke 2020) "
              "driven by the operating system's CSPRNG; integer outputs, no floating-point noise",
    "dp_sgd": "Gaussian noise from Opacus in secure_mode (each draw the sum of four, against "
              "floating-point attacks) on a torch generator seeded with 63 bits of OS entropy; "
              "torch's generator is not a cryptographic PRNG (residual risk, see README)",
    "post_processing": "sampling and decoding use seeded generators from OS entropy; they only "
                       "post-process DP outputs",
}


def versions() -> dict[str, str]:
    """Versions of Python and the packages whose behaviour shapes a release."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def guarantee(policy: Policy, spend: PrivacySpend, *, seed_mode: str) -> dict[str, Any]:
    """The privacy section of the public manifest (and of the report)."""
    return {
        "claim": (f"({spend.epsilon:.6g}, {spend.delta:.3g})-differential privacy"
                  if seed_mode == "os-entropy" else
                  "none: a seeded development run carries no DP claim"),
        **_unit(policy),
        "epsilon": spend.epsilon,
        "delta": spend.delta,
        "epsilon_allotted": policy.privacy.epsilon,
        "delta_allotted": policy.privacy.delta,
        "composition": "basic: ε and δ are the sums over the charges",
        "stages": spend.by_stage(),
        "charges": [c.to_dict() for c in spend.charges],
        "seed_mode": seed_mode,
        "randomness": dict(RANDOMNESS),
        "treated_as_public": list(PUBLIC_INPUTS),
        "not_covered_by_epsilon": list(NOT_COVERED),
    }


def _unit(policy: Policy) -> dict[str, Any]:
    """Who one DP neighbour is: a row, or a person with all of their rows."""
    person = policy.privacy.person
    if policy.privacy.unit != "person" or person is None:
        return {"unit": UNIT, "neighbouring_relation": RELATION}
    return {
        "unit": f"one person: all of their rows (at most {person.max_rows}), identified by "
                f"column '{person.id}'",
        "neighbouring_relation": PERSON_RELATION,
        "contribution_bound": {
            "id_column": person.id, "max_rows_per_person": person.max_rows,
            "order_by": person.order_by,
            "rule": "a person's rows beyond the bound are dropped at random (independent "
                    "draws per row, read from that person's rows only)",
            "rows_cut": "not released (a count of the data that ε does not cover)"},
    }


def _generator_settings(policy: Policy, schema: TableSchema) -> dict[str, Any]:
    """The policy's generator block, plus the target weight the VAE trained with (``auto``
    resolved from the public schema; 1 where no target is modelled or the backend does not
    weight columns)."""
    settings = policy.generator.model_dump(mode="json")
    derived = derived_columns(policy.relations)  # computed at decode, not modelled
    settings["target_weight_applied"] = policy.generator.applied_target_weight(
        policy.audit.target, [n for n in schema.names if n not in derived])
    return settings


def _marginals(spend: PrivacySpend) -> dict[str, Any]:
    """Whether sampling matched DP one-way marginals, and what they cost (the charges of stage
    ``marginals``; privsynth.encoding.marginals)."""
    charges = [c for c in spend.charges if c.stage == "marginals"]
    return {"matched_at_sampling": bool(charges),
            "columns": [c.column for c in charges],
            "epsilon": float(sum(c.epsilon for c in charges)),
            "how": "each listed column's counts measured once with discrete Laplace noise; the "
                   "synthetic rows are a subset of 4x as many generated rows, reweighted to "
                   "those shares (post-processing)" if charges else None}


def _tuning(spend: PrivacySpend, policy: Policy) -> dict[str, Any]:
    """Whether accounted tuning chose the generator, among which candidates, which one it kept
    and what it cost (the ``dp_sgd_tuned`` charge and the ``tuning`` stage's score tables;
    privsynth.generators.tuning). The number of runs is never stated: the bound needs it
    secret."""
    tuned = [c for c in spend.charges if c.mechanism == "dp_sgd_tuned"]
    tuning = policy.generator.tuning
    if not tuned or tuning is None:
        return {"tuned": False}
    scored = [c for c in spend.charges if c.stage == "tuning"]
    return {"tuned": True,
            "method": "private selection by random stopping (Papernot & Steinke 2022, "
                      "Theorem 2), accounted in RDP over every candidate",
            "candidates": [c.overrides() for c in tuning.candidates],
            "selected": int(tuned[0].params["selected"]),
            "expected_runs": float(tuning.expected_runs), "eta": float(tuning.eta),
            "training_epsilon": float(tuned[0].epsilon),
            "score": "mean total-variation distance of each run's sample to DP counts of "
                     + ("the target crossed with each column" if policy.audit.target
                        else "each column"),
            "score_epsilon": float(sum(c.epsilon for c in scored))}


def build_manifest(*, release_id: str, policy: Policy, spend: PrivacySpend,
                   schema: TableSchema, synthetic_rows: int, seed_mode: str,
                   column_actions: dict[str, str],
                   synthetic_persons: int | None = None) -> dict[str, Any]:
    """The public manifest (file hashes are added by the bundle writer)."""
    persons = {} if synthetic_persons is None else {
        "synthetic_persons": int(synthetic_persons),
        "synthetic_persons_source": "the DP person count N̂ (mechanism noisy_count)"}
    return {
        "format": FORMAT,
        "release_id": release_id,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "population": {"id": policy.dataset.id},
        "policy": {"name": policy.name, "digest": policy.digest()},
        "privacy": guarantee(policy, spend, seed_mode=seed_mode),
        "synthetic_rows": int(synthetic_rows),
        "synthetic_rows_source": ("the DP row count N̂ (mechanism noisy_count)" if not persons
                                  else "the rows of the N̂ synthetic persons (post-processing)"),
        **persons,
        "schema": schema.to_dict(),
        "columns": column_actions,
        **({"relations": [r.describe() for r in policy.relations]} if policy.relations else {}),
        "generator": _generator_settings(policy, schema),
        "one_way_marginals": _marginals(spend),
        "tuning": _tuning(spend, policy),
        "versions": versions(),
    }


def build_run_record(*, release_id: str, n_train: int, n_holdout: int, n_audit: int, decision,
                     reservations: list[dict[str, Any]], seed_mode: str,
                     ledger_location: str,
                     ledger_head: dict[str, Any] | None = None,
                     contribution_bound: dict[str, int] | None = None) -> dict[str, Any]:
    """The internal record of the run: exact counts, reservations and the decision.

    ``ledger_head`` is the ledger's chain head once this release's charges are recorded; the
    signed bundle statement anchors it, so a ledger later truncated or rolled back below it, or
    rewritten, no longer matches the bundle (``privsynth verify --ledger``)."""
    return {
        "release_id": release_id,
        "notice": "INTERNAL to the data controller: exact counts and the gate's reasons are "
                  "functions of raw data that ε does not cover. Never share this file.",
        "training_rows": int(n_train),
        "holdout_rows": int(n_holdout),
        "synthetic_rows_audited": int(n_audit),
        "seed_mode": seed_mode,
        "ledger": ledger_location,
        "ledger_head": ledger_head,
        "reservations": reservations,
        "decision": decision.to_dict(),
        **({} if contribution_bound is None else {
            "contribution_bound (exact, internal)": contribution_bound}),
    }
