"""anonymeter 1.1 evaluators: singling out, linkability, inference.

ori = training rows (members), control = holdout rows, balanced to the same size (a singling-out
query's success depends on the size of the table it runs on), syn = the synthetic table.
anonymeter reports the *residual* risk (success on ori beyond success on control) with a Wilson
interval; we keep its ``risk().ci`` as is. Seeds are passed explicitly: SinglingOutEvaluator takes
one; linkability and inference draw their targets with pandas' ``sample`` from numpy's global
generator, so we seed that generator for the duration of the call and restore it afterwards. (The
linkability *baseline* uses an unseeded ``default_rng()`` inside anonymeter; it is reported, never
gated, so the gate is reproducible.)

Inference uses anonymeter's ``InferenceEvaluator`` with a custom ``inference_model``: the 1-nearest
synthetic neighbour on the auxiliary columns, like its default ``KNNInferencePredictor``, but
searched with privsynth's vectorized mixed-type distance instead of a per-row loop, so thousands
of attacks cost about a second. Linkability keeps anonymeter's own neighbour search (numba,
parallel over ``N_JOBS`` threads).

anonymeter wants consistent dtypes across ori/syn/control and cannot sort ``None`` with strings:
categories are strings with missing as a sentinel category; numbers are float64 with missing set
to a sentinel half a span below the public lower bound (so missing matches missing).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings

import numpy as np
import pandas as pd

from privsynth.audit.context import AuditContext
from privsynth.audit.distance import fit_embedding, nearest_neighbors
from privsynth.audit.result import RiskResult
from privsynth.data.schema import TableSchema

_MISSING = "<missing>"
#: Rows of ori, control and synthetic handed to anonymeter (each, seeded sample). anonymeter's
#: multivariate singling-out query generation scales with the synthetic table's size (about 60 s
#: at 24k rows on two busy cores, 15 s at 10k); 10k rows keep a full audit of Adult in budget.
MAX_ANONYMETER_ROWS = 10_000


N_JOBS = max(1, min(2, os.cpu_count() or 1))

#: Multivariate singling-out query generation stops after this many attempts per query asked
#: (anonymeter's default is 10 million in all; we used 2,000 per query). On tables with few
#: distinct combinations almost no attempt singles out a row, so a large cap only spends minutes
#: to end short anyway. 40 was too few for Adult (215 of 500 multivariate queries on 10,000-row
#: samples); 400 keeps a 4-column finance table to seconds.
MAX_ATTEMPTS_PER_QUERY = 400


class NotApplicableError(Exception):
    """The table cannot support an attack (or one of its modes): not a pass, not a failure.

    ``modes``: (reason, details) per inapplicable mode; ``results``: risks of the modes that did
    run (gated as usual)."""

    def __init__(self, modes: list[tuple[str, dict]], results: list[RiskResult]) -> None:
        self.modes, self.results = modes, results
        super().__init__("; ".join(reason for reason, _ in modes))


class TooFewAttacks(Exception):  # noqa: N818 - a reason, not an error class in the public API
    """anonymeter ran fewer attacks than the policy asked for."""

    def __init__(self, done: int, asked: int, what: str) -> None:
        self.done, self.asked = done, asked
        super().__init__(f"{what}: anonymeter generated {done} of the {asked} attacks asked")


def _prepare(ctx: AuditContext) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    train, holdout = ctx.balanced
    syn = ctx.synth
    rng = ctx.rng("anonymeter-rows")
    n = min(len(train), MAX_ANONYMETER_ROWS)
    train = train.iloc[np.sort(rng.choice(len(train), n, replace=False))]
    holdout = holdout.iloc[np.sort(rng.choice(len(holdout), n, replace=False))]
    if len(syn) > MAX_ANONYMETER_ROWS:
        syn = syn.iloc[np.sort(rng.choice(len(syn), MAX_ANONYMETER_ROWS, replace=False))]
    out = []
    for frame in (train, syn, holdout):
        f = pd.DataFrame(index=range(len(frame)))
        for col in ctx.schema.columns:
            s = frame[col.name].reset_index(drop=True)
            if col.is_numeric:
                x = pd.to_numeric(s, errors="coerce").astype("float64")
                lo, hi = ctx.embedding.numeric[col.name]
                f[col.name] = x.fillna(lo - 0.5 * (hi - lo))
            else:
                v = s.astype(object)
                f[col.name] = v.where(~pd.isna(v), _MISSING).map(str).astype(object)
        out.append(f)
    return out[0], out[1], out[2]


@contextlib.contextmanager
def _seeded_global(seed: int):
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


class _QueryCount(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.generated: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        m = re.search(r"could generate only (\d+) singling out", record.getMessage())
        if m:
            self.generated = int(m.group(1))


def _risk(name, attack, risk, results, n_attacks, threshold_key, details) -> RiskResult:
    base = results.risk(baseline=True)
    return RiskResult(
        name=name, value=float(risk.value), ci_low=float(risk.ci[0]), ci_high=float(risk.ci[1]),
        baseline=float(base.value), threshold_key=threshold_key, attack=attack,
        details={
            "n_attacks": n_attacks,
            "n_attacks_requested": n_attacks,
            "attack_success_rate": float(results.attack_rate.value),
            "control_success_rate": (None if results.control_rate is None
                                     else float(results.control_rate.value)),
            "baseline_success_rate": float(results.baseline_rate.value),
            "n_success": int(results.n_success),
            "n_control": None if results.n_control is None else float(results.n_control),
            "n_baseline": int(results.n_baseline),
            "confidence_level": 0.95,
            **details,
        },
    )


def singling_out(ctx: AuditContext) -> list[RiskResult]:
    """Univariate and multivariate singling out. A mode for which anonymeter cannot generate the
    queries asked (too few distinct values or combinations in the synthetic table) is *not
    applicable*: its risk on the few queries it found is recorded, not gated, unless even its
    lower bound is at or above the threshold (a clear leak is never hidden)."""
    from anonymeter.evaluators import SinglingOutEvaluator

    ori, syn, control = _prepare(ctx)
    n_attacks = ctx.config.singling_out_attacks
    limit = ctx.config.thresholds.singling_out_risk
    out, inapplicable = [], []
    logger = logging.getLogger("anonymeter.evaluators.singling_out_evaluator")
    for mode in ("univariate", "multivariate"):
        handler = _QueryCount()
        logger.addHandler(handler)
        risk = results = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ev = SinglingOutEvaluator(ori=ori, syn=syn, control=control, n_attacks=n_attacks,
                                          n_cols=3, seed=ctx.int_seed(f"so-{mode}"),
                                          max_attempts=MAX_ATTEMPTS_PER_QUERY * n_attacks)
                try:
                    ev.evaluate(mode=mode)
                    risk = ev.risk(confidence_level=ctx.confidence)
                    results = ev.results(confidence_level=ctx.confidence)
                except Exception:  # noqa: BLE001 - anonymeter fails on zero queries
                    if handler.generated is None:
                        raise
        finally:
            logger.removeHandler(handler)
        details = {"mode": mode, "n_cols": 1 if mode == "univariate" else 3,
                   "ori_rows": len(ori), "control_rows": len(control)}
        generated = handler.generated
        if generated is not None and generated < n_attacks:
            if risk is not None and generated > 0 and float(risk.ci[0]) >= limit:
                # even the few queries found show a clear leak: gate it
                out.append(_risk(f"singling_out_{mode}", "singling_out", risk, results,
                                 generated, "singling_out_risk",
                                 {**details, "n_attacks_asked": n_attacks}))
                continue
            info = {**details, "queries_generated": generated, "queries_asked": n_attacks}
            if risk is not None:
                info.update(risk=float(risk.value), ci_low=float(risk.ci[0]),
                            ci_high=float(risk.ci[1]))
            inapplicable.append((
                f"singling out ({mode}) not applicable: anonymeter generated {generated} of "
                f"the {n_attacks} queries asked (the synthetic table has too few distinct "
                f"{'values' if mode == 'univariate' else 'combinations'} to single out rows)",
                info))
            continue
        out.append(_risk(f"singling_out_{mode}", "singling_out", risk, results, n_attacks,
                         "singling_out_risk", details))
    if inapplicable:
        raise NotApplicableError(inapplicable, out)
    return out


class MissingConfig(Exception):  # noqa: N818
    """The policy does not say what an attack needs (linkability split, secret columns)."""


def _distinct_rows(frames: tuple[pd.DataFrame, ...], cols: list[str]) -> int:
    """Distinct value combinations of ``cols`` over the rows of ``frames`` (missing counts as
    a value: ``_prepare`` has already replaced it by a sentinel)."""
    both = pd.concat([f[cols] for f in frames], ignore_index=True)
    return int(len(both.drop_duplicates()))


def linkability(ctx: AuditContext) -> list[RiskResult]:
    """anonymeter's linkability on the policy's two auxiliary column sets. *Not applicable*
    (no block, no time spent) when the table cannot support it: fewer than two columns, or
    halves that are empty or overlap once restricted to the table's columns (too few columns
    for two disjoint halves), or a half on which every real row has the same values (nothing to
    link by)."""
    from anonymeter.evaluators import LinkabilityEvaluator

    cols = list(ctx.schema.names)
    if not ctx.config.linkability_aux:
        if len(cols) < 2:
            raise NotApplicableError([(
                f"linkability not applicable: the table has {len(cols)} column(s), too few for "
                "two disjoint auxiliary halves", {"columns": len(cols)})], [])
        raise MissingConfig("linkability needs audit.linkability_aux: [[cols...], [cols...]]")
    first = [c for c in ctx.config.linkability_aux[0] if c in cols]
    second = [c for c in ctx.config.linkability_aux[1] if c in cols and c not in first]
    if not first or not second:
        raise NotApplicableError([(
            "linkability not applicable: audit.linkability_aux leaves too few columns of this "
            "table for two disjoint auxiliary halves (each needs at least one column that the "
            "other lacks)", {"aux_cols": [first, second]})], [])
    aux = (first, second)
    ori, syn, control = _prepare(ctx)
    flat = [h for h in aux if _distinct_rows((ori, control), h) < 2]
    if flat:
        raise NotApplicableError([(
            f"linkability not applicable: every real row has the same values on the auxiliary "
            f"columns {flat[0]}, so there is nothing to link records by",
            {"aux_cols": [first, second], "constant_half": flat[0]})], [])
    n_attacks = min(ctx.config.anonymeter_attacks, len(ori), len(control))
    if n_attacks < ctx.config.anonymeter_attacks:
        raise TooFewAttacks(n_attacks, ctx.config.anonymeter_attacks, "linkability")
    with warnings.catch_warnings(), _seeded_global(ctx.int_seed("linkability")):
        warnings.simplefilter("ignore")
        ev = LinkabilityEvaluator(ori=ori, syn=syn, control=control, aux_cols=aux,
                                  n_attacks=n_attacks, n_neighbors=1)
        ev.evaluate(n_jobs=N_JOBS)
        risk = ev.risk(confidence_level=ctx.confidence)
        results = ev.results(confidence_level=ctx.confidence)
    return [_risk("linkability", "linkability", risk, results, n_attacks, "linkability_risk",
                  {"aux_cols": [aux[0], aux[1]], "n_neighbors": 1})]


def inference(ctx: AuditContext) -> list[RiskResult]:
    """anonymeter's inference attack on each secret column, with every ori row as a target.

    The residual risk r = (a - c) / (1 - c) divides the excess of the success rate on train (a)
    over the control (c) by 1 - c, which multiplies its noise by 1 / (1 - c): for Adult's
    income, c ~ 0.8, the delta-method half-width is about 1.96·sqrt(8 / n) over n attacks,
    0.11 at n = 2,500, and 1 honest demo release in 11 was blocked at 0.222 > 0.2. The attacks
    cost about a second per thousand (vectorized nearest-neighbour predictor), so inference runs
    one attack per ori row that has a control row to pair with (``n = min(ori, control)``, up to
    ``MAX_ANONYMETER_ROWS``; 10,000 on Adult: half-width 0.055), never fewer than
    ``anonymeter_attacks``. An honest release with true residual risk r0 is then blocked only
    when its estimate exceeds 0.2 - 0.055, (0.145 - r0)/0.028 standard errors out: 5 for r0 = 0,
    3.4 for r0 = 0.05.

    A secret is *not applicable* (no block, no time spent) when the table cannot support the
    attack: no other column to infer it from, a secret constant over the real rows (nothing to
    infer; anonymeter's 1 - c is 0), or auxiliary columns with a single combination over the
    real rows (every synthetic row is equally near).
    """
    from anonymeter.evaluators import InferenceEvaluator

    if not ctx.config.secrets:
        raise MissingConfig("inference needs audit.secrets: the columns an attacker would infer")
    ori, syn, control = _prepare(ctx)
    asked = ctx.config.anonymeter_attacks
    n_attacks = min(len(ori), len(control))
    if n_attacks < asked:
        raise TooFewAttacks(n_attacks, asked, "inference")
    out, inapplicable = [], []
    for secret in ctx.config.secrets:
        aux = [c for c in ctx.schema.names if c != secret]
        why = None
        if not aux:
            why = "the table has no other column to infer it from"
        elif _distinct_rows((ori, control), [secret]) < 2:
            why = "the secret column is constant over the real rows: there is nothing to infer"
        elif _distinct_rows((ori, control), aux) < 2:
            why = ("every real row has the same values on the other columns: there is nothing "
                   "to infer the secret from")
        if why is not None:
            inapplicable.append((f"inference on '{secret}' not applicable: {why}",
                                 {"secret": secret, "aux_cols": aux}))
            continue
        regression = ctx.schema[secret].is_numeric
        with warnings.catch_warnings(), _seeded_global(ctx.int_seed(f"inference-{secret}")):
            warnings.simplefilter("ignore")
            model = _NearestSyntheticPredictor(ctx, syn, aux, secret)
            ev = InferenceEvaluator(ori=ori, syn=syn, control=control, aux_cols=aux,
                                    secret=secret, regression=regression, n_attacks=n_attacks,
                                    inference_model=model)
            ev.evaluate(n_jobs=1)
            risk = ev.risk(confidence_level=ctx.confidence)
            results = ev.results(confidence_level=ctx.confidence)
        out.append(_risk(f"inference_{secret}", "inference", risk, results, n_attacks,
                         "inference_risk",
                         {"secret": secret, "aux_cols": aux, "regression": regression,
                          "n_attacks_asked": asked}))
    if inapplicable:
        raise NotApplicableError(inapplicable, out)
    return out


class _NearestSyntheticPredictor:
    """anonymeter ``InferencePredictor``: the secret of the nearest synthetic row on ``aux``."""

    def __init__(self, ctx: AuditContext, syn: pd.DataFrame, aux: list[str], secret: str):
        self._schema = TableSchema(tuple(ctx.schema[c] for c in aux))
        self._bounds = {c: ctx.embedding.numeric[c] for c in aux if c in ctx.embedding.numeric}
        self._aux = aux
        syn_model = self._to_model(syn)
        self._embedding = fit_embedding(self._schema, syn_model)
        self._ref = self._embedding.transform(syn_model)
        self._secret = syn[secret].reset_index(drop=True)

    def _to_model(self, frame: pd.DataFrame) -> pd.DataFrame:
        out = frame[self._aux].copy()
        for c, (lo, hi) in self._bounds.items():
            # undo the missing sentinel (half a span below the lower bound)
            out[c] = out[c].mask(out[c] < lo - 0.25 * (hi - lo))
        return out

    def predict(self, x: pd.DataFrame) -> pd.Series:
        q = self._embedding.transform(self._to_model(x))
        _, idx = nearest_neighbors(q, self._ref, 1)
        return pd.Series(self._secret.to_numpy()[idx[:, 0]], index=x.index)
