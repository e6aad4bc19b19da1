"""Read a table and bring it into the shape the policy declares, one cell at a time.

The table is private, and under add/remove-one-row DP one row must never change how another row
is prepared. So nothing here looks at a column as a whole: a CSV is read with every cell as text
(no dtype inference over the column), Parquet and DataFrame cells keep their native values, and
:func:`prepare_table` converts each cell on its own by the policy's declared kind. A cell that does
not parse, lies outside a declared domain, outside band edges or has no entry in a mapping becomes
missing: silently, with no error and no count. The only errors are about the file and the schema
(column names are public): never a cell value, never a count derived from cells.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from privsynth.data.cells import (
    FALSE_TEXT,
    TRUE_TEXT,
    boolean_text,
    canonical_markers,
    category_text,
    days_since_epoch,
    is_marked_missing,
    parse_datetime,
    parse_number,
    per_value,
)
from privsynth.errors import DataError
from privsynth.policy.model import ColumnPolicy, Policy
from privsynth.policy.rules import generalizer

_TRUE = TRUE_TEXT
_FALSE = FALSE_TEXT
EPOCH = pd.Timestamp("1970-01-01")
DEFAULT_MISSING = ("",)

__all__ = ["EPOCH", "PreparedTable", "category_text", "convert_cell", "missing_markers",
           "prepare_table", "read_table", "to_model_space"]


def read_table(source: str | Path | pd.DataFrame, policy: Policy | None = None) -> pd.DataFrame:
    """Read CSV (optionally gzip), Parquet, or take a DataFrame.

    CSV cells are read as text and stripped, cell by cell; Parquet and DataFrame cells keep their
    native values. A text cell equal to one of the policy's missing markers (``[""]`` without a
    policy) becomes None, except in a column whose declared domain lists it. Raises
    :class:`DataError` only for facts about the file and its header, never about cells or rows
    (a header with no rows gives an empty table).

    Row-local faults stay row-local: bytes that are not UTF-8 become U+FFFD in their own cell, a
    line with fewer fields than the header gets missing cells, and a line with more fields is
    skipped (as if that row were absent, which the add/remove-one-row guarantee covers) instead
    of failing the whole read.
    """
    if isinstance(source, pd.DataFrame):
        frame = source.copy()
        name = "the DataFrame"
        text_cells = False
    else:
        path = Path(source)
        name = path.name
        if not path.exists():
            raise DataError(f"{path}: no such file; check the path")
        suffixes = "".join(path.suffixes).lower()
        parquet = suffixes.endswith((".parquet", ".pq"))
        text_cells = not parquet
        try:
            if parquet:
                frame = pd.read_parquet(path)
            else:
                frame = pd.read_csv(
                    path, dtype=str, keep_default_na=False, na_filter=False,
                    skipinitialspace=True, encoding_errors="replace", on_bad_lines="skip",
                )
        except pd.errors.EmptyDataError:
            raise DataError(f"{name}: the file is empty; give a table with a header row") from None
        except (ValueError, OSError, pd.errors.ParserError) as exc:
            raise DataError(
                f"{name}: cannot be read as {'Parquet' if parquet else 'CSV'} "
                f"({type(exc).__name__}); check the file format"
            ) from None
    if frame.shape[1] == 0:
        raise DataError(f"{name}: the table has no columns; give a table with a header row")
    frame.columns = [str(c) for c in frame.columns]
    duplicated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if duplicated:
        raise DataError(f"{name}: column name(s) {duplicated} appear more than once; rename them")
    for column in frame.columns:
        series = frame[column]
        if text_cells:
            series = series.astype(object).map(lambda v: v.strip() if isinstance(v, str) else v)
        if series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
            markers = missing_markers(policy, column)
            keep = per_value(series, lambda v, m=markers: not (
                isinstance(v, str) and is_marked_missing(v, m)))
            series = series.astype(object).where(keep.astype(bool), None)
        frame[column] = series
    return frame


def missing_markers(policy: Policy | None, column: str) -> frozenset[str]:
    """The canonical texts that mark a missing cell in ``column``.

    The column's ``missing_values``, else the dataset's, less every value of the column's
    declared domain and every key of its mapping (a listed category is never missing).
    """
    if policy is None:
        return canonical_markers(DEFAULT_MISSING)
    rule = policy.columns.get(column)
    markers = policy.dataset.missing_values
    exempt: list = []
    if rule is not None:
        if rule.missing_values is not None:
            markers = rule.missing_values
        if isinstance(rule.domain, list):
            exempt += rule.domain
        if rule.generalize is not None and rule.generalize.mapping:
            exempt += list(rule.generalize.mapping)
    return canonical_markers(markers, exempt)


@dataclass
class PreparedTable:
    """The modelled columns, typed, plus what the column rules did (for the report)."""

    frame: pd.DataFrame
    actions: dict[str, str] = field(default_factory=dict)
    pseudonymized: list[str] = field(default_factory=list)


def prepare_table(frame: pd.DataFrame, policy: Policy) -> PreparedTable:
    """Apply the policy's column rules and kinds, cell by cell.

    Raises :class:`DataError` only for schema facts (a policy column absent from the header, a
    header column with no rule), naming columns, never values. A cell that cannot be converted
    becomes missing; a column whose every cell is missing is returned as such.
    """
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
        if rule.rule == "generalize":
            actions[name] = f"generalized ({rule.generalize.to})"
        else:
            actions[name] = "kept"
        out[name] = coerce_column(frame[name], rule, name, missing_markers(policy, name))
    return PreparedTable(pd.DataFrame(out, index=frame.index), actions, pseudo)


def coerce_column(series: pd.Series, rule: ColumnPolicy, name: str = "",
                  markers: frozenset[str] | None = None) -> pd.Series:
    """Type one column as its declared kind, cell by cell: numbers and dates (days since the
    epoch) as float with NaN for missing, categories and booleans as text with None.
    """
    if markers is None:
        markers = canonical_markers(DEFAULT_MISSING, rule.domain if isinstance(rule.domain, list)
                                    else ())
    convert = convert_cell(rule, markers)
    values = per_value(series, convert)
    if rule.kind in ("numeric", "integer", "datetime"):
        floats = np.array([np.nan if v is None else v for v in values], dtype=float)
        return pd.Series(floats, index=series.index)
    return pd.Series(values, index=series.index, dtype=object)


def convert_cell(rule: ColumnPolicy, markers: frozenset[str]) -> Callable[[object], object]:
    """The pure function that prepares one cell of a column under ``rule`` (None: missing)."""
    generalize = generalizer(rule.generalize) if rule.rule == "generalize" else None
    kind = _KIND_CONVERTERS[rule.kind]
    domain = ({category_text(v) for v in rule.domain}
              if rule.kind == "categorical" and isinstance(rule.domain, list) else None)

    def convert(value: object) -> object:
        if value is None or is_marked_missing(value, markers):
            return None
        if generalize is not None:
            value = generalize(value)
            if value is None:
                return None
        out = kind(value)
        if out is None or (domain is not None and out not in domain):
            return None
        return out

    return convert


def _to_days(value: object) -> float | None:
    date = parse_datetime(value)
    return None if date is None else days_since_epoch(date)


_KIND_CONVERTERS: dict[str, Callable[[object], object]] = {
    "numeric": parse_number,
    "integer": parse_number,
    "datetime": _to_days,
    "boolean": boolean_text,
    "categorical": category_text,
}


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
