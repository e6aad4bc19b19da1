"""Relations between columns that the policy declares, enforced on every synthetic row.

A generator trained under DP learns a deterministic relation only approximately: Adult's
``education_num`` is a function of ``education``, each ``*_charge`` of the telecom table is a
fixed multiple of its ``*_minutes``, a discharge never precedes its admission. A relation the
data steward declares is a public fact, so enforcing it costs no ε: it is applied to the decoded
rows (post-processing) and never read from the data to discover it.

The forms::

    relations:
      - {derive: education_num, from: education, mapping: {Bachelors: 13, Masters: 14}}
      - {derive: total_day_charge, from: total_day_minutes, scale: 0.17, round: 2}
      - {derive: ue.person.cen, from: [uerate, ue.mean], scale: [1, -1]}   # a difference
      - {derive: ue.mean, from: uerate, per_person: mean}   # privacy.unit: person only
      - {order: [admitted, discharged]}        # admitted <= discharged
      - {missing_unless: chapter, when: death, in: ["1"]}   # cause of death: only if died

``derive`` overwrites the derived column from its sources: a category mapping, a linear map
``offset + Σ scale_i · source_i`` (rounded to ``round`` decimals; missing where a source is), or,
under ``privacy.unit: person``, one value per synthetic person from a column over that person's
rows (``first``/``last`` present value in ``order_by`` order, ``mean``, ``min``, ``max``).
A derived column is **not modelled**: the generator never sees it, so its share of the model's
width (and of DP-SGD's noise) goes to the columns it is derived from, and its values come only
from the relation. Derivations may chain (``ue.person.cen`` from the per-person ``ue.mean``);
they run in dependency order, after the ``order`` swaps. ``order`` swaps the two values where a
row has them the wrong way round. ``missing_unless`` blanks a column in the rows where another
column's value says it cannot be recorded (before the derivations, so a derivation from it sees
the blank).
"""

from __future__ import annotations

import math
from graphlib import CycleError, TopologicalSorter
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from privsynth.data.cells import category_text
from privsynth.data.schema import TableSchema


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


#: What a per-person derivation takes of the source over one person's rows.
PerPerson = Literal["first", "last", "mean", "min", "max"]


class Derive(_Frozen):
    """``derive`` is a function of ``from``: a category mapping, a linear map of one or more
    numeric sources, or (person level) one aggregate of a source over a person's rows."""

    derive: str
    source: str | Annotated[list[str], Field(min_length=1)] = Field(alias="from")
    mapping: dict[str, float | int | str] | None = None
    scale: float | Annotated[list[float], Field(min_length=1)] | None = None
    offset: float = 0.0
    round: Annotated[int, Field(ge=0, le=12)] | None = None
    per_person: PerPerson | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Derive:
        forms = sum(x is not None for x in (self.mapping, self.scale, self.per_person))
        if forms != 1:
            raise ValueError(f"relation deriving '{self.derive}' needs exactly one of "
                             "'mapping: {...}', 'scale: NUMBER' or 'per_person: mean'")
        several = isinstance(self.source, list)
        if several and (not isinstance(self.scale, list) or len(self.scale) != len(self.source)):
            raise ValueError(f"relation deriving '{self.derive}' from {len(self.source)} columns "
                             "needs 'scale: [...]' with one number per column of 'from'")
        if self.per_person is not None and several:
            raise ValueError(f"relation deriving '{self.derive}' per person takes one column in "
                             "'from'")
        if isinstance(self.scale, list) and not several:
            raise ValueError(f"relation deriving '{self.derive}': a list of scales needs a list "
                             "of columns in 'from'")
        numbers = [self.offset, *self.scales]
        if not all(math.isfinite(v) for v in numbers):
            raise ValueError(f"relation deriving '{self.derive}': scale and offset must be finite")
        if self.derive in self.sources:
            raise ValueError(f"relation deriving '{self.derive}' from itself")
        return self

    @property
    def sources(self) -> list[str]:
        """The columns the derived one is computed from."""
        return list(self.source) if isinstance(self.source, list) else [self.source]

    @property
    def scales(self) -> list[float]:
        """One factor per source (empty for a mapping or a per-person aggregate)."""
        if self.scale is None:
            return []
        return list(self.scale) if isinstance(self.scale, list) else [self.scale]

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.derive, *self.sources)

    def describe(self) -> str:
        """One line for the manifest and the report (a policy fact: public)."""
        if self.mapping is not None:
            return (f"{self.derive} is derived from {self.source} by a declared mapping of "
                    f"{len(self.mapping)} values")
        if self.per_person is not None:
            what = {"first": "first value", "last": "last value"}.get(self.per_person,
                                                                     self.per_person)
            return f"{self.derive} = the {what} of {self.source} over each person's rows"
        rounding = "" if self.round is None else f", rounded to {self.round} decimals"
        return f"{self.derive} = {_linear_text(self.offset, self.scales, self.sources)}{rounding}"


