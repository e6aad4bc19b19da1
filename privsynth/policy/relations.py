"""Relations between columns that the policy declares, enforced on every synthetic row.

A generator trained under DP learns a deterministic relation only approximately: Adult's
``education_num`` is a function of ``education``, each ``*_charge`` of the telecom table is a
fixed multiple of its ``*_minutes``, a discharge never precedes its admission. A relation the
data steward declares is a public fact, so enforcing it costs no ε: it is applied to the decoded
rows (post-processing) and never read from the data to discover it.

Three kinds::

    relations:
      - {derive: education_num, from: education, mapping: {Bachelors: 13, Masters: 14}}
      - {derive: total_day_charge, from: total_day_minutes, scale: 0.17, round: 2}
      - {order: [admitted, discharged]}        # admitted <= discharged

``derive`` overwrites the derived column from its source (a category mapping, or
``offset + scale * source`` rounded to ``round`` decimals); a source value outside the mapping
gives a missing value. ``order`` swaps the two values where a row has them the wrong way round.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from privsynth.data.schema import TableSchema


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Derive(_Frozen):
    """``derive`` is a function of ``from``: a category mapping or a linear map."""

    derive: str
    source: str = Field(alias="from")
    mapping: dict[str, float | int | str] | None = None
    scale: float | None = None
    offset: float = 0.0
    round: Annotated[int, Field(ge=0, le=12)] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Derive:
        if (self.mapping is None) == (self.scale is None):
            raise ValueError(f"relation deriving '{self.derive}' needs exactly one of "
                             "'mapping: {...}' or 'scale: NUMBER'")
        numbers = [v for v in (self.scale, self.offset) if v is not None]
        if not all(math.isfinite(v) for v in numbers):
            raise ValueError(f"relation deriving '{self.derive}': scale and offset must be finite")
        if self.derive == self.source:
            raise ValueError(f"relation deriving '{self.derive}' from itself")
        return self

    @property
    def columns(self) -> tuple[str, str]:
        return (self.derive, self.source)

    def describe(self) -> str:
        """One line for the manifest and the report (a policy fact: public)."""
        if self.mapping is not None:
            return (f"{self.derive} is derived from {self.source} by a declared mapping of "
                    f"{len(self.mapping)} values")
        rounding = "" if self.round is None else f", rounded to {self.round} decimals"
        return f"{self.derive} = {self.offset:g} + {self.scale:g}·{self.source}{rounding}"


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


Relation = Derive | Order


def check_relations(relations: list[Relation], kinds: dict[str, str | None]) -> None:
    """Raise ``ValueError`` (with the fix) when a relation names a column that is not kept, has
    the wrong kind, or derives a column from a derived one."""
    derived = {r.derive for r in relations if isinstance(r, Derive)}
    for r in relations:
        missing = [c for c in r.columns if c not in kinds]
        if missing:
            raise ValueError(f"relation names column(s) {missing} that are not kept columns")
        if isinstance(r, Order):
            bad = [c for c in r.order if kinds[c] not in ("numeric", "integer", "datetime")]
            if bad:
                raise ValueError(f"order relation on {bad}: only numeric, integer or datetime "
                                 "columns can be ordered")
        else:
            if r.source in derived:
                raise ValueError(f"'{r.derive}' is derived from '{r.source}', itself derived: "
                                 "derive both from the same source")
            if r.scale is not None and any(
                    kinds[c] not in ("numeric", "integer") for c in r.columns):
                raise ValueError(f"relation deriving '{r.derive}' with 'scale' needs numeric "
                                 "columns on both sides; use 'mapping' for categories")
    twice = sorted({d for d in derived if sum(isinstance(r, Derive) and r.derive == d
                                               for r in relations) > 1})
    if twice:
        raise ValueError(f"column(s) {twice} are derived by more than one relation")


def apply_relations(frame: pd.DataFrame, relations: list[Relation],
                    schema: TableSchema) -> pd.DataFrame:
    """Enforce ``relations`` on decoded rows (model space); returns a new frame."""
    out = frame.copy()
    for r in relations:
        if isinstance(r, Derive):
            out[r.derive] = _derived(out[r.source], r, schema[r.derive].kind)
        else:
            a, b = r.order
            swap = (out[a] > out[b]).fillna(False).to_numpy(dtype=bool)
            if swap.any():
                first, second = out.loc[swap, a].copy(), out.loc[swap, b].copy()
                out.loc[swap, a], out.loc[swap, b] = second.to_numpy(), first.to_numpy()
    return out


def _derived(source: pd.Series, r: Derive, kind: str) -> pd.Series:
    if r.mapping is not None:
        lookup = {str(k): v for k, v in r.mapping.items()}
        values = [lookup.get(str(v)) if v is not None and v == v else None for v in source]
        if kind in ("numeric", "integer"):
            numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
            return _as_kind(numbers.to_numpy(dtype=float), kind, source.index)
        return pd.Series([None if v is None else str(v) for v in values], dtype=object,
                         index=source.index)
    x = pd.to_numeric(source, errors="coerce").to_numpy(dtype=float)
    y = r.offset + r.scale * x
    if r.round is not None:
        y = np.round(y, r.round)
    return _as_kind(y, kind, source.index)


def _as_kind(y: np.ndarray, kind: str, index: pd.Index) -> pd.Series:
    if kind == "integer":
        return pd.Series(np.round(y), index=index).astype("Int64")
    return pd.Series(y, index=index)


def relation_summary(relations: list[Relation]) -> list[str]:
    """One plain sentence per relation, for the manifest and the report."""
    out = []
    for r in relations:
        if isinstance(r, Order):
            out.append(f"{r.order[0]} <= {r.order[1]} (swapped where generated the other way)")
        elif r.mapping is not None:
            out.append(f"{r.derive} = mapping of {r.source} ({len(r.mapping)} entries)")
        else:
            rounding = "" if r.round is None else f", rounded to {r.round} decimals"
            out.append(f"{r.derive} = {r.offset:g} + {r.scale:g} * {r.source}{rounding}")
    return out
