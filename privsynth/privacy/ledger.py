"""The persistent privacy-budget ledger: append-only, transactional, MAC-chained and anchored.

One ledger holds every population an installation (or a team, with PostgreSQL) registered and
every release it made. **A budget belongs to a registered population**, not to a file or a policy:

* :meth:`Ledger.register` — a privacy officer registers a population once, by id (the id release
  policies name as ``dataset.id``), with its total ε and δ, the composition rule (``sum`` or
  ``accountant``), and a keyed sketch of its rows (:mod:`privsynth.privacy.population`: no raw
  value). Registration refuses a table that is a near-copy of another registered population
  unless the officer states the overlap (``allow_overlap_with``), which is recorded.
* :meth:`Ledger.set_total` — the only way to change a total: a recorded entry with the officer's
  name and reason. A release policy never sets or raises a cap.

Life of a release:

1. :meth:`Ledger.reserve` — *before any private data is read* — verifies the whole ledger (a
   ledger that fails :meth:`verify` grants nothing), then atomically checks the population's
   remaining ε and δ and appends a ``reserve`` entry, or raises :class:`BudgetExceededError`. The
   check and the insert happen in one exclusive write transaction (SQLite ``BEGIN IMMEDIATE``;
   PostgreSQL an advisory lock), so concurrent releases can never together overspend.
2. :meth:`Ledger.overlaps` — after the table is read — names the registered populations the table
   is a near-copy of; the release reserves on each of them too (or is refused).
3. :meth:`Ledger.record_charges` — after the mechanisms ran — appends one ``charge`` entry per
   mechanism with its exact accountant inputs (mechanism, σ, q, steps, δ). A charge never refunds:
   the reservation stays spent even if the release is later blocked by the audit gate. A run that
   used *more* ε or δ than it reserved gets an ``overrun`` entry that counts as spent.

Spending. With ``composition: sum`` the spent ε is the plain sum of reservations and overruns.
With ``accountant`` the recorded DP-SGD runs are composed under one accountant at δ_A = the sum of
their δ, and every other charge, plus the part of a reservation no recorded charge explains, adds
its ε. δ is budgeted in both: the sum of the δ of all reservations and overruns must stay within
the population's total δ.

Privacy units (``docs/ledger.md``, "Privacy units"). A population is registered per row, or
*person-keyed*: with the column that identifies a person and the officer's bound K on the rows one
person has in any table of it. A person-keyed population's budget is at person level. A
person-level release (``unit="person"``, at most K rows kept per person) is debited ε and δ as
asked; a row-level release is debited by group privacy, K·ε and K·e^((K-1)ε)·δ. A person-level
release on a population registered per row is refused: the ledger could not tell what its
earlier row-level releases cost a person.

Epsilon is stored as integer micro-epsilon (requests rounded *up*, budgets rounded *down*), so the
budget edge is exact: 100 reservations of 0.01 fill a budget of 1.0, and the 101st is refused.
δ is summed as exact decimals of its stored text.

Tamper evidence (threat model and limits: ``docs/ledger.md``). Every entry stores an HMAC-SHA256
of its canonical content, the ledger's id and the previous entry's MAC, keyed by the
installation's ``mac_key("ledger-chain")`` (:mod:`privsynth.keys`), which the ledger does not
hold: whoever edits the ledger cannot recompute the chain. Each population's sketch lives in its
own table; its SHA-256 is in the chained ``register`` entry, and its key is derived from the key
store and the ledger id (not stored in the ledger). After every write the head (entry count and
last MAC) is *anchored* outside the ledger: appended to ``<key dir>/anchors/<ledger id>.jsonl``
(and to ``$PRIVSYNTH_LEDGER_ANCHOR_SINK`` when set), and the ledger's location is bound to its id
in ``<key dir>/anchors/locations.jsonl``. :meth:`Ledger.verify` reports edited, removed, inserted
or reordered entries, a recomputed chain, edited or missing sketches, entries for unregistered
populations, a ledger shorter than its latest anchor or different at the anchored entry
(truncation, rollback to an older copy), another ledger swapped in at a location, and a ledger
keyed by another installation; :meth:`Ledger.open` refuses a missing ledger whose anchors exist.
:meth:`Ledger.check_head` compares the ledger with a head recorded elsewhere (a release's signed
statement). SQLite triggers (PostgreSQL: triggers and table rights) refuse ``UPDATE`` and
``DELETE`` on entries and sketches, so an honest mistake cannot rewrite history.

Schema 3 (this one) replaced schema 2's unkeyed SHA-256 chain and in-file sketch key; a schema-2
ledger is converted by :meth:`Ledger.migrate` (``privsynth budget migrate``), a recorded entry.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import hmac
import json
import logging
import math
import os
import re
import sqlite3
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from privsynth.errors import BudgetExceededError, LedgerError, PrivacyError, PrivsynthError
from privsynth.privacy.events import Charge
from privsynth.privacy.population import PopulationSketch, overlap, read_population_table

try:  # POSIX advisory locks keep concurrent anchor lines whole
    import fcntl
except ImportError:  # pragma: no cover - Windows: O_APPEND writes of one short line
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import pandas as pd

    from privsynth.policy.model import Policy

log = logging.getLogger(__name__)

MICRO = 1_000_000
GENESIS = "0" * 64
SCHEMA_VERSION = "3"
LEGACY_SCHEMA = "2"
ENV_VAR = "PRIVSYNTH_LEDGER"
ANCHOR_SINK_ENV = "PRIVSYNTH_LEDGER_ANCHOR_SINK"
COMPOSITIONS = ("sum", "accountant")
ACCOUNTANTS = ("prv", "rdp")
KINDS = ("register", "set_total", "reserve", "charge", "overrun", "migrate")
UNITS = ("row", "person")
MAX_ROWS_PER_PERSON = 10_000
MAX_NAME_LENGTH = 200
_GROUP_DELTA_DIGITS = 12  # a group-privacy δ is rounded up to this many significant digits
DEFAULT_TOTAL_DELTA = 1e-5
OVERLAP_THRESHOLD = 0.5
POPULATION_ID = re.compile(r"^[A-Za-z0-9._-]+$")
MAX_ENTRY_PROBLEMS = 8  # entry-level problems listed one by one; the rest are counted
_ANCHOR_TAIL = 256 * 1024  # bytes of an anchor file read back: hundreds of the latest heads

_ENTRY_COLUMNS = (
    "seq", "ts", "kind", "population", "release_id", "reservation_id",
    "epsilon_micro", "delta", "details", "prev_hash", "hash",
)

_META_TABLE = "CREATE TABLE IF NOT EXISTS ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
_SKETCH_TABLE = """CREATE TABLE IF NOT EXISTS ledger_sketches (
        population     TEXT PRIMARY KEY,
        digest         TEXT NOT NULL,
        sketch         TEXT NOT NULL)"""
_INDEX = "CREATE INDEX IF NOT EXISTS ledger_entries_pop ON ledger_entries (population)"
_APPEND_ONLY = ("ledger_entries", "ledger_sketches")


def _entries_table(integer: str) -> str:
    """The entries table; SQLite and PostgreSQL differ only in the integer type's name."""
    columns = ",\n        ".join(
        f"{name:<14} {integer + (' PRIMARY KEY' if name == 'seq' else ' NOT NULL')}"
        if name in ("seq", "epsilon_micro") else f"{name:<14} TEXT NOT NULL"
        for name in _ENTRY_COLUMNS)
    return f"CREATE TABLE IF NOT EXISTS ledger_entries (\n        {columns})"


_SQLITE_SCHEMA = [
    _entries_table("INTEGER"),
    _SKETCH_TABLE,
    _INDEX,
    *(f"""CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table}
       BEGIN SELECT RAISE(ABORT, 'the privsynth ledger is append-only'); END"""
      for table in _APPEND_ONLY for op in ("UPDATE", "DELETE")),
]

_PG_SCHEMA = [
    _entries_table("BIGINT"),
    _SKETCH_TABLE,
    _INDEX,
    """CREATE OR REPLACE FUNCTION privsynth_ledger_append_only() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'the privsynth ledger is append-only'; END; $$ LANGUAGE plpgsql""",
]
_PG_TRIGGERS = {
    f"{table}_no_{op.lower()}": f"BEFORE {op} ON {table}"
    for table in _APPEND_ONLY for op in ("UPDATE", "DELETE")
}

_V1_HELP = (
    "it was written by an earlier privsynth (schema version 1), whose budgets were keyed by a "
    "content hash of the file and capped by each policy's budget.total_epsilon. This privsynth "
    "keys budgets by registered population (schema version 2) and cannot assign the old "
    "spending to populations by itself. To proceed: keep the old ledger as a record, point "
    "privsynth at a new ledger (--ledger, $PRIVSYNTH_LEDGER or budget.ledger), and have the "
    "privacy officer register each population there once, with the total it had left: "
    "`privsynth budget register ID --total-epsilon E --total-delta D --data FILE --officer NAME "
    "--note 'continues <old ledger>: ε already spent there'`"
)


