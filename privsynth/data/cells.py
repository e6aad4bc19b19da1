"""Pure functions of one cell, and the one way to apply them to a column.

Everything that turns a raw cell into a prepared value lives here and looks at that cell only:
no dtype of the column, no other row, no statistic. :func:`per_value` applies such a function to
a column by factorizing it (each distinct value converted once, the result broadcast back), so a
row's prepared value can never depend on any other row. A cell that does not parse becomes
missing (None); nothing here raises or counts.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd

TRUE_TEXT = frozenset({"true", "t", "yes", "y", "1", "1.0"})
FALSE_TEXT = frozenset({"false", "f", "no", "n", "0", "0.0"})
EPOCH_DT = dt.datetime(1970, 1, 1)

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_WHOLE_TEXT = re.compile(r"([+-]?\d+)\.0*")
_DIGITS = re.compile(r"\d+")
_ZIP_PLUS4 = re.compile(r"(\d{5})-\d{4}")
# Common non-ISO date formats, tried in this order after ISO 8601 (US month-first before
# day-first for slashes; dots and named months are unambiguous).
_DATE_FORMATS = (
    "%Y/%m/%d", "%m/%d/%Y", "%d.%m.%Y", "%d-%b-%Y", "%d %b %Y", "%d %B %Y", "%b %d %Y",
    "%b %d, %Y", "%B %d %Y", "%B %d, %Y",
)
_TIME_FORMATS = ("", " %H:%M", " %H:%M:%S")


def is_native_missing(value: object) -> bool:
    """None, NaN, NaT, pd.NA: missing whatever the policy says."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float | np.floating):
        return bool(np.isnan(value))
    if isinstance(value, np.datetime64 | np.timedelta64):
        return bool(np.isnat(value))
    return False


def category_text(value: object) -> str:
    """Canonical text of a category: ``3``, ``3.0`` and ``"3"`` are the same; strings stripped."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if math.isfinite(value) and float(value).is_integer():
            return str(int(value))
        return str(value)
    text = str(value).strip()
    whole = _WHOLE_TEXT.fullmatch(text)
    if whole:
        return str(int(whole.group(1)))
    return text


def parse_number(value: object) -> float | None:
    """A finite float from a number or the text of one; None otherwise."""
    if isinstance(value, bool | np.bool_):
        return 1.0 if value else 0.0
    if isinstance(value, int | np.integer):
        number = float(int(value))
    elif isinstance(value, float | np.floating):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not _NUMBER.fullmatch(text):
            return None
        try:
            number = float(text)
        except (ValueError, OverflowError):
            return None
    else:
        return None
    if not math.isfinite(number):
        return None
    return number + 0.0  # -0.0 -> 0.0


def parse_datetime(value: object) -> dt.datetime | None:
    """A naive datetime (UTC when the cell has a zone) from a date cell; None otherwise.

    ISO 8601 and a few common formats (``2020/01/31``, ``01/31/2020``, ``31.01.2020``,
    ``31 Jan 2020``, ``Jan 31, 2020``, optionally with ``HH:MM[:SS]``). A number is not a date.
    """
    if isinstance(value, bool | np.bool_ | int | np.integer | float | np.floating):
        return None
    if isinstance(value, np.datetime64):
        try:
            value = pd.Timestamp(value)
        except (ValueError, OverflowError):
            return None
    if isinstance(value, pd.Timestamp):
        if value is pd.NaT:
            return None
        value = value.to_pydatetime(warn=False)
    if isinstance(value, dt.datetime):
        return _naive(value)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or _NUMBER.fullmatch(text):
        return None
    try:
        return _naive(dt.datetime.fromisoformat(text))
    except ValueError:
        pass
    for date_format in _DATE_FORMATS:
        for time_format in _TIME_FORMATS:
            try:
                return dt.datetime.strptime(text, date_format + time_format)
            except ValueError:
                continue
    return None


def _naive(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def days_since_epoch(value: dt.datetime) -> float:
    """Days (with fractions) since 1970-01-01."""
    return (value - EPOCH_DT).total_seconds() / 86400.0


def boolean_text(value: object) -> str | None:
    """``"true"``/``"false"`` from a boolean cell (true/false, yes/no, 1/0 ...); None otherwise."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    text = category_text(value).lower()
    if text in TRUE_TEXT:
        return "true"
    if text in FALSE_TEXT:
        return "false"
    return None


def zip5(value: object) -> str | None:
    """The five-digit ZIP of a cell; None when it is not one.

    A number (``2139``, ``2139.0``) or all-digit text of up to five digits (``"2139"``) lost its
    leading zeros to a spreadsheet or a numeric column and is padded back (``"02139"``);
    ``"02139-1234"`` and nine-digit ZIP+4 text keep their first five digits.
    """
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | np.integer | float | np.floating):
        number = float(value)
        if not math.isfinite(number) or not number.is_integer() or not 0 <= number < 100000:
            return None
        return str(int(number)).zfill(5)
    if not isinstance(value, str):
        return None
    text = category_text(value)  # "2139.0" -> "2139"
    if _DIGITS.fullmatch(text):
        if len(text) <= 5:
            return text.zfill(5)
        if len(text) == 9:
            return text[:5]
        return None
    plus4 = _ZIP_PLUS4.fullmatch(text)
    return plus4.group(1) if plus4 else None


def canonical_markers(markers: Iterable[Any], exempt: Iterable[Any] = ()) -> frozenset[str]:
    """The missing markers as canonical text, less the exempt values (a declared domain)."""
    keep = {category_text(m) for m in markers}
    return frozenset(keep - {category_text(e) for e in exempt})


def is_marked_missing(value: object, markers: frozenset[str]) -> bool:
    """True when the cell is natively missing or its canonical text is one of ``markers``."""
    return is_native_missing(value) or (bool(markers) and category_text(value) in markers)


def per_value(series: pd.Series, convert: Callable[[object], Any]) -> np.ndarray:
    """``convert`` applied to every cell, computed once per distinct value (object array).

    Distinct values are told apart by type as well as value (``True``, ``1`` and ``1.0`` compare
    equal in Python but are different cells), so a cell's result depends on that cell alone.
    Natively missing cells are passed as None.
    """
    n = len(series)
    if n == 0:
        return np.empty(0, dtype=object)
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    if series.dtype != object and not pd.api.types.is_extension_array_dtype(series.dtype):
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        return _broadcast(codes, [convert(u) for u in uniques.tolist()], convert)
    values = series.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        return _broadcast(codes, [convert(u) for u in uniques.tolist()], convert)
    out = np.empty(n, dtype=object)
    cache: dict[tuple[type, object], Any] = {}
    for i, value in enumerate(values):
        if is_native_missing(value):
            value = None
        try:
            key = (type(value), value)
            out[i] = cache[key]
        except KeyError:
            out[i] = cache[key] = convert(value)
        except TypeError:  # unhashable cell
            out[i] = convert(value)
    return out


def _broadcast(codes: np.ndarray, results: list[Any], convert: Callable[[object], Any]
               ) -> np.ndarray:
    table = np.empty(len(results) + 1, dtype=object)
    table[:-1] = results
    table[-1] = convert(None)  # code -1: natively missing
    return table[codes]
