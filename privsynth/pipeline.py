"""The release pipeline: orders the stages, nothing else.

public checks (policy, device, header names, ledger, registered population) → ledger
reservation → read cells → identifier scan → per-cell preparation → near-copy check (charges
overlapping populations too) → split → DP row count N̂ → DP encoding → DP one-way marginals →
DP-SGD → sample N̂ rows (matched to the marginals) → decode → audit → gate → Release.

The stages are composed by :class:`privsynth.synthesizer.Synthesizer` (``fit`` / ``sample`` /
``audit`` / ``release``); :func:`synthesize` is that class's one-call path.

Nothing before the reservation depends on a cell value, so a run that fails after it has paid
for what it read; and no message after it carries a count or a value.
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
from privsynth.data.persons import one_row_per_person, person_layout
from privsynth.data.schema import TableSchema
from privsynth.data.table import read_table
from privsynth.encoding.marginals import MarginalCalibration, resolve_share
from privsynth.encoding.person_encoder import PersonEncoder
from privsynth.encoding.table_encoder import EncodingBudget, TableEncoder
from privsynth.errors import DataError, LedgerError, PreflightRefused
from privsynth.gate import GateDecision
from privsynth.generators.dp_sgd import DPSGDConfig, resolve_device
from privsynth.generators.registry import make_generator
from privsynth.generators.tuning import TuningScore, fit_tuned
from privsynth.policy.identifiers import kind_by_name, pseudonymize
from privsynth.policy.model import GeneratorPolicy, Policy
from privsynth.preflight import preflight, refusals
from privsynth.privacy.events import PrivacySpend
from privsynth.privacy.ledger import Ledger, Reservation, default_ledger_location
from privsynth.privacy.mechanisms import noisy_count
from privsynth.privacy.rng import RandomSource

# Stage functions the Synthesizer looks up here at call time, so tests and the planted-bug panel
# that patch them on this module (``run_audit``, ``read_table``, ``noisy_count``,
# ``make_generator``, ``_fit``, ``dp_row_count``) reach both paths.
__all__ = ["AuditInputs", "Release", "check_header", "check_preflight", "dp_claim",
           "dp_row_count", "make_generator", "noisy_count", "read_table", "run_audit",
           "synthesize"]

log = logging.getLogger("privsynth")
ProgressFn = Callable[[int, int], None]  # (step, total steps); never a loss (not DP)


@dataclass(frozen=True)
class AuditInputs:
    """What the audit scored, kept in memory only (never written by :meth:`Release.write`), so
    a benchmark can re-audit a release without retraining: model-space train and holdout rows,
    the audited synthetic rows (the released ones among them) and the schema."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    synthetic: pd.DataFrame
    schema: TableSchema