def to_micro(epsilon: float, *, round_up: bool = True) -> int:
    """Epsilon as integer micro-epsilon, from its shortest decimal form (0.01 -> 10000 exactly)."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float | Decimal):
        raise PrivacyError(f"epsilon must be a number. Got {type(epsilon).__name__} instead.")
    if not math.isfinite(float(epsilon)) or float(epsilon) < 0:
        raise PrivacyError(f"epsilon must be finite and >= 0. Got {epsilon} instead.")
    scaled = Decimal(repr(epsilon) if isinstance(epsilon, float) else epsilon) * MICRO
    return int(scaled.to_integral_value(rounding=ROUND_CEILING if round_up else ROUND_FLOOR))


def from_micro(micro: int) -> float:
    """Micro-epsilon back to a float (exact for every value a human writes)."""
    return float(Decimal(int(micro)) / MICRO)


def _dec(delta: float | str) -> Decimal:
    return Decimal(delta if isinstance(delta, str) else repr(float(delta)))


class PopulationBudgetExceeded(BudgetExceededError):
    """The ledger refuses a reservation: the population's remaining ε (or δ) is too small.

    ``quantity`` is ``"epsilon"`` or ``"delta"``; ``requested`` / ``remaining`` are in it (at
    the population's level: for a row-level release on a person-keyed population, what group
    privacy charges). ``note`` is appended to the message.
    """

    def __init__(self, population: str, requested: float, remaining: float,
                 quantity: str = "epsilon", note: str = "") -> None:
        self.dataset = self.population = population
        self.requested = requested
        self.remaining = remaining
        self.quantity = quantity
        sym, key, flag = (("ε", "privacy.epsilon", "--total-epsilon E") if quantity == "epsilon"
                          else ("δ", "privacy.delta", "--total-delta D"))
        PrivsynthError.__init__(
            self,
            f"budget for population '{population}' exceeded: Requested {sym}={requested:.6g}, "
            f"Remaining {sym}={remaining:.6g}, Difference {sym}={requested - remaining:.6g}. "
            f"Lower {key} in the policy, or have the privacy officer raise the population's "
            f"total (a recorded action): `privsynth budget set-total {population} {flag} "
            "--officer NAME --reason TEXT`." + (f" {note}" if note else "")
        )


@dataclass(frozen=True)
class Reservation:
    """A granted reservation: ``epsilon`` and ``delta`` are what was debited from the
    population's budget, spent from the moment it exists.

    ``unit`` is the release's privacy unit (``"row"`` or ``"person"``); ``rows_per_person`` its
    contribution bound (person level only). ``requested_epsilon`` / ``requested_delta`` are the
    release's own (ε, δ), at its unit: what its mechanisms may spend (:meth:`Ledger.record_charges`
    compares charges with them). ``group_factor`` is K for a row-level release on a person-keyed
    population (debited K·ε and K·e^((K-1)ε)·δ), else 1 (debited as requested).
    """

    reservation_id: str
    population: str
    release_id: str
    epsilon: float
    delta: float
    seq: int
    spent_after: float
    total_epsilon: float
    delta_spent_after: float
    total_delta: float
    unit: str = "row"
    rows_per_person: int | None = None
    requested_epsilon: float | None = None
    requested_delta: float | None = None
    group_factor: int = 1

    def __post_init__(self) -> None:
        if self.requested_epsilon is None:
            object.__setattr__(self, "requested_epsilon", self.epsilon)
        if self.requested_delta is None:
            object.__setattr__(self, "requested_delta", self.delta)

    @property
    def debited_epsilon(self) -> float:
        """ε debited from the population's budget (= ``epsilon``)."""
        return self.epsilon

    @property
    def debited_delta(self) -> float:
        """δ debited from the population's budget (= ``delta``)."""
        return self.delta

    @property
    def remaining_after(self) -> float:
        """ε left for this population right after the reservation."""
        return max(0.0, self.total_epsilon - self.spent_after)

    @property
    def delta_remaining_after(self) -> float:
        """δ left for this population right after the reservation."""
        return max(0.0, self.total_delta - self.delta_spent_after)


def default_ledger_location(policy: Policy, policy_path: Path | str | None = None) -> str:
    """Where the ledger lives: ``$PRIVSYNTH_LEDGER``, else ``budget.ledger`` of the policy
    (a relative path is taken from the policy file's folder), else
    ``~/.local/share/privsynth/ledger.sqlite``."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return env
    declared = policy.budget.ledger
    if declared:
        if _is_postgres_url(declared):
            return declared
        path = Path(declared).expanduser()
        if not path.is_absolute() and policy_path is not None:
            path = Path(policy_path).resolve().parent / path
        return str(path)
    return home_ledger_location()


def home_ledger_location() -> str:
    """``$XDG_DATA_HOME/privsynth/ledger.sqlite`` (``~/.local/share`` without it)."""
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return str(base / "privsynth" / "ledger.sqlite")


def _is_postgres_url(location: str) -> bool:
    return str(location).startswith(("postgresql://", "postgres://"))


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def _entry_body(row: dict[str, Any]) -> list[Any]:
    return [
        int(row["seq"]), row["ts"], row["kind"], row["population"], row["release_id"],
        row["reservation_id"], int(row["epsilon_micro"]), row["delta"], row["details"],
        row["prev_hash"],
    ]


def entry_hash(row: dict[str, Any]) -> str:
    """Schema 2's unkeyed chain link (SHA-256 of the entry and its predecessor's hash). Only the
    entries a schema-2 ledger held before its recorded migration are checked with it."""
    return hashlib.sha256(_canonical(["privsynth-ledger-v2", *_entry_body(row)]).encode()
                          ).hexdigest()


def entry_mac(key: bytes, ledger_id: str, row: dict[str, Any]) -> str:
    """The keyed chain link: HMAC-SHA256, under the installation's ``ledger-chain`` key, of the
    ledger id, the entry's content and its predecessor's MAC. Without the key nobody can
    recompute it after an edit; the ledger id ties every entry to its ledger."""
    text = _canonical(["privsynth-ledger-v3", ledger_id, *_entry_body(row)])
    return hmac.digest(key, text.encode(), "sha256").hex()


# ---------------------------------------------------------------------- keys, places, anchors
@dataclass(frozen=True)
class _LedgerKeys:
    """The installation's keys a ledger uses (derived per purpose; never stored in a ledger)."""

    key_id: str
    chain: bytes = field(repr=False)
    anchor: bytes = field(repr=False)
    sketch: bytes = field(repr=False)
    wrap: bytes = field(repr=False)


def _ledger_keys(create: bool) -> _LedgerKeys:
    from privsynth.keys import load_keys

    keys = load_keys(create=create)
    return _LedgerKeys(keys.key_id, keys.mac_key("ledger-chain"), keys.mac_key("ledger-anchor"),
                       keys.mac_key("population-sketch"), keys.mac_key("sketch-key-wrap"))


def _existing_keys(backend: _Backend) -> _LedgerKeys:
    """The keys of an existing ledger's installation; never made here (new keys could not
    check the ledger's chain)."""
    from privsynth.keys import ENV, KeyStoreError, key_dir

    try:
        return _ledger_keys(create=False)
    except KeyStoreError:
        raise LedgerError(
            f"{backend.location}: the ledger's chain is keyed by installation key "
            f"{backend.meta_or_none('key_id') or '(none recorded)'}, but {key_dir()} holds no "
            f"installation keys; set {ENV} to the key store that wrote the ledger (or restore "
            "it from its backup): without it the ledger can be neither checked nor written"
        ) from None


def _keys_if_any() -> _LedgerKeys | None:
    from privsynth.keys import KeyStoreError

    try:
        return _ledger_keys(create=False)
    except KeyStoreError:
        return None


def _derived(key: bytes, tag: str, ledger_id: str) -> bytes:
    return hmac.new(key, f"{tag}\x00{ledger_id}".encode(), hashlib.sha256).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def ledger_place(location: str | Path) -> str:
    """A ledger's location as anchors and messages name it: an absolute file path, or a
    ``postgresql://host:port/database`` URL without user, password or other parameters."""
    text = str(location)
    if not _is_postgres_url(text):
        return str(Path(text).expanduser().resolve())
    parts = urllib.parse.urlsplit(text)
    query = dict(urllib.parse.parse_qsl(parts.query))
    host = parts.hostname or query.get("host") or query.get("hostaddr") or "localhost"
    try:
        port = parts.port or query.get("port") or "5432"
    except ValueError:
        port = query.get("port") or "5432"
    database = parts.path.lstrip("/") or query.get("dbname") or ""
    return f"postgresql://{host}:{port}/{database}"


def anchor_dir() -> Path:
    """Where anchors live: ``<key dir>/anchors`` (beside the keys, never beside a ledger)."""
    from privsynth.keys import key_dir

    path = key_dir() / "anchors"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


@dataclass(frozen=True)
class Anchor:
    """A ledger head recorded outside the ledger: ``count`` entries, the last one's MAC."""

    ledger_id: str
    count: int
    hash: str
    ts: str
    source: str


