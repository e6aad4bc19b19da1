"""Column generalization rules: coarsen a column before the generator or the audit sees it.

Each rule is a pure function of one cell (no statistic of the column, not even its dtype, is
used), so it costs no privacy budget and one row can never change how another is generalized.
A cell the rule cannot apply to (not a date, not a ZIP, not a number, outside the band edges,
not a key of the mapping) becomes missing: no error, no count.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Callable

import numpy as np
import pandas as pd

from privsynth.data.cells import category_text, parse_datetime, parse_number, per_value, zip5
from privsynth.policy.model import Generalize

# Three-digit ZIP areas with 20,000 or fewer people (HHS Safe Harbor guidance, 2000 census);
# Safe Harbor requires them to be replaced by 000.
RESTRICTED_ZIP3 = frozenset(
    ["036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878",
     "879", "884", "890", "893"]
)

CellRule = Callable[[object], object | None]


def generalizer(spec: Generalize) -> CellRule:
    """The rule as a pure function of one present (not missing) cell; None when it cannot apply.

    ``year`` gives the year as a float, ``month`` the first day of the month (a datetime),
    ``zip3`` the first three digits of the ZIP (restricted areas ``000``), ``bands`` the band's
    label ``[low, high)``, ``map`` the mapped text, ``topcode`` the number capped at ``above``.
    """
    if spec.to == "year":
        return _year
    if spec.to == "month":
        return _month
    if spec.to == "zip3":
        return _zip3
    if spec.to == "topcode":
        above = float(spec.above)

        def topcode(value: object) -> float | None:
            number = parse_number(value)
            return None if number is None else min(number, above)

        return topcode
    if spec.to == "bands":
        edges = sorted(float(e) for e in spec.edges)
        labels = [f"[{_fmt(lo)}, {_fmt(hi)})" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]

        def band(value: object) -> str | None:
            number = parse_number(value)
            if number is None or not edges[0] <= number < edges[-1]:
                return None
            return labels[bisect.bisect_right(edges, number) - 1]

        return band
    mapping = {category_text(k): str(v) for k, v in spec.mapping.items()}

    def mapped(value: object) -> str | None:
        return mapping.get(category_text(value))

    return mapped


def apply_generalization(series: pd.Series, spec: Generalize, name: str = "") -> pd.Series:
    """The generalized column, cell by cell (missing cells stay missing). Never raises on data."""
    rule = generalizer(spec)
    out = per_value(series, lambda v: None if v is None else rule(v))
    if spec.to in ("year", "topcode"):
        return pd.Series(np.array([np.nan if v is None else v for v in out], dtype=float),
                         index=series.index)
    return pd.Series(out, index=series.index, dtype=object)


def _year(value: object) -> float | None:
    date = parse_datetime(value)
    return None if date is None else float(date.year)


def _month(value: object) -> dt.datetime | None:
    date = parse_datetime(value)
    return None if date is None else dt.datetime(date.year, date.month, 1)


def _zip3(value: object) -> str | None:
    code = zip5(value)
    if code is None:
        return None
    return "000" if code[:3] in RESTRICTED_ZIP3 else code[:3]


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)
