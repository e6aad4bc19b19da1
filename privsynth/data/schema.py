"""The public schema of a table: only facts the policy declares or DP mechanisms produced."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnKind = Literal["numeric", "integer", "categorical", "boolean", "datetime"]
FactSource = Literal["policy", "dp"]


@dataclass(frozen=True)
class ColumnSchema:
    """One modelled column. ``bounds`` are in model space (datetimes as days since the epoch)."""

    name: str
    kind: ColumnKind
    bounds: tuple[float, float] | None = None
    domain: tuple[str, ...] | None = None
    bounds_source: FactSource | None = None
    domain_source: FactSource | None = None

    @property
    def is_numeric(self) -> bool:
        """Numbers and dates are modelled on a line; categories and booleans are not."""
        return self.kind in ("numeric", "integer", "datetime")


@dataclass(frozen=True)
class TableSchema:
    """Ordered columns of the modelled table."""

    columns: tuple[ColumnSchema, ...]

    @property
    def names(self) -> list[str]:
        """Column names in model order."""
        return [c.name for c in self.columns]

    def __getitem__(self, name: str) -> ColumnSchema:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def to_dict(self) -> dict:
        """JSON-friendly form for manifests and reports (public facts only)."""
        return {
            c.name: {
                "kind": c.kind,
                "bounds": list(c.bounds) if c.bounds else None,
                "domain": list(c.domain) if c.domain else None,
                "bounds_source": c.bounds_source,
                "domain_source": c.domain_source,
            }
            for c in self.columns
        }