def _append_line(path: Path, line: str) -> None:
    """Append one line, whole, to ``path`` (created ``0600``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


class _Anchors:
    """The append-only anchor files of this installation (and the optional external sink)."""

    def __init__(self, keys: _LedgerKeys | None, sink: str | None = None) -> None:
        self._key = keys.anchor if keys is not None else None
        self.sink = Path(sink).expanduser() if sink else None

    def _mac(self, body: dict[str, Any]) -> str:
        assert self._key is not None
        text = _canonical(["privsynth-anchor-v1", {k: body[k] for k in sorted(body)
                                                   if k != "mac"}])
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def _line(self, body: dict[str, Any]) -> str:
        return _canonical({**body, "mac": self._mac(body)}) + "\n"

    def check_sink(self) -> None:
        """Refuse a sink that cannot be appended to, before anything is written."""
        if self.sink is None:
            return
        try:
            _append_line(self.sink, "")
        except OSError as exc:
            raise LedgerError(f"{self.sink}: the anchor sink (${ANCHOR_SINK_ENV}) cannot be "
                              f"appended to ({type(exc).__name__}); fix its path or rights, or "
                              "unset it") from None

    def record(self, ledger_id: str, place: str, count: int, head: str) -> None:
        """Append the head after a committed write (after: a crash in between leaves the
        ledger ahead of its anchor, never behind it)."""
        if self._key is None:
            return
        body = {"ledger_id": ledger_id, "location": place, "count": int(count), "hash": head,
                "ts": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")}
        line = self._line(body)
        path = anchor_dir() / f"{ledger_id}.jsonl"
        try:
            _append_line(path, line)
        except OSError as exc:
            raise LedgerError(f"{path}: the entry was recorded, but its anchor could not be "
                              f"written ({exc.strerror or type(exc).__name__}); make the key "
                              "store's anchors folder writable by privsynth") from None
        if self.sink is not None:
            try:
                _append_line(self.sink, line)
            except OSError as exc:
                raise LedgerError(
                    f"{self.sink}: the entry was recorded, but the anchor sink "
                    f"(${ANCHOR_SINK_ENV}) could not be appended to ({type(exc).__name__}); "
                    "fix the sink before the next release") from None

    def latest(self, ledger_id: str) -> tuple[Anchor | None, list[str]]:
        """The anchor with the most entries among the latest lines of the ledger's anchor file,
        and a problem for every line whose MAC does not match (an edited anchor file)."""
        if self._key is None:
            return None, []
        path = anchor_dir() / f"{ledger_id}.jsonl"
        if not path.exists():
            return None, []
        with path.open("rb") as handle:
            if fcntl is not None:  # writers append under LOCK_EX: never read half a line
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - _ANCHOR_TAIL))
            data = handle.read()
        lines = data.split(b"\n")
        if size > _ANCHOR_TAIL:
            lines = lines[1:]  # the first line read may be cut
        lines = lines[:-1]  # after the last newline: empty, or a line still being appended
        best: Anchor | None = None
        problems: list[str] = []
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                body = json.loads(raw)
                good = (isinstance(body, dict) and body.get("ledger_id") == ledger_id
                        and hmac.compare_digest(str(body.get("mac", "")), self._mac(body)))
            except (ValueError, TypeError, KeyError):
                good = False
            if not good:
                problems.append(f"{path}: a line near the end (line {number} of the last "
                                 f"{_ANCHOR_TAIL // 1024} KiB) does not match its MAC; the "
                                 "anchor file was edited outside privsynth")
                continue
            anchor = Anchor(ledger_id, int(body["count"]), str(body["hash"]), str(body["ts"]),
                            str(path))
            if best is None or anchor.count > best.count:
                best = anchor
        return best, problems

    def _locations(self) -> Path:
        return anchor_dir() / "locations.jsonl"

    def bound(self, place: str) -> tuple[str, str] | None:
        """``(ledger id, when)`` of the ledger privsynth last kept at ``place``."""
        if self._key is None or not self._locations().exists():
            return None
        found = None
        for raw in self._locations().read_bytes().split(b"\n"):
            try:
                body = json.loads(raw)
                if (isinstance(body, dict) and body.get("location") == place
                        and hmac.compare_digest(str(body.get("mac", "")), self._mac(body))):
                    found = (str(body["ledger_id"]), str(body["ts"]))
            except (ValueError, TypeError, KeyError):
                continue
        return found

    def bind(self, place: str, ledger_id: str) -> None:
        """Record that ``place`` holds ledger ``ledger_id`` (on creation, or at a new place)."""
        if self._key is None:
            return
        body = {"location": place, "ledger_id": ledger_id,
                "ts": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")}
        _append_line(self._locations(), self._line(body))


def _compare_head(rows: Sequence[dict[str, Any]], count: int, head: str,
                  source: str) -> str | None:
    """The one-line problem when the ledger does not extend a head recorded elsewhere
    (``source`` names it: an anchor file, or a release's statement)."""
    if count > len(rows):
        return (f"the ledger holds {len(rows)} entries but was anchored at {count} entries "
                f"({source}); entries were removed from its end (truncated, or rolled back to "
                "an older copy): restore the latest backup")
    if count == 0:
        return None if head == GENESIS else f"the empty head of {source} has an unknown hash"
    if rows[count - 1]["hash"] != head:
        return (f"entry {count} differs from the one anchored ({source}); the ledger was "
                "rewritten, rolled back to an older copy, or replaced by another ledger")
    return None


def register_command(population: str) -> str:
    """The command a privacy officer runs to register ``population``."""
    return (f"privsynth budget register {population} --total-epsilon E --total-delta D "
            "--data FILE --officer NAME")


class Ledger:
    """The budget ledger. Open with :meth:`Ledger.open`; use as a context manager to close."""

    def __init__(self, backend: _Backend, location: str, keys: _LedgerKeys, ledger_id: str,
                 anchors: _Anchors) -> None:
        self._db = backend
        self.location = location  # credential-free: safe in messages
        self.ledger_id = ledger_id
        self._keys = keys
        self._anchors = anchors
        backend.seal = self._seal

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, location: str | Path, *, create: bool = True,
             anchor_sink: str | Path | None = None) -> Ledger:
        """Open a ledger: a file path (SQLite) or a ``postgresql://`` URL.

        ``create=False`` (``budget verify``/``show``/``set-total``, releases) refuses a location
        that holds no ledger, naming it; ``create=True`` (``budget register``, the demo) creates
        one there, with the installation keys on first use, unless anchors show a ledger with
        entries was kept there (then it was deleted or moved: restore it). ``anchor_sink``
        (default ``$PRIVSYNTH_LEDGER_ANCHOR_SINK``) is a file every new head is appended to too.
        """
        text = str(location)
        place = ledger_place(text)
        sink = anchor_sink or os.environ.get(ANCHOR_SINK_ENV, "").strip() or None
        _Anchors(None, str(sink) if sink else None).check_sink()  # before anything is created
        postgres = _is_postgres_url(text)
        if not postgres:
            path = Path(text).expanduser()
            if not (path.exists() and path.stat().st_size > 0):
                _may_create(place, create)
                from privsynth.keys import check_apart

                check_apart(path, "ledger")
        backend: _Backend = _PostgresBackend(text, place) if postgres else \
            _SqliteBackend(Path(text).expanduser())
        try:
            version = backend.version()
            if version is None:
                _may_create(place, create)
                keys = _ledger_keys(create=True)
                backend.create(ledger_id=uuid.uuid4().hex, key_id=keys.key_id)
            else:
                backend.check_version(version)
                keys = _existing_keys(backend)
                backend.refresh_schema()
            ledger_id = backend.meta("ledger_id")
            anchors = _Anchors(keys, str(sink) if sink else None)
        except BaseException:
            backend.close()
            raise
        ledger = cls(backend, place, keys, ledger_id, anchors)
        if backend.meta_or_none("key_id") == keys.key_id and anchors.bound(place) is None:
            try:  # created here, or moved here (anchors follow the id, not the place)
                anchors.bind(place, ledger_id)
            except OSError as exc:
                if version is None:
                    ledger.close()
                    raise LedgerError(
                        f"{anchor_dir()}: cannot record where the new ledger lives "
                        f"({exc.strerror or type(exc).__name__}); make the key store's anchors "
                        "folder writable by privsynth") from None
                # A reader without write access to the key store (an auditor) still checks.
                log.warning("%s: not bound to its place in the anchors (%s)", place,
                            exc.strerror or type(exc).__name__)
            if version is None:
                anchors.record(ledger_id, place, 0, GENESIS)
        return ledger

    @classmethod
    def migrate(cls, location: str | Path, *, officer: str, note: str = "") -> dict[str, Any]:
        """Convert a schema-2 ledger to schema 3, in place, as one recorded entry.

        The schema-2 chain must verify. The officer's ``migrate`` entry is the first keyed
        entry: it links to the schema-2 head (so the older entries cannot be edited afterwards
        without breaking the keyed chain) and records the SHA-256 of the wrapped sketch key.
        The old in-file sketch key is moved out: what stays is the key XORed with a pad derived
        from the installation's key store and the new ledger id, useless without the key store.
        Old sketches therefore still compare. Returns ``ledger_id``, ``entries`` (before the
        migration) and ``from_schema``. Copies and backups of the schema-2 file still hold the
        old key in clear: see docs/ledger.md.
        """
        _check_text(officer=officer)
        text = str(location)
        place = ledger_place(text)
        if not _is_postgres_url(text):
            path = Path(text).expanduser()
            if not (path.exists() and path.stat().st_size > 0):
                raise LedgerError(f"{place}: no ledger there to migrate; check the path")
        backend: _Backend = _PostgresBackend(text, place) if _is_postgres_url(text) else \
            _SqliteBackend(Path(text).expanduser())
        try:
            version = backend.version()
            if version != LEGACY_SCHEMA:
                raise LedgerError(f"{place}: only a schema version {LEGACY_SCHEMA} ledger can be "
                                  f"migrated; this one has schema version {version}")
            keys = _ledger_keys(create=True)
            ledger_id = uuid.uuid4().hex
            with backend.write() as tx:
                rows = tx.entries(None)
                problems = _verify(rows, tx.meta_get("head_hash"), tx.meta_get("head_count"),
                                   tx.sketch_digests(), link=lambda row: entry_hash(row))
                if problems:
                    raise LedgerError(
                        f"{place}: the schema-{LEGACY_SCHEMA} ledger does not verify "
                        f"({len(problems)} problem(s); first: {problems[0]}); restore it from "
                        "a backup before migrating")
                legacy = bytes.fromhex(tx.meta_get("installation_key") or "")
                if len(legacy) != 32:
                    raise LedgerError(f"{place}: the schema-2 ledger has no sketch key")
                wrapped = _xor(legacy, _derived(keys.wrap, "sketch-key-wrap", ledger_id)).hex()
                head = {"count": len(rows), "hash": rows[-1]["hash"] if rows else GENESIS}
                tx.q("DELETE FROM ledger_meta WHERE key = 'installation_key'")
                for key, value in (("schema_version", SCHEMA_VERSION), ("ledger_id", ledger_id),
                                   ("key_id", keys.key_id), ("sketch_key_wrapped", wrapped)):
                    tx.meta_set(key, value)
                backend.seal = lambda row: entry_mac(keys.chain, ledger_id, row)
                tx.append(kind="migrate", population="", release_id="", reservation_id="",
                          epsilon_micro=0, delta=0.0,
                          details={"from_schema": LEGACY_SCHEMA, "officer": officer,
                                   "note": note, "legacy_head": head,
                                   "sketch_key_digest": _digest(wrapped)})
                anchored = tx.head
            backend.purge()
        finally:
            backend.close()
        anchors = _Anchors(keys, os.environ.get(ANCHOR_SINK_ENV, "").strip() or None)
        anchors.bind(place, ledger_id)
        if anchored is not None:
            anchors.record(ledger_id, place, *anchored)
        return {"ledger_id": ledger_id, "entries": head["count"], "from_schema": LEGACY_SCHEMA,
                "location": place}

    def close(self) -> None:
        """Close the connection. The ledger object is unusable afterwards."""
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _seal(self, row: dict[str, Any]) -> str:
        return entry_mac(self._keys.chain, self.ledger_id, row)

    def installation_key(self) -> bytes:
        """This ledger's sketch key (32 bytes): derived from the installation's key store and
        the ledger id, or (a migrated ledger) its old key unwrapped with them. The ledger file
        holds neither the key nor anything it can be computed from."""
        wrapped = self._db.meta_or_none("sketch_key_wrapped")
        if wrapped:
            return _xor(bytes.fromhex(wrapped),
                        _derived(self._keys.wrap, "sketch-key-wrap", self.ledger_id))
        return _derived(self._keys.sketch, "population-sketch", self.ledger_id)

    def sketch(self, table: pd.DataFrame | str | Path) -> PopulationSketch:
        """The keyed sketch of a raw table (a DataFrame, or a CSV/Parquet file) in this ledger."""
        frame = read_population_table(table) if isinstance(table, str | Path) else table
        return PopulationSketch.from_table(frame, self.installation_key())

    @contextlib.contextmanager
    def _write(self, *, verified: bool = True) -> Iterator[_Tx]:
        """One write transaction; with ``verified`` it first refuses a ledger that fails
        :meth:`verify`. After the commit the new head is anchored."""
        with self._db.write() as tx:
            if verified:
                problems = self._problems(tx)
                if problems:
                    raise LedgerError(
                        f"the ledger {self.location} does not verify ({len(problems)} "
                        f"problem(s); first: {problems[0]}). Nothing is granted or recorded on "
                        "a ledger that fails its check: run `privsynth budget verify` and "
                        "restore the ledger from a backup")
            yield tx
            anchored = tx.head
        if anchored is not None:
            self._anchors.record(self.ledger_id, self.location, *anchored)

    def _problems(self, tx: _Tx) -> list[str]:
        """Every problem of the ledger as ``tx`` sees it: keys, location, chain, sketches and
        registrations, anchors. Call it before ``tx`` reads anything: the anchors are read
        first, so the transaction's snapshot (taken at its first read) holds every write they
        anchor, and a concurrent release never looks like a truncation."""
        anchor, bad_lines = self._anchors.latest(self.ledger_id)
        bound = self._anchors.bound(self.location)
        rows = tx.entries(None)
        problems: list[str] = []
        if bound is not None and bound[0] != self.ledger_id:
            kept, _ = self._anchors.latest(bound[0])
            size = f" with {kept.count} anchored entries" if kept is not None else ""
            problems.append(
                f"{self.location} holds ledger {self.ledger_id}, but privsynth kept ledger "
                f"{bound[0]}{size} here (since {bound[1][:19]}); the ledger was replaced by "
                "another one: put the right ledger back")
        key_id = tx.meta_get("key_id")
        if key_id != self._keys.key_id:
            from privsynth.keys import ENV, key_dir

            problems.append(
                f"the ledger was keyed by installation key {key_id or '(none recorded)'}, but "
                f"the key store in {key_dir()} holds key {self._keys.key_id}; its chain cannot "
                f"be checked: set {ENV} to the key store that wrote the ledger")
            return problems
        wrapped = tx.meta_get("sketch_key_wrapped")
        problems += _verify(rows, tx.meta_get("head_hash"), tx.meta_get("head_count"),
                            tx.sketch_digests(), link=self._seal, wrapped_sketch_key=wrapped)
        problems += bad_lines
        if anchor is not None:
            found = _compare_head(rows, anchor.count, anchor.hash,
                                  f"anchor of {anchor.ts[:19]} in {anchor.source}")
            if found:
                problems.append(found)
        return problems

    # ------------------------------------------------------------------ officer actions
    def register(self, population: str, *, total_epsilon: float, total_delta: float,
                 sketch: PopulationSketch | pd.DataFrame, officer: str, note: str = "",
                 composition: str = "sum", accountant: str = "prv",
                 allow_overlap_with: Sequence[str] = (),
                 overlap_threshold: float = OVERLAP_THRESHOLD, person_id: str | None = None,
                 max_rows_per_person: int | None = None) -> dict[str, Any]:
        """Register a population once: its total ε and δ, composition and keyed sketch.

        ``person_id`` and ``max_rows_per_person`` (both or neither) make the population
        *person-keyed*: the officer declares (a public fact, not read from the data) that each
        person, identified by column ``person_id``, has at most K = ``max_rows_per_person`` rows
        in any table of this population. Its budget is then at person level: see
        :meth:`reserve`. Both are recorded in the chained ``register`` entry.

        Refuses an id already registered, unless the totals, composition, person facts and
        table are the same as registered (then nothing is written and the result has
        ``created: False``, so a documented command can be re-run). Refuses a table that is a
        near-copy (overlap at least ``overlap_threshold``) of another registered population
        unless that population is in ``allow_overlap_with``, which is recorded in the entry.
        Returns :meth:`population`'s summary with ``created``.
        """
        _check_population(population)
        total_micro = _check_total_epsilon(total_epsilon)
        total_d = _check_total_delta(total_delta)
        _check_choice("composition", composition, COMPOSITIONS)
        _check_choice("accountant", accountant, ACCOUNTANTS)
        _check_text(officer=officer)
        person_id, max_rows_per_person = _check_person(person_id, max_rows_per_person)
        allowed = sorted({str(a) for a in allow_overlap_with})
        if not isinstance(sketch, PopulationSketch):
            sketch = PopulationSketch.from_table(sketch, self.installation_key())
        if sketch.size == 0:
            raise LedgerError(f"the table given for population '{population}' has no cells to "
                              "sketch; register it with the table of its people")
        text, digest = sketch.to_text(), sketch.digest
        with self._write() as tx:
            rows = tx.entries(None)
            state = _registrations(rows).get(population)
            if state is not None:
                same = (state["total_epsilon_micro"] == total_micro
                        and _dec(state["total_delta"]) == total_d
                        and state["composition"] == composition
                        and state["sketch_digest"] == digest
                        and state["person_id"] == person_id
                        and state["max_rows_per_person"] == max_rows_per_person)
                if same:
                    return {**_summary(population, state, rows), "created": False}
                asked = ("" if (state["person_id"], state["max_rows_per_person"])
                         == (person_id, max_rows_per_person)
                         else f"; asked now: {unit_text(person_id, max_rows_per_person)}")
                raise LedgerError(
                    f"population '{population}' is already registered (total ε="
                    f"{from_micro(state['total_epsilon_micro']):g}, δ={state['total_delta']:g}, "
                    f"composition {state['composition']}, "
                    f"{unit_text(state['person_id'], state['max_rows_per_person'])}, by "
                    f"{state['officer']} on {state['registered_at'][:10]}"
                    + ("" if state["sketch_digest"] == digest else ", from a different table")
                    + f"{asked}). A population is registered once, and its privacy unit never "
                    "changes; a privacy officer changes its total "
                    f"with `privsynth budget set-total {population} --total-epsilon E "
                    "--total-delta D --officer NAME --reason TEXT`"
                )
            overlaps = {}
            for other, other_text in tx.sketches():
                score = overlap(sketch, PopulationSketch.from_text(other_text))
                if score >= overlap_threshold:
                    overlaps[other] = score
            refused = sorted(set(overlaps) - set(allowed))
            if refused:
                named = ", ".join(f"'{p}' (overlap {overlaps[p]:.2f})" for p in refused)
                raise LedgerError(
                    f"the table given for '{population}' is a near-copy of registered "
                    f"population(s) {named}: its people would get a second budget. Release "
                    "under that population's id instead; or, if the officer has checked that "
                    "the overlap is acceptable (e.g. different people in a low-entropy table), "
                    "register again with "
                    + " ".join(f"--allow-overlap-with {p}" for p in refused)
                    + " (recorded in the ledger)"
                )
            details = {
                "total_epsilon_micro": total_micro, "total_delta": str(total_d),
                "composition": composition, "accountant": accountant, "officer": officer,
                "note": note, "sketch_digest": digest,
                "allow_overlap_with": {p: round(overlaps.get(p, 0.0), 2) for p in allowed},
            }
            if person_id is not None:
                details["person_id"] = person_id
                details["max_rows_per_person"] = max_rows_per_person
            tx.q("INSERT INTO ledger_sketches (population, digest, sketch) VALUES (?, ?, ?)",
                 (population, digest, text))
            tx.append(kind="register", population=population, release_id="",
                      reservation_id="", epsilon_micro=0, delta=0.0, details=details)
            rows = tx.entries(None)
            state = _registrations(rows)[population]
            return {**_summary(population, state, rows), "created": True}

    def set_total(self, population: str, *, total_epsilon: float | None = None,
                  total_delta: float | None = None, officer: str, reason: str,
                  composition: str | None = None) -> dict[str, Any]:
        """Change a registered population's total ε and/or δ (or its composition): a recorded,
        chained ``set_total`` entry with the officer's name and reason. Returns the new summary.
        """
        _check_population(population)
        _check_text(officer=officer, reason=reason)
        if total_epsilon is None and total_delta is None and composition is None:
            raise LedgerError("set_total needs a new total_epsilon, total_delta or composition")
        if composition is not None:
            _check_choice("composition", composition, COMPOSITIONS)
        with self._write() as tx:
            rows = tx.entries(None)
            state = _registrations(rows).get(population)
            if state is None:
                raise LedgerError(_unregistered(population, self.location))
            new_micro = (state["total_epsilon_micro"] if total_epsilon is None
                         else _check_total_epsilon(total_epsilon))
            new_delta = (_dec(state["total_delta"]) if total_delta is None
                         else _check_total_delta(total_delta))
            details = {
                "total_epsilon_micro": new_micro, "total_delta": str(new_delta),
                "composition": composition or state["composition"], "officer": officer,
                "reason": reason,
                "previous": {"total_epsilon_micro": state["total_epsilon_micro"],
                             "total_delta": str(_dec(state["total_delta"])),
                             "composition": state["composition"]},
            }
            tx.append(kind="set_total", population=population, release_id="",
                      reservation_id="", epsilon_micro=0, delta=0.0, details=details)
            rows = tx.entries(None)
            return _summary(population, _registrations(rows)[population], rows)

    # ------------------------------------------------------------------ releases
    def reserve(self, *, population: str, release_id: str, epsilon: float,
                delta: float, unit: str = "row",
                rows_per_person: int | None = None) -> Reservation:
        """Atomically check the population's remaining ε and δ and reserve them for a release.

        Call this *before* reading private data. The cap and the composition come only from the
        population's registration (and recorded ``set_total`` entries). ``epsilon`` and
        ``delta`` are the release's own, at its privacy ``unit``:

        * ``unit="row"`` (default): on a population registered per row, debited as asked. On a
          person-keyed population (at most K rows per person), by group privacy the release
          protects a person at (K·ε, K·e^((K-1)ε)·δ): that is what is debited (ε rounded up to
          the micro-ε, δ up to 12 significant digits).
        * ``unit="person"``: ``rows_per_person`` (the release's contribution bound k) is
          required and at most the population's K; debited as asked. Refused on a population
          registered per row.

        Raises :class:`LedgerError` for an unregistered population, a unit the population
        cannot take, or a ledger that does not verify, and :class:`BudgetExceededError`
        (Requested / Remaining / Difference, at the population's level) when the budget cannot
        cover the debit.
        """
        want_row = to_micro(epsilon, round_up=True)
        if want_row <= 0:
            raise PrivacyError(f"a reservation needs epsilon > 0. Got {epsilon} instead.")
        if not 0 <= float(delta) < 1 or math.isnan(float(delta)):
            raise PrivacyError(f"delta must be in [0, 1). Got {delta} instead.")
        _check_text(population=population, release_id=release_id)
        if unit not in UNITS:
            raise LedgerError(f"a reservation's unit is 'row' or 'person' (the policy's "
                              f"privacy.unit). Got {unit!r} instead.")
        if unit == "person":
            if rows_per_person is None:
                raise LedgerError(
                    "a person-level reservation (unit='person') needs rows_per_person: the "
                    "release's contribution bound k (rows kept per person)")
            rows_per_person = _check_rows("rows_per_person", rows_per_person)
        elif rows_per_person is not None:
            raise LedgerError(
                "rows_per_person is the contribution bound of a person-level release; a "
                "row-level reservation (unit='row') takes none: give unit='person' with it")
        reservation_id = uuid.uuid4().hex
        with self._write() as tx:  # verifies the ledger (and its anchors) first
            rows = tx.entries(None)
            state = _registrations(rows).get(population)
            if state is None:
                raise LedgerError(_unregistered(population, self.location))
            bound = state["max_rows_per_person"]
            if unit == "person" and bound is None:
                raise LedgerError(_not_person_keyed(population))
            if unit == "person" and rows_per_person > bound:
                raise LedgerError(
                    f"the release keeps up to {rows_per_person} rows per person, but population "
                    f"'{population}' is registered with at most {bound} rows per person (column "
                    f"'{state['person_id']}'): its person-level budget holds only for releases "
                    f"bounded to {bound}. Set the policy's contribution bound (rows kept per "
                    f"person) to at most {bound}")
            factor = bound if unit == "row" and bound is not None else 1
            want = group_epsilon_micro(epsilon, factor)
            want_delta = group_delta(epsilon, delta, factor)
            note = "" if factor == 1 else (
                f"The release is row-level (ε={float(epsilon):g}, δ={float(delta):g}) and "
                f"population '{population}' is person-keyed (at most {factor} rows per person, "
                f"column '{state['person_id']}'): by group privacy it was charged {factor}·ε "
                f"= {from_micro(want):g} and {factor}·e^({factor - 1}·ε)·δ = "
                f"{float(want_delta):.3g}. A person-level release (`privacy.unit: person`, at "
                f"most {factor} rows kept per person) costs ε and δ as asked.")
            own = [r for r in rows if r["population"] == population]
            total = int(state["total_epsilon_micro"])
            total_d = _dec(state["total_delta"])
            if state["composition"] == "sum":
                spent = _spent_micro(own)
            else:
                spent = to_micro(_composed(own, state["accountant"])[0], round_up=True)
            spent_d = _spent_delta(own)
            if spent + want > total:
                raise PopulationBudgetExceeded(population, from_micro(want),
                                               from_micro(max(0, total - spent)), note=note)
            if spent_d + want_delta > total_d:
                raise PopulationBudgetExceeded(population, float(want_delta),
                                               float(max(Decimal(0), total_d - spent_d)),
                                               quantity="delta", note=note)
            details = {"composition": state["composition"], "total_epsilon_micro": total,
                       "total_delta": str(total_d), "epsilon": float(epsilon),
                       "unit": unit, "rows_per_person": rows_per_person,
                       "requested_epsilon": float(epsilon), "requested_delta": float(delta),
                       "debited_epsilon": from_micro(want),
                       "debited_delta": float(want_delta), "group_factor": factor}
            seq = tx.append(kind="reserve", population=population, release_id=release_id,
                            reservation_id=reservation_id, epsilon_micro=want,
                            delta=float(want_delta), details=details)
        return Reservation(reservation_id, population, release_id, from_micro(want),
                           float(want_delta), seq, from_micro(spent + want), from_micro(total),
                           float(spent_d + want_delta), float(total_d), unit=unit,
                           rows_per_person=rows_per_person, requested_epsilon=float(epsilon),
                           requested_delta=float(delta), group_factor=factor)

    def record_charges(self, reservation: Reservation, charges: Sequence[Charge]) -> None:
        """Append what actually ran under ``reservation``: one entry per mechanism, in order.

        Never refunds. The charges are at the release's unit and compared with the release's own
        (requested) ε and δ. If they add up to more, an ``overrun`` entry charges the difference
        at the population's level (the data has been read; the budget may go below zero): for a
        row-level release on a person-keyed population, the group-privacy cost of what ran
        (K·ε, K·e^((K-1)ε)·δ) minus what was debited.
        Recorded even on a ledger that no longer verifies: what ran is never dropped (the
        reservation was granted on a verified ledger, and the problem stays reported).
        """
        charges = list(charges)
        for c in charges:
            if not isinstance(c, Charge):
                raise PrivacyError(f"record_charges needs Charge records. Got {type(c).__name__}.")
        with self._write(verified=False) as tx:
            known = tx.reservation(reservation.reservation_id)
            if known is None:
                raise LedgerError(
                    f"reservation {reservation.reservation_id} is not in this ledger; "
                    "charges can only be recorded against a reservation made here"
                )
            used, used_d = Decimal(0), Decimal(0)
            for c in charges:
                micro = to_micro(c.epsilon, round_up=True)
                used += _dec(float(c.epsilon))
                used_d += _dec(float(c.delta))
                details = {"stage": c.stage, "mechanism": c.mechanism, "column": c.column,
                           "epsilon": float(c.epsilon), "params": c.params}
                tx.append(kind="charge", population=known["population"],
                          release_id=known["release_id"],
                          reservation_id=reservation.reservation_id, epsilon_micro=micro,
                          delta=float(c.delta), details=details)
            # Charges are compared by their exact sum, with a relative slack of 1e-9 for float
            # rounding (each charge's micro-ε entry is rounded up on its own, so summing those
            # would report an overrun of a few micro-ε whenever charges fill a share exactly).
            slack = Decimal("1e-9")
            facts = _details(known)
            factor = int(facts.get("group_factor", 1))
            overrun_details: dict[str, Any] = {"reason": "charges exceeded the reservation"}
            if factor == 1:
                over = to_micro(float(used), round_up=True) - int(known["epsilon_micro"])
                if used <= _dec(from_micro(int(known["epsilon_micro"]))) * (1 + slack):
                    over = 0
                over_d = used_d - _dec(known["delta"])
                if used_d <= _dec(known["delta"]) * (1 + slack):
                    over_d = Decimal(0)
            else:  # row-level charges, debited at person level by group privacy
                asked, asked_d = (_dec(float(facts["requested_epsilon"])),
                                  _dec(float(facts["requested_delta"])))
                eps_over, d_over = used > asked * (1 + slack), used_d > asked_d * (1 + slack)
                over, over_d = 0, Decimal(0)
                if eps_over or d_over:
                    ran, ran_d = (used if eps_over else asked), (used_d if d_over else asked_d)
                    over = group_epsilon_micro(float(ran), factor) - int(known["epsilon_micro"])
                    over_d = group_delta(float(ran), float(ran_d), factor) - _dec(known["delta"])
                    overrun_details.update(group_factor=factor, charged_epsilon=float(used),
                                           charged_delta=float(used_d))
            if over > 0 or over_d > 0:
                tx.append(kind="overrun", population=known["population"],
                          release_id=known["release_id"],
                          reservation_id=reservation.reservation_id,
                          epsilon_micro=max(0, over), delta=float(max(Decimal(0), over_d)),
                          details=overrun_details)

    # ------------------------------------------------------------------ reading
    def population(self, population: str) -> dict[str, Any] | None:
        """A registered population's totals, composition, registration facts and spending;
        ``None`` when it is not registered."""
        with self._db.read() as tx:
            rows = tx.entries(None)
        state = _registrations(rows).get(population)
        return None if state is None else _summary(population, state, rows)

    def populations(self) -> list[dict[str, Any]]:
        """:meth:`population` of every registered population, in registration order."""
        with self._db.read() as tx:
            rows = tx.entries(None)
        return [_summary(p, s, rows) for p, s in _registrations(rows).items()]

    def overlaps(self, sketch_or_table: PopulationSketch | pd.DataFrame | str | Path,
                 threshold: float = OVERLAP_THRESHOLD) -> list[tuple[str, float]]:
        """Registered populations the table is a near-copy of: ``(population, overlap)`` with
        overlap (the larger containment of either in the other, see
        :mod:`privsynth.privacy.population`) at least ``threshold``, largest first. The
        release's own population is included when it matches."""
        sketch = (sketch_or_table if isinstance(sketch_or_table, PopulationSketch)
                  else self.sketch(sketch_or_table))
        with self._db.read() as tx:
            stored = tx.sketches()
        found = []
        for population, text in stored:
            score = overlap(sketch, PopulationSketch.from_text(text))
            if score >= threshold:
                found.append((population, score))
        return sorted(found, key=lambda item: (-item[1], item[0]))

    def spent(self, population: str) -> float:
        """Plain sum of the ε reserved (plus overruns) for a population."""
        return from_micro(_spent_micro(self.entries(population)))

    def spent_delta(self, population: str) -> float:
        """Sum of the δ reserved (plus overruns) for a population."""
        return float(_spent_delta(self.entries(population)))

    def composed(self, population: str, accountant: str = "prv") -> tuple[float, float]:
        """(ε, δ) spent with the recorded DP-SGD runs composed together.

        All recorded ``dp_sgd`` charges (σ, q, steps) of the population go into one accountant
        at δ_A = the sum of their δ; every other charge adds its ε; the part of a reservation
        not covered by recorded charges (a crashed run, or calibration below target) adds as
        reserved. δ is the sum of the δ of all reservations and overruns (which covers δ_A and
        every other charge's δ). So the figure is never below what actually ran.

        A row-level reservation on a person-keyed population (debited K·ε by group privacy)
        counts as debited, plus its overruns: its charges are row-level, and composing them
        would not bound a person's loss.
        """
        _check_choice("accountant", accountant, ACCOUNTANTS)
        return _composed(self.entries(population), accountant)

    def composed_epsilon(self, population: str, accountant: str = "prv") -> float:
        """The ε of :meth:`composed`."""
        return self.composed(population, accountant)[0]

    def entries(self, population: str | None = None) -> list[dict[str, Any]]:
        """Every entry in chain order (optionally of one population), as plain dicts."""
        with self._db.read() as tx:
            rows = tx.entries(population)
        return [_public(r) for r in rows]

    def verify(self) -> list[str]:
        """Check the keyed chain, the sketches, the registrations, the key store, the location
        and the latest anchor. Returns one line per problem; ``[]`` when the ledger is intact."""
        with self._db.read() as tx:
            return self._problems(tx)

    def head(self) -> dict[str, Any]:
        """The chain head, to record elsewhere (a release's signed statement) and give back to
        :meth:`check_head` later: ``ledger_id``, ``count`` (entries), ``hash`` (the last entry's
        MAC), ``key_id`` (the installation key that keys the chain)."""
        with self._db.read() as tx:
            return {"ledger_id": self.ledger_id,
                    "count": int(tx.meta_get("head_count") or 0),
                    "hash": tx.meta_get("head_hash") or GENESIS,
                    "key_id": tx.meta_get("key_id") or ""}

    def check_head(self, head: dict[str, Any]) -> list[str]:
        """Problems when this ledger does not extend ``head`` (a :meth:`head` recorded earlier,
        e.g. in a release's statement): another ledger, fewer entries (truncated or rolled
        back), or a different entry at the recorded count. ``[]`` when it does."""
        try:
            count, value = int(head["count"]), str(head["hash"])
        except (KeyError, TypeError, ValueError):
            return ["the recorded ledger head is malformed: it needs 'count' and 'hash'"]
        other = head.get("ledger_id")
        if other and other != self.ledger_id:
            return [f"the recorded head belongs to ledger {other}, not to ledger "
                    f"{self.ledger_id} at {self.location}; the ledger was replaced, or the head "
                    "comes from another ledger"]
        with self._db.read() as tx:
            rows = tx.entries(None)
        found = _compare_head(rows, count, value, "the head a release recorded")
        return [found] if found else []


