"""Read a table and bring it into the shape the policy declares.

Every check here reports columns and counts, never a cell value: the table is private.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from privsynth.errors import DataError
from privsynth.policy.model import ColumnPolicy, Policy
from privsynth.policy.rules import apply_generalization

_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}
EPOCH = pd.Timestamp("1970-01-01")


def read_table(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Read CSV (optionally gzip), Parquet, or take a DataFrame. Raises DataError when unusable."""
    if isinstance(source, pd.DataFrame):
        frame = source.copy()
        name = "the DataFrame"
    else:
        path = Path(source)
        name = path.name
        if not path.exists():
            raise DataError(f"{path}: no such file; check the path")
        suffixes = "".join(path.suffixes).lower()
        try:
            if suffixes.endswith((".parquet", ".pq")):
                frame = pd.read_parquet(path)
            else:
                frame = pd.read_csv(path, na_values=["?", ""], keep_default_na=True,
                                    skipinitialspace=True)
        except pd.errors.EmptyDataError:
            raise DataError(f"{name}: the file is empty; give a table with a header row") from None
        except (ValueError, OSError, pd.errors.ParserError) as exc:
            raise DataError(
                f"{name}: cannot be read as {'Parquet' if 'parquet' in suffixes else 'CSV'} "
                f"({type(exc).__name__}); check the file format"
            ) from None
    if frame.shape[1] == 0:
        raise DataError(f"{name}: the table has no columns; give a table with a header row")
    if len(frame) == 0:
        raise DataError(f"{name}: the table has a header but no rows; nothing to synthesize")
    frame.columns = [str(c) for c in frame.columns]
    duplicated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if duplicated:
        raise DataError(f"{name}: column name(s) {duplicated} appear more than once; rename them")
    return frame


@dataclass
class PreparedTable:
    """The modelled columns, typed, plus what the column rules did (for the report)."""

    frame: pd.DataFrame
    actions: dict[str, str] = field(default_factory=dict)
    pseudonymized: list[str] = field(default_factory=list)


def prepare_table(frame: pd.DataFrame, policy: Policy) -> PreparedTable:
    """Apply the policy's column rules and types. Reports every problem at once."""
    problems: list[str] = []
    data_cols = list(frame.columns)
    unknown = [c for c in policy.columns if c not in data_cols]
    if unknown:
        problems.append(
            f"the policy names column(s) {unknown} that the table does not have; "
            "remove them from 'columns:' or check the spelling"
        )
    unruled = [c for c in data_cols if c not in policy.columns]
    if unruled:
        problems.append(
            f"column(s) {unruled} have no rule in the policy (deny by default); add e.g. "
            f"'{unruled[0]}: {{rule: drop}}' or declare their kind "
            "(`privsynth policy init` drafts the entries)"
        )
    if problems:
        raise DataError("; ".join(problems))

    out: dict[str, pd.Series] = {}
    actions: dict[str, str] = {}
    pseudo: list[str] = []
    for name, rule in policy.columns.items():
        if rule.rule == "drop":
            actions[name] = "dropped"
            continue
        if rule.rule == "pseudonymize":
            actions[name] = "replaced by fresh random identifiers; never modelled"
            pseudo.append(name)
            continue
        series = frame[name]
        if rule.rule == "generalize":
            series = apply_generalization(series, rule.generalize, name)
            actions[name] = f"generalized ({rule.generalize.to})"
        else:
            actions[name] = "kept"
        try:
            out[name] = coerce_column(series, rule, name)
        except DataError as exc:
            problems.append(str(exc))
    if problems:
        raise DataError("; ".join(problems))
    return PreparedTable(pd.DataFrame(out, index=frame.index), actions, pseudo)


def coerce_column(series: pd.Series, rule: ColumnPolicy, name: str) -> pd.Series:
    """Type one column as its declared kind. Numbers as float, dates as days, categories as str."""
    present = series.notna()
    if not present.any():
        raise DataError(
            f"column '{name}': every value is missing; drop it with 'rule: drop' or fix the data"
        )
    kind = rule.kind
    if kind in ("numeric", "integer"):
        values = pd.to_numeric(series, errors="coerce")
        _no_bad(name, present & values.isna(), "a number", "declare kind: categorical")
        return values.astype(float)
    if kind == "datetime":
        values = pd.to_datetime(series, errors="coerce", utc=False, format="mixed")
        _no_bad(name, present & values.isna(), "a date", "declare kind: categorical")
        return (values - EPOCH) / pd.Timedelta(days=1)
    if kind == "boolean":
        text = series.astype(str).str.strip().str.lower()
        mapped = pd.Series(np.where(text.isin(_TRUE), "true",
                                    np.where(text.isin(_FALSE), "false", None)),
                           index=series.index, dtype=object)
        _no_bad(name, present & mapped.isna(), "true/false", "declare kind: categorical")
        return mapped.where(present, None)
    values = series.map(category_text, na_action="ignore")
    if isinstance(rule.domain, list):
        domain = {category_text(v) for v in rule.domain}
        outside = present & ~values.isin(domain)
        if outside.any():
            if rule.unknown == "missing":
                values = values.where(~outside, None)
            else:
                raise DataError(
                    f"column '{name}': {int(outside.sum())} value(s) are outside the declared "
                    "domain; add the categories to 'domain:' or set 'unknown: missing'"
                )
    return values.astype(object).where(values.notna(), None)


def category_text(value: object) -> str:
    """Canonical text of a category: 3 and 3.0 are the same category."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _no_bad(name: str, bad: pd.Series, what: str, alternative: str) -> None:
    count = int(bad.sum())
    if count:
        raise DataError(
            f"column '{name}': {count} value(s) are not {what}; fix the data, or {alternative}"
        )


def _boolean_text(value: object) -> str | None:
    """``"true"``/``"false"`` for a decoded boolean, None when missing."""
    if value is None or value != value:
        return None
    return "true" if str(value).strip().lower() in _TRUE else "false"


def to_model_space(frame: pd.DataFrame, schema) -> pd.DataFrame:
    """Bring a table (e.g. decoded synthetic rows) to model space: numbers and dates as float
    (dates in days since the epoch), categories and booleans as text or None.
    """
    out = {}
    for column in schema.columns:
        series = frame[column.name]
        if column.kind == "datetime":
            stamps = pd.to_datetime(series, errors="coerce")
            out[column.name] = ((stamps - EPOCH) / pd.Timedelta(days=1)).astype(float)
        elif column.is_numeric:
            out[column.name] = pd.to_numeric(series, errors="coerce").astype(float)
        elif column.kind == "boolean":
            out[column.name] = series.map(_boolean_text)
        else:
            out[column.name] = series.map(lambda v: None if v is None or v != v
                                          else category_text(v)).astype(object)
    return pd.DataFrame(out, index=frame.index)
