"""Test helper: a ledger with one registered population, as a privacy officer would set it up."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from privsynth.privacy.ledger import Ledger
from privsynth.privacy.population import read_population_table


def registered_ledger(path: str | Path, population: str, frame_or_path: pd.DataFrame | str | Path,
                      total_epsilon: float = 10.0, total_delta: float = 1e-5, *,
                      composition: str = "sum") -> str:
    """Open (creating) the ledger at ``path``, register ``population`` with the given totals and
    the table's keyed sketch (a DataFrame, or a CSV/Parquet file read as the CLI reads it), and
    return the ledger location. Re-registering the same population with the same totals and
    table is a no-op."""
    location = str(path)
    table = (read_population_table(frame_or_path) if isinstance(frame_or_path, str | Path)
             else frame_or_path)
    with Ledger.open(location) as book:
        book.register(population, total_epsilon=total_epsilon, total_delta=total_delta,
                      sketch=book.sketch(table), officer="test officer",
                      composition=composition)
    return location
