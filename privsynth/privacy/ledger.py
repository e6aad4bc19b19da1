"""The persistent privacy-budget ledger: append-only, transactional, hash-chained.

One ledger holds every release of every population an installation (or a team, with PostgreSQL)
ever made. It is keyed by the *content fingerprint* of the population
(:func:`privsynth.data.fingerprint.fingerprint`), so renaming, shuffling or converting the file does
not reset the budget; the policy's dataset id is recorded beside it for humans.

Life of a release:

1. :meth:`Ledger.reserve` — *before any private data is read* — atomically checks the remaining
   budget and appends a ``reserve`` entry, or raises :class:`BudgetExceededError`. The check and
   the insert happen in one exclusive write transaction (SQLite ``BEGIN IMMEDIATE``; PostgreSQL
   a table lock), so concurrent releases can never together overspend.
2. :meth:`Ledger.record_charges` — after the mechanisms ran — appends one ``charge`` entry per
   mechanism with its exact accountant inputs (mechanism, σ, q, steps, δ). A charge never refunds:
   the reservation stays spent even if the release is later blocked by the audit gate. A run that
   used *more* than it reserved gets an ``overrun`` entry that counts as spent.

Epsilon is stored as integer micro-epsilon (requests rounded *up*, budgets rounded *down*), so the
budget edge is exact: 100 reservations of 0.01 fill a budget of 1.0, and the 101st is refused.

Tamper evidence: every entry stores the SHA-256 of its own canonical content and of the previous
entry; the last entry's hash and the entry count are kept as the chain head. :meth:`Ledger.verify`
reports edited, removed, inserted or reordered entries. SQLite triggers also refuse ``UPDATE`` and
``DELETE`` on entries, so an honest mistake cannot rewrite history (a deliberate attacker can drop
the triggers, which is what the hash chain is for).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import secrets
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from privsynth.errors import BudgetExceededError, LedgerError, PrivacyError
from privsynth.privacy.events import Charge

if TYPE_CHECKING:
    from privsynth.policy.model import Policy

MICRO = 1_000_000
GENESIS = "0" * 64
SCHEMA_VERSION = "1"
ENV_VAR = "PRIVSYNTH_LEDGER"
COMPOSITIONS = ("sum", "accountant")

_ENTRY_COLUMNS = (
    "seq", "ts", "kind", "fingerprint", "dataset_id", "release_id", "reservation_id",
    "epsilon_micro", "delta", "details", "prev_hash", "hash",
)

_META_TABLE = "CREATE TABLE IF NOT EXISTS ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
_INDEX = "CREATE INDEX IF NOT EXISTS ledger_entries_fp ON ledger_entries (fingerprint)"


def _entries_table(integer: str) -> str:
    """The entries table; SQLite and PostgreSQL differ only in the integer type's name."""
    columns = ",\n        ".join(
        f"{name:<14} {integer + (' PRIMARY KEY' if name == 'seq' else ' NOT NULL')}"
        if name in ("seq", "epsilon_micro") else f"{name:<14} TEXT NOT NULL"
        for name in _ENTRY_COLUMNS)
    return f"CREATE TABLE IF NOT EXISTS ledger_entries (\n        {columns})"


_SQLITE_SCHEMA = [
    _META_TABLE,
    _entries_table("INTEGER"),
    _INDEX,
    """CREATE TRIGGER IF NOT EXISTS ledger_no_update BEFORE UPDATE ON ledger_entries
       BEGIN SELECT RAISE(ABORT, 'the privsynth ledger is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS ledger_no_delete BEFORE DELETE ON ledger_entries
       BEGIN SELECT RAISE(ABORT, 'the privsynth ledger is append-only'); END""",
]

_PG_SCHEMA = [
    _META_TABLE,
    _entries_table("BIGINT"),
    _INDEX,
    """CREATE OR REPLACE FUNCTION privsynth_ledger_append_only() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'the privsynth ledger is append-only'; END; $$ LANGUAGE plpgsql""",
]
_PG_TRIGGERS = {
    "ledger_no_update": "BEFORE UPDATE ON ledger_entries",
    "ledger_no_delete": "BEFORE DELETE ON ledger_entries",
}


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


