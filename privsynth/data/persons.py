"""A person's rows as one record: contribution bounding and the wide per-person layout.

Under ``privacy.unit: person`` one DP neighbour is a person with all of their rows. privsynth
turns a long table (many rows per person) into one *wide record per person*: the number of rows
kept (1..k) and k slots of the modelled columns, slot j holding the person's j-th row (ordered by
``person.order_by``), empty slots missing. Everything downstream sees one record per person, so
the guarantee needs no new mechanism:

* the DP count N̂ counts persons; Poisson sampling keeps each *person* with probability q;
* DP-SGD clips the gradient of one wide record, i.e. of all of a person's rows together, to C;
* the generator learns a person's rows jointly: how many, what stays constant (sex, birth
  year), how values move from one row to the next;
* the audit's train/holdout split is a split of persons.

**Contribution bounding** keeps at most k rows per person: each row gets a keyed pseudorandom
draw, HMAC-SHA256 under a fresh per-release key of (person identifier, the row's rank among
that person's rows in table order), and a person keeps their k rows with the smallest draws.
Whether a row is kept depends on its own person's rows and the key only, so adding or removing
one person changes one record and no other.
How many rows or persons the bound cut is a function of the data: it stays in the internal run
record, never in the manifest.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import numpy as np
import pandas as pd

from privsynth.data.schema import ColumnSchema, TableSchema
from privsynth.errors import DataError

#: Name of the wide record's row-count column (``@`` never appears in a slot's base name).
ROWS_COLUMN = "rows@person"


@dataclass(frozen=True)
class PersonLayout:
    """The wide record's columns: ``rows@person``, the person's ``fixed`` columns (once, under
    their own names), then ``<column>@<j>`` of the other columns for j = 1..k."""

    columns: tuple[str, ...]
    max_rows: int
    fixed: tuple[str, ...] = ()

    @property
    def varying(self) -> tuple[str, ...]:
        """The columns that take one value per row (one slot each)."""
        return tuple(c for c in self.columns if c not in self.fixed)

    def slot(self, name: str, j: int) -> str:
        """The wide column of base column ``name`` in slot ``j`` (1-based); a fixed column has
        one wide column for every slot."""
        return name if name in self.fixed else f"{name}@{j}"

    def slot_columns(self, j: int) -> list[str]:
        """Slot ``j``'s wide columns, in base-column order (fixed ones included)."""
        return [self.slot(c, j) for c in self.columns]

    @property
    def names(self) -> list[str]:
        """Every wide column, in order."""
        out = [ROWS_COLUMN, *self.fixed]
        for j in range(1, self.max_rows + 1):
            out += [self.slot(c, j) for c in self.varying]
        return out

    def schema(self, row_schema: TableSchema) -> TableSchema:
        """The wide record's public schema: the fixed columns, k renamed copies of the others,
        plus the row count with its public bounds [1, k]."""
        cols = [ColumnSchema(ROWS_COLUMN, "integer", bounds=(1.0, float(self.max_rows)),
                             bounds_source="policy")]
        cols += [row_schema[c] for c in self.fixed]
        for j in range(1, self.max_rows + 1):
            cols += [ColumnSchema(self.slot(c.name, j), c.kind, c.bounds, c.domain,
                                  c.bounds_source, c.domain_source)
                     for c in row_schema.columns if c.name not in self.fixed]
        return TableSchema(tuple(cols))


def person_keys(ids: pd.Series) -> np.ndarray:
    """One text key per row; a row with a missing identifier is a person of its own."""
    text = ids.astype(object).map(lambda v: None if v is None or v != v else str(v).strip())
    keys = text.to_numpy(dtype=object)
    missing = np.array([k is None or k == "" for k in keys])
    keys[missing] = [f"\x00row-{i}" for i in np.nonzero(missing)[0]]
    return keys


def bound_contributions(frame: pd.DataFrame, keys: np.ndarray, max_rows: int,
                        order_by: str | None, secret: bytes
                        ) -> tuple[pd.DataFrame, np.ndarray, dict[str, int]]:
    """(kept rows, their person keys, internal facts): at most ``max_rows`` rows per person.

    A person keeps the rows with the ``max_rows`` smallest keyed draws (:func:`row_draws`, under
    ``secret``), then their rows are ordered by ``order_by`` (missing last), then table order.
    Persons appear in order of their first row. The facts (persons, rows, rows and persons cut)
    are exact counts: internal only.
    """
    if len(frame) != len(keys):
        raise DataError("the person identifier column and the table differ in length")
    codes, n_persons = _person_codes(keys)
    draw = row_draws(keys, codes, secret)
    order = np.lexsort((draw, codes))
    rank = np.empty(len(frame), dtype=np.int64)
    sorted_codes = codes[order]
    starts = np.r_[0, np.nonzero(np.diff(sorted_codes))[0] + 1]
    run = np.arange(len(frame)) - np.repeat(starts, np.diff(np.r_[starts, len(frame)]))
    rank[order] = run
    kept = np.nonzero(rank < max_rows)[0]
    sort_value = (np.nan_to_num(frame[order_by].to_numpy(dtype=float)[kept], nan=np.inf)
                  if order_by else np.zeros(kept.size))
    final = kept[np.lexsort((kept, sort_value, codes[kept]))]
    counts = np.bincount(codes, minlength=n_persons)
    facts = {"persons": n_persons, "rows": int(len(frame)),
             "rows_kept": int(final.size), "rows_cut": int(len(frame) - final.size),
             "persons_cut": int((counts > max_rows).sum())}
    return frame.iloc[final].reset_index(drop=True), keys[final], facts


