"""Run every requested attack, each isolated: a failure is recorded, never swallowed.

Each attack runs in its own daemon thread with the policy's ``timeout_s``; an attack that raises,
overruns, returns NaN, runs fewer attacks than asked, or gets an empty or schema-mismatched table
becomes an ``AuditFailure`` with a reason code, which the gate turns into a block. Failure messages
name the attack and the exception type, never a cell value (exception texts from third-party code
may quote data, so only privsynth's own messages are kept).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from privsynth.audit import anonymeter as _anon
from privsynth.audit import copies, membership, targeted
from privsynth.audit.context import MAX_DISTANCE_ROWS, AuditContext
from privsynth.audit.result import AuditFailure, AuditResult, NotApplicable, RiskResult
from privsynth.audit.utility import utility_report
from privsynth.data.schema import TableSchema
from privsynth.errors import PrivsynthError
from privsynth.policy.model import AuditPolicy

Attack = Callable[[AuditContext], list[RiskResult]]

#: attack name (as in ``AuditPolicy.attacks``) -> implementation. Tests swap entries to inject
#: faults.
ATTACKS: dict[str, Attack] = {
    "exact_copy": copies.exact_copies,
    "unique_qi": copies.unique_qi_copies,
    "dcr": copies.dcr,
    "mia": membership.mia,
    "singling_out": _anon.singling_out,
    "linkability": _anon.linkability,
    "inference": _anon.inference,
    "targeted_mia": targeted.targeted_mia,
}


class _Timeout(Exception):  # noqa: N818
    pass


def _call_with_timeout(fn: Attack, ctx: AuditContext, timeout_s: float) -> list[RiskResult]:
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn(ctx)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    t = threading.Thread(target=target, name=f"privsynth-audit-{getattr(fn, '__name__', '')}",
                         daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise _Timeout()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _safe_message(exc: BaseException) -> str:
    if isinstance(exc, PrivsynthError | _anon.TooFewAttacks | _anon.MissingConfig):
        return str(exc)
    return f"{type(exc).__name__} raised inside the attack (message withheld: it may quote data)"


def _check_tables(train, holdout, synthetic, schema: TableSchema) -> tuple[str, str] | None:
    names = list(schema.names)
    for label, frame in (("train", train), ("holdout", holdout), ("synthetic", synthetic)):
        if not isinstance(frame, pd.DataFrame):
            return "schema_mismatch", f"the {label} table is not a DataFrame"
        cols = [str(c) for c in frame.columns]
        if sorted(cols) != sorted(names) or len(set(cols)) != len(cols):
            missing = sorted(set(names) - set(cols))
            extra = sorted(set(cols) - set(names))
            return "schema_mismatch", (
                f"the {label} table's columns differ from the schema: missing {missing}, "
                f"unexpected {extra}")
    for label, frame in (("train", train), ("holdout", holdout), ("synthetic", synthetic)):
        if len(frame) == 0:
            return "empty_table", f"the {label} table has no rows"
    for col in schema.columns:
        if col.is_numeric:
            for label, frame in (("train", train), ("holdout", holdout),
                                 ("synthetic", synthetic)):
                s = frame[col.name]
                if not (pd.api.types.is_numeric_dtype(s) or s.isna().all()):
                    return "schema_mismatch", (
                        f"column '{col.name}' of the {label} table is not numeric in model space")
    return None


def _validate(name: str, results: list[RiskResult]) -> AuditFailure | None:
    if not isinstance(results, list | tuple) or not results:
        return AuditFailure(name, "attack_error", f"attack '{name}' returned no results")
    for r in results:
        if not isinstance(r, RiskResult):
            return AuditFailure(name, "attack_error", f"attack '{name}' returned a non-result")
        if not r.is_finite():
            return AuditFailure(name, "nan_result",
                                f"attack '{name}' returned a non-finite value for '{r.name}'")
        asked = r.details.get("n_attacks_requested")
        done = r.details.get("n_attacks")
        if isinstance(asked, int) and isinstance(done, int) and done < asked:
            return AuditFailure(name, "too_few_attacks",
                                f"attack '{name}' ran {done} of the {asked} attacks asked")
    return None


def run_audit(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    config: AuditPolicy,
    *,
    seed: int | None,
) -> AuditResult:
    """Audit ``synthetic`` against ``train`` (members) and ``holdout`` (non-members).

    All frames are in model space (the columns of ``schema.names``). Returns risks with intervals,
    failures, utility evidence and figure data; the gate decides from it.
    """
    requested = tuple(dict.fromkeys(config.attacks))
    seed_seq = np.random.SeedSequence(seed)
    meta: dict = {
        "seed": seed, "seed_entropy": str(seed_seq.entropy),
        "rows": {"train": _len(train), "holdout": _len(holdout), "synthetic": _len(synthetic)},
        "confidence_level": 0.95, "timeout_s": config.timeout_s,
        "anonymeter_attacks": config.anonymeter_attacks, "timings_s": {},
        "protected_attributes": list(config.protected_attributes),
    }
    problem = _check_tables(train, holdout, synthetic, schema)
    if problem is not None:
        code, message = problem
        errors = tuple(AuditFailure(a, code, message) for a in requested) or (
            AuditFailure("audit", code, message),)
        return AuditResult(risks=(), errors=errors, attacks_requested=requested, meta=meta)

    train = train[schema.names]
    holdout = holdout[schema.names]
    synthetic = synthetic[schema.names]
    ctx = AuditContext(train=train, holdout=holdout, synthetic=synthetic, schema=schema,
                       config=config, seed_seq=seed_seq)
    meta["rows"]["distance_train"] = len(ctx.reference[0])
    meta["rows"]["distance_holdout"] = len(ctx.reference[1])
    meta["rows"]["balanced_reference"] = len(ctx.balanced[0])
    meta["rows"]["synthetic_used"] = len(ctx.synth)
    meta["rows"]["anonymeter_ori"] = min(len(ctx.balanced[0]), _anon.MAX_ANONYMETER_ROWS)
    meta["rows"]["anonymeter_synthetic"] = min(len(ctx.synth), _anon.MAX_ANONYMETER_ROWS)
    meta["sampling"] = (
        f"every train row against every holdout row (at most {MAX_DISTANCE_ROWS:,} rows each) "
        f"for the copy and distance attacks, whatever their sizes; anonymeter gets seeded "
        f"samples of at most {_anon.MAX_ANONYMETER_ROWS:,} rows each of train (ori), holdout "
        f"(control), balanced to the same size, and synthetic, and "
        f"{config.anonymeter_attacks} attacks (inference: every ori row it can pair with a "
        f"control row), to bound its run time")

    risks: list[RiskResult] = []
    errors: list[AuditFailure] = []
    not_applicable: list[NotApplicable] = []
    for name in requested:
        fn = ATTACKS.get(name)
        start = time.perf_counter()
        if fn is None:
            errors.append(AuditFailure(name, "attack_error", f"no attack named '{name}'"))
            continue
        try:
            results = _call_with_timeout(fn, ctx, config.timeout_s)
        except _Timeout:
            errors.append(AuditFailure(name, "timeout",
                                       f"attack '{name}' ran past timeout_s={config.timeout_s:g}"))
        except _anon.NotApplicableError as exc:
            not_applicable.extend(NotApplicable(name, r, d) for r, d in exc.modes)
            risks.extend(exc.results)
        except _anon.TooFewAttacks as exc:
            errors.append(AuditFailure(name, "too_few_attacks", str(exc)))
        except _anon.MissingConfig as exc:
            errors.append(AuditFailure(name, "missing_config", str(exc)))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded block
            errors.append(AuditFailure(name, "attack_error", _safe_message(exc)))
        else:
            failure = _validate(name, results)
            if failure is not None:
                errors.append(failure)
            else:
                for r in results:
                    if not r.attack:
                        r = RiskResult(r.name, r.value, r.ci_low, r.ci_high, r.baseline,
                                       r.threshold_key, r.details, name)
                    risks.append(r)
        meta["timings_s"][name] = round(time.perf_counter() - start, 3)

    figures = dict(ctx.figures)
    start = time.perf_counter()
    try:
        utility, ufig = utility_report(schema, ctx.balanced[0], ctx.balanced[1], ctx.synth,
                                       config.target, ctx.int_seed("utility"),
                                       floor=config.utility)
        figures.update(ufig)
    except Exception as exc:  # noqa: BLE001 - recorded; the gate blocks if the floor is on
        utility = {"error": _safe_message(exc), "floor_enabled": config.utility.enabled}
    meta["timings_s"]["utility"] = round(time.perf_counter() - start, 3)
    meta["timings_s"]["total"] = round(sum(meta["timings_s"].values()), 3)
    return AuditResult(risks=tuple(risks), errors=tuple(errors), utility=utility,
                       figures=figures, attacks_requested=requested, meta=meta,
                       not_applicable=tuple(not_applicable))


def _len(frame) -> int | None:
    try:
        return len(frame)
    except TypeError:
        return None


__all__ = ["ATTACKS", "run_audit", "AuditResult", "RiskResult", "AuditFailure"]