@dataclass(frozen=True)
class Reservation:
    """A granted reservation: ``epsilon`` is spent from the moment this object exists."""

    reservation_id: str
    fingerprint: str
    dataset_id: str
    release_id: str
    epsilon: float
    delta: float
    seq: int
    spent_after: float
    total_epsilon: float

    @property
    def remaining_after(self) -> float:
        """Budget left for this population right after the reservation."""
        return max(0.0, self.total_epsilon - self.spent_after)


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
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return str(base / "privsynth" / "ledger.sqlite")


def _is_postgres_url(location: str) -> bool:
    return str(location).startswith(("postgresql://", "postgres://"))


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def entry_hash(row: dict[str, Any]) -> str:
    """SHA-256 of an entry's content and its predecessor's hash (the chain link)."""
    body = [
        int(row["seq"]), row["ts"], row["kind"], row["fingerprint"], row["dataset_id"],
        row["release_id"], row["reservation_id"], int(row["epsilon_micro"]), row["delta"],
        row["details"], row["prev_hash"],
    ]
    return hashlib.sha256(_canonical(body).encode()).hexdigest()


class Ledger:
    """The budget ledger. Open with :meth:`Ledger.open`; use as a context manager to close."""

    def __init__(self, backend: _Backend, location: str) -> None:
        self._db = backend
        self.location = location

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, location: str | Path) -> Ledger:
        """Open (creating if needed) a ledger: a file path (SQLite) or a ``postgresql://`` URL."""
        text = str(location)
        backend: _Backend
        if _is_postgres_url(text):
            backend = _PostgresBackend(text)
        else:
            backend = _SqliteBackend(Path(text).expanduser())
        ledger = cls(backend, text)
        ledger._db.init_schema()
        return ledger

    def close(self) -> None:
        """Close the connection. The ledger object is unusable afterwards."""
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def installation_key(self) -> bytes:
        """A random per-ledger secret (32 bytes), for keyed fingerprints in public manifests."""
        return bytes.fromhex(self._db.meta("installation_key"))

    # ------------------------------------------------------------------ writing
    def reserve(self, *, fingerprint: str, dataset_id: str, release_id: str, epsilon: float,
                delta: float, total_epsilon: float, composition: str = "sum",
                accountant: str = "prv") -> Reservation:
        """Atomically check the remaining budget and reserve ``epsilon`` for one release.

        Call this *before* reading private data. Raises :class:`BudgetExceededError` (Requested /
        Remaining / Difference) when the population's budget cannot cover the request. With
        ``composition="accountant"`` the spent figure is :meth:`composed_epsilon` at ``delta``.
        """
        if composition not in COMPOSITIONS:
            raise PrivacyError(
                f"budget.composition must be one of {list(COMPOSITIONS)}. "
                f"Got {composition!r} instead."
            )
        want = to_micro(epsilon, round_up=True)
        if want <= 0:
            raise PrivacyError(f"a reservation needs epsilon > 0. Got {epsilon} instead.")
        if not 0 <= float(delta) < 1:
            raise PrivacyError(f"delta must be in [0, 1). Got {delta} instead.")
        total = to_micro(total_epsilon, round_up=False)
        _check_text(fingerprint=fingerprint, dataset_id=dataset_id, release_id=release_id)
        reservation_id = uuid.uuid4().hex
        with self._db.write() as tx:
            if composition == "sum":
                spent = tx.spent_micro(fingerprint)
            else:
                composed = self._composed(tx.entries(fingerprint), float(delta), accountant)
                spent = to_micro(composed, round_up=True)
            if spent + want > total:
                raise BudgetExceededError(dataset_id, from_micro(want),
                                          from_micro(max(0, total - spent)))
            details = {"total_epsilon_micro": total, "composition": composition,
                       "epsilon": float(epsilon)}
            seq = tx.append(kind="reserve", fingerprint=fingerprint, dataset_id=dataset_id,
                            release_id=release_id, reservation_id=reservation_id,
                            epsilon_micro=want, delta=float(delta), details=details)
        return Reservation(reservation_id, fingerprint, dataset_id, release_id,
                           from_micro(want), float(delta), seq, from_micro(spent + want),
                           from_micro(total))

    def record_charges(self, reservation: Reservation, charges: Sequence[Charge]) -> None:
        """Append what actually ran under ``reservation``: one entry per mechanism, in order.

        Never refunds. If the charges add up to more than was reserved, an ``overrun`` entry
        charges the difference (the data has been read; the budget may go below zero).
        """
        charges = list(charges)
        for c in charges:
            if not isinstance(c, Charge):
                raise PrivacyError(f"record_charges needs Charge records. Got {type(c).__name__}.")
        with self._db.write() as tx:
            known = tx.reservation(reservation.reservation_id)
            if known is None:
                raise LedgerError(
                    f"reservation {reservation.reservation_id} is not in this ledger; "
                    "charges can only be recorded against a reservation made here"
                )
            used = 0
            for c in charges:
                micro = to_micro(c.epsilon, round_up=True)
                used += micro
                details = {"stage": c.stage, "mechanism": c.mechanism, "column": c.column,
                           "epsilon": float(c.epsilon), "params": c.params}
                tx.append(kind="charge", fingerprint=known["fingerprint"],
                          dataset_id=known["dataset_id"], release_id=known["release_id"],
                          reservation_id=reservation.reservation_id, epsilon_micro=micro,
                          delta=float(c.delta), details=details)
            over = used - int(known["epsilon_micro"])
            if over > 0:
                tx.append(kind="overrun", fingerprint=known["fingerprint"],
                          dataset_id=known["dataset_id"], release_id=known["release_id"],
                          reservation_id=reservation.reservation_id, epsilon_micro=over,
                          delta=0.0, details={"reason": "charges exceeded the reservation"})

    # ------------------------------------------------------------------ reading
    def spent(self, fingerprint: str) -> float:
        """Plain sum of the epsilon reserved (plus overruns) for a population."""
        with self._db.read() as tx:
            return from_micro(tx.spent_micro(fingerprint))

    def composed_epsilon(self, fingerprint: str, delta: float, accountant: str = "prv") -> float:
        """Cumulative epsilon at ``delta`` with the recorded DP-SGD runs composed together.

        All recorded ``dp_sgd`` charges (σ, q, steps) of the population go into one Opacus
        accountant; every other charge adds its epsilon; and the part of a reservation not
        covered by recorded charges (a crashed run, or calibration below target) adds as reserved.
        So the figure is never below what actually ran.
        """
        return self._composed(self.entries(fingerprint), float(delta), accountant)

    def entries(self, fingerprint: str | None = None) -> list[dict[str, Any]]:
        """Every entry in chain order (optionally of one population), as plain dicts."""
        with self._db.read() as tx:
            rows = tx.entries(fingerprint)
        return [_public(r) for r in rows]

    def datasets(self) -> list[dict[str, Any]]:
        """One summary per population: fingerprint, dataset ids, releases, spent, total."""
        out: dict[str, dict[str, Any]] = {}
        for e in self.entries():
            fp = e["fingerprint"]
            d = out.setdefault(fp, {"fingerprint": fp, "dataset_ids": [], "releases": {},
                                    "spent_micro": 0, "total_epsilon": None})
            if e["dataset_id"] not in d["dataset_ids"]:
                d["dataset_ids"].append(e["dataset_id"])
            rel = d["releases"].setdefault(e["release_id"], {"reserved": 0, "charged": 0,
                                                             "ts": e["ts"], "charges": 0})
            if e["kind"] in ("reserve", "overrun"):
                d["spent_micro"] += e["epsilon_micro"]
                rel["reserved"] += e["epsilon_micro"]
                if e["kind"] == "reserve":
                    d["total_epsilon"] = from_micro(e["details"]["total_epsilon_micro"])
            elif e["kind"] == "charge":
                rel["charged"] += e["epsilon_micro"]
                rel["charges"] += 1
        for d in out.values():
            d["spent"] = from_micro(d.pop("spent_micro"))
            for rel in d["releases"].values():
                rel["reserved"] = from_micro(rel["reserved"])
                rel["charged"] = from_micro(rel["charged"])
        return list(out.values())

    def verify(self) -> list[str]:
        """Check the hash chain. Returns the problems found; ``[]`` when the ledger is intact."""
        problems: list[str] = []
        with self._db.read() as tx:
            rows = tx.entries(None)
            head_hash = tx.meta_get("head_hash")
            head_count = tx.meta_get("head_count")
        prev = GENESIS
        for index, row in enumerate(rows, start=1):
            seq = int(row["seq"])
            if seq != index:
                problems.append(
                    f"entry {seq}: expected sequence number {index}; an entry was removed, "
                    "inserted or renumbered"
                )
            if row["prev_hash"] != prev:
                problems.append(
                    f"entry {seq}: does not link to the entry before it; an entry was removed, "
                    "inserted or reordered"
                )
            if entry_hash(row) != row["hash"]:
                problems.append(f"entry {seq}: its content does not match its hash; it was edited")
            prev = row["hash"]
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
        return problems

    def head(self) -> dict[str, Any]:
        """The chain head (entry count and last hash): record it in a manifest to anchor it."""
        with self._db.read() as tx:
            return {"count": int(tx.meta_get("head_count") or 0),
                    "hash": tx.meta_get("head_hash") or GENESIS}

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _composed(rows: list[dict[str, Any]], delta: float, accountant: str) -> float:
        from privsynth.privacy.accounting import history_epsilon

        reserved: dict[str, int] = {}
        charged: dict[str, int] = {}
        pure_micro = 0
        history: list[tuple[float, float, int]] = []
        for r in rows:
            rid = r["reservation_id"]
            if r["kind"] == "reserve":
                reserved[rid] = reserved.get(rid, 0) + int(r["epsilon_micro"])
            elif r["kind"] == "charge":
                charged[rid] = charged.get(rid, 0) + int(r["epsilon_micro"])
                details = r["details"]
                if isinstance(details, str):
                    details = json.loads(details)
                params = details.get("params") or {}
                if details.get("mechanism") == "dp_sgd" and {"sigma", "q", "steps"} <= set(params):
                    if int(params["steps"]) > 0:
                        history.append((float(params["sigma"]), float(params["q"]),
                                        int(params["steps"])))
                else:
                    pure_micro += int(r["epsilon_micro"])
            # overrun entries are covered: their charges are already counted above
        for rid, micro in reserved.items():
            pure_micro += max(0, micro - charged.get(rid, 0))
        composed = history_epsilon(history, delta=delta, accountant=accountant)
        return composed + from_micro(pure_micro)


