"""Categories and booleans as one slot per category, plus ``other`` (DP domains) and missing."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from privsynth.data.schema import ColumnSchema

OTHER = "__other__"


@dataclass(frozen=True)
class CategoricalEncoder:
    """Fitted slots for one categorical or boolean column.

    A domain discovered under DP gets an ``__other__`` slot: categories too rare to pass the DP
    threshold merge there, and decode as the literal ``__other__``.
    """

    schema: ColumnSchema
    categories: tuple[str, ...]
    complete: bool = False

    @property
    def width(self) -> int:
        """Slots: categories (with ``__other__`` if any), plus one for missing unless the
        column is declared complete."""
        return len(self.categories) + (0 if self.complete else 1)

    def encode(self, values: pd.Series) -> np.ndarray:
        """Slot index per row; the last slot means missing. In a column declared complete a
        missing cell (or one outside the domain, with no ``__other__``) takes slot 0: a
        row-local rule, so no count of such cells exists."""
        index = {c: i for i, c in enumerate(self.categories)}
        absent = 0 if self.complete else len(self.categories)
        other = index.get(OTHER, absent)
        return np.fromiter(
            (absent if v is None or v != v else index.get(v, other) for v in values),
            dtype=np.int64, count=len(values),
        )

    def decode(self, codes: np.ndarray, rng: np.random.Generator) -> pd.Series:
        """Category per code; the missing slot gives None. Booleans decode to True/False."""
        lookup = np.array(list(self.categories) + [None], dtype=object)
        out = lookup[codes]
        if self.schema.kind == "boolean":
            out = np.array([None if v is None else v == "true" for v in out], dtype=object)
        return pd.Series(out, name=self.schema.name, dtype=object)