# ---------------------------------------------------------------------- pure helpers
def _unregistered(population: str, location: str) -> str:
    return (f"population '{population}' is not registered in the ledger {location}. A privacy "
            f"officer registers it once, with its total budget: `{register_command(population)}`")


def _check_population(population: str) -> None:
    if not isinstance(population, str) or not POPULATION_ID.match(population):
        raise LedgerError(f"a population id is letters, digits, '.', '_' and '-' (as a policy's "
                          f"dataset.id). Got {population!r} instead.")


def _check_total_epsilon(total_epsilon: float) -> int:
    micro = to_micro(total_epsilon, round_up=False)
    if micro <= 0:
        raise PrivacyError(f"a total epsilon must be > 0. Got {total_epsilon} instead.")
    return micro


def _check_total_delta(total_delta: float) -> Decimal:
    value = float(total_delta)
    if not (0 < value < 1) or math.isnan(value):
        raise PrivacyError(f"a total delta must be in (0, 1). Got {total_delta} instead.")
    return _dec(value)


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise PrivacyError(f"{name} must be one of {list(allowed)}. Got {value!r} instead.")


def _check_text(**fields: str) -> None:
    for name, value in fields.items():
        if not isinstance(value, str) or not value.strip():
            raise LedgerError(f"{name} must be a non-empty string")