def _check_text(**fields: str) -> None:
    for name, value in fields.items():
        if not isinstance(value, str) or not value:
            raise LedgerError(f"{name} must be a non-empty string")


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

    def q(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        self._cur.execute(self._b.sql(sql), tuple(params))
        return list(self._cur.fetchall()) if self._cur.description else []

    def meta_get(self, key: str) -> str | None:
        rows = self.q("SELECT value FROM ledger_meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def meta_set(self, key: str, value: str) -> None:
        self.q("INSERT INTO ledger_meta (key, value) VALUES (?, ?) "
               "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def spent_micro(self, fingerprint: str) -> int:
        rows = self.q("SELECT COALESCE(SUM(epsilon_micro), 0) FROM ledger_entries "
                      "WHERE fingerprint = ? AND kind IN ('reserve', 'overrun')", (fingerprint,))
        return int(rows[0][0])

    def entries(self, fingerprint: str | None) -> list[dict[str, Any]]:
        cols = ", ".join(_ENTRY_COLUMNS)
        if fingerprint is None:
            rows = self.q(f"SELECT {cols} FROM ledger_entries ORDER BY seq")
        else:
            rows = self.q(f"SELECT {cols} FROM ledger_entries WHERE fingerprint = ? ORDER BY seq",
                          (fingerprint,))
        return [dict(zip(_ENTRY_COLUMNS, r, strict=True)) for r in rows]

    def reservation(self, reservation_id: str) -> dict[str, Any] | None:
        cols = ", ".join(_ENTRY_COLUMNS)
        rows = self.q(f"SELECT {cols} FROM ledger_entries WHERE kind = 'reserve' "
                      "AND reservation_id = ?", (reservation_id,))
        return dict(zip(_ENTRY_COLUMNS, rows[0], strict=True)) if rows else None

    def append(self, *, kind: str, fingerprint: str, dataset_id: str, release_id: str,
               reservation_id: str, epsilon_micro: int, delta: float,
               details: dict[str, Any]) -> int:
        count = int(self.meta_get("head_count") or 0)
        prev = self.meta_get("head_hash") or GENESIS
        row = {
            "seq": count + 1,
            "ts": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
            "kind": kind, "fingerprint": fingerprint, "dataset_id": dataset_id,
            "release_id": release_id, "reservation_id": reservation_id,
            "epsilon_micro": int(epsilon_micro), "delta": repr(float(delta)),
            "details": _canonical(details), "prev_hash": prev,
        }
        row["hash"] = entry_hash(row)
        cols = ", ".join(_ENTRY_COLUMNS)
        marks = ", ".join("?" for _ in _ENTRY_COLUMNS)
        self.q(f"INSERT INTO ledger_entries ({cols}) VALUES ({marks})",
               [row[c] for c in _ENTRY_COLUMNS])
        self.meta_set("head_count", str(row["seq"]))
        self.meta_set("head_hash", row["hash"])
        return row["seq"]


class _Backend:
    def sql(self, text: str) -> str:
        return text

    def init_schema(self) -> None:
        raise NotImplementedError

    def write(self) -> contextlib.AbstractContextManager[_Tx]:
        raise NotImplementedError

    def read(self) -> contextlib.AbstractContextManager[_Tx]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def meta(self, key: str) -> str:
        with self.read() as tx:
            value = tx.meta_get(key)
        if value is None:
            raise LedgerError(f"the ledger has no '{key}'; was it created by privsynth?")
        return value

    @staticmethod
    def _seed_meta(tx: _Tx) -> None:
        for key, value in (("schema_version", SCHEMA_VERSION),
                           ("installation_key", secrets.token_hex(32)),
                           ("head_count", "0"), ("head_hash", GENESIS)):
            tx.q("INSERT INTO ledger_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                 (key, value))
        version = tx.meta_get("schema_version")
        if version != SCHEMA_VERSION:
            raise LedgerError(
                f"the ledger has schema version {version}; this privsynth reads version "
                f"{SCHEMA_VERSION}"
            )


class _SqliteBackend(_Backend):
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(path), timeout=120.0, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"{path}: cannot open the ledger ({exc})") from None
        try:
            self.conn.execute("PRAGMA busy_timeout = 120000")
            self._pragma_wal()
            self.conn.execute("PRAGMA synchronous = FULL")
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

    def init_schema(self) -> None:
        try:
            with self.write() as tx:
                for stmt in _SQLITE_SCHEMA:
                    tx.q(stmt)
                self._seed_meta(tx)
        except sqlite3.DatabaseError as exc:
            raise LedgerError(f"{self.path}: not a usable SQLite ledger ({exc})") from None

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
    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise LedgerError(
                "a postgresql:// ledger needs psycopg 3: pip install 'privsynth[postgres]'"
            ) from None
        self._psycopg = psycopg
        try:
            self.conn = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise LedgerError(f"cannot connect to the PostgreSQL ledger ({type(exc).__name__}: "
                              f"{str(exc).strip().splitlines()[0] if str(exc) else ''})") from None

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def init_schema(self) -> None:
        with self.write() as tx:
            for stmt in _PG_SCHEMA:
                tx._cur.execute(stmt)
            for name, when in _PG_TRIGGERS.items():
                exists = tx.q("SELECT 1 FROM pg_trigger WHERE tgname = ?", (name,))
                if not exists:
                    tx._cur.execute(f"CREATE TRIGGER {name} {when} FOR EACH ROW "
                                    "EXECUTE FUNCTION privsynth_ledger_append_only()")
            self._seed_meta(tx)

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