class Order(_Frozen):
    """``order: [a, b]``: a <= b in every row where both are present."""

    order: Annotated[list[str], Field(min_length=2, max_length=2)]

    def describe(self) -> str:
        """One line for the manifest and the report (a policy fact: public)."""
        return f"{self.order[0]} ≤ {self.order[1]} in every row where both are present"

    @model_validator(mode="after")
    def _distinct(self) -> Order:
        if self.order[0] == self.order[1]:
            raise ValueError("an order relation needs two different columns")
        return self

    @property
    def columns(self) -> tuple[str, str]:
        return (self.order[0], self.order[1])


class MissingUnless(_Frozen):
    """``{missing_unless: chapter, when: death, in: ["1"]}``: ``chapter`` is recorded only in
    rows whose ``when`` is one of ``in`` (a cause of death exists only for those who died; an
    employer only for the employed) and is missing in every other row."""

    missing_unless: str
    when: str
    values: Annotated[list[str | int | float | bool], Field(min_length=1)] = Field(alias="in")

    @model_validator(mode="after")
    def _distinct(self) -> MissingUnless:
        if self.missing_unless == self.when:
            raise ValueError("a missing_unless relation needs two different columns")
        return self

    @property
    def columns(self) -> tuple[str, str]:
        return (self.missing_unless, self.when)

    def describe(self) -> str:
        """One line for the manifest and the report (a policy fact: public)."""
        shown = ", ".join(str(v) for v in self.values)
        return f"{self.missing_unless} is missing unless {self.when} is one of: {shown}"

    def recorded(self, frame: pd.DataFrame, kind: str) -> np.ndarray:
        """Rows where ``missing_unless`` may hold a value (``when`` is one of ``in``)."""
        if kind in ("numeric", "integer"):
            numbers = pd.to_numeric(frame[self.when], errors="coerce")
            return numbers.isin([float(v) for v in self.values]).to_numpy(dtype=bool)
        allowed = {category_text(v) for v in self.values}
        return np.array([v is not None and v == v and category_text(v) in allowed
                         for v in frame[self.when]], dtype=bool)


def _relation_form(value: object) -> str | None:
    """Which form a relation is, by its leading key, so an error names that form's fields only."""
    if isinstance(value, dict):
        return next((k for k in ("derive", "order", "missing_unless") if k in value), None)
    return {Derive: "derive", Order: "order", MissingUnless: "missing_unless"}.get(type(value))


Relation = Annotated[
    Annotated[Derive, Tag("derive")] | Annotated[Order, Tag("order")]
    | Annotated[MissingUnless, Tag("missing_unless")],
    Discriminator(_relation_form, custom_error_type="relation_form",
                  custom_error_message="a relation starts with 'derive:', 'order:' or "
                                       "'missing_unless:'"),
]



def _linear_text(offset: float, scales: list[float], sources: list[str]) -> str:
    """``-60 + 1.5·hours``, ``uerate − ue.mean``: the offset only when not 0, unit factors
    unwritten where there are several sources, a negative factor as a minus sign."""
    parts = [] if offset == 0 and len(sources) > 1 else [f"{offset:g}"]
    for k, name in zip(scales, sources, strict=True):
        factor = "" if abs(k) == 1 and len(sources) > 1 else f"{abs(k):g}·"
        sign = "−" if k < 0 else "+"
        parts.append(f"{sign} {factor}{name}" if parts else f"{'-' if k < 0 else ''}{factor}{name}")
    return " ".join(parts)