def _check_rows(name: str, value: int) -> int:
    """A rows-per-person bound: an integer from 1 to :data:`MAX_ROWS_PER_PERSON`."""
    if isinstance(value, bool) or not isinstance(value, int) \
            or not 1 <= value <= MAX_ROWS_PER_PERSON:
        raise LedgerError(f"{name} must be an integer from 1 to {MAX_ROWS_PER_PERSON} (rows one "
                          f"person may have). Got {value!r} instead.")
    return int(value)


def _check_person(person_id: str | None,
                  max_rows_per_person: int | None) -> tuple[str | None, int | None]:
    """A registration's person facts: both or neither; a short column name and a bound K."""
    if (person_id is None) != (max_rows_per_person is None):
        raise LedgerError(
            "a person-keyed population needs both its person id column and its bound on rows "
            "per person (--person-id COL --max-rows-per-person K); give both, or neither for a "
            "population protected per row")
    if person_id is None:
        return None, None
    _check_text(person_id=person_id)
    if len(person_id) > MAX_NAME_LENGTH or any(ord(c) < 32 or ord(c) == 127 for c in person_id):
        raise LedgerError(f"person_id must be a column name of at most {MAX_NAME_LENGTH} "
                          "characters, without control characters")
    return person_id, _check_rows("max_rows_per_person", max_rows_per_person)