@dataclass
class Release:
    """The outcome of one run: synthetic table, audit, gate decision, manifest and report.

    ``synthetic`` stays in memory for the data controller; :meth:`write` puts it in the shareable
    bundle only when ``decision.passed`` (never for a seeded development run).
    ``manifest`` is the public manifest; ``run_record`` the internal one (exact counts, reasons).
    ``split`` says which rows were members and which the holdout (row positions, never a value;
    written to ``internal/`` only) so that ``privsynth audit --split`` can reproduce the audit.
    """

    release_id: str
    policy: Policy
    synthetic: pd.DataFrame
    audit: AuditResult
    decision: GateDecision
    manifest: dict[str, Any]
    report: dict[str, Any]
    charges: list[dict[str, Any]] = field(default_factory=list)
    run_record: dict[str, Any] = field(default_factory=dict)
    audit_inputs: AuditInputs | None = field(default=None, repr=False)
    split: dict[str, Any] | None = field(default=None, repr=False)  # internal/split.json

    @property
    def passed(self) -> bool:
        """True when the gate let the release through."""
        return self.decision.passed

    @property
    def development_run(self) -> bool:
        """True for a seeded run: reproducible, no DP claim, never released."""
        return self.decision.development_run

    def write(self, out: str | Path, *, audits_dir: str | Path | None = None) -> Path:
        """Write the signed bundle atomically (see :mod:`privsynth.release.bundle`); a copy of
        the internal report goes to ``audits_dir`` only when one is given."""
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

    Every check that needs no cell value runs first. Then the release's ε and δ are reserved
    in the ledger, before any cell is read; they are never refunded, even when a later step
    fails or the gate blocks. ``audit.holdout_fraction`` of the rows is held out (a random
    permutation, recorded as row positions in the bundle's ``internal/split.json``) and read only
    by the audit. The composed form is :class:`privsynth.synthesizer.Synthesizer`.
    """
    from privsynth.synthesizer import Synthesizer  # noqa: PLC0415 (it imports this module)

    model = Synthesizer(policy, ledger=ledger, device=device, progress=progress,
                        policy_path=policy_path)
    model._fit_table(data, holdout_fraction=policy.audit.holdout_fraction,
                     release_id=release_id)
    return model.release()


def check_header(data: str | Path | pd.DataFrame, policy: Policy) -> None:
    """Public checks on the table before anything is reserved: the file exists, and its header
    names (public: the policy names them) match the policy's columns. No cell is read."""
    if isinstance(data, pd.DataFrame):
        names = [str(c) for c in data.columns]
    else:
        path = Path(data)
        if not path.is_file():
            raise DataError(f"{path}: no such file; check the path")
        try:
            if "".join(path.suffixes).lower().endswith((".parquet", ".pq")):
                import pyarrow.parquet as pq  # noqa: PLC0415

                names = list(pq.read_schema(path).names)
            else:
                names = [str(c) for c in pd.read_csv(path, nrows=0, skipinitialspace=True)
                         .columns]
        except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
            raise DataError(f"{path.name}: cannot read a header row; check the file format"
                            ) from None
    names = [n.strip() for n in names]
    missing = [c for c in policy.columns if c not in names]
    unruled = [c for c in names if c not in policy.columns]
    problems = []
    if missing:
        problems.append(f"the policy names column(s) {missing} that the table does not have; "
                        "remove them from 'columns:' or check the spelling")
    if unruled:
        problems.append(f"column(s) {unruled} have no rule in the policy (deny by default); add "
                        f"e.g. '{unruled[0]}: {{rule: drop}}' or declare their kind")
    if problems:
        raise DataError("; ".join(problems))


def public_records(policy: Policy) -> int | None:
    """The declared public count of training records: rows, or persons under unit person."""
    return policy.dataset.persons if policy.privacy.unit == "person" else policy.dataset.rows


def check_preflight(policy: Policy) -> None:
    """Refuse, before anything is reserved, a release that the policy alone (and its declared
    public row count ``dataset.rows``) shows would be useless or blocked; log the warnings."""
    findings = preflight(policy, public_records(policy))
    refused = refusals(findings)
    if refused:
        raise PreflightRefused([f.message for f in refused])
    for finding in findings:
        if finding.severity == "warn":
            log.warning("pre-flight [%s] %s", finding.code, finding.message)


def dp_row_count(n_rows: int, budget: EncodingBudget, spend: PrivacySpend,
                 rng: RandomSource) -> int:
    """N̂: the training row count released by a charged discrete-Laplace count (at least 2).

    Under add/remove adjacency the exact count is private; q, the step count, the δ check and
    the synthetic row count are all computed from N̂ (post-processing).
    """
    noisy, charge = noisy_count(n_rows, budget.epsilon_each, rng.noise("row-count"))
    spend.add(charge)
    return max(2, int(noisy))


def dp_claim(spend: PrivacySpend, policy: Policy, seed_mode: str = "os-entropy") -> bool:
    """True only when this run's charges show a DP release within the policy's ε and δ: OS
    entropy (not a seeded dev run), a DP-SGD charge with positive noise planned from the DP row
    count, a ``noisy_count`` charge, every charge finite. Otherwise the gate blocks the release
    (unless the policy waives the claim; a dev run is blocked regardless).
    """
    charges = spend.charges
    trained = any(_trained_under_dp(c) for c in charges)
    counted = any(c.mechanism == "noisy_count" for c in charges)
    finite = all(0 <= c.epsilon < float("inf") and 0 <= c.delta < 1 for c in charges)
    within = (spend.epsilon <= policy.privacy.epsilon + 1e-9
              and spend.delta <= policy.privacy.delta * (1 + 1e-9))
    return seed_mode == "os-entropy" and trained and counted and finite and within


def _trained_under_dp(charge) -> bool:  # noqa: ANN001 - a Charge
    """A DP-SGD charge (plain or tuned) with positive noise, planned from the DP row count."""
    if charge.params.get("row_count") != "dp":
        return False
    if charge.mechanism == "dp_sgd":
        return charge.params.get("sigma", 0) > 0
    if charge.mechanism == "dp_sgd_tuned":
        runs = charge.params.get("runs") or []
        return bool(runs) and all(run[0] > 0 for run in runs)
    return False


def _reserve(book: Ledger, population: str, policy: Policy, release_id: str) -> Reservation:
    unit = {}
    if policy.privacy.unit == "person":  # the ledger debits per person (docs/ledger.md)
        person = policy.privacy.person
        registered = (book.population(population) or {}).get("person_id")
        if registered is not None and registered != person.id:
            raise LedgerError(
                f"population '{population}' is registered with person column '{registered}', "
                f"but the policy's privacy.person.id is '{person.id}'; name the registered "
                "column (one person must mean the same people in every release)")
        unit = {"unit": "person", "rows_per_person": person.max_rows}
    return book.reserve(population=population, release_id=release_id,
                        epsilon=policy.privacy.epsilon, delta=policy.privacy.delta, **unit)


def _charge_overlaps(book: Ledger, data: str | Path | pd.DataFrame, policy: Policy,
                     release_id: str) -> list[Reservation]:
    """Match the table against the registered populations' keyed sketches (read as at
    registration: every cell as text). The table must match its own population; it is also
    charged to every *other* population it is a near-copy of (BudgetExceededError when one
    cannot cover it: the release is refused). Runs after the reservation, so a refusal is paid.
    """
    matches = dict(book.overlaps(data))
    if policy.dataset.id not in matches:
        raise LedgerError(
            f"the table does not match the registered population '{policy.dataset.id}' (its "
            "keyed sketch); a privacy officer registers a new table as its own population with "
            "`privsynth budget register`, or set dataset.id to the population it belongs to")
    extra = []
    for population in matches:
        if population != policy.dataset.id:
            log.warning("the table is a near-copy of registered population %s; charging it too",
                        population)
            extra.append(_reserve(book, population, policy, release_id))
    return extra


def redacted_location(location: str) -> str:
    """A ledger location fit to print or store: a PostgreSQL URL loses its password."""
    from urllib.parse import urlsplit, urlunsplit  # noqa: PLC0415

    parts = urlsplit(str(location))
    if parts.scheme.startswith("postgres") and parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    return str(location)


def _reservation_facts(book: Ledger, reservation: Reservation) -> dict[str, Any]:
    return {"population": reservation.population, "reservation_id": reservation.reservation_id,
            "epsilon": reservation.epsilon, "delta": reservation.delta,
            "population_epsilon_spent_after": reservation.spent_after,
            "population_total_epsilon": reservation.total_epsilon}


def _open_ledger(ledger, policy: Policy, policy_path) -> Ledger:
    if isinstance(ledger, Ledger):
        return ledger
    # A release never creates a ledger: a missing one is an error naming the path (a privacy
    # officer creates it by registering the population).
    return Ledger.open(ledger or default_ledger_location(policy, policy_path), create=False)


def _device(policy: Policy, override: str | None) -> torch.device:
    return resolve_device(override or policy.generator.device)


def _fit(train: pd.DataFrame, n_public: int, policy: Policy, budget: EncodingBudget,
         spend: PrivacySpend, rng: RandomSource, target: torch.device,
         progress: ProgressFn | None):
    """DP encoding, then DP training on what is left of epsilon and delta.

    Under ``unit: person`` ``train`` holds one wide record per person: the encoding is fitted
    on one row per person and DP-SGD runs over persons (:mod:`privsynth.data.persons`)."""
    if policy.privacy.unit == "person":
        encoder = PersonEncoder.fit(
            one_row_per_person(train, person_layout(policy), rng.numpy("person-row")),
            policy, budget, spend, rng.noise("encoding"))
    else:
        encoder = TableEncoder.fit(train, policy, budget, spend, rng.noise("encoding"))
    codes = encoder.transform(train)
    calibration = _measure_marginals(codes, encoder, n_public, policy, spend, rng)
    g = policy.generator
    schedule = g.schedule(n_public)  # `auto` resolved from N̂ (public): no read of the data
    score = _measure_score(codes, encoder, n_public, policy, spend, rng)
    config = DPSGDConfig(
        epsilon=policy.privacy.epsilon - spend.epsilon,
        delta=policy.privacy.delta - spend.delta,
        expected_batch_size=schedule.batch_size, epochs=schedule.epochs,
        max_grad_norm=g.max_grad_norm,
        learning_rate=g.learning_rate, accountant=policy.privacy.accountant,
        max_physical_batch=g.max_physical_batch, public_rows=n_public)
    person = policy.privacy.person if policy.privacy.unit == "person" else None
    if g.tuning is not None:
        generator = _fit_tuned(codes, encoder, policy, config, score, rng, target, progress)
    else:
        generator = make_generator(g, person=person,
                                   column_weights=_column_weights(encoder, policy))
        generator.fit(codes, encoder.widths, config,
                      generator=rng.torch("training", target), device=target,
                      progress=progress, noise=rng.noise("training"))
    for charge in generator.charges_:
        spend.add(charge)
    return encoder, generator, calibration


def _measure_score(codes, encoder: TableEncoder | PersonEncoder, n_public: int,
                   policy: Policy, spend: PrivacySpend, rng: RandomSource
                   ) -> TuningScore | None:
    """The DP tables accounted tuning scores its runs on (``generator.tuning.score_share`` of
    ε, before DP-SGD); None when tuning is off."""
    tuning = policy.generator.tuning
    if tuning is None:
        return None
    names = encoder.modelled_names
    target = names.index(policy.audit.target) if policy.audit.target in names else None
    encoders = [encoder.encoders[i] for i in encoder.modelled]
    return TuningScore.measure(codes, encoders, names, target, n_public,
                               tuning.score_share * policy.privacy.epsilon, spend,
                               rng.noise("tuning"))


def _fit_tuned(codes, encoder: TableEncoder, policy: Policy, config: DPSGDConfig,
               score: TuningScore, rng: RandomSource, target: torch.device,
               progress: ProgressFn | None):
    """Random stopping over the policy's candidates (privsynth.generators.tuning): the kept
    generator carries the one ``dp_sgd_tuned`` charge."""
    uniforms = rng.numpy("tuning")
    fitted = fit_tuned(codes, encoder.widths, policy.generator, config, score,
                       lambda candidate: make_generator(
                           candidate, column_weights=_column_weights(encoder, policy, candidate)),
                       uniform=lambda: float(uniforms.random()),
                       generator=rng.torch("training", target), device=target,
                       progress=progress, noise=rng.noise("training"))
    log.info("accounted tuning kept candidate %d", fitted.selected)
    return fitted.generator


def _measure_marginals(codes, encoder: TableEncoder | PersonEncoder, n_public: int,
                       policy: Policy, spend: PrivacySpend, rng: RandomSource
                       ) -> MarginalCalibration | None:
    """The DP one-way shares matched at sampling (:mod:`privsynth.encoding.marginals`), paid
    from ``privacy.marginals_share`` of ε before DP-SGD, which trains on the rest. Row level
    only; None when the share is 0 or affords too few cells."""
    if isinstance(encoder, PersonEncoder):
        return None
    names = encoder.modelled_names
    chosen = policy.privacy.marginals_columns
    only = None if chosen is None else [names.index(c) for c in chosen]
    share = resolve_share(policy.privacy.marginals_share, epsilon=policy.privacy.epsilon,
                          n_public=n_public, columns=len(names if only is None else only),
                          unit="row")
    encoders = [encoder.encoders[i] for i in encoder.modelled]
    return MarginalCalibration.measure(codes, encoders, names, n_public,
                                       share * policy.privacy.epsilon, spend,
                                       rng.noise("marginals"), only=only)


def _column_weights(encoder: TableEncoder | PersonEncoder, policy: Policy,
                    generator: GeneratorPolicy | None = None
                    ) -> list[float] | tuple[list[float], list[float]] | None:
    """The reconstruction weight of each encoded column: ``generator.target_weight`` on the
    policy's ``audit.target`` (a public choice), 1 elsewhere; None when all are 1 or the
    backend weights nothing (the GAN). Under ``unit: person`` a pair: (row count and fixed
    columns, one row's varying columns), the person VAE's two groups of blocks.

    ``auto`` gives the target the weight of all other modelled columns together: the sum of
    per-column losses otherwise drowns the one relation the analyst will fit, under DP-SGD's
    noise (measured: docs/defaults_study.md)."""
    base = encoder.base if isinstance(encoder, PersonEncoder) else encoder
    names = base.modelled_names  # a derived target is computed, not modelled: nothing to weigh
    target = policy.audit.target
    weight = (generator or policy.generator).applied_target_weight(target, names)
    if weight == 1.0:
        return None

    def of(columns: list[str]) -> list[float]:
        return [weight if name == target else 1.0 for name in columns]

    if isinstance(encoder, PersonEncoder):
        fixed, varying = encoder.column_groups
        return [1.0, *of(fixed)], of(varying)
    return of(names)


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


def _scope(manifest: dict, run_record: dict) -> dict:
    """Flat scope lines for the (internal) report: what was released, from which population."""
    return {"release_id": manifest["release_id"], "population": manifest["population"]["id"],
            "training_rows (exact, internal)": run_record["training_rows"],
            "holdout_rows (exact, internal)": run_record["holdout_rows"],
            "synthetic_rows (= DP row count N̂)": manifest["synthetic_rows"],
            "policy": manifest["policy"]["name"], "policy_digest": manifest["policy"]["digest"],
            "seed_mode": run_record["seed_mode"], "created_at": manifest["created_at"]}


def _report(manifest: dict, run_record: dict, actions: dict, audit: AuditResult,
            decision: GateDecision, schema) -> dict:
    from privsynth.release.report import build_report  # noqa: PLC0415

    return build_report(
        scope=_scope(manifest, run_record),
        columns={"actions": actions, "schema": schema.to_dict(),
                 **({"relations (enforced on every synthetic row)": manifest["relations"]}
                    if manifest.get("relations") else {})},
        mechanism=manifest["privacy"], audit=audit, decision=decision,
        versions=manifest["versions"])
