"""Populations and near-copies: a keyed sketch of a table's rows that stores no raw value.

A privacy budget belongs to a *population*: the people in a table that a privacy officer
registered once (``privsynth budget register``). A release names its population, but the table it
reads might be a near-copy of another registered population: the same people with a row added or
removed, columns renamed or reordered, a dropped column edited, CSV rewritten as Parquet, next
month's refresh. This module decides that without keeping any of the data.

**Cells.** Every cell is brought to a canonical text on its own (never from the rest of its
column): numbers so that ``3``, ``3.0``, ``"3"`` and ``"003"`` agree; strings stripped; ``true`` /
``false`` (any case) and booleans as ``1`` / ``0``; the empty cell and every kind of missing value
as one token; ISO dates and datetimes (``2020-01-31``, ``2020-01-31 10:00``, timezone-aware ones
in UTC) as nanoseconds since the epoch. Column names are *not* used.

**Row views.** Each canonical text gets a 64-bit HMAC-SHA-256 hash under the ledger's secret
sketch key (:meth:`privsynth.privacy.ledger.Ledger.installation_key`: derived from the
installation's key store and the ledger id, never stored in the ledger). A row's *full view* is
the multiset of its cells, hashed order-free (the sum of the cell hashes mod 2^64, then a fixed
bijective mixer), so renaming or reordering columns changes nothing. Its *leave-one-out views*
(one per column, for tables of at least three columns) are the same multiset less one cell. All
views share one key space, so a row with one column more, one column less or one column changed
still shares a view with the original row.

**Sample.** Only keys below a threshold θ are kept, per view (leave-one-out views are numbered
by their content, never by a column name or position), with θ chosen so that about 4,096 keys are
stored (sample rate p = θ / 2^64, stored). The same key is kept in every table that has it, so
two sketches can be compared on the keys below the smaller θ.

**Containment.** For a view t of table B, the share of B's view-t keys (below θ) that appear among
*any* key of population A estimates the share of B's rows whose view t is a row view of A. The
containment of B in A is the largest such share over B's views (views with fewer than
``MIN_SUPPORT`` sampled keys are not counted: too few to estimate). :func:`overlap` reports the
larger of B-in-A and A-in-B, so a registered population hidden inside a bigger table (diluted with
added rows) is found too. On the bundled Adult table, a copy with one row added or removed, a
column renamed, dropped, added or edited, a shuffle, or a Parquet round trip scores about 1; the
disjoint other half of the same table about 0.1 (rows that agree on every column but one).

**Detected:** rows added or removed (up to about half), rows shuffled or duplicated, columns
renamed or reordered, one column added, removed or edited (e.g. a column the policy drops),
CSV <-> Parquet and number/date formatting, a refresh of mostly the same people in which each row
changed in at most one column.

**Not detected:** two or more columns changed in most rows (every modelled cell perturbed, a
re-generated identifier *and* an edited value); a disjoint sample of new people with the same
schema (correctly: they are other people, but it is the officer's call whether they are the same
population); a table much smaller than the registered one (an extract needs about
``MIN_SUPPORT / p`` rows, a few thousand for a 50,000-row population, before the sample sees it).

**False positives** (the safe direction: the release is charged to both budgets, or registration
asks the officer to state the overlap): low-entropy tables in which different people share whole
rows, or all cells but one, e.g. a handful of categorical columns; tables of one or two columns.

**What is stored.** 64-bit keyed hashes and θ: no cell value, no column name and no row count
(θ and the number of keys together give a rough size of the table; the ledger is internal).
The key is not in the ledger (schema 3): a copy of the ledger alone does not let anyone test
whether a *candidate* row is in the sample; the ledger together with the installation's key
store does, so protect the key store like the data. A ledger migrated from schema 2 keeps its
old key (wrapped, in the file): copies of the schema-2 file made before the migration hold it in
clear (docs/ledger.md).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

FORMAT = "privsynth-sketch-v1"
SKETCH_KEYS = 4096
MIN_SUPPORT = 8
MIN_LOO_COLUMNS = 3
FULL_VIEW = 0
_NA = "\x00NA"
_CELL_TAG = b"privsynth-cell-v1\x00"
_ROWS_PER_CHUNK = 100_000
_TWO64 = 1 << 64

_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")


# ---------------------------------------------------------------------- canonical cells
def canonical_text(value: object) -> str:
    """The canonical text of one cell, decided from that cell alone."""
    if value is None or value is pd.NA or value is pd.NaT:
        return _NA
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating | Decimal):
        return _number(float(value))
    if isinstance(value, dt.datetime | dt.date | np.datetime64):
        return _date(pd.Timestamp(value))
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return _string(str(value))


def _number(x: float) -> str:
    if math.isnan(x):
        return _NA
    if math.isfinite(x) and x == math.floor(x) and abs(x) < 2.0**63:
        return str(int(x))
    return repr(x)


def _date(ts: pd.Timestamp) -> str:
    if ts is pd.NaT or pd.isna(ts):
        return _NA
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return f"D{ts.value}"


def _string(text: str) -> str:
    s = text.strip()
    if not s:
        return _NA
    low = s.lower()
    if low in ("true", "false"):
        return "1" if low == "true" else "0"
    if _INT.match(s):
        return str(int(s))
    if _FLOAT.match(s):
        return _number(float(s))
    if _ISO.match(s):
        try:
            return _date(pd.Timestamp(s))
        except (ValueError, OverflowError):
            return s
    return s


def canonical_cells(column: pd.Series | np.ndarray) -> np.ndarray:
    """Canonical text of every cell of one column (each distinct value converted on its own)."""
    values = column.to_numpy(dtype=object) if isinstance(column, pd.Series) else \
        np.asarray(column, dtype=object)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    texts = np.array([canonical_text(u) for u in uniques] + [_NA], dtype=object)
    return texts[codes]  # code -1 picks the trailing missing token


def read_population_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV (every cell as text, nothing treated as missing) or Parquet file."""
    path = Path(path)
    suffixes = "".join(path.suffixes).lower()
    if suffixes.endswith((".parquet", ".pq")):
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


