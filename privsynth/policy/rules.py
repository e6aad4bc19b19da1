"""Column generalization rules: coarsen a column before the generator or the audit sees it.

Each rule is a pure function of one value (no statistic of the column is used), so it costs no
privacy budget.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from privsynth.errors import DataError
from privsynth.policy.model import Generalize

# Three-digit ZIP areas with 20,000 or fewer people (HHS Safe Harbor guidance, 2000 census);
# Safe Harbor requires them to be replaced by 000.
RESTRICTED_ZIP3 = frozenset(
    ["036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878",
     "879", "884", "890", "893"]
)


def apply_generalization(series: pd.Series, spec: Generalize, name: str) -> pd.Series:
    """Return the generalized column. Errors name the column and count bad values only."""
    present = series.notna()
    if spec.to in ("year", "month"):
        dates = pd.to_datetime(series, errors="coerce", format="mixed")
        _check(name, present & dates.isna(), "dates")
        if spec.to == "year":
            return dates.dt.year.astype("Float64").astype(float)
        return dates.dt.to_period("M").dt.to_timestamp().where(dates.notna())
    if spec.to == "zip3":
        series = _zip_text(series)
        text = series.astype(str).str.extract(r"^\s*(\d{3})\d{0,2}(?:-\d{4})?\s*$")[0]
        _check(name, present & text.isna(), "US ZIP codes")
        text = text.where(~text.isin(RESTRICTED_ZIP3), "000")
        return text.where(present, None)
    numbers = pd.to_numeric(series, errors="coerce")
    if spec.to in ("bands", "topcode"):
        _check(name, present & numbers.isna(), "numbers")
    if spec.to == "topcode":
        return numbers.clip(upper=spec.above)
    if spec.to == "bands":
        edges = np.asarray(sorted(spec.edges), dtype=float)
        labels = [f"[{_fmt(lo)}, {_fmt(hi)})" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
        banded = pd.cut(numbers, bins=edges, labels=labels, right=False, include_lowest=True)
        outside = present & banded.isna()
        _check(name, outside, f"inside the band edges [{_fmt(edges[0])}, {_fmt(edges[-1])})")
        return banded.astype(object).where(banded.notna(), None)
    mapping = {str(k): str(v) for k, v in spec.mapping.items()}
    text = series.map(lambda v: str(v).strip(), na_action="ignore")
    unmapped = present & ~text.isin(mapping)
    _check(name, unmapped, "keys of the mapping")
    return text.map(mapping, na_action="ignore")


def _zip_text(series: pd.Series) -> pd.Series:
    """ZIP codes read as numbers (a CSV reader drops leading zeros: 02139 -> 2139) back to text."""
    if not pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
        return series
    numbers = pd.to_numeric(series, errors="coerce")
    whole = numbers.notna() & (numbers % 1 == 0) & (numbers >= 0) & (numbers < 100000)
    text = series.astype(object)
    padded = numbers[whole].astype("int64").astype(str).str.zfill(5)
    text[whole] = padded
    return text


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _check(name: str, bad: pd.Series, what: str) -> None:
    count = int(bad.sum())
    if count:
        raise DataError(
            f"column '{name}': {count} value(s) are not {what}, so the generalize rule cannot "
            "apply; fix the data or change the rule"
        )
