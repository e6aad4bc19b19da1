"""The policy: a frozen, validated description of one kind of release.

Everything a policy declares is *public knowledge* (bounds, category domains, formats) and costs
no privacy budget. Anything the policy leaves to be estimated (``bounds: dp``, ``domain: dp``,
``binning: quantile``) is estimated with a differentially private mechanism paid from the
release's epsilon.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from privsynth.policy.relations import (
    MissingUnless,
    Relation,
    check_relations,
    derived_columns,
)

if TYPE_CHECKING:
    from privsynth.generators.schedule import Schedule

ColumnKind = Literal["numeric", "integer", "categorical", "boolean", "datetime"]
Scalar = str | int | float | bool


class _Frozen(BaseModel):
    # allow_inf_nan=False: a policy built in Python (not only one read by the loader, which
    # refuses .inf/.nan with their line) cannot hold an infinite bound, grad norm or timeout.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Generalize(_Frozen):
    """How a ``rule: generalize`` column is coarsened before anything else sees it.

    ``to`` is one of: ``year``/``month`` (datetime), ``zip3`` (US ZIP to its first three digits,
    restricted areas suppressed), ``bands`` (number to the band edges in ``edges``), ``map``
    (category to a coarser group through ``mapping``), ``topcode`` (numbers above ``above`` set
    to ``above``, e.g. ages over 89 to 90).
    """

    to: Literal["year", "month", "zip3", "bands", "map", "topcode"]
    edges: list[float] | None = None
    mapping: dict[str, str] | None = None
    above: float | None = None

    @model_validator(mode="after")
    def _needs(self) -> Generalize:
        if self.to == "bands" and not self.edges:
            raise ValueError("generalize.to 'bands' needs 'edges', e.g. edges: [0, 18, 65, 120]")
        if self.to == "map" and not self.mapping:
            raise ValueError("generalize.to 'map' needs 'mapping', e.g. mapping: {a: group1}")
        if self.to == "topcode" and self.above is None:
            raise ValueError("generalize.to 'topcode' needs 'above', e.g. above: 89")
        return self


class ColumnPolicy(_Frozen):
    """The rule for one column.

    * ``rule``: ``keep`` (model it), ``drop`` (never read beyond its name), ``generalize``
      (coarsen, then model), ``pseudonymize`` (never model it; the output gets fresh random
      identifiers of the same shape).
    * ``kind``: required unless the column is dropped or pseudonymized.
    * ``bounds``: public ``[low, high]`` (numbers, or ISO dates for datetime) or ``dp``.
      Values outside public bounds are clipped (top and bottom coding).
    * ``domain``: the public list of categories, or ``dp`` to discover it with a DP threshold
      mechanism. A cell outside a declared domain becomes missing. ``unknown`` is still accepted
      for older policies, but ``error`` now behaves like ``missing``: refusing a release because
      of one cell (or reporting how many cells were outside) would reveal a private fact, so no
      count of such cells is ever reported.
    * ``binning``: ``quantile`` (DP quantiles, paid from epsilon), ``uniform`` (free) or
      ``geometric`` (free: one value per bin at the lower bound, widening upwards; for counts
      and amounts that pile up near it).
    * ``missing_values``: the texts that mark a missing cell in this column, overriding the
      dataset's ``missing_values``. A value listed in the column's declared ``domain`` (or a key
      of its ``generalize.mapping``) is never treated as missing.
    * ``complete: true``: the column has no missing values (a public fact, e.g. a required
      field). It gets no missing slot, so no synthetic row is missing there; a missing cell in
      the private table takes the lower bound (or the first category), row by row, uncounted.
    * ``point_masses``: exact values of a numeric or integer column that analysts rely on (0,
      an assay limit, a top code), each modelled as a slot of its own and decoded exactly; or
      ``dp`` to find them with the DP threshold mechanism (the values, after clipping to the
      bounds, whose noisy count reaches the threshold τ, at most 8 of them; paid like
      ``domain: dp``).
    * ``transform: asinh`` (with ``transform_scale``, default 1): bin a heavy-tailed numeric or
      integer column on ``asinh(x / transform_scale)``: log-like for large values, linear near
      0, any sign.
    * ``decimals``: the precision a numeric column is recorded at (a lab reports creatinine to
      0.1 mg/dL: ``decimals: 1``); synthetic values are rounded to it at decode (free
      post-processing), so they look like the real ones and exact values recur as they do.

    Every cell is converted on its own: a cell that does not parse as the declared kind, falls
    outside band edges, has no entry in a mapping or lies outside a declared domain becomes
    missing, silently and without a count.
    """

    rule: Literal["keep", "drop", "generalize", "pseudonymize"] = "keep"
    kind: ColumnKind | None = None
    bounds: tuple[Scalar, Scalar] | Literal["dp"] | None = None
    domain: list[Scalar] | Literal["dp"] | None = None
    unknown: Literal["error", "missing"] = "error"  # both: outside the domain -> missing
    binning: Literal["quantile", "uniform", "geometric"] = "quantile"
    bins: Annotated[int, Field(ge=2, le=256)] = 20
    generalize: Generalize | None = None
    identifier: bool = False
    missing_values: list[str] | None = None
    complete: bool = False
    point_masses: list[float] | Literal["dp"] | None = None
    transform: Literal["linear", "asinh"] = "linear"
    transform_scale: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0
    decimals: Annotated[int, Field(ge=0, le=12)] | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ColumnPolicy:
        modelled = self.rule in ("keep", "generalize")
        if modelled and self.kind is None:
            raise ValueError(
                "a kept column needs 'kind' (numeric, integer, categorical, boolean, datetime)"
            )
        if self.rule == "generalize" and self.generalize is None:
            raise ValueError("rule 'generalize' needs a 'generalize:' block saying how")
        if self.kind in ("numeric", "integer", "datetime") and modelled and self.bounds is None:
            raise ValueError(
                "a numeric or datetime column needs 'bounds: [low, high]' or 'bounds: dp'"
            )
        if self.kind == "categorical" and modelled and self.domain is None:
            raise ValueError("a categorical column needs 'domain: [...]' or 'domain: dp'")
        if isinstance(self.bounds, tuple) and self.kind in ("numeric", "integer"):
            low, high = self.bounds
            if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
                raise ValueError("numeric bounds must be two numbers [low, high]")
            if not low < high:
                raise ValueError("bounds must satisfy low < high")
        if isinstance(self.bounds, tuple) and self.kind == "datetime":
            try:
                low, high = (_to_datetime(v) for v in self.bounds)
            except ValueError as exc:
                raise ValueError(f"datetime bounds must be ISO dates: {exc}") from None
            if not low < high:
                raise ValueError("bounds must satisfy low < high")
        if isinstance(self.domain, list) and len(set(map(str, self.domain))) != len(self.domain):
            raise ValueError("domain lists a category twice")
        self._check_numeric_shape()
        return self

    def _check_numeric_shape(self) -> None:
        numeric = self.kind in ("numeric", "integer")
        if self.point_masses is not None and not numeric:
            raise ValueError("'point_masses' applies to numeric and integer columns only")
        if isinstance(self.point_masses, list):
            if len(set(self.point_masses)) != len(self.point_masses):
                raise ValueError("point_masses lists a value twice")
            if not all(math.isfinite(v) for v in self.point_masses):
                raise ValueError("point_masses must be finite numbers")
            if isinstance(self.bounds, tuple):
                low, high = self.bounds
                outside = [v for v in self.point_masses if not low <= v <= high]
                if outside:
                    raise ValueError(f"point_masses {outside} lie outside bounds [{low}, {high}]")
        if self.decimals is not None and self.kind != "numeric":
            raise ValueError("'decimals' applies to numeric columns only (integers are whole)")
        if self.transform != "linear" and not numeric:
            raise ValueError("'transform: asinh' applies to numeric and integer columns only")

    @property
    def modelled(self) -> bool:
        """True when the generator learns this column."""
        return self.rule in ("keep", "generalize")


def _to_datetime(value: Scalar) -> dt.datetime:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("expected an ISO date string")
    return dt.datetime.fromisoformat(str(value))


_MOVED_TO_REGISTRATION = {
    "total_epsilon": "a population's total ε (and δ) is set once by a privacy officer with "
                     "`privsynth budget register ID --total-epsilon E --total-delta D "
                     "--data FILE --officer NAME` and changed only by a recorded "
                     "`privsynth budget set-total ID --total-epsilon E --officer NAME "
                     "--reason TEXT`",
    "total_delta": "a population's total δ is set with `privsynth budget register ID "
                   "--total-delta D ...` and changed with `privsynth budget set-total ID "
                   "--total-delta D ...`",
    "composition": "the composition rule is part of the population's registration: "
                   "`privsynth budget register ID ... --composition sum|accountant`",
}


class BudgetPolicy(_Frozen):
    """Where the privacy-budget ledger lives.

    The budget itself is not part of a policy: it belongs to a population (``dataset.id``)
    registered once in the ledger by a privacy officer (``privsynth budget register``), whose
    total only a recorded ``privsynth budget set-total`` changes. A release policy can never
    raise a cap.
    """

    ledger: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            moved = [k for k in _MOVED_TO_REGISTRATION if k in data]
            if moved:
                raise ValueError("; ".join(
                    f"budget.{k} is no longer read from a policy: {_MOVED_TO_REGISTRATION[k]}; "
                    "remove it from the policy" for k in moved))
        return data


class PersonUnit(_Frozen):
    """Who one DP "neighbour" is when a person has many rows (``privacy.unit: person``).

    ``id`` names the identifier column (rule ``drop`` or ``pseudonymize``: never modelled, never
    released; a pseudonymized id is re-drawn per *synthetic person*). ``max_rows`` is the
    contribution bound k, chosen by the policy and never from the data: a person's rows beyond k
    are dropped at random, by draws that read no other person's data. ``order_by`` names a
    modelled numeric, integer or datetime column (visit day, year) that orders a person's rows;
    without it the kept rows stay in table order. ``fixed`` lists modelled columns that describe
    the person, not the row (sex, birth year, treatment arm): they are modelled once per person
    (from the person's first kept row) and repeated on each synthetic row, which keeps them
    consistent within a person and makes the model smaller.
    """

    id: Annotated[str, Field(min_length=1)]
    max_rows: Annotated[int, Field(ge=1, le=64)]
    order_by: str | None = None
    fixed: list[str] = Field(default_factory=list)


class PrivacyPolicy(_Frozen):
    """Epsilon and delta for one release, and how they are split between stages.

    ``unit``: ``row`` (one row is one person: add/remove one row) or ``person`` (add/remove one
    person with all of their at most ``person.max_rows`` rows; needs ``person``).
    """

    epsilon: Annotated[float, Field(gt=0, le=100)]
    delta: Annotated[float, Field(gt=0, lt=1e-2)] = 1e-6
    accountant: Literal["prv", "rdp"] = "prv"
    encoding_share: Annotated[float, Field(gt=0, lt=1)] = 0.1
    # Share of ε for the DP one-way marginals matched at sampling (privsynth.encoding.marginals):
    # ``auto`` spends 0.2 where it affords a few cells per column (large N̂·ε per column), else
    # nothing; 0 turns it off. Row level only.
    marginals_share: Annotated[float, Field(ge=0, lt=0.5)] | Literal["auto"] = "auto"
    # The columns measured and matched (default: every modelled column). Naming the few an
    # analyst reads one by one (point masses, heavy tails) gives each more of the share.
    marginals_columns: Annotated[list[str], Field(min_length=1)] | None = None
    unit: Literal["row", "person"] = "row"
    person: PersonUnit | None = None

    @model_validator(mode="after")
    def _unit_needs_person(self) -> PrivacyPolicy:
        if self.unit == "person" and self.person is None:
            raise ValueError("privacy.unit: person needs 'person: {id: <identifier column>, "
                             "max_rows: <rows kept per person>}'")
        if self.unit == "person" and (self.marginals_share not in ("auto", 0)
                                      or self.marginals_columns is not None):
            raise ValueError("privacy.marginals_share and marginals_columns are matched on rows, "
                             "not persons; remove them under 'unit: person' (auto spends nothing "
                             "there)")
        if self.marginals_share != "auto" and self.encoding_share + self.marginals_share >= 0.9:
            raise ValueError("privacy.encoding_share + privacy.marginals_share must leave DP-SGD "
                             "at least 0.1 of epsilon; lower one of them")
        if self.unit == "row" and self.person is not None:
            raise ValueError("privacy.person is only read with 'unit: person'; set the unit or "
                             "remove the person block")
        return self


#: Learning rates per backend (numbers, not read from any data). Batch size and epochs default
#: to ``auto``: the rule of :mod:`privsynth.generators.schedule` on the public row count.
BACKEND_DEFAULTS: dict[str, dict[str, float | str]] = {
    # The VAE's learning rate was tuned on the public Adult table, the GAN's likewise (its
    # discriminator wants small steps); docs/architecture.md.
    "vae": {"epochs": "auto", "batch_size": "auto", "learning_rate": 1e-2},
    "gan": {"epochs": "auto", "batch_size": "auto", "learning_rate": 2e-3},
}


class TuningCandidate(_Frozen):
    """One configuration accounted tuning may pick: generator fields it overrides (the rest
    are the generator block's own)."""

    epochs: Annotated[float, Field(gt=0, le=1000)] | Literal["auto"] | None = None
    batch_size: Annotated[int, Field(ge=8)] | Literal["auto"] | None = None
    learning_rate: Annotated[float, Field(gt=0)] | None = None
    max_grad_norm: Annotated[float, Field(gt=0)] | None = None
    hidden: list[Annotated[int, Field(ge=4)]] | None = None
    latent_dim: Annotated[int, Field(ge=2)] | None = None
    kl_weight: Annotated[float, Field(gt=0, le=10)] | None = None
    target_weight: Annotated[float, Field(ge=1, le=1000)] | Literal["auto"] | None = None

    def overrides(self) -> dict[str, Any]:
        """The fields this candidate sets."""
        return self.model_dump(exclude_none=True)


class TuningPolicy(_Frozen):
    """Accounted tuning (``privsynth.generators.tuning``): private selection by random stopping
    (Papernot & Steinke 2022) over ``candidates``, its whole cost charged to the release's ε.

    ``expected_runs``: E[K], the mean number of trainings (K itself is random and secret);
    ``eta``: the truncated negative binomial's shape (0: logarithmic, 1: geometric; smaller is
    cheaper in ε and heavier-tailed in runs); ``score_share``: the share of ε spent on the DP
    tables that score each run (target × column counts, or one-way counts without a target).
    """

    candidates: Annotated[list[TuningCandidate], Field(min_length=2, max_length=16)]
    expected_runs: Annotated[float, Field(gt=1, le=20)] = 3.0
    eta: Annotated[float, Field(gt=-1, le=10)] = 0.0
    score_share: Annotated[float, Field(gt=0, lt=0.5)] = 0.1


class GeneratorPolicy(_Frozen):
    """Which generator, and its DP-SGD settings. ``batch_size`` is the *expected* Poisson batch.

    ``batch_size`` and ``epochs`` default to ``auto``: a documented rule on public facts only
    (:mod:`privsynth.generators.schedule`: E[B] ≈ 0.1·N̂ and a fixed number of DP-SGD steps,
    N̂ the DP row count), so a 500-row table and Adult's 24k rows both get enough steps. A number
    overrides the rule. ``learning_rate`` defaults per backend (``BACKEND_DEFAULTS``). Under
    DP-SGD a small network wins, because the noise norm grows with the parameter count.
    """

    backend: Literal["vae", "gan"] = "vae"
    epochs: Annotated[float, Field(gt=0, le=1000)] | Literal["auto"]
    batch_size: Annotated[int, Field(ge=8)] | Literal["auto"]
    max_grad_norm: Annotated[float, Field(gt=0)] = 1.0
    learning_rate: Annotated[float, Field(gt=0)]
    hidden: list[Annotated[int, Field(ge=4)]] = Field(default_factory=lambda: [64])
    latent_dim: Annotated[int, Field(ge=2)] = 8
    kl_weight: Annotated[float, Field(gt=0, le=10)] = 0.2
    # Weight of ``audit.target``'s term in the VAE's reconstruction loss (public: the policy
    # names the target). ``auto``: the number of other modelled columns, so the target weighs
    # as much as the rest of the row (docs/defaults_study.md); 1 treats it as any other column.
    target_weight: Annotated[float, Field(ge=1, le=1000)] | Literal["auto"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Largest number of rows run through the model at once; a larger Poisson batch is split
    # into chunks whose clipped gradients are summed before the noise (memory, not privacy).
    max_physical_batch: Annotated[int, Field(ge=1)] | None = None
    # Off by default: accounted tuning over a small grid (TuningPolicy).
    tuning: TuningPolicy | None = None

    @model_validator(mode="before")
    @classmethod
    def _backend_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            backend = data.get("backend", "vae")
            defaults = BACKEND_DEFAULTS.get(backend, BACKEND_DEFAULTS["vae"])
            data = {**defaults, **data}
        return data

    @model_validator(mode="after")
    def _tuning_backend(self) -> GeneratorPolicy:
        if self.tuning is not None and self.backend != "vae":
            raise ValueError("generator.tuning is built for the VAE backend; remove it or set "
                             "backend: vae")
        return self

    def candidate(self, index: int) -> GeneratorPolicy:
        """This generator block with tuning candidate ``index``'s fields applied (no tuning)."""
        assert self.tuning is not None
        fields = {**self.model_dump(exclude={"tuning"}),
                  **self.tuning.candidates[index].overrides()}
        return GeneratorPolicy(**fields)

    def applied_target_weight(self, target: str | None, modelled: list[str]) -> float:
        """The weight ``target`` gets in the VAE's loss over the ``modelled`` columns (public
        schema): ``auto`` is ``len(modelled) - 1``, so the target weighs as much as the other
        columns together; 1 where nothing is weighted (no modelled target, or the GAN)."""
        if self.backend != "vae" or target not in modelled:
            return 1.0
        if self.target_weight == "auto":
            return float(max(1, len(modelled) - 1))
        return float(self.target_weight)

    def schedule(self, n_public: int) -> Schedule:
        """The expected batch and epochs for ``n_public`` public training rows (or persons):
        the policy's numbers, ``auto`` resolved by the public rule."""
        from privsynth.generators.schedule import resolve_schedule  # noqa: PLC0415

        return resolve_schedule(self.batch_size, self.epochs, n_public, self.backend)


class Thresholds(_Frozen):
    """Upper limits on audit risks, as *effect sizes* over each risk's null.

    **The null.** Train and holdout are a uniformly random split of the pooled real rows, so a
    generator that learned nothing specific to its training rows leaves the labels exchangeable
    given the real rows and the synthetic table. Re-splitting the pooled rows into
    pseudo-train and pseudo-holdout of the same sizes, with the synthetic table fixed, is
    therefore the only exact null; the audit computes it by permuting labels over its cached
    distances (200 permutations, never a new neighbour search) and reports each risk's null
    mean (the baseline) and 95th percentile. Every statistic is defined so that its null value
    is known exactly *for any sizes* (AUC and DCR share 0.5, excess rates 0): the distance and
    copy attacks use every training row against every holdout row, however unequal.

    **The rule.** A release passes a risk when ``upper - max(0, null_mean - nominal) <
    threshold``, ``upper`` the upper end of the risk's interval (two-sided 95% for the AUC and
    the copy rates, one-sided 95% for the DCR share, the near-copy rate and TPR at 1% FPR:
    leaks push these up and only the upper end is read). The null excess is 0 wherever the
    null mean is exact, and otherwise absorbs what the computation itself adds (the DCR share's
    fail-closed bound beyond its neighbour lists), so a limit measures the effect, not the
    method. Honest DP output sits slightly above the null on large tables: the limits leave room
    for that and for the noise. An honest release passes 95% of the time when
    ``(z_bound + 1.645)·sd + honest_excess < threshold - nominal``; ``policy check``'s
    pre-flight and the gate's "underpowered" hint apply this with each risk's own sd.

    * ``exact_copy_rate`` and ``unique_qi_copy_rate`` (0.005) gate the share of synthetic rows
      equal to a *rare* training row (one that occurs once in the pooled real rows; for
      unique_qi, unique on the quasi-identifiers) beyond chance:
      ``(a - π m) / ((1 - π) n)``, m synthetic rows equal to a rare real row, a of them to a
      training row, π = n_train / n_pooled (with equal sizes: train copies minus holdout copies,
      over n). With no natural matches the honest upper bound is the Wilson bound for 0
      events, about 3.84/n (0.0005 at the audit's 7,683 rows on a small table; 0.00016 on
      Adult's 24k halves); a release with 1% of its rows copied from train has an estimate
      of 0.01, so 0.005 blocks it and passes honest ones. On a low-entropy table
      (health_insurance: 7% of fresh rows match a rare training row by chance) the noise is
      about sqrt(2 * 0.07 / n), 0.007 at n = 3,000: such a table cannot be certified at 0.005
      until n is several times larger, and the gate blocks it (fail closed) unless the policy
      raises the limit. A limit of exactly 0 means zero tolerance: pass only if not one
      synthetic row copies a rare training row (an interval can never be below 0).
    * ``column_value_copy_rate`` (0.3) gates one column at a time: the share of the column's
      values held by exactly one real row (pooled train and holdout) that the synthetic table
      reproduces, training ones beyond chance, ``(a - π m) / ((1 - π) T)`` over the T such
      values (``copies.column_value_copies``; columns with at least 250 of them are tested). It
      catches exact values of one high-cardinality column (an amount, a lab value, a date)
      carried over from training rows into otherwise honest rows, which no whole-row or
      distance check sees. A column copied from training rows scores about the share of its
      unique training values reproduced: about 0.5 on German credit's amounts (every training
      row's value, 7,683 rows drawn from 500). Honest output scores 0 in expectation with sd at
      most 1/sqrt(T) (0.045 at T = 500); the interval is Bonferroni-adjusted over the tested
      columns, so an honest release passes all of them 95% of the time.
    * ``dcr_share`` (0.58): the share of synthetic rows nearer a training row than a holdout
      row, averaged over every subsample of the larger set to the size of the smaller (0.5
      exactly under the null; ``copies.dcr``). If a fraction f of the synthetic rows sit on
      their training source and the rest follow the null, the share is 0.5 + f/2: 0.58 blocks
      f = 16%. Its noise comes from the labels of the N real rows the synthetic rows sit next to,
      not from the synthetic rows (7,683 audit rows share ~900 real rows on German credit): the
      permutation null's sd is about 0.5·sqrt(h/N) with h, measured 1 to 2, counting how
      unevenly synthetic rows crowd onto real rows (0.016-0.024 at N = 900). With the one-sided
      bound an honest release passes 95% of the time when (1.645 + 1.645)·sd < t - 0.5, so
      t = 0.58 serves N >= ~900 real rows at h = 2 (German credit's 1,000); 0.56 blocked 5 of
      40 honest German-credit stand-ins on this check, 0.58 blocks 1 of 40
      (``tests/test_audit_calibration.py``). Copies and near-copies of a few percent of the
      rows are caught by their own per-row tests, not by this mean.
    * ``mia_auc`` (0.6): every training row (member) against every holdout row; the null
      standard error of an AUC with m members and h non-members is sqrt((m + h + 1)/(12 m h))
      (``stats.auc_se``), so 0.6 is 5 standard errors away at 450 + 450 rows and 6 at 5,700 +
      300 (a 6k table with a 5% holdout, which balancing to 315 + 315 left at 4.4 and blocked),
      while a copying generator scores close to 1.
    * anonymeter risks are residual rates r = (a - c) / (1 - c), a and c the success rates on
      train and control, with anonymeter's propagated Wilson error. With true risk 0 the
      half-width is h ~ 1.96 * sqrt(2c / (n (1 - c))) over n attacks, and an honest release
      passes 95% of the time when the limit is at least ~1.84 h. Multivariate singling out on
      Adult has c ~ 0.2-0.3 at 1.5k-4k rows, so h ~ 0.07-0.085 at n = 500: hence
      ``singling_out_risk`` 0.15 (measured: 3 of 12 honest runs exceed 0.1; none 0.15). A copy
      release scores ~0.99. Linkability has c ~ 0.01, h < 0.02, so 0.1 is ample.
      ``inference_risk`` 0.2: a binary secret guessed right with c = 0.8 from similar people
      (Adult's income) has h = 1.96 * sqrt(8 / n): 0.11 at 2,500 attacks, where 1 honest demo
      release in 11 was blocked at 0.222. Inference therefore attacks every ori row that has a
      control row (``min(ori, control)``, up to 10,000: h = 0.055), never fewer than
      ``anonymeter_attacks``; an honest release with true risk r0 is then blocked only beyond
      (0.145 - r0)/0.028 standard errors (5 for r0 = 0, 3.4 for r0 = 0.05).
    * ``near_copy_rate`` (0.005), measured with the DCR attack: the share of synthetic rows
      whose nearest real row is 20 times closer than any other real row and is a training row,
      beyond chance (``(a - π m)/((1 - π) n)`` as for copies; 0 exactly under the null, for any
      sizes; one-sided 95% bound, the larger of the Wilson-based one and the permutation null's
      sd; ``audit.copies.near_copies``). A release with 1% of its rows copied from train with
      every number moved by up to 1% scores 0.01 on sparse tables and about 0.005 on Adult
      (whose real rows have near-twins), upper bound ~0.009 at 2,000 rows; honest output has an
      upper bound of about 2.7/n where no honest row is a near-copy (n >= 550 to pass) and a
      median of 0.0023 on Adult at 2,000 rows (0 of 20 seeds blocked).
    * ``mia_tpr_at_1pct_fpr`` (0.05): the true-positive rate of each MIA score at the threshold
      that flags 1% of non-members (the (k+1)-th highest, k = floor(0.01 n_h); null mean
      (k+1)/(n_h+1), e.g. 5/451, whose excess over 0.01 the gate subtracts), with a one-sided
      bound est + 1.645·sd, sd the larger of the permutation null's (exact near the null,
      where the few top non-members set the threshold) and the members' binomial. At 450 + 450
      rows the null sd is about 0.007, so an honest bound passes 0.05 unless the estimate
      exceeds ~0.04 (the stratified bootstrap interval, on half the holdout as non-members,
      blocked 16 of 40 honest German-credit stand-ins, mostly on this check); a release that
      copies 5% of its training rows, or any full copy, puts those members above every
      non-member.
    * ``targeted_mia_tpr`` (0.2) and ``targeted_mia_auc`` (0.7): the targeted attack on the 100
      most isolated training and 100 most isolated holdout rows (``privsynth.audit.targeted``,
      after Meeus et al. 2023 / TAPAS, without shadow models). Both depend only on score ranks,
      so their null does not depend on the table. An honest release's bootstrap TPR upper end
      exceeds 0.2 in 0.4% of runs and its DeLong AUC upper end exceeds 0.7 in 0.2%; both pass
      99.5% of runs at 100 targets per side (measured on five real tables: 1 of 200 seeds
      blocked). Releasing the 20 most isolated training rows, copied or moved by at most 1%,
      puts them above every non-member: TPR at least 0.2, upper end at least 0.28, blocked.
      Under 150 rows on the smaller side lowers the honest pass rate (85% at 50 targets).
    """

    exact_copy_rate: Annotated[float, Field(ge=0, le=1)] = 0.005
    dcr_share: Annotated[float, Field(ge=0.5, le=1)] = 0.58
    mia_auc: Annotated[float, Field(ge=0.5, le=1)] = 0.6
    unique_qi_copy_rate: Annotated[float, Field(ge=0, le=1)] = 0.005
    singling_out_risk: Annotated[float, Field(ge=0, le=1)] = 0.15
    linkability_risk: Annotated[float, Field(ge=0, le=1)] = 0.1
    inference_risk: Annotated[float, Field(ge=0, le=1)] = 0.2
    near_copy_rate: Annotated[float, Field(ge=0, le=1)] = 0.005
    mia_tpr_at_1pct_fpr: Annotated[float, Field(ge=0.01, le=1)] = 0.05
    targeted_mia_tpr: Annotated[float, Field(ge=0, le=1)] = 0.2
    targeted_mia_auc: Annotated[float, Field(ge=0.5, le=1)] = 0.7
    column_value_copy_rate: Annotated[float, Field(ge=0, le=1)] = 0.3


class UtilityFloor(_Frozen):
    """The utility floor of the gate: a release no better than noise is blocked.

    Computed on the raw holdout (like the attacks) and kept internal. For every column, the
    total-variation distance (TVD) between the real holdout's marginal and the synthetic one is
    compared with the TVD that *trivial generators* get, ones that learned nothing from the data:
    all missing; all ``__other__`` (categories) or every value at one end of the public bounds
    (numbers); uniform over the public domain or bounds. Numbers are binned at the deciles of
    the real holdout, plus a bin below and one above its range and one for missing, so a column
    decoded around ±1e13 while real values span thousands falls outside every real bin.

    A column is *noise-level* when its TVD is at least ``noise_tvd_ratio`` (0.9) times the best
    trivial TVD and itself at least ``min_tvd`` (0.5). Derivation: between two samples of sizes
    n and m over k cells, the TVD of identical distributions is about
    sqrt(k / 2π) · sqrt(1/n + 1/m); with k = 12 and n = m = 300 (a small holdout) that is ~0.11,
    so a TVD of 0.5 is > 4 noise units from a perfect fit and never sampling noise, and a column
    within 10% of (or worse than) what a generator that learned nothing achieves has recovered
    none of the marginal. A column nearly uniform over its declared domain (the trivial TVD is
    small) is judged only if its own TVD reaches 0.5. A noise-level release scores TVD ~1 on
    every column. A release is blocked when more than ``max_noise_columns`` (0) columns are
    noise-level.

    Where ``audit.target`` is named, TSTR (train on synthetic, test on the real holdout) must beat
    a trivial classifier: ROC AUC above 0.5 + ``tstr_auc_margin`` (0.02; binary), accuracy
    above the majority-class share less ``tstr_accuracy_slack`` (0.05; multi-class, or when the
    synthetic model's classes differ from the test set's: accuracy is a blunt measure on an
    imbalanced target, and a weak but real model can sit a point or two under the majority
    share), R² above 0 (numeric). A synthetic target with a single class (e.g. all
    ``__other__``) always fails: nothing can be learned from it.
    """

    enabled: bool = True
    noise_tvd_ratio: Annotated[float, Field(gt=0, le=1)] = 0.9
    min_tvd: Annotated[float, Field(gt=0, le=1)] = 0.5
    max_noise_columns: Annotated[int, Field(ge=0)] = 0
    tstr: bool = True
    tstr_auc_margin: Annotated[float, Field(ge=0, lt=0.5)] = 0.02
    tstr_accuracy_slack: Annotated[float, Field(ge=0, lt=1)] = 0.05


class AuditPolicy(_Frozen):
    """How the release is audited before anything leaves."""

    holdout_fraction: Annotated[float, Field(gt=0.05, lt=0.95)] = 0.5
    thresholds: Thresholds = Field(default_factory=Thresholds)
    quasi_identifiers: list[str] = Field(default_factory=list)
    secrets: list[str] = Field(default_factory=list)
    linkability_aux: tuple[list[str], list[str]] | None = None
    target: str | None = None
    # groups the report's representativeness section compares (sex, race, age band, ...)
    protected_attributes: list[str] = Field(default_factory=list)
    attacks: list[
        Literal["exact_copy", "dcr", "mia", "unique_qi", "singling_out", "linkability", "inference",
                "targeted_mia"]
    ] = Field(default_factory=lambda: ["exact_copy", "dcr", "mia", "unique_qi", "singling_out",
                                       "targeted_mia"])
    # targets per side of the targeted attack (default 100, at most half the smaller side)
    targeted_mia_targets: Annotated[int, Field(ge=10)] | None = None
    anonymeter_attacks: Annotated[int, Field(ge=10)] = 500
    # Univariate singling-out queries are limited by the distinct values of the synthetic table
    # (about 1,000 on Adult), so singling out has its own, smaller count.
    singling_out_attacks: Annotated[int, Field(ge=10)] = 500
    require_dp_claim: bool = True
    timeout_s: Annotated[float, Field(gt=0)] = 600
    utility: UtilityFloor = Field(default_factory=UtilityFloor)
    # Synthetic rows the audit scores (post-processing: more rows drawn from the trained model
    # than are released, the released rows among them). "auto": enough rows for the copy-rate
    # intervals to resolve their thresholds (see ``privsynth.audit.stats.audit_sample_rows``).
    audit_rows: Literal["auto"] | Annotated[int, Field(ge=1)] = "auto"


class DatasetPolicy(_Frozen):
    """Names the population, and says how a missing cell is written in its files.

    ``missing_values`` lists the texts that mark a missing cell (compared with the cell's
    stripped text; default: only the empty cell). A column's own ``missing_values`` overrides it.
    Native missing values of Parquet or DataFrame input (None, NaN, NaT) are always missing.
    ``rows`` is an optional approximate, public table size for pre-flight (see the field).
    """

    id: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")]
    description: str | None = None
    missing_values: list[str] = Field(default_factory=lambda: [""])
    #: An approximate, *public* size of the table (e.g. "about 30,000 patients"), used only by
    #: pre-flight (``privsynth policy check``, the start of a release) to predict before any ε
    #: is spent whether the release can be useful and pass the gate. It must be public
    #: knowledge, never a count read off the table: under add/remove adjacency the exact row
    #: count is private, and the pipeline releases its own DP count N̂ after the reservation.
    rows: Annotated[int, Field(ge=1)] | None = None
    #: The same for persons, read by pre-flight under ``privacy.unit: person`` (where a
    #: training record is a person): e.g. "312 patients" from the study's publication.
    persons: Annotated[int, Field(ge=1)] | None = None


class Policy(_Frozen):
    """A whole release policy, as loaded from a YAML file."""

    version: Literal[1] = 1
    name: Annotated[str, Field(min_length=1)]
    description: str | None = None
    dataset: DatasetPolicy
    privacy: PrivacyPolicy
    budget: BudgetPolicy = Field(default_factory=lambda: BudgetPolicy())
    generator: GeneratorPolicy = Field(default_factory=lambda: GeneratorPolicy())
    columns: dict[str, ColumnPolicy]
    audit: AuditPolicy = Field(default_factory=AuditPolicy)
    relations: list[Relation] = Field(default_factory=list)
    seed: int | None = None

    @field_validator("columns")
    @classmethod
    def _some_columns(cls, value: dict[str, ColumnPolicy]) -> dict[str, ColumnPolicy]:
        if not any(c.modelled for c in value.values()):
            raise ValueError("at least one column must be kept (rule keep or generalize)")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Policy:
        modelled = {n for n, c in self.columns.items() if c.modelled}
        named = (list(self.audit.quasi_identifiers) + list(self.audit.secrets)
                 + list(self.audit.protected_attributes))
        if self.audit.target:
            named.append(self.audit.target)
        if self.audit.linkability_aux:
            named += self.audit.linkability_aux[0] + self.audit.linkability_aux[1]
        missing = sorted({n for n in named if n not in modelled})
        if missing:
            raise ValueError(
                f"audit names column(s) {missing} that are not kept columns of the policy"
            )
        check_relations(self.relations, {n: c.kind for n, c in self.columns.items()
                                         if c.modelled}, per_person=self.privacy.unit == "person")
        complete = [r.missing_unless for r in self.relations
                    if isinstance(r, MissingUnless) and self.columns[r.missing_unless].complete]
        if complete:
            raise ValueError(f"column(s) {complete} are declared complete but a missing_unless "
                             "relation blanks them in some rows; remove 'complete: true'")
        if not modelled - derived_columns(self.relations):
            raise ValueError("every kept column is derived by a relation: at least one must be "
                             "modelled")
        self._check_person(modelled)
        self._check_tuning()
        matched = self.privacy.marginals_columns or []
        odd = [c for c in matched if c not in modelled or c in derived_columns(self.relations)]
        if odd:
            raise ValueError(f"privacy.marginals_columns names {odd}: list kept columns the "
                             "generator models (not dropped, not derived by a relation)")
        return self

    def _check_tuning(self) -> None:
        tuning = self.generator.tuning
        if tuning is None:
            return
        if self.privacy.unit != "row":
            raise ValueError("generator.tuning runs at row level; remove it under 'unit: person'")
        marginals = self.privacy.marginals_share
        taken = (self.privacy.encoding_share + tuning.score_share
                 + (marginals if marginals != "auto" else 0.0))
        if taken >= 0.9:
            raise ValueError("privacy.encoding_share + privacy.marginals_share + "
                             "generator.tuning.score_share must leave DP-SGD at least 0.1 of "
                             "epsilon; lower one of them")

    def _check_person(self, modelled: set[str]) -> None:
        person = self.privacy.person
        if person is None:
            return
        rule = self.columns.get(person.id)
        if rule is None or rule.rule not in ("drop", "pseudonymize"):
            raise ValueError(
                f"privacy.person.id names '{person.id}', which must be a column of the policy "
                "with rule drop or pseudonymize (a person's identifier is never modelled nor "
                f"released): add '{person.id}: {{rule: pseudonymize}}' under columns")
        order = person.order_by
        if order is not None and (order not in modelled or self.columns[order].kind not in (
                "numeric", "integer", "datetime")):
            raise ValueError(
                f"privacy.person.order_by names '{order}', which must be a kept numeric, "
                "integer or datetime column (the visit day or year that orders a person's rows)")
        derived = derived_columns(self.relations)
        if order in derived:
            raise ValueError(f"privacy.person.order_by names '{order}', which a relation derives: "
                             "order a person's rows by a modelled column")
        computed = [c for c in person.fixed if c in derived]
        if computed:
            raise ValueError(
                f"privacy.person.fixed names {computed}, which relations derive (computed, not "
                "modelled, and constant per person when derived per_person or from fixed "
                "columns): remove them from fixed")
        odd = [c for c in person.fixed if c not in modelled or c == order]
        if odd:
            raise ValueError(
                f"privacy.person.fixed names {odd}: list kept columns that describe the person "
                "(constant across their rows), never the order_by column")

    @property
    def dev_mode(self) -> bool:
        """A seed makes a *development* run: reproducible, never DP, never released. Without
        one every noise draw comes from OS entropy."""
        return self.seed is not None

    def digest(self) -> str:
        """SHA-256 of the canonical JSON form: two policies with equal meaning share a digest.

        The seed is left out: a digest is published, and a published seed (or one small enough
        to brute-force against the digest) would let anyone regenerate a run's noise.
        """
        body = self.model_dump(mode="json", exclude={"seed"}, by_alias=True)
        if not body["relations"]:
            del body["relations"]  # policies written before relations keep their digest
        for relation in body.get("relations", []):
            if relation.get("per_person") is None:
                relation.pop("per_person", None)  # and those before per-person relations
        if body["privacy"].get("marginals_share") == "auto":
            body["privacy"].pop("marginals_share")  # and those before one-way marginals
        if body["privacy"].get("marginals_columns") is None:
            body["privacy"].pop("marginals_columns", None)  # and those before it
        if body["privacy"].get("person") is None:
            body["privacy"].pop("person", None)  # and row-level ones before person units
        if body["generator"].get("tuning") is None:
            body["generator"].pop("tuning", None)  # and those before accounted tuning
        if body["dataset"].get("persons") is None:
            body["dataset"].pop("persons", None)
        for rule in body["columns"].values():  # and columns before decimals
            if rule.get("decimals") is None:
                rule.pop("decimals", None)
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of a policy file, for editors and CI linters."""
    return Policy.model_json_schema()