def row_draws(keys: np.ndarray, codes: np.ndarray, secret: bytes) -> np.ndarray:
    """A pseudorandom draw in [0, 1) per row from (its person's identifier, its rank among that
    person's rows in table order) under ``secret``: a function of the person's own rows only."""
    rank = pd.Series(codes).groupby(codes).cumcount().to_numpy()
    out = np.empty(len(keys))
    for i, (key, r) in enumerate(zip(keys, rank, strict=True)):
        mac = hmac.new(secret, f"{key}\x00{r}".encode(), hashlib.sha256).digest()
        out[i] = int.from_bytes(mac[:7], "big") / 2**56
    return out


def _person_codes(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """(person code per row, numbered 0..P-1 in order of first appearance; P)."""
    _, first_pos, inverse = np.unique(keys.astype(str), return_index=True,
                                      return_inverse=True)
    appearance = np.argsort(np.argsort(first_pos))  # code -> rank of its first row
    return appearance[inverse.ravel()], int(first_pos.size)


def to_wide(rows: pd.DataFrame, person: np.ndarray, layout: PersonLayout) -> pd.DataFrame:
    """One wide record per person from rows grouped by person (``person``: a person label per
    row, rows of a person contiguous and in slot order). Empty slots are missing."""
    labels, starts, counts = _runs(person)
    n = labels.size
    out: dict[str, np.ndarray] = {ROWS_COLUMN: counts.astype(float)}
    slot_of = np.arange(len(rows)) - np.repeat(starts, counts)
    owner = np.repeat(np.arange(n), counts)
    for name in layout.fixed:  # the person's first kept row
        out[name] = rows[name].to_numpy()[starts] if n else rows[name].to_numpy()[:0]
    for name in layout.varying:
        values = rows[name].to_numpy()
        numeric = values.dtype.kind in "fiub"
        for j in range(1, layout.max_rows + 1):
            col = np.full(n, np.nan) if numeric else np.full(n, None, dtype=object)
            at = slot_of == j - 1
            col[owner[at]] = values[at]
            out[layout.slot(name, j)] = col
    return pd.DataFrame(out)[layout.names]


def _runs(person: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label, start, length) of each contiguous run of equal labels."""
    person = np.asarray(person)
    if person.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    change = np.r_[True, person[1:] != person[:-1]]
    starts = np.nonzero(change)[0]
    counts = np.diff(np.r_[starts, person.size])
    return person[starts], starts, counts


def from_wide(wide: pd.DataFrame, layout: PersonLayout) -> tuple[pd.DataFrame, np.ndarray]:
    """(rows, person index per row): each wide record's first ``rows@person`` slots as rows."""
    lengths = row_counts(wide, layout)
    parts, owners = [], []
    for j in range(1, layout.max_rows + 1):
        present = np.nonzero(lengths >= j)[0]
        part = wide.iloc[present][layout.slot_columns(j)]
        part.columns = list(layout.columns)
        parts.append(part.assign(__person=present, __slot=j))
    rows = pd.concat(parts, ignore_index=True).sort_values(["__person", "__slot"],
                                                           kind="stable")
    owners = rows["__person"].to_numpy()
    return rows.drop(columns=["__person", "__slot"]).reset_index(drop=True), owners


def row_counts(wide: pd.DataFrame, layout: PersonLayout) -> np.ndarray:
    """Rows per record, clipped to [1, k] (a missing count reads as 1)."""
    raw = pd.to_numeric(wide[ROWS_COLUMN], errors="coerce").fillna(1).to_numpy(dtype=float)
    return np.clip(np.rint(raw), 1, layout.max_rows).astype(np.int64)


def one_row_per_person(wide: pd.DataFrame, layout: PersonLayout,
                       rng: np.random.Generator) -> pd.DataFrame:
    """One of each person's rows, chosen uniformly among their present slots: a table of
    independent rows (one per person) for the row-level attacks and utility checks."""
    lengths = row_counts(wide, layout)
    pick = (rng.random(len(wide)) * lengths).astype(np.int64) + 1
    out = {}
    for name in layout.columns:
        block = np.stack([wide[layout.slot(name, j)].to_numpy(dtype=object)
                          for j in range(1, layout.max_rows + 1)], axis=1)
        out[name] = block[np.arange(len(wide)), pick - 1]
    frame = pd.DataFrame(out)
    for name in layout.columns:  # keep numeric columns numeric
        if wide[layout.slot(name, 1)].dtype.kind in "fiub":
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    return frame


def modelled_columns(policy) -> tuple[str, ...]:  # noqa: ANN001 - a Policy (import cycle)
    """The policy's modelled columns in model order: a wide record's base columns."""
    return tuple(n for n, c in policy.columns.items() if c.modelled)


def person_layout(policy) -> PersonLayout:  # noqa: ANN001
    """The wide layout the policy's ``privacy.person`` asks for."""
    person = policy.privacy.person
    return PersonLayout(modelled_columns(policy), person.max_rows, tuple(person.fixed))


def wide_records(prepared: pd.DataFrame, ids: pd.Series, policy,  # noqa: ANN001
                 secret: bytes) -> tuple[pd.DataFrame, dict[str, int]]:
    """(one wide record per person, internal bounding facts) from a prepared long table and
    its raw person identifiers, under the policy's ``privacy.person``; ``secret`` keys the
    contribution bound's draws (fresh per release, never stored)."""
    person = policy.privacy.person
    layout = person_layout(policy)
    kept, keys, facts = bound_contributions(prepared, person_keys(ids), person.max_rows,
                                            person.order_by, secret)
    return to_wide(kept, keys, layout), facts