# ---------------------------------------------------------------------- keyed row views
def _cell_hashes(column: pd.Series, key: bytes) -> np.ndarray:
    values = column.to_numpy(dtype=object)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    texts = [canonical_text(u) for u in uniques] + [_NA]
    table = np.array([_h64(key, t) for t in texts], dtype=np.uint64)
    return table[codes]


def _h64(key: bytes, text: str) -> int:
    mac = hmac.new(key, _CELL_TAG + text.encode("utf-8", "surrogatepass"), hashlib.sha256)
    return int.from_bytes(mac.digest()[:8], "little")


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a fixed bijection of uint64 (wrapping arithmetic)."""
    z = z.copy()
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def _views_per_row(columns: int) -> int:
    return columns + 1 if columns >= MIN_LOO_COLUMNS else 1


def _view_keys(frame: pd.DataFrame, key: bytes) -> Iterable[list[np.ndarray]]:
    """Per chunk of rows: ``[full keys, leave-out-column-0 keys, ...]`` (uint64 arrays)."""
    m = frame.shape[1]
    hashes = np.empty((len(frame), m), dtype=np.uint64)
    for j in range(m):
        hashes[:, j] = _cell_hashes(frame.iloc[:, j], key)
    with np.errstate(over="ignore"):
        for start in range(0, len(frame), _ROWS_PER_CHUNK):
            block = hashes[start:start + _ROWS_PER_CHUNK]
            total = block.sum(axis=1, dtype=np.uint64)
            views = [_mix(total)]
            if m >= MIN_LOO_COLUMNS:
                views += [_mix(total - block[:, j]) for j in range(m)]
            yield views


# ---------------------------------------------------------------------- the sketch
@dataclass(frozen=True)
class PopulationSketch:
    """A hash-threshold sample of a table's keyed row views. Holds no cell value.

    ``theta``: keys below it are kept (sample rate ``theta / 2**64``). ``views``: view number
    -> sorted distinct keys; 0 is the full row, 1.. the rows less one column each (numbered by
    content, not by column position, so the column order does not matter).
    """

    theta: int
    views: dict[int, np.ndarray]

    @classmethod
    def from_table(cls, frame: pd.DataFrame, key: bytes, *, keys: int = SKETCH_KEYS,
                   theta: int | None = None) -> PopulationSketch:
        """Sketch a raw table under the installation ``key``; about ``keys`` keys are kept
        (or every key below ``theta`` when it is given)."""
        if not key:
            raise ValueError("a population sketch needs the installation's non-empty key")
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"a population sketch needs a DataFrame. Got {type(frame).__name__}.")
        if frame.shape[1] == 0 or len(frame) == 0:
            return cls(theta=_TWO64, views={})
        target = max(keys, MIN_SUPPORT * 8 * _views_per_row(frame.shape[1]))
        limit = _TWO64 if theta is None else int(theta)
        if theta is None:
            # Expected keys below the limit ~ rows * views * limit / 2**64: start at 4x target.
            n_keys = len(frame) * _views_per_row(frame.shape[1])
            limit = min(_TWO64, int(_TWO64 * min(1.0, 4.0 * target / max(1, n_keys))))
        while True:
            kept = cls._below(frame, key, limit)
            count = sum(len(v) for v in kept.values())
            if theta is not None or count >= target or limit >= _TWO64:
                break
            limit = min(_TWO64, limit * 4)
        if theta is None and count > target:
            pooled = np.sort(np.concatenate(list(kept.values())))
            limit = int(pooled[target - 1]) + 1  # exactly `target` keys below (ties aside)
            kept = {t: k[k < np.uint64(limit)] if limit < _TWO64 else k for t, k in kept.items()}
        return cls(theta=limit, views=_canonical_views(kept))

    @staticmethod
    def _below(frame: pd.DataFrame, key: bytes, limit: int) -> dict[int, np.ndarray]:
        parts: dict[int, list[np.ndarray]] = {}
        for views in _view_keys(frame, key):
            for t, keys in enumerate(views):
                if limit < _TWO64:
                    keys = keys[keys < np.uint64(limit)]
                parts.setdefault(t, []).append(keys)
        return {t: np.unique(np.concatenate(ks)) for t, ks in parts.items()}

    # -------------------------------------------------------------- properties
    @property
    def sample_rate(self) -> float:
        """p = θ / 2^64: the share of all row-view keys the sketch keeps."""
        return self.theta / _TWO64

    @property
    def size(self) -> int:
        """The number of keys stored."""
        return int(sum(len(v) for v in self.views.values()))

    def all_keys(self) -> np.ndarray:
        """Every stored key, sorted and distinct."""
        if not self.views:
            return np.empty(0, dtype=np.uint64)
        return np.unique(np.concatenate(list(self.views.values())))

    # -------------------------------------------------------------- comparison
    def containment_in(self, other: PopulationSketch) -> float:
        """Estimated share of this table's rows that are (in some view) rows of ``other``."""
        theta = min(self.theta, other.theta)
        cut = np.uint64(theta) if theta < _TWO64 else None
        theirs = other.all_keys()
        if cut is not None:
            theirs = theirs[theirs < cut]
        best = 0.0
        for keys in self.views.values():
            mine = keys[keys < cut] if cut is not None else keys
            # A sample needs support; complete sketches (every key kept) compare exactly.
            if len(mine) == 0 or (cut is not None and len(mine) < MIN_SUPPORT):
                continue
            hits = np.isin(mine, theirs, assume_unique=True).sum()
            best = max(best, float(hits) / len(mine))
        return min(1.0, best)

    # -------------------------------------------------------------- storage
    def to_text(self) -> str:
        """Canonical JSON text (what the ledger stores; its SHA-256 is :attr:`digest`)."""
        body = {
            "format": FORMAT,
            "theta": str(self.theta),
            "views": {str(t): base64.b64encode(np.sort(k).astype("<u8").tobytes()).decode()
                      for t, k in sorted(self.views.items())},
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_text(cls, text: str) -> PopulationSketch:
        """Parse :meth:`to_text` output."""
        body = json.loads(text)
        if body.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} sketch")
        views = {int(t): np.frombuffer(base64.b64decode(b), dtype="<u8").astype(np.uint64)
                 for t, b in body["views"].items()}
        return cls(theta=int(body["theta"]), views=views)

    @property
    def digest(self) -> str:
        """SHA-256 of :meth:`to_text`: recorded in the chained ``register`` entry."""
        return hashlib.sha256(self.to_text().encode()).hexdigest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PopulationSketch) and self.to_text() == other.to_text()

    def __hash__(self) -> int:
        return hash(self.digest)


def _canonical_views(kept: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
    """The full view stays 0; the leave-one-out views are numbered by their content, so the
    sketch (and its digest) does not depend on the order of the columns."""
    full = kept.get(FULL_VIEW, np.empty(0, dtype=np.uint64))
    partial = sorted((k for t, k in kept.items() if t != FULL_VIEW and len(k)),
                     key=lambda k: (k.astype("<u8").tobytes(), len(k)))
    views = {FULL_VIEW: full} if len(full) else {}
    views.update({i + 1: k for i, k in enumerate(partial)})
    return views


def overlap(a: PopulationSketch, b: PopulationSketch) -> float:
    """The larger of a-in-b and b-in-a containment, in [0, 1]."""
    return max(a.containment_in(b), b.containment_in(a))