def unit_text(person_id: str | None, max_rows_per_person: int | None) -> str:
    """A population's privacy unit, as ``budget show`` and messages say it."""
    if person_id is None:
        return "per row"
    return f"per person: column {person_id}, at most {max_rows_per_person} rows"


def _not_person_keyed(population: str) -> str:
    return (f"population '{population}' was not registered with its person id, so it is "
            "protected per row: the ledger cannot tell what its earlier row-level releases cost "
            "one person, and a person-level release (privacy.unit: person) cannot be budgeted "
            "on it. Release it per row (privacy.unit: row), or have the privacy officer "
            "register a person-keyed population (a population is registered once, so under a "
            f"new id): `privsynth budget register ID --person-id COL --max-rows-per-person K "
            "--total-epsilon E --total-delta D --data FILE --officer NAME`")


def group_epsilon_micro(epsilon: float, factor: int) -> int:
    """Micro-ε debited for ``epsilon`` at group size ``factor``: K·ε, rounded up."""
    return to_micro(Decimal(repr(float(epsilon))) * int(factor), round_up=True)


@functools.lru_cache(maxsize=4096)  # verify recomputes it for every reservation
def group_delta(epsilon: float, delta: float, factor: int) -> Decimal:
    """δ debited for an (ε, δ) release at group size K = ``factor``: K·e^((K-1)ε)·δ, rounded up
    to 12 significant digits (decimal arithmetic: the same on every machine, so
    :meth:`Ledger.verify` can recompute it). ``delta`` itself when K is 1; infinite when the
    factor overflows."""
    d = _dec(float(delta))
    if int(factor) == 1 or d == 0:
        return d
    with localcontext() as ctx:
        ctx.prec = 40
        exponent = (int(factor) - 1) * Decimal(repr(float(epsilon)))
        if exponent > 700:
            return Decimal("Infinity")
        value = int(factor) * exponent.exp() * d
        step = Decimal(1).scaleb(value.adjusted() - (_GROUP_DELTA_DIGITS - 1))
        return value.quantize(step, rounding=ROUND_CEILING)


def _unit_problem(row: dict[str, Any], bound: int | None) -> str | None:
    """Why a ``reserve`` entry's debit breaks its unit rule, given its population's K
    (``None``: registered per row); ``None`` when it keeps it."""
    try:
        d = _details(row)
        if "unit" not in d:
            # A reservation from before privacy units: row level, debited as asked.
            return None if bound is None else \
                "a reservation of a person-keyed population that records no unit"
        unit, factor = d["unit"], int(d["group_factor"])
        asked, asked_d = float(d["requested_epsilon"]), float(d["requested_delta"])
        micro, debited_d = int(row["epsilon_micro"]), _dec(str(row["delta"]))
    except (ValueError, KeyError, TypeError):
        return "a reservation whose unit facts are missing or malformed"
    if unit == "person":
        if bound is None:
            return ("a person-level reservation of a population registered per row (no person "
                    "id); the ledger refuses those")
        rows = d.get("rows_per_person")
        if isinstance(rows, bool) or not isinstance(rows, int) or not 1 <= rows <= bound:
            return (f"a person-level reservation keeping {rows!r} rows per person, beyond the "
                    f"registered bound of {bound}")
        expected = 1
    elif unit == "row":
        expected = bound if bound is not None else 1
    else:
        return f"a reservation with unknown unit {unit!r}"
    if factor != expected:
        return (f"its group factor is {factor}, but the unit rule gives {expected} (a {unit}-"
                f"level release on a population registered "
                f"{'per row' if bound is None else f'with at most {bound} rows per person'})")
    if micro != group_epsilon_micro(asked, expected):
        return (f"it debits ε={from_micro(micro):g}, but the unit rule gives "
                f"{from_micro(group_epsilon_micro(asked, expected)):g} ({expected}·ε for "
                f"ε={asked:g})")
    if debited_d != group_delta(asked, asked_d, expected):
        return (f"it debits δ={float(debited_d):.6g}, but the unit rule gives "
                f"{float(group_delta(asked, asked_d, expected)):.6g}")
    return None


def _details(row: dict[str, Any]) -> dict[str, Any]:
    details = row["details"]
    return json.loads(details) if isinstance(details, str) else details


