"""An estimator in scikit-learn's style: ``Synthesizer(policy).fit(df).sample(1000)``.

The stages of :func:`privsynth.pipeline.synthesize`, taken apart::

    model = Synthesizer(policy, ledger="ledger.sqlite")
    model.fit(train)                 # reserves ε/δ, then reads; spends ε on ``train`` only
    model.sample(1000)               # free: post-processing of the DP model
    model.audit(train, holdout)      # internal: reads real rows, releases nothing
    release = model.release("releases/v1", holdout=holdout)   # gate, manifest, signed bundle
    model.save("models/v1"); Synthesizer.load("models/v1").sample()

What ε covers: every fact :meth:`Synthesizer.fit` learns from ``train`` goes through a charged
DP mechanism (the DP row count N̂, the DP encoding, DP-SGD); the fitted model and all it samples
are post-processing. The holdout is read only by the audit, whose risk figures stay internal and
whose only public output is the gate's pass/block (as in ``synthesize``). ε says nothing about
rows that were never given to ``fit``.

The stage functions are looked up on :mod:`privsynth.pipeline` at call time (``pipeline._fit``,
``pipeline.run_audit``, ...), so tests that patch them there (including the planted-bug panel) reach
this class too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from privsynth import pipeline
from privsynth.audit.copies import chance_copy_share
from privsynth.audit.person import run_person_audit
from privsynth.audit.runner import AuditResult
from privsynth.audit.stats import audit_sample_rows, copy_rows_needed
from privsynth.data.persons import PersonLayout, to_wide, wide_records
from privsynth.data.split import train_holdout_split
from privsynth.data.table import prepare_table, to_model_space
from privsynth.encoding.marginals import MarginalCalibration
from privsynth.encoding.table_encoder import encoding_budget
from privsynth.errors import PrivsynthError
from privsynth.gate import decide
from privsynth.generators.persist import load_generator, save_generator
from privsynth.policy.identifiers import check_identifiers, kind_by_name, pseudonymize
from privsynth.policy.loader import parse_policy
from privsynth.policy.model import Policy
from privsynth.privacy.accounting import check_delta
from privsynth.privacy.events import Charge, PrivacySpend
from privsynth.privacy.ledger import Ledger
from privsynth.privacy.rng import RandomSource
from privsynth.release.manifest import build_manifest, build_run_record

SPLIT_FORMAT = "privsynth-split/1"
SAVE_FORMAT = "privsynth-synthesizer/1"
SAVE_FILE = "synthesizer.json"
POLICY_FILE = "policy.yaml"


#: Rows matched to the one-way marginals at a time (a pool of 4x this many is held at once).
MATCH_CHUNK = 250_000


class NotFittedError(PrivsynthError):
    """A method that needs a fitted model was called before :meth:`Synthesizer.fit`."""


class Synthesizer:
    """A DP synthesizer configured from a policy; see the module docstring for the guarantee.

    ``ledger``: a :class:`~privsynth.privacy.ledger.Ledger` or its location (default: the
    policy's); ``device``: overrides ``generator.device``; ``progress(step, total)`` is called
    during DP-SGD. Fitted state ends in ``_``: ``encoder_``, ``generator_``, ``schema_``,
    ``n_public_`` (N̂, the DP row count), ``charges_``, ``release_id_``, ``reservations_``.
    """

    def __init__(self, policy: Policy, *, ledger: Ledger | str | Path | None = None,
                 device: str | None = None, progress: pipeline.ProgressFn | None = None,
                 policy_path: str | Path | None = None) -> None:
        self.policy = policy
        self.ledger = ledger
        self.device = device
        self.progress = progress
        self.policy_path = policy_path

    # ------------------------------------------------------------------ fit
    def fit(self, train: str | Path | pd.DataFrame) -> Synthesizer:
        """Reserve the policy's ε and δ, read ``train`` and fit the DP model on all its rows.

        Every check that needs no cell value (device, header names, pre-flight, ledger) runs
        before the reservation; the reservation is never refunded. Each call is a new release
        with its own reservation (a refused one raises BudgetExceededError and leaves the
        previous fit in place). Returns ``self``.

        ε covers the rows of ``train`` (add/remove one of them). A holdout given later to
        :meth:`audit` or :meth:`release` is read by the audit only: ε does not cover it, its
        risk figures stay internal and only the gate's pass/block leaves with a release.
        """
        self._fit_table(train, holdout_fraction=None)
        return self

    def _fit_table(self, data: str | Path | pd.DataFrame, *, holdout_fraction: float | None,
                   release_id: str | None = None) -> None:
        """``fit``, optionally holding out ``holdout_fraction`` of the rows for the audit (the
        one-call path): the split is a random permutation, recorded as row positions."""
        policy = self.policy
        release_id = release_id or pipeline.new_release_id(policy.dataset.id)
        rng = RandomSource(policy.seed)
        target = pipeline._device(policy, self.device)
        pipeline.check_header(data, policy)
        pipeline.check_preflight(policy)
        book = pipeline._open_ledger(self.ledger, policy, self.policy_path)
        try:
            fitted = self._fit_rows(data, book, release_id, rng, target, holdout_fraction)
            fitted["reservations_"] = [pipeline._reservation_facts(book, r)
                                       for r in fitted.pop("_reservations")]
            fitted["_ledger_location"] = pipeline.redacted_location(book.location)
            fitted["_ledger_head"] = book.head()
        finally:
            if not isinstance(self.ledger, Ledger):
                book.close()
        for name, value in fitted.items():  # only a fit that got this far replaces the last
            setattr(self, name, value)

    def _fit_rows(self, data, book: Ledger, release_id: str, rng: RandomSource,
                  target: torch.device, holdout_fraction: float | None) -> dict[str, Any]:
        policy = self.policy
        reservations = [pipeline._reserve(book, policy.dataset.id, policy, release_id)]
        pipeline.log.info("reserved ε=%.4g for release %s", policy.privacy.epsilon, release_id)
        spend = PrivacySpend()
        try:
            raw = pipeline.read_table(data, policy)
            check_identifiers(raw, policy)
            prepared = prepare_table(raw, policy)
            reservations += pipeline._charge_overlaps(book, data, policy, release_id)
            bound_key = rng.numpy("contribution-bound").bytes(32)
            records, bound_facts = self._records(raw, prepared.frame, bound_key)
            train, holdout, split = _split(records, holdout_fraction, rng, release_id,
                                           policy.privacy.unit)
            if split is not None and self.per_person:
                # internal/split.json only: with it the controller rebuilds the same persons
                # (`privsynth audit --split`); it says which rows were kept, no value
                split["bound_key"] = bound_key.hex()
            budget = encoding_budget(policy)
            n_public = pipeline.dp_row_count(len(train), budget, spend, rng)
            check_delta(policy.privacy.delta, n_public)
            encoder, generator, calibration = pipeline._fit(
                train, n_public, policy, budget, spend, rng, target, self.progress)
        finally:
            for reservation in reservations:
                book.record_charges(reservation, spend.charges)
        return {"encoder_": encoder, "generator_": generator, "calibration_": calibration,
                "schema_": encoder.schema,
                "n_public_": n_public, "release_id_": release_id,
                "charges_": [c.to_dict() for c in spend.charges], "_reservations": reservations,
                "_spend": spend, "_rng": rng, "_target": target, "_train": train,
                "_holdout": holdout, "_split": split, "_actions": dict(prepared.actions),
                "_pseudonymized": list(prepared.pseudonymized), "_released": False,
                "_bound_facts": bound_facts}

    @property
    def per_person(self) -> bool:
        """True under ``privacy.unit: person``: records, N̂ and samples are persons."""
        return self.policy.privacy.unit == "person"

    def _records(self, raw: pd.DataFrame, prepared: pd.DataFrame, bound_key: bytes
                 ) -> tuple[pd.DataFrame, dict[str, int] | None]:
        """The training records: the prepared rows, or under ``unit: person`` one wide record
        per person after the contribution bound (:mod:`privsynth.data.persons`)."""
        if not self.per_person:
            return prepared, None
        person = self.policy.privacy.person
        return wide_records(prepared.reset_index(drop=True),
                            raw[person.id].reset_index(drop=True), self.policy,
                            bound_key)

    # ------------------------------------------------------------------ sample
    def sample(self, n: int | None = None) -> pd.DataFrame:
        """``n`` synthetic rows (default N̂) in the released table's form: the policy's column
        order, pseudonymized columns filled with fresh identifiers. Under ``unit: person``,
        ``n`` synthetic *persons* (1..k rows each, one fresh identifier per person).
        Post-processing: no ε, no ledger entry, no real row read."""
        self._check_fitted("sample")
        rows = self.n_public_ if n is None else _row_count(n)
        decoded, owners = self._draw(rows)
        return self._output(decoded, owners)

    def _draw(self, n: int, stream: str = "sample") -> tuple[pd.DataFrame, np.ndarray | None]:
        """``n`` decoded records (modelled columns only, before pseudonyms): rows, or under
        ``unit: person`` the rows of ``n`` persons with each row's person index (a person's
        rows contiguous, ordered by ``person.order_by``). Each ``stream`` is an independent
        draw (in a seeded development run a stream repeats its rows)."""
        codes = self._codes(n, stream)
        decoded = self.encoder_.inverse_transform(codes, self._rng.numpy(
            "decode" if stream == "sample" else f"decode:{stream}"))
        if not self.per_person:
            return decoded, None
        return decoded  # (rows, owners), each person's rows in order_by order

    def _codes(self, n: int, stream: str) -> np.ndarray:
        """``n`` generated rows of slot indices; with DP one-way marginals, ``pool`` × n drawn
        and n kept by raking to them (post-processing: :mod:`privsynth.encoding.marginals`)."""
        torch_rng = self._rng.torch(stream, self._target)
        calibration = getattr(self, "calibration_", None)
        if calibration is None:
            return self.generator_.sample(n, generator=torch_rng)
        rng = self._rng.numpy(f"marginals:{stream}")
        parts = []
        for start in range(0, n, MATCH_CHUNK):  # bounded memory: each chunk matched on its own
            size = min(MATCH_CHUNK, n - start)
            pool = self.generator_.sample(calibration.pool * size, generator=torch_rng)
            parts.append(calibration.select(pool, size, rng))
        return np.concatenate(parts)  # n >= 1: sample() checked it

    def _audit_draw(self, train: pd.DataFrame, holdout: pd.DataFrame, stream: str = "sample"
                    ) -> tuple[pd.DataFrame, np.ndarray | None]:
        """The audit's draw (post-processing): ``audit_sample_rows(N̂)`` records, the released
        ones first; at row level with ``audit.audit_rows: auto``, topped up to
        ``copy_rows_needed`` rows where honest output hits many rare real rows by chance (a
        low-entropy table), so the copy rates' intervals resolve their thresholds. The top-up
        reads only a label-free share (``copies.chance_copy_share``)."""
        audit = self.policy.audit
        decoded, owners = self._draw(audit_sample_rows(self.n_public_, audit), stream)
        if owners is not None or audit.audit_rows != "auto":
            return decoded, owners
        records = self._model_records(decoded, None)
        share = chance_copy_share(train, holdout, records, list(self.schema_.names),
                                  audit.quasi_identifiers)
        need = copy_rows_needed(share, len(train) / (len(train) + len(holdout)), audit)
        if need <= len(decoded):
            return decoded, owners
        more, _ = self._draw(need - len(decoded), f"{stream}:top-up")
        return pd.concat([decoded, more], ignore_index=True), None

    def _output(self, decoded: pd.DataFrame, owners: np.ndarray | None) -> pd.DataFrame:
        """The released form; under ``unit: person`` the identifier column gets one fresh
        pseudonym per synthetic person."""
        out = pipeline._output_table(decoded, self._pseudonymized, self.policy, self._rng)
        person = self.policy.privacy.person
        if owners is not None and person.id in out.columns:
            fresh = pseudonymize(kind_by_name(person.id), int(owners.max(initial=-1)) + 1,
                                 self._rng.numpy("pseudonym:person"))
            out[person.id] = fresh.to_numpy()[owners]
        return out

    def _model_records(self, decoded: pd.DataFrame, owners: np.ndarray | None
                       ) -> pd.DataFrame:
        """Decoded synthetic records in model space, as the audit reads them."""
        rows = to_model_space(decoded, self.schema_)
        if owners is None:
            return rows
        return to_wide(rows, owners, self._layout)

    @property
    def _layout(self) -> PersonLayout:
        return self.encoder_.layout

    # ------------------------------------------------------------------ audit
    def audit(self, train: str | Path | pd.DataFrame | None, holdout: str | Path | pd.DataFrame,
              synthetic: str | Path | pd.DataFrame | None = None) -> AuditResult:
        """Run the audit: ``train`` the members (None: the rows this model was fit on, kept in
        memory), ``holdout`` rows it never saw (e.g. your own fixed split), ``synthetic`` the
        table to score (None: a fresh audit sample of ``audit_sample_rows(N̂)`` rows).

        Internal to the data controller: it reads real rows that ε does not cover.
        """
        self._check_fitted("audit", needs_rows=train is None)
        members = self._train if train is None else self._read_rows(train, "train")
        others = self._read_rows(holdout, "holdout")
        if synthetic is None:
            scored = self._model_records(*self._audit_draw(members, others))
        elif self.per_person:
            raise PrivsynthError("Synthesizer.audit(synthetic=...) is row-level only; under "
                                 "privacy.unit: person leave synthetic=None (fresh persons)")
        else:
            scored = to_model_space(self._read_rows(synthetic, "synthetic"), self.schema_)
        return self._run_audit(members, others, scored)

    def _run_audit(self, train: pd.DataFrame, holdout: pd.DataFrame,
                   synthetic: pd.DataFrame) -> AuditResult:
        seed = self._rng.seed_int("audit")
        if self.per_person:
            return run_person_audit(train, holdout, synthetic, self._layout, self.schema_,
                                    self.policy.audit, seed=seed)
        return pipeline.run_audit(train, holdout, synthetic, self.schema_, self.policy.audit,
                                  seed=seed)

    def _read_rows(self, table: str | Path | pd.DataFrame, role: str) -> pd.DataFrame:
        """A table the audit reads (header checked against the policy, cells prepared as at
        fit); synthetic tables may lack the dropped and pseudonymized columns."""
        policy = self.policy
        if role == "synthetic":
            frame = pipeline.read_table(table, policy)
            missing = [c for c in self.schema_.names if c not in frame.columns]
            if missing:
                raise PrivsynthError(f"the synthetic table lacks column(s) {missing}; give a "
                                     "table with the policy's modelled columns")
            return frame[list(self.schema_.names)].reset_index(drop=True)
        try:
            pipeline.check_header(table, policy)
        except PrivsynthError as exc:
            raise type(exc)(f"{role}: {exc}") from None
        raw = pipeline.read_table(table, policy)
        prepared = prepare_table(raw, policy).frame.reset_index(drop=True)
        return self._records(raw, prepared,
                             self._rng.numpy("contribution-bound").bytes(32))[0]

    # ------------------------------------------------------------------ release
    def release(self, out: str | Path | None = None, *,
                holdout: str | Path | pd.DataFrame | None = None,
                audits_dir: str | Path | None = None) -> pipeline.Release:
        """Audit, gate and (with ``out``) write the signed bundle of this fit; returns the
        :class:`~privsynth.pipeline.Release` that ``synthesize`` returns.

        ``holdout``: rows the model never saw (required unless the fit split one off). A fresh
        audit sample of ``audit_sample_rows(N̂)`` rows is drawn; the released table is its first
        N̂ rows, so every released row is scored. One release per fit: a second gate attempt
        on the same model would let a caller retry until a lucky audit passes.
        """
        self._check_fitted("release", needs_rows=True)
        if self._released:
            raise PrivsynthError(f"fit {self.release_id_} was already released; call fit again "
                                 "(a new reservation) for another release")
        if holdout is None and self._holdout is None:
            raise PrivsynthError("release needs holdout=: rows the model never saw (fit used "
                                 "every row it was given)")
        self._released = True
        policy, rng, n_public = self.policy, self._rng, self.n_public_
        train = self._train
        own = self._holdout if holdout is None else self._read_rows(holdout, "holdout")
        decoded, owners = self._audit_draw(train, own)
        n_audit = len(decoded) if owners is None else int(owners.max(initial=-1)) + 1
        keep = slice(None, n_public) if owners is None else owners < n_public
        synthetic = decoded[keep].reset_index(drop=True)
        audited = self._model_records(decoded, owners)
        audit = self._run_audit(train, own, audited)
        decision = decide(audit, policy.audit.thresholds,
                          dp_claim=pipeline.dp_claim(self._spend, policy, rng.mode),
                          require_dp_claim=policy.audit.require_dp_claim,
                          attacks_requested=policy.audit.attacks,
                          development_run=rng.mode == "dev-seed")
        output = self._output(synthetic, None if owners is None else owners[keep])
        manifest = build_manifest(
            release_id=self.release_id_, policy=policy, spend=self._spend, schema=self.schema_,
            synthetic_rows=len(output), seed_mode=rng.mode, column_actions=self._actions,
            synthetic_persons=n_public if self.per_person else None)
        run_record = build_run_record(
            release_id=self.release_id_, n_train=len(train), n_holdout=len(own), n_audit=n_audit,
            decision=decision, reservations=self.reservations_, seed_mode=rng.mode,
            ledger_location=self._ledger_location, ledger_head=self._ledger_head,
            contribution_bound=self._bound_facts)
        report = pipeline._report(manifest, run_record, self._actions, audit, decision,
                                  self.schema_)
        split = self._split if holdout is None else _given_split(self.release_id_)
        result = pipeline.Release(
            self.release_id_, policy, output, audit, decision, manifest, report,
            list(self.charges_), run_record,
            pipeline.AuditInputs(train, own, audited, self.schema_), split)
        if out is not None:
            result.write(out, audits_dir=audits_dir)
        return result

    # ------------------------------------------------------------------ save / load
    def save(self, path: str | Path) -> Path:
        """Write the fitted model to folder ``path``: the DP generator and encoder
        (:func:`~privsynth.generators.persist.save_generator`), the policy, N̂ and the charges
        it cost. No training row, count, split or seed is written."""
        self._check_fitted("save")
        folder = save_generator(self.generator_, self.encoder_, path)
        facts = {"format": SAVE_FORMAT, "release_id": self.release_id_,
                 "n_public": int(self.n_public_), "charges": list(self.charges_),
                 "pseudonymized": list(self._pseudonymized), "actions": dict(self._actions),
                 "policy_digest": self.policy.digest(),
                 "marginals": (self.calibration_.to_dict()
                               if getattr(self, "calibration_", None) is not None else None)}
        policy = {**self.policy.model_dump(mode="json"), "seed": None}  # no seed is stored
        (folder / POLICY_FILE).write_text(yaml.safe_dump(policy, sort_keys=False),
                                          encoding="utf-8")
        (folder / SAVE_FILE).write_text(json.dumps(facts, indent=1, default=str),
                                        encoding="utf-8")
        return folder

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None,
             ledger: Ledger | str | Path | None = None, seed: int | None = None
             ) -> Synthesizer:
        """A synthesizer that samples from a saved model (OS entropy, or the development
        ``seed`` given here: no seed is stored). It holds no training row, so it cannot audit
        or release; ``fit`` on it is a new reservation in ``ledger``."""
        folder = Path(path)
        try:
            facts = json.loads((folder / SAVE_FILE).read_text(encoding="utf-8"))
            policy_text = (folder / POLICY_FILE).read_text(encoding="utf-8")
        except (OSError, json.JSONDecodeError):
            raise PrivsynthError(f"{folder}: not a saved privsynth synthesizer (no readable "
                                 f"{SAVE_FILE}); give the folder Synthesizer.save wrote"
                                 ) from None
        if facts.get("format") != SAVE_FORMAT:
            raise PrivsynthError(f"{folder}: {SAVE_FILE} is not {SAVE_FORMAT}; re-save it")
        policy = parse_policy(policy_text, str(folder / POLICY_FILE))
        model = cls(policy, ledger=ledger, device=device)
        target = pipeline._device(policy, device)
        model.generator_, model.encoder_ = load_generator(folder, device=target)
        person = policy.privacy.person
        if person is not None and getattr(model.encoder_, "order_by", "") is None:
            model.encoder_.order_by = person.order_by  # saved before the encoder kept it
        model.schema_ = model.encoder_.schema
        saved = facts.get("marginals")  # absent: saved before marginals were matched
        model.calibration_ = MarginalCalibration.from_dict(saved) if saved else None
        model.n_public_ = int(facts["n_public"])
        model.release_id_ = str(facts["release_id"])
        model.charges_ = list(facts["charges"])
        model.reservations_ = []
        model._spend = PrivacySpend()
        for charge in facts["charges"]:
            model._spend.add(Charge(**charge))
        model._rng, model._target = RandomSource(seed), target
        model._pseudonymized = list(facts["pseudonymized"])
        model._actions = dict(facts["actions"])
        model._train = model._holdout = model._split = None
        model._released = True  # a loaded model has no audit rows; never released again
        return model

    # ------------------------------------------------------------------ helpers
    def _check_fitted(self, method: str, *, needs_rows: bool = False) -> None:
        if not hasattr(self, "generator_"):
            raise NotFittedError(f"Synthesizer.{method} needs a fitted model; call fit(table) "
                                 "first (or Synthesizer.load a saved one)")
        if needs_rows and getattr(self, "_train", None) is None:
            raise NotFittedError(f"Synthesizer.{method} needs the training rows, which a loaded "
                                 "model does not hold; fit again (a new reservation)")

    def __repr__(self) -> str:
        state = f"fitted, release {self.release_id_}" if hasattr(self, "release_id_") else \
            "not fitted"
        return f"Synthesizer(policy={self.policy.name!r}, {state})"

    def __getstate__(self) -> dict[str, Any]:
        raise PrivsynthError("a Synthesizer is not pickled (it may hold training rows for the "
                             "audit); use save(path), which writes DP outputs only")


def _row_count(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise PrivsynthError(f"sample(n): n must be a positive whole number, got {n!r}")
    return int(n)


def _split(frame: pd.DataFrame, holdout_fraction: float | None, rng: RandomSource,
           release_id: str, unit: str = "row"
           ) -> tuple[pd.DataFrame, pd.DataFrame | None, dict[str, Any] | None]:
    """(train, holdout, split record). The record holds record positions (0-based: rows in the
    table's order, or under ``unit: person`` persons in order of their first row) and their
    count: keys for the controller, never a cell value."""
    if holdout_fraction is None:
        return frame.reset_index(drop=True), None, None
    positions = pd.DataFrame({"row": range(len(frame))})
    train_pos, holdout_pos = train_holdout_split(positions, holdout_fraction,
                                                 rng.numpy("split"))
    train = frame.iloc[train_pos["row"].to_numpy()].reset_index(drop=True)
    holdout = frame.iloc[holdout_pos["row"].to_numpy()].reset_index(drop=True)
    record = {"format": SPLIT_FORMAT, "release_id": release_id, "mode": "split",
              "notice": "INTERNAL: which rows of the released-from table were training rows "
                        "(members) and which the audit's holdout. Never share this file.",
              "unit": unit, "table_rows" if unit == "row" else "table_persons": len(frame),
              "holdout_positions": [int(i) for i in holdout_pos["row"]]}
    return train, holdout, record


def _given_split(release_id: str) -> dict[str, Any]:
    """The record when the caller gave the holdout: every row of the fit table trained."""
    return {"format": SPLIT_FORMAT, "release_id": release_id, "mode": "given",
            "notice": "INTERNAL: the model was fit on every row of the table given to fit; the "
                      "audit's holdout was the caller's own table. Never share this file."}
