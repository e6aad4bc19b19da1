"""Encoder of wide per-person records (``privacy.unit: person``; see :mod:`privsynth.data.persons`).

One column encoder per base column, shared by the k slots, fitted under DP on **one row per
person** (a uniformly chosen one of each training person's kept rows). Each person then
contributes one value to every encoding mechanism, so the mechanisms' sensitivities, and their
charges, are exactly those of a row-level release: no factor k anywhere in the encoding. The
number of rows a person has is a column of its own with the public domain 1..k.

The generator sees ``1 + k·F`` slot-index columns (F modelled columns): the row count, then
slot 1's columns, slot 2's, ...; an empty slot holds each column's missing slot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from privsynth.data.persons import ROWS_COLUMN, PersonLayout, row_counts
from privsynth.data.schema import TableSchema
from privsynth.encoding.table_encoder import EncodingBudget, TableEncoder
from privsynth.policy.model import Policy
from privsynth.privacy.events import PrivacySpend
from privsynth.privacy.noise import NoiseSource


@dataclass
class PersonEncoder:
    """Maps wide person records to slot indices and back, through one shared row encoder."""

    base: TableEncoder
    max_rows: int

    @classmethod
    def fit(cls, one_row_each: pd.DataFrame, policy: Policy, budget: EncodingBudget,
            spend: PrivacySpend, noise: NoiseSource) -> PersonEncoder:
        """Fit the row encoder on ``one_row_each`` (one row per training person), paying
        ``spend`` exactly as :meth:`TableEncoder.fit` does."""
        assert policy.privacy.person is not None
        base = TableEncoder.fit(one_row_each, policy, budget, spend, noise)
        return cls(base, policy.privacy.person.max_rows)

    @property
    def layout(self) -> PersonLayout:
        """The wide record's columns."""
        return PersonLayout(tuple(self.base.schema.names), self.max_rows)

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
        """Slots per generator column: the row count (k), then k copies of the row's."""
        return [self.max_rows] + self.base.widths * self.max_rows

    def transform(self, wide: pd.DataFrame) -> np.ndarray:
        """(persons, 1 + k·F) slot indices of wide records."""
        layout = self.layout
        blocks = [(row_counts(wide, layout) - 1)[:, None]]
        for j in range(1, self.max_rows + 1):
            slot = wide[layout.slot_columns(j)]
            slot.columns = list(layout.columns)
            blocks.append(self.base.transform(slot))
        return np.concatenate(blocks, axis=1).astype(np.int64)

    def inverse_transform(self, codes: np.ndarray, rng: np.random.Generator
                          ) -> tuple[pd.DataFrame, np.ndarray]:
        """(rows, synthetic person index per row): each record's first ``count`` slots decoded
        as rows (post-processing of DP output), a person's rows contiguous in slot order."""
        width = len(self.base.encoders)
        counts = np.clip(codes[:, 0] + 1, 1, self.max_rows)
        parts = []
        for j in range(1, self.max_rows + 1):
            present = np.nonzero(counts >= j)[0]
            block = codes[present, 1 + (j - 1) * width: 1 + j * width]
            decoded = self.base.inverse_transform(block, rng)
            parts.append(decoded.assign(__person=present, __slot=j))
        rows = pd.concat(parts, ignore_index=True).sort_values(["__person", "__slot"],
                                                               kind="stable")
        owners = rows["__person"].to_numpy()
        return rows.drop(columns=["__person", "__slot"]).reset_index(drop=True), owners


__all__ = ["PersonEncoder", "ROWS_COLUMN"]