def _registrations(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Current state of every registered population, folded from register/set_total entries."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["kind"] == "register" and r["population"] not in out:
            d = _details(r)
            out[r["population"]] = {
                "total_epsilon_micro": int(d["total_epsilon_micro"]),
                "total_delta": float(d["total_delta"]), "composition": d["composition"],
                "accountant": d.get("accountant", "prv"), "officer": d["officer"],
                "note": d.get("note", ""), "sketch_digest": d["sketch_digest"],
                "allow_overlap_with": d.get("allow_overlap_with", {}),
                "person_id": d.get("person_id"),
                "max_rows_per_person": d.get("max_rows_per_person"),
                "registered_at": r["ts"], "changes": [],
            }
        elif r["kind"] == "set_total" and r["population"] in out:
            d = _details(r)
            state = out[r["population"]]
            state["total_epsilon_micro"] = int(d["total_epsilon_micro"])
            state["total_delta"] = float(d["total_delta"])
            state["composition"] = d.get("composition", state["composition"])
            state["changes"].append({"ts": r["ts"], "officer": d["officer"],
                                     "reason": d["reason"],
                                     "total_epsilon": from_micro(d["total_epsilon_micro"]),
                                     "total_delta": float(d["total_delta"])})
    return out


def _summary(population: str, state: dict[str, Any],
             rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    own = [r for r in rows if r["population"] == population]
    spent_sum = from_micro(_spent_micro(own))
    if state["composition"] == "sum":
        spent = spent_sum
    else:
        spent = from_micro(to_micro(_composed(own, state["accountant"])[0], round_up=True))
    total = from_micro(state["total_epsilon_micro"])
    spent_d = float(_spent_delta(own))
    releases = list(dict.fromkeys(r["release_id"] for r in own if r["kind"] == "reserve"))
    return {
        "population": population, "total_epsilon": total, "total_delta": state["total_delta"],
        "composition": state["composition"], "accountant": state["accountant"],
        "officer": state["officer"], "note": state["note"],
        "registered_at": state["registered_at"], "sketch_digest": state["sketch_digest"],
        "allow_overlap_with": dict(state["allow_overlap_with"]),
        "person_id": state["person_id"], "max_rows_per_person": state["max_rows_per_person"],
        "changes": list(state["changes"]), "releases": releases,
        "spent_epsilon": spent, "spent_epsilon_sum": spent_sum, "spent_delta": spent_d,
        "remaining_epsilon": max(0.0, total - spent),
        "remaining_delta": max(0.0, state["total_delta"] - spent_d),
    }


def _spent_micro(rows: Sequence[dict[str, Any]]) -> int:
    return sum(int(r["epsilon_micro"]) for r in rows if r["kind"] in ("reserve", "overrun"))


def _spent_delta(rows: Sequence[dict[str, Any]]) -> Decimal:
    return sum((_dec(str(r["delta"]) if isinstance(r["delta"], str) else float(r["delta"]))
                for r in rows if r["kind"] in ("reserve", "overrun")), Decimal(0))


def _composed(rows: Sequence[dict[str, Any]], accountant: str) -> tuple[float, float]:
    from privsynth.privacy.accounting import history_epsilon

    reserved: dict[str, int] = {}
    charged: dict[str, int] = {}
    grouped: set[str] = set()  # row-level reservations debited by group privacy
    pure_micro = 0
    history: list[tuple[float, float, int]] = []
    delta_a = Decimal(0)
    for r in rows:
        rid = r["reservation_id"]
        if r["kind"] == "reserve":
            reserved[rid] = reserved.get(rid, 0) + int(r["epsilon_micro"])
            if int(_details(r).get("group_factor", 1)) > 1:
                grouped.add(rid)
        elif rid in grouped:
            # Its charges are row-level: composing them says nothing of a person's loss. The
            # reservation counts as debited (K·ε), plus any overrun (also at person level).
            if r["kind"] == "overrun":
                pure_micro += int(r["epsilon_micro"])
        elif r["kind"] == "charge":
            charged[rid] = charged.get(rid, 0) + int(r["epsilon_micro"])
            details = _details(r)
            params = details.get("params") or {}
            if details.get("mechanism") == "dp_sgd" and {"sigma", "q", "steps"} <= set(params):
                if int(params["steps"]) > 0:
                    history.append((float(params["sigma"]), float(params["q"]),
                                    int(params["steps"])))
                    delta_a += _dec(str(r["delta"]) if isinstance(r["delta"], str)
                                    else float(r["delta"]))
            else:
                pure_micro += int(r["epsilon_micro"])
        # overrun entries are covered: their charges are already counted above
    for rid, micro in reserved.items():
        pure_micro += micro if rid in grouped else max(0, micro - charged.get(rid, 0))
    composed = history_epsilon(history, delta=float(delta_a), accountant=accountant) \
        if history else 0.0
    return composed + from_micro(pure_micro), float(_spent_delta(rows))


def _verify(rows: Sequence[dict[str, Any]], head_hash: str | None, head_count: str | None,
            sketches: dict[str, tuple[str, str]], *, link: Callable[[dict[str, Any]], str],
            wrapped_sketch_key: str | None = None) -> list[str]:
    """Every problem of the chain, the sketches and the registrations. ``link`` computes an
    entry's chain link (the keyed MAC); entries before a recorded ``migrate`` entry are
    schema-2 entries, linked by the unkeyed :func:`entry_hash`. Entry-level problems beyond
    :data:`MAX_ENTRY_PROBLEMS` are counted in one line."""
    entry_problems: list[str] = []
    problems: list[str] = []
    prev = GENESIS
    registered: dict[str, str] = {}
    bounds: dict[str, int | None] = {}  # population -> its K (None: registered per row)
    reservations: dict[str, str] = {}
    migration = next((i for i, r in enumerate(rows) if r["kind"] == "migrate"), None)
    if migration is None and wrapped_sketch_key:
        problems.append("the ledger's meta table holds a sketch key that no recorded migration "
                        "put there; it was added outside privsynth (it would change every new "
                        "sketch)")
    for index, row in enumerate(rows, start=1):
        legacy = migration is not None and index - 1 < migration
        seq = int(row["seq"])
        if seq != index:
            entry_problems.append(
                f"entry {seq}: expected sequence number {index}; an entry was removed, "
                "inserted or renumbered"
            )
        if row["prev_hash"] != prev:
            entry_problems.append(
                f"entry {seq}: does not link to the entry before it; an entry was removed, "
                "inserted or reordered"
            )
        if legacy and entry_hash(row) != row["hash"]:
            entry_problems.append(f"entry {seq} (from schema 2): its content does not match its "
                                  "hash; it was edited")
        elif not legacy and not hmac.compare_digest(link(row), str(row["hash"])):
            entry_problems.append(
                f"entry {seq}: its content does not match its MAC; it was edited, or the chain "
                "was recomputed without the installation key")
        prev = row["hash"]
        kind, population = row["kind"], row["population"]
        if kind == "migrate":
            if index - 1 != migration:
                entry_problems.append(f"entry {seq}: a second migration entry")
            elif _digest(wrapped_sketch_key or "") != _details(row).get("sketch_key_digest"):
                problems.append("the ledger's wrapped sketch key does not match the one its "
                                "migration recorded; it was edited or removed")
        elif kind not in KINDS:
            entry_problems.append(f"entry {seq}: unknown kind {kind!r}")
        elif kind == "register":
            if population in registered:
                entry_problems.append(f"entry {seq}: population '{population}' registered twice")
            else:
                try:
                    facts = _details(row)
                    registered[population] = facts["sketch_digest"]
                except (ValueError, KeyError, TypeError):
                    entry_problems.append(f"entry {seq}: a registration without a sketch digest")
                else:
                    try:
                        bounds[population] = _check_person(
                            facts.get("person_id"), facts.get("max_rows_per_person"))[1]
                    except LedgerError as exc:
                        bounds[population] = None
                        entry_problems.append(f"entry {seq}: a registration with malformed "
                                              f"person facts ({exc})")
        elif population not in registered:
            entry_problems.append(f"entry {seq}: a {kind} entry for population "
                                  f"'{population}', which is not registered before it")
        elif kind == "reserve":
            reservations[row["reservation_id"]] = population
            broken = _unit_problem(row, bounds.get(population))
            if broken:
                entry_problems.append(f"entry {seq}: {broken}")
        elif kind in ("charge", "overrun") and \
                reservations.get(row["reservation_id"]) != population:
            entry_problems.append(f"entry {seq}: a {kind} entry without an earlier reservation "
                                  f"of population '{population}'")
    if len(entry_problems) > MAX_ENTRY_PROBLEMS:
        more = len(entry_problems) - MAX_ENTRY_PROBLEMS
        problems = entry_problems[:MAX_ENTRY_PROBLEMS] + [
            f"... and {more} more problem(s) with entries; the ledger was edited extensively"
        ] + problems
    else:
        problems = entry_problems + problems
    if head_count is not None and int(head_count) != len(rows):
        problems.append(
            f"the ledger head records {head_count} entries but {len(rows)} are present; "
            "entries were removed or added outside privsynth"
        )
    if head_hash is not None and head_hash != prev:
        problems.append(
            "the last entry's hash does not match the ledger head; the end of the chain "
            "was removed, edited or replaced"
        )
    for population, digest in registered.items():
        stored = sketches.get(population)
        if stored is None:
            problems.append(f"the sketch of population '{population}' is missing")
        elif not (stored[0] == digest == stored[1]):
            problems.append(f"the sketch of population '{population}' does not match the "
                            "digest in its registration; it was edited or replaced")
    for population in sorted(set(sketches) - set(registered)):
        problems.append(f"a sketch for population '{population}' that no registration records; "
                        "it was added outside privsynth")
    return problems


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _may_create(place: str, create: bool) -> None:
    """Refuse to create a ledger at ``place`` unless asked, and never where the anchors show a
    ledger with entries was kept (it was deleted or moved: a fresh one would hide its spending)."""
    keys = _keys_if_any()
    anchors = _Anchors(keys)
    bound = anchors.bound(place) if keys is not None else None
    kept = anchors.latest(bound[0])[0] if bound is not None else None
    if kept is not None and kept.count > 0:
        raise LedgerError(
            f"{place}: no ledger there, but the anchors in {anchor_dir()} show that ledger "
            f"{bound[0]} with {kept.count} entries was kept there (last anchored "
            f"{kept.ts[:19]}); it was deleted or moved. Restore it from a backup (an older "
            "backup is reported as a rollback); privsynth does not start a new ledger in its "
            "place: choose another path for a new ledger")
    if not create:
        raise LedgerError(
            f"{place}: no ledger there. Check the path (--ledger, ${ENV_VAR} or the policy's "
            "budget.ledger); a privacy officer creates a ledger by registering a population: "
            f"`{register_command('ID')}`")


def _public(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["seq"] = int(out["seq"])
    out["epsilon_micro"] = int(out["epsilon_micro"])
    out["epsilon"] = from_micro(out["epsilon_micro"])
    out["delta"] = float(out["delta"])
    out["details"] = json.loads(out["details"])
    return out


# ---------------------------------------------------------------------- backends
class _Tx:
    """One transaction on a backend; SQL is written with ``?`` placeholders."""

    def __init__(self, backend: _Backend, cur: Any) -> None:
        self._b = backend
        self._cur = cur
        self.head: tuple[int, str] | None = None  # (count, MAC) after this transaction's appends
        self._all: list[dict[str, Any]] | None = None  # every entry, read once per transaction

    def q(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        self._cur.execute(self._b.sql(sql), tuple(params))
        return list(self._cur.fetchall()) if self._cur.description else []

    def meta_get(self, key: str) -> str | None:
        rows = self.q("SELECT value FROM ledger_meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def meta_set(self, key: str, value: str) -> None:
        self.q("INSERT INTO ledger_meta (key, value) VALUES (?, ?) "
               "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def entries(self, population: str | None) -> list[dict[str, Any]]:
        cols = ", ".join(_ENTRY_COLUMNS)
        if population is None:
            if self._all is None:
                rows = self.q(f"SELECT {cols} FROM ledger_entries ORDER BY seq")
                self._all = [dict(zip(_ENTRY_COLUMNS, r, strict=True)) for r in rows]
            return [dict(r) for r in self._all]
        else:
            rows = self.q(f"SELECT {cols} FROM ledger_entries WHERE population = ? ORDER BY seq",
                          (population,))
        return [dict(zip(_ENTRY_COLUMNS, r, strict=True)) for r in rows]

    def reservation(self, reservation_id: str) -> dict[str, Any] | None:
        cols = ", ".join(_ENTRY_COLUMNS)
        rows = self.q(f"SELECT {cols} FROM ledger_entries WHERE kind = 'reserve' "
                      "AND reservation_id = ?", (reservation_id,))
        return dict(zip(_ENTRY_COLUMNS, rows[0], strict=True)) if rows else None

    def sketches(self) -> list[tuple[str, str]]:
        return [(p, s) for p, s in
                self.q("SELECT population, sketch FROM ledger_sketches ORDER BY population")]

    def sketch_digests(self) -> dict[str, tuple[str, str]]:
        """population -> (stored digest, SHA-256 of the stored sketch text)."""
        rows = self.q("SELECT population, digest, sketch FROM ledger_sketches")
        return {p: (d, hashlib.sha256(str(s).encode()).hexdigest()) for p, d, s in rows}

    def append(self, *, kind: str, population: str, release_id: str, reservation_id: str,
               epsilon_micro: int, delta: float, details: dict[str, Any]) -> int:
        count = int(self.meta_get("head_count") or 0)
        prev = self.meta_get("head_hash") or GENESIS
        row = {
            "seq": count + 1,
            "ts": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
            "kind": kind, "population": population, "release_id": release_id,
            "reservation_id": reservation_id, "epsilon_micro": int(epsilon_micro),
            "delta": repr(float(delta)), "details": _canonical(details), "prev_hash": prev,
        }
        row["hash"] = self._b.seal(row)
        cols = ", ".join(_ENTRY_COLUMNS)
        marks = ", ".join("?" for _ in _ENTRY_COLUMNS)
        self.q(f"INSERT INTO ledger_entries ({cols}) VALUES ({marks})",
               [row[c] for c in _ENTRY_COLUMNS])
        self.meta_set("head_count", str(row["seq"]))
        self.meta_set("head_hash", row["hash"])
        self.head = (row["seq"], row["hash"])
        self._all = None
        return row["seq"]


class _Backend:
    location = "<ledger>"

    def seal(self, row: dict[str, Any]) -> str:
        """The chain link of a new entry; the :class:`Ledger` sets its keyed MAC here."""
        raise LedgerError("internal: a ledger entry was appended without the chain key")

    def sql(self, text: str) -> str:
        return text

    def version(self) -> str | None:
        """The schema version; ``None`` when the location holds no ledger yet."""
        raise NotImplementedError

    def create(self, *, ledger_id: str, key_id: str) -> None:
        """Create the tables and seed the meta table (a concurrent creator's values win)."""
        raise NotImplementedError

    def refresh_schema(self) -> None:
        """Put back what an honest open restores (SQLite's append-only triggers)."""

    def purge(self) -> None:
        """Make deleted rows unrecoverable from the storage (after a migration)."""

    def write(self) -> contextlib.AbstractContextManager[_Tx]:
        raise NotImplementedError

    def read(self) -> contextlib.AbstractContextManager[_Tx]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def meta_or_none(self, key: str) -> str | None:
        with self.read() as tx:
            return tx.meta_get(key)

    def meta(self, key: str) -> str:
        value = self.meta_or_none(key)
        if value is None:
            raise LedgerError(f"{self.location}: the ledger has no '{key}' in its meta table; "
                              "it was not written by this privsynth or was edited: restore it "
                              "from a backup")
        return value

    def check_version(self, version: str) -> None:
        """Refuse a ledger of another schema version, with what to do."""
        if version == SCHEMA_VERSION:
            return
        if version == "1":
            raise LedgerError(f"{self.location}: cannot use this ledger: {_V1_HELP}")
        if version == LEGACY_SCHEMA:
            raise LedgerError(
                f"{self.location}: the ledger has schema version {LEGACY_SCHEMA} (an unkeyed "
                "hash chain, its sketch key inside the file). A privacy officer converts it "
                "once, as a recorded entry: `privsynth budget migrate --ledger "
                f"{self.location} --officer NAME` (keep a backup of the file first)")
        raise LedgerError(
            f"{self.location}: the ledger has schema version {version or '(none)'}; this "
            f"privsynth reads version {SCHEMA_VERSION}"
        )

    @staticmethod
    def _seed_meta(tx: _Tx, ledger_id: str, key_id: str) -> None:
        for key, value in (("schema_version", SCHEMA_VERSION), ("ledger_id", ledger_id),
                           ("key_id", key_id), ("head_count", "0"), ("head_hash", GENESIS)):
            tx.q("INSERT INTO ledger_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                 (key, value))


class _SqliteBackend(_Backend):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = ledger_place(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(path), timeout=120.0, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"{path}: cannot open the ledger ({exc})") from None
        try:
            self.conn.execute("PRAGMA busy_timeout = 120000")
            self._pragma_wal()
            self.conn.execute("PRAGMA synchronous = FULL")
            self.conn.execute("PRAGMA secure_delete = ON")
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise LedgerError(f"{path}: not a usable SQLite ledger ({exc})") from None

    def _pragma_wal(self) -> None:
        import time

        for attempt in range(200):
            try:
                self.conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 199:
                    raise
                time.sleep(0.05)

    def version(self) -> str | None:
        try:
            with self.read() as tx:
                if not tx.q("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                            "AND name = 'ledger_meta'"):
                    return None
                return tx.meta_get("schema_version") or ""
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{self.path}: not a usable SQLite ledger ({exc})") from None

    def create(self, *, ledger_id: str, key_id: str) -> None:
        try:
            with self.write() as tx:
                tx.q(_META_TABLE)
                version = tx.meta_get("schema_version")
                if version is not None:
                    self.check_version(version)
                for stmt in _SQLITE_SCHEMA:
                    tx.q(stmt)
                self._seed_meta(tx, ledger_id, key_id)
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{self.path}: not a usable SQLite ledger ({exc})") from None

    def refresh_schema(self) -> None:
        with self.write() as tx:
            for stmt in _SQLITE_SCHEMA:
                tx.q(stmt)

    def purge(self) -> None:
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.execute("VACUUM")
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextlib.contextmanager
    def write(self) -> Iterator[_Tx]:
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield _Tx(self, cur)
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        else:
            cur.execute("COMMIT")
        finally:
            cur.close()

    @contextlib.contextmanager
    def read(self) -> Iterator[_Tx]:
        cur = self.conn.cursor()
        cur.execute("BEGIN")
        try:
            yield _Tx(self, cur)
        finally:
            cur.execute("ROLLBACK")
            cur.close()

    def close(self) -> None:
        self.conn.close()


class _PostgresBackend(_Backend):
    def __init__(self, url: str, place: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise LedgerError(
                "a postgresql:// ledger needs psycopg 3: pip install 'privsynth[postgres]'"
            ) from None
        self._psycopg = psycopg
        self.location = place  # never the URL: it may hold a password
        try:
            self.conn = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise LedgerError(f"cannot connect to the PostgreSQL ledger {place} "
                              f"({type(exc).__name__}; check the URL, the server and the "
                              "credentials)") from None

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def version(self) -> str | None:
        with self.read() as tx:
            if tx.q("SELECT to_regclass('ledger_meta')")[0][0] is None:
                return None
            return tx.meta_get("schema_version") or ""

    def create(self, *, ledger_id: str, key_id: str) -> None:
        with self.write() as tx:
            tx._cur.execute(_META_TABLE)
            version = tx.meta_get("schema_version")
            if version is not None:
                self.check_version(version)
            for stmt in _PG_SCHEMA:
                tx._cur.execute(stmt)
            for name, when in _PG_TRIGGERS.items():
                exists = tx.q("SELECT 1 FROM pg_trigger WHERE tgname = ?", (name,))
                if not exists:
                    tx._cur.execute(f"CREATE TRIGGER {name} {when} FOR EACH ROW "
                                    "EXECUTE FUNCTION privsynth_ledger_append_only()")
            self._seed_meta(tx, ledger_id, key_id)

    def purge(self) -> None:
        self.conn.execute("VACUUM FULL ledger_meta")

    @contextlib.contextmanager
    def write(self) -> Iterator[_Tx]:
        with self.conn.transaction(), self.conn.cursor() as cur:
            # One writer at a time across all clients: the chain is a single sequence.
            cur.execute("SELECT pg_advisory_xact_lock(7201004417)")
            yield _Tx(self, cur)

    @contextlib.contextmanager
    def read(self) -> Iterator[_Tx]:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield _Tx(self, cur)

    def close(self) -> None:
        self.conn.close()