def check_relations(relations: list[Relation], kinds: dict[str, str | None], *,
                    per_person: bool = False) -> None:
    """Raise ``ValueError`` (with the fix) when a relation names a column that is not kept, has
    the wrong kind, derives a column twice or in a cycle, orders a derived column, or asks for
    a per-person aggregate where there are no persons (``per_person``: ``privacy.unit: person``).
    """
    derived = {r.derive for r in relations if isinstance(r, Derive)}
    numeric = ("numeric", "integer")
    for r in relations:
        missing = [c for c in r.columns if c not in kinds]
        if missing:
            raise ValueError(f"relation names column(s) {missing} that are not kept columns")
        if isinstance(r, MissingUnless):
            if r.when in derived:
                raise ValueError(f"missing_unless relation on '{r.missing_unless}' tests the "
                                 f"derived column '{r.when}': test its source instead")
            continue
        if isinstance(r, Order):
            bad = [c for c in r.order if kinds[c] not in ("numeric", "integer", "datetime")]
            if bad:
                raise ValueError(f"order relation on {bad}: only numeric, integer or datetime "
                                 "columns can be ordered")
            if derived & set(r.order):
                raise ValueError(f"order relation on derived column(s) "
                                 f"{sorted(derived & set(r.order))}: order their sources instead")
            continue
        if r.per_person is not None and not per_person:
            raise ValueError(f"relation deriving '{r.derive}' per person needs privacy.unit: "
                             "person (a row-level release has no persons)")
        if (r.scale is not None or r.per_person in ("mean", "min", "max")) and any(
                kinds[c] not in numeric for c in r.columns):
            raise ValueError(f"relation deriving '{r.derive}' with "
                             f"'{'scale' if r.scale is not None else 'per_person'}' needs "
                             "numeric columns on both sides; use 'mapping' for categories")
    twice = sorted({d for d in derived if sum(isinstance(r, Derive) and r.derive == d
                                               for r in relations) > 1})
    if twice:
        raise ValueError(f"column(s) {twice} are derived by more than one relation")
    derivation_order(relations)


def derivation_order(relations: list[Relation]) -> list[Derive]:
    """The ``derive`` relations in an order where each one's sources are final (a derived
    source first); ``ValueError`` on a cycle."""
    by_column = {r.derive: r for r in relations if isinstance(r, Derive)}
    graph = {r.derive: [c for c in r.sources if c in by_column] for r in by_column.values()}
    try:
        return [by_column[c] for c in TopologicalSorter(graph).static_order()]
    except CycleError as exc:
        raise ValueError(f"relations derive columns from each other in a cycle "
                         f"({' -> '.join(exc.args[1])}): break it by modelling one of them"
                         ) from None


def derived_columns(relations: list[Relation]) -> set[str]:
    """Columns a relation computes: not modelled, filled at decode."""
    return {r.derive for r in relations if isinstance(r, Derive)}


def apply_relations(frame: pd.DataFrame, relations: list[Relation], schema: TableSchema,
                    owners: np.ndarray | None = None) -> pd.DataFrame:
    """Enforce ``relations`` on decoded rows (model space); returns a new frame.

    ``owners`` (one synthetic person index per row, a person's rows in ``order_by`` order) is
    needed by per-person derivations only."""
    out = frame.copy()
    for r in relations:
        if isinstance(r, Order):
            a, b = r.order
            swap = (out[a] > out[b]).fillna(False).to_numpy(dtype=bool)
            if swap.any():
                first, second = out.loc[swap, a].copy(), out.loc[swap, b].copy()
                out.loc[swap, a], out.loc[swap, b] = second.to_numpy(), first.to_numpy()
    for r in relations:
        if isinstance(r, MissingUnless):
            keep = r.recorded(out, schema[r.when].kind)
            column = out[r.missing_unless]
            out[r.missing_unless] = (column.where(keep) if column.dtype != object
                                     else column.where(keep, None))
    for r in derivation_order(relations):
        if r.per_person is not None and owners is None:
            raise ValueError(f"relation deriving '{r.derive}' per person needs each row's "
                             "person (owners): decode through the person encoder")
        out[r.derive] = _derived(out, r, schema[r.derive].kind, owners)
    return out


def _derived(frame: pd.DataFrame, r: Derive, kind: str,
             owners: np.ndarray | None) -> pd.Series:
    source = frame[r.sources[0]]
    if r.mapping is not None:
        lookup = {str(k): v for k, v in r.mapping.items()}
        values = [lookup.get(str(v)) if v is not None and v == v else None for v in source]
        if kind in ("numeric", "integer"):
            numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
            return _as_kind(numbers.to_numpy(dtype=float), kind, source.index)
        return pd.Series([None if v is None else str(v) for v in values], dtype=object,
                         index=source.index)
    if r.per_person is not None:
        assert owners is not None
        group = pd.Series(source.to_numpy(), index=source.index).groupby(owners, sort=False)
        agg = group.transform(r.per_person)
        if kind in ("numeric", "integer"):
            y = pd.to_numeric(agg, errors="coerce").to_numpy(dtype=float)
            return _as_kind(y if r.round is None else np.round(y, r.round), kind, source.index)
        return agg.astype(object)
    y = np.full(len(frame), r.offset, dtype=float)
    for k, name in zip(r.scales, r.sources, strict=True):
        y = y + k * pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
    if r.round is not None:
        y = np.round(y, r.round)
    return _as_kind(y, kind, source.index)


def _as_kind(y: np.ndarray, kind: str, index: pd.Index) -> pd.Series:
    if kind == "integer":
        return pd.Series(np.round(y), index=index).astype("Int64")
    return pd.Series(y, index=index)
