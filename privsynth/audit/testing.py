"""Helpers for tests and benchmarks: public example tables in model space, with a schema.

The schema here is inferred from the data (bounds = observed range, domain = observed
categories), which is fine for a benchmark or a test; a real release takes both from the policy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from privsynth.data.schema import ColumnSchema, TableSchema

DATASETS = Path("/work/shared/datasets")


def to_model_space(frame: pd.DataFrame) -> tuple[pd.DataFrame, TableSchema]:
    """Numbers to float, everything else to str/None; schema inferred from the frame."""
    out = pd.DataFrame(index=range(len(frame)))
    cols = []
    for name in frame.columns:
        s = frame[name].reset_index(drop=True)
        if pd.api.types.is_bool_dtype(s):
            s = s.astype(object)
        if pd.api.types.is_numeric_dtype(s):
            x = s.astype(float)
            out[name] = x
            lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
            kind = "integer" if np.allclose(x.dropna() % 1, 0) else "numeric"
            cols.append(ColumnSchema(name, kind, bounds=(lo, hi if hi > lo else lo + 1),
                                     bounds_source="policy"))
        else:
            v = s.astype(object)
            v = v.where(~pd.isna(v), None).map(lambda x: None if x is None else str(x))
            out[name] = v.astype(object)
            domain = tuple(sorted({x for x in v if x is not None}))
            cols.append(ColumnSchema(name, "categorical", domain=domain, domain_source="policy"))
    return out, TableSchema(tuple(cols))


def load_model_space(name: str = "adult") -> tuple[pd.DataFrame, TableSchema]:
    frame = pd.read_csv(DATASETS / f"{name}.csv.gz", na_values=["?"], skipinitialspace=True)
    return to_model_space(frame)


def three_way_split(frame: pd.DataFrame, n: int, seed: int) -> tuple[pd.DataFrame, ...]:
    """Three disjoint random splits of ``n`` rows each: train, holdout, fresh (honest synthetic)."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(frame))[: 3 * n]
    return tuple(frame.iloc[idx[i * n:(i + 1) * n]].reset_index(drop=True) for i in range(3))
