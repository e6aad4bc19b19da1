"""Encoder of wide per-person records (``privacy.unit: person``; see :mod:`privsynth.data.persons`).

One column encoder per base column, shared by the k slots, fitted under DP on **one row per
person** (a uniformly chosen one of each training person's kept rows). Each person then
contributes one value to every encoding mechanism, so the mechanisms' sensitivities, and their
charges, are exactly those of a row-level release: no factor k anywhere in the encoding. The
number of rows a person has is a column of its own with the public domain 1..k.

The generator sees ``1 + P + k·V`` slot-index columns: the row count, the P ``fixed`` columns
(once per person), then slot 1's V other columns, slot 2's, ...; an empty slot holds each
column's missing slot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from privsynth.data.persons import ROWS_COLUMN, PersonLayout, person_layout, row_counts
from privsynth.data.schema import TableSchema
from privsynth.data.table import to_model_space
from privsynth.encoding.table_encoder import EncodingBudget, TableEncoder
from privsynth.policy.model import Policy
from privsynth.policy.relations import apply_relations
from privsynth.privacy.events import PrivacySpend
from privsynth.privacy.noise import NoiseSource


@dataclass
class PersonEncoder:
    """Maps wide person records to slot indices and back, through one shared row encoder."""

    base: TableEncoder
    max_rows: int
    fixed: tuple[str, ...] = ()
    #: The column that orders a person's rows (``person.order_by``), or None.
    order_by: str | None = None

    @classmethod
    def fit(cls, one_row_each: pd.DataFrame, policy: Policy, budget: EncodingBudget,
            spend: PrivacySpend, noise: NoiseSource) -> PersonEncoder:
        """Fit the row encoder on ``one_row_each`` (one row per training person), paying
        ``spend`` exactly as :meth:`TableEncoder.fit` does."""
        assert policy.privacy.person is not None
        base = TableEncoder.fit(one_row_each, policy, budget, spend, noise)
        layout = person_layout(policy)
        return cls(base, layout.max_rows, layout.fixed, policy.privacy.person.order_by)

    @property
    def layout(self) -> PersonLayout:
        """The wide record's columns."""
        return PersonLayout(tuple(self.base.schema.names), self.max_rows, self.fixed)

    @property
    def column_groups(self) -> tuple[list[str], list[str]]:
        """(fixed columns, varying columns), each in the order of the wide record's blocks."""
        names = self.base.modelled_names
        fixed, varying = self._indices()
        return [names[i] for i in fixed], [names[i] for i in varying]

    def _indices(self) -> tuple[list[int], list[int]]:
        """(fixed, varying) positions among the generator's columns of one row."""
        names = self.base.modelled_names
        fixed = [i for i, n in enumerate(names) if n in self.fixed]
        return fixed, [i for i in range(len(names)) if i not in fixed]

    @property
    def schema(self) -> TableSchema:
        """The public schema of one *row* (what the released table holds)."""
        return self.base.schema

    @property
    def wide_schema(self) -> TableSchema:
        """The public schema of a wide record (the audit's per-person view)."""
        return self.layout.schema(self.base.schema)

    @property
    def encoders(self):  # noqa: ANN201 - persisted like a TableEncoder's
        """The shared column encoders (for :mod:`privsynth.generators.persist`)."""
        return self.base.encoders

    @property
    def relations(self):  # noqa: ANN201
        """The policy's relations, enforced on every decoded row."""
        return self.base.relations

    @property
    def widths(self) -> list[int]:
        """Slots per generator column: the row count (k), the fixed columns', then k copies
        of the other columns'."""
        fixed, varying = self._indices()
        widths = self.base.widths
        return ([self.max_rows] + [widths[i] for i in fixed]
                + [widths[i] for i in varying] * self.max_rows)

    def transform(self, wide: pd.DataFrame) -> np.ndarray:
        """(persons, 1 + k·F) slot indices of wide records."""
        layout = self.layout
        fixed, varying = self._indices()
        blocks = [(row_counts(wide, layout) - 1)[:, None]]
        for j in range(1, self.max_rows + 1):
            slot = wide[layout.slot_columns(j)]
            slot.columns = list(layout.columns)
            codes = self.base.transform(slot)
            if j == 1:
                blocks.append(codes[:, fixed])
            blocks.append(codes[:, varying])
        return np.concatenate(blocks, axis=1).astype(np.int64)

    def inverse_transform(self, codes: np.ndarray, rng: np.random.Generator
                          ) -> tuple[pd.DataFrame, np.ndarray]:
        """(rows, synthetic person index per row): each record's first ``count`` slots decoded
        as rows (post-processing of DP output), a person's rows contiguous and in ``order_by``
        order, then the policy's relations enforced (per-person ones over each person's rows).
        """
        fixed, varying = self._indices()
        start, width = 1 + len(fixed), len(varying)
        counts = np.clip(codes[:, 0] + 1, 1, self.max_rows)
        parts = []
        for j in range(1, self.max_rows + 1):
            present = np.nonzero(counts >= j)[0]
            block = np.empty((present.size, len(fixed) + len(varying)), dtype=np.int64)
            block[:, fixed] = codes[present, 1:start]
            block[:, varying] = codes[present, start + (j - 1) * width: start + j * width]
            decoded = self.base.inverse_transform(block, rng, relations=False)
            parts.append(decoded.assign(__person=present, __slot=j))
        rows = pd.concat(parts, ignore_index=True).sort_values(["__person", "__slot"],
                                                               kind="stable")
        owners = rows["__person"].to_numpy()
        first = parts[0]  # every person has slot 1: its fixed values are the person's
        for name in self.fixed:  # one draw per person, not one per row inside the bin
            rows[name] = first[name].iloc[owners].set_axis(rows.index)  # keeps the dtype
        rows = rows.drop(columns=["__person", "__slot"]).reset_index(drop=True)
        if self.order_by is not None:  # post-processing: a person's rows in time order
            column = self.schema[self.order_by]
            key = to_model_space(rows[[self.order_by]], TableSchema((column,)))
            order = np.lexsort((key[self.order_by].fillna(np.inf).to_numpy(), owners))
            rows, owners = rows.iloc[order].reset_index(drop=True), owners[order]
        return apply_relations(rows, self.relations, self.schema, owners), owners


__all__ = ["PersonEncoder", "ROWS_COLUMN"]
