"""The budget ledger against a hostile insider who can edit, delete, copy and replace the ledger
file (or, with PostgreSQL, the tables) but does not hold the installation's key store.

Every attack must be reported by ``verify`` (or refused on open) with a one-line reason, and
``reserve`` must grant nothing from a tampered ledger. The untampered ledger verifies. Cases run
on SQLite and, where the attack applies, on a real PostgreSQL server (skipped with the reason
when none can be started). See docs/ledger.md for the threat model.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import ledger_helpers
import pytest
from ledger_helpers import (
    drop_tables,
    is_pg,
    people,
    raw_rows,
    raw_sql,
    restore,
    snapshot,
)

from privsynth.errors import LedgerError
from privsynth.privacy.events import Charge
from privsynth.privacy.ledger import Ledger

pg_server = ledger_helpers.pg_server  # fixtures: a throw-away PostgreSQL server ...
location = ledger_helpers.location  # ... and a fresh SQLite or PostgreSQL ledger location

POP = "ds"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
COLUMNS = ("seq", "ts", "kind", "population", "release_id", "reservation_id", "epsilon_micro",
           "delta", "details", "prev_hash", "hash")


def _filled(where: str, releases: int = 5, total: float = 1.0) -> None:
    """A ledger with one population and ``releases`` releases (2 entries each): 11 entries."""
    with Ledger.open(where) as ledger:
        ledger.register(POP, total_epsilon=total, total_delta=1e-3,
                        sketch=ledger.sketch(people(0)), officer="officer")
        for i in range(releases):
            res = ledger.reserve(population=POP, release_id=f"r{i}", epsilon=0.1, delta=1e-6)
            ledger.record_charges(res, [Charge("training", "laplace", 0.1, 0.0)])
        assert ledger.verify() == []


def _entries(where: str) -> list[dict]:
    return [dict(zip(COLUMNS, r, strict=True))
            for r in raw_rows(where, "ledger_entries", order="seq")]


def _unkeyed_hash(row: dict) -> str:
    """The schema-2 chain link: SHA-256 of the entry, no key (what an insider can recompute)."""
    body = [int(row["seq"]), row["ts"], row["kind"], row["population"], row["release_id"],
            row["reservation_id"], int(row["epsilon_micro"]), row["delta"], row["details"],
            row["prev_hash"]]
    text = json.dumps(["privsynth-ledger-v2", *body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _rechain(where: str, link: Callable[[dict], str]) -> None:
    """Recompute every link and the head after the entries were edited, with ``link``."""
    rows = _entries(where)
    prev = "0" * 64
    statements, params = [], []
    for row in rows:
        row["prev_hash"] = prev
        row["hash"] = prev = link(row)
        statements.append("UPDATE ledger_entries SET prev_hash = ?, hash = ? WHERE seq = ?")
        params.append((row["prev_hash"], row["hash"], row["seq"]))
    statements += ["UPDATE ledger_meta SET value = ? WHERE key = 'head_hash'",
                   "UPDATE ledger_meta SET value = ? WHERE key = 'head_count'"]
    params += [(prev,), (str(len(rows)),)]
    raw_sql(where, statements, params)


# ---------------------------------------------------------------------- attacks
# Each takes (location, tmp_path) and returns the words its one-line reason must contain.
def edit_epsilon(where: str, tmp: Path) -> str:
    raw_sql(where, ["UPDATE ledger_entries SET epsilon_micro = 1 WHERE seq = 2"])
    return "does not match its MAC"


def delete_entry(where: str, tmp: Path) -> str:
    raw_sql(where, ["DELETE FROM ledger_entries WHERE seq = 4"])
    return "removed"


def reorder_entries(where: str, tmp: Path) -> str:
    raw_sql(where, ["UPDATE ledger_entries SET seq = 100 WHERE seq = 3",
                    "UPDATE ledger_entries SET seq = 3 WHERE seq = 4",
                    "UPDATE ledger_entries SET seq = 4 WHERE seq = 100"])
    return "does not link"


def recompute_unkeyed_chain(where: str, tmp: Path) -> str:
    # Free the reserved budget, then recompute the whole chain and head the old (unkeyed) way.
    raw_sql(where, ["UPDATE ledger_entries SET epsilon_micro = 1 WHERE kind = 'reserve'"])
    _rechain(where, _unkeyed_hash)
    return "does not match its MAC"


def recompute_chain_with_a_guessed_key(where: str, tmp: Path) -> str:
    raw_sql(where, ["UPDATE ledger_entries SET epsilon_micro = 1 WHERE kind = 'reserve'"])
    guess = hashlib.sha256(b"ledger-chain").digest()
    _rechain(where, lambda row: hmac.new(guess, _unkeyed_hash(row).encode(),
                                         hashlib.sha256).hexdigest())
    return "does not match its MAC"


def append_forged_entry(where: str, tmp: Path) -> str:
    last = _entries(where)[-1]
    forged = {**last, "seq": last["seq"] + 1, "kind": "set_total", "prev_hash": last["hash"],
              "details": json.dumps({"total_epsilon_micro": 50_000_000, "total_delta": "0.001",
                                     "composition": "sum", "officer": "x", "reason": "x"})}
    forged["hash"] = _unkeyed_hash(forged)
    raw_sql(where, [f"INSERT INTO ledger_entries ({', '.join(COLUMNS)}) "
                    f"VALUES ({', '.join('?' for _ in COLUMNS)})",
                    "UPDATE ledger_meta SET value = ? WHERE key = 'head_hash'",
                    "UPDATE ledger_meta SET value = ? WHERE key = 'head_count'"],
            [tuple(forged[c] for c in COLUMNS), (forged["hash"],), (str(forged["seq"]),)])
    return "does not match its MAC"


def truncate_tail_fix_head(where: str, tmp: Path) -> str:
    # Drop the last three entries and make the head agree: the chain itself is consistent.
    keep = _entries(where)[-4]
    raw_sql(where, ["DELETE FROM ledger_entries WHERE seq > ?",
                    "UPDATE ledger_meta SET value = ? WHERE key = 'head_hash'",
                    "UPDATE ledger_meta SET value = ? WHERE key = 'head_count'"],
            [(keep["seq"],), (keep["hash"],), (str(keep["seq"]),)])
    return "anchored at 11 entries"


def rollback_to_older_copy(where: str, tmp: Path) -> str:
    # An insider keeps a copy after the second release, then puts it back after three more.
    _rewind(where, tmp, keep_releases=2)
    return "anchored at 11 entries"


def _rewind(where: str, tmp: Path, keep_releases: int) -> None:
    # Rebuild the history in a second ledger with the same id: the older copy is the file (or
    # the rows) as they were after `keep_releases` releases.
    if is_pg(where):
        rows = _entries(where)
        keep = rows[2 * keep_releases]  # register + 2 entries per release
        raw_sql(where, ["DELETE FROM ledger_entries WHERE seq > ?",
                        "UPDATE ledger_meta SET value = ? WHERE key = 'head_hash'",
                        "UPDATE ledger_meta SET value = ? WHERE key = 'head_count'"],
                [(keep["seq"],), (keep["hash"],), (str(keep["seq"]),)])
    else:
        shutil.copyfile(tmp / "older-copy.sqlite", where)


def delete_ledger(where: str, tmp: Path) -> str:
    if is_pg(where):
        drop_tables(where)
    else:
        Path(where).unlink()
    return "anchors"


def fresh_ledger_same_keys(where: str, tmp: Path) -> str:
    # Deleted, then re-created through privsynth: refused while anchors for the place exist.
    delete_ledger(where, tmp)
    with pytest.raises(LedgerError, match="anchors") as err:
        Ledger.open(where, create=True)
    assert "\n" not in str(err.value)
    if not is_pg(where):
        assert not Path(where).exists()
    return "anchors"


def fresh_ledger_other_installation(where: str, tmp: Path, monkeypatch) -> str:
    # Deleted, then replaced by a fresh, generously registered ledger made on another machine.
    delete_ledger(where, tmp)
    monkeypatch.setenv("PRIVSYNTH_KEY_DIR", str(tmp / "other-installation"))
    _filled(where, releases=0, total=1000.0)
    monkeypatch.undo()
    return "installation key"


def swap_in_another_ledger(where: str, tmp: Path, other: str) -> str:
    # A second, valid ledger of this installation (a generous total) takes the first's place.
    _filled(other, releases=0, total=1000.0)
    if is_pg(where):
        restore(where, snapshot(other))
    else:
        shutil.copyfile(other, where)
    return "replaced"


def edit_registration_total(where: str, tmp: Path) -> str:
    raw_sql(where, ["UPDATE ledger_entries SET details = replace(details, "
                    "'\"total_epsilon_micro\":1000000', '\"total_epsilon_micro\":9000000') "
                    "WHERE kind = 'register'"])
    return "does not match its MAC"


def edit_sketch(where: str, tmp: Path) -> str:
    raw_sql(where, ["UPDATE ledger_sketches SET sketch = replace(sketch, 'A', 'B')"])
    return "does not match the digest"


def drop_sketch(where: str, tmp: Path) -> str:
    raw_sql(where, ["DELETE FROM ledger_sketches"])
    return "sketch of population 'ds' is missing"


def edit_head(where: str, tmp: Path) -> str:
    raw_sql(where, ["UPDATE ledger_meta SET value = '3' WHERE key = 'head_count'"])
    return "ledger head"


def edit_ledger_id(where: str, tmp: Path) -> str:
    raw_sql(where, ["UPDATE ledger_meta SET value = ? WHERE key = 'ledger_id'"], [("f" * 32,)])
    return "does not match its MAC"


def edit_key_id(where: str, tmp: Path) -> str:
    raw_sql(where, ["UPDATE ledger_meta SET value = '0123456789abcdef' WHERE key = 'key_id'"])
    return "installation key"


def plant_a_sketch_key(where: str, tmp: Path) -> str:
    # A wrapped sketch key in the meta table would silently change every new sketch (and so
    # blind near-copy detection); only a recorded migration may put one there.
    raw_sql(where, ["INSERT INTO ledger_meta (key, value) VALUES ('sketch_key_wrapped', ?)"],
            [("00" * 32,)])
    return "sketch key"


SQLITE_ONLY = {"rollback_to_older_copy"}
ATTACKS: dict[str, Callable[..., str]] = {f.__name__: f for f in (
    edit_epsilon, delete_entry, reorder_entries, recompute_unkeyed_chain,
    recompute_chain_with_a_guessed_key, append_forged_entry, truncate_tail_fix_head,
    rollback_to_older_copy, delete_ledger, fresh_ledger_same_keys,
    fresh_ledger_other_installation, swap_in_another_ledger, edit_registration_total,
    edit_sketch, drop_sketch, edit_head, edit_ledger_id, edit_key_id, plant_a_sketch_key,
)}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_tampering_is_detected_in_one_line_and_reserve_refuses(
        attack, location, tmp_path, monkeypatch, pg_server_or_none):
    if attack in SQLITE_ONLY and is_pg(location):
        pytest.skip("a file copy put back: SQLite only (PostgreSQL: truncate_tail_fix_head)")
    _filled(location, releases=2)
    if not is_pg(location):
        shutil.copyfile(location, tmp_path / "older-copy.sqlite")
    with Ledger.open(location) as ledger:
        for i in range(2, 5):
            res = ledger.reserve(population=POP, release_id=f"r{i}", epsilon=0.1, delta=1e-6)
            ledger.record_charges(res, [Charge("training", "laplace", 0.1, 0.0)])
        assert ledger.verify() == [] and ledger.head()["count"] == 11
    func = ATTACKS[attack]
    if attack == "fresh_ledger_other_installation":
        expected = func(location, tmp_path, monkeypatch)
    elif attack == "swap_in_another_ledger":
        other = pg_server_or_none() if is_pg(location) else str(tmp_path / "other.sqlite")
        expected = func(location, tmp_path, other)
    else:
        expected = func(location, tmp_path)
    try:
        ledger = Ledger.open(location, create=False)
    except LedgerError as exc:  # the ledger is gone: opening it is the one-line problem
        assert expected in str(exc) and "\n" not in str(exc), str(exc)
        return
    with ledger:
        problems = ledger.verify()
        assert problems, f"{attack} went unnoticed"
        assert all(p and "\n" not in p for p in problems), problems
        assert any(expected in p for p in problems), problems
        before = ledger.head()["count"]
        with pytest.raises(LedgerError, match="does not verify"):
            ledger.reserve(population=POP, release_id="after", epsilon=0.01, delta=1e-9)
        assert ledger.head()["count"] == before  # nothing was granted or written


@pytest.fixture
def pg_server_or_none(request, location):
    """The PostgreSQL database factory when the case runs on PostgreSQL."""
    return request.getfixturevalue("pg_server") if is_pg(location) else None


def test_the_untampered_ledger_verifies_and_grants(location):
    _filled(location)
    with Ledger.open(location, create=False) as ledger:
        assert ledger.verify() == []
        head = ledger.head()
        assert head["count"] == 11 and len(head["hash"]) == 64 and head["ledger_id"]
        assert ledger.check_head(head) == []
        ledger.reserve(population=POP, release_id="next", epsilon=0.1, delta=1e-6)
        assert ledger.verify() == []


def test_a_moved_ledger_still_verifies(tmp_path):
    # Moving the file is not tampering: its anchors follow its ledger id, not its path.
    first = tmp_path / "a" / "ledger.sqlite"
    _filled(str(first))
    moved = tmp_path / "b" / "moved.sqlite"
    moved.parent.mkdir()
    shutil.move(first, moved)
    with Ledger.open(moved, create=False) as ledger:
        assert ledger.verify() == []
        ledger.reserve(population=POP, release_id="after-move", epsilon=0.1, delta=1e-6)


def test_a_rollback_is_caught_by_a_release_head_even_without_local_anchors(tmp_path):
    # The insider also deletes the anchor files; the head a release recorded still convicts.
    where = str(tmp_path / "ledger.sqlite")
    _filled(where, releases=2)
    shutil.copyfile(where, tmp_path / "older.sqlite")
    with Ledger.open(where) as ledger:
        ledger.reserve(population=POP, release_id="later", epsilon=0.1, delta=1e-6)
        recorded = ledger.head()  # what the release's signed statement holds
    shutil.copyfile(tmp_path / "older.sqlite", where)
    from privsynth.privacy.ledger import anchor_dir

    (anchor_dir() / f"{recorded['ledger_id']}.jsonl").unlink()
    with Ledger.open(where, create=False) as ledger:
        assert ledger.verify() == []  # locally, nothing is left to compare with
    with Ledger.open(where, create=False) as ledger:
        problems = ledger.check_head(recorded)
        assert len(problems) == 1 and "\n" not in problems[0]
        assert "rolled back" in problems[0] or "removed" in problems[0], problems
        assert ledger.check_head(ledger.head()) == []


def test_an_anchor_sink_receives_every_head(tmp_path, monkeypatch):
    sink = tmp_path / "sink" / "anchors.log"
    monkeypatch.setenv("PRIVSYNTH_LEDGER_ANCHOR_SINK", str(sink))
    where = str(tmp_path / "ledger.sqlite")
    _filled(where, releases=2)
    lines = [json.loads(line) for line in sink.read_text().splitlines()]
    assert [a["count"] for a in lines] == [0, 1, 2, 3, 4, 5]
    with Ledger.open(where, create=False) as ledger:
        assert lines[-1]["hash"] == ledger.head()["hash"]
        assert ledger.check_head(lines[-1]) == []


def test_a_forged_anchor_line_is_reported(tmp_path):
    from privsynth.privacy.ledger import anchor_dir

    where = str(tmp_path / "ledger.sqlite")
    _filled(where, releases=1)
    with Ledger.open(where, create=False) as ledger:
        ledger_id = ledger.head()["ledger_id"]
    path = anchor_dir() / f"{ledger_id}.jsonl"
    last = json.loads(path.read_text().splitlines()[-1])
    path.write_text(path.read_text() + json.dumps({**last, "count": 1}) + "\n")
    with Ledger.open(where, create=False) as ledger:
        problems = ledger.verify()
    assert any("anchor" in p and "MAC" in p for p in problems), problems


def test_verify_and_show_of_a_missing_path_are_errors_and_create_nothing(tmp_path):
    from typer.testing import CliRunner

    from privsynth.cli import app

    missing = tmp_path / "typo" / "ledgr.sqlite"
    runner = CliRunner()
    for command in ("verify", "show"):
        done = runner.invoke(app, ["budget", command, "--ledger", str(missing)])
        assert done.exit_code != 0, done.output
        assert "ledgr.sqlite" in done.output and "ok" not in done.output.split()
        assert not missing.exists() and not missing.parent.exists()
    with pytest.raises(LedgerError, match="no ledger"):
        Ledger.open(missing, create=False)
    assert not missing.exists()


def test_the_sketch_key_is_not_in_the_ledger_file(tmp_path):
    where = tmp_path / "ledger.sqlite"
    _filled(str(where), releases=0)
    with Ledger.open(where, create=False) as ledger:
        key = ledger.installation_key()
        assert len(key) == 32
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert key not in blob and key.hex().encode() not in blob
    meta = dict(raw_rows(str(where), "ledger_meta"))
    assert "installation_key" not in meta


def test_a_ledger_is_unreadable_with_another_installations_keys(tmp_path, monkeypatch):
    where = str(tmp_path / "ledger.sqlite")
    _filled(where, releases=1)
    monkeypatch.setenv("PRIVSYNTH_KEY_DIR", str(tmp_path / "elsewhere"))
    from privsynth.keys import load_keys

    load_keys(create=True)
    with Ledger.open(where, create=False) as ledger:
        problems = ledger.verify()
    assert len(problems) == 1 and "installation key" in problems[0], problems
    assert "PRIVSYNTH_KEY_DIR" in problems[0]


# ---------------------------------------------------------------------- migration from schema 2
def _v2_copy(tmp_path: Path) -> str:
    where = tmp_path / "v2.sqlite"
    shutil.copyfile(FIXTURES / "ledger_v2.sqlite", where)
    return str(where)


def test_a_schema_2_ledger_must_be_migrated_explicitly(tmp_path):
    where = _v2_copy(tmp_path)
    with pytest.raises(LedgerError, match="privsynth budget migrate") as err:
        Ledger.open(where)
    assert "\n" not in str(err.value)


def test_migration_is_recorded_keeps_sketches_and_removes_the_key(tmp_path):
    where = _v2_copy(tmp_path)
    old_key = bytes.fromhex(dict(raw_rows(where, "ledger_meta"))["installation_key"])
    result = Ledger.migrate(where, officer="Ann Officer", note="issue 12")
    assert result["from_schema"] == "2" and result["entries"] == 7
    blob = Path(where).read_bytes()
    assert old_key not in blob and old_key.hex().encode() not in blob
    with Ledger.open(where, create=False) as ledger:
        assert ledger.verify() == []
        entries = ledger.entries()
        assert [e["kind"] for e in entries][-1] == "migrate"
        assert entries[-1]["details"]["officer"] == "Ann Officer"
        assert ledger.installation_key() == old_key  # old sketches still compare
        assert dict(ledger.overlaps(people(0))).get(POP, 0) >= 0.9
        assert ledger.spent(POP) == pytest.approx(0.3)
        ledger.reserve(population=POP, release_id="after", epsilon=0.1, delta=1e-6)
        assert ledger.verify() == []
    with pytest.raises(LedgerError, match="schema version 3"):
        Ledger.migrate(where, officer="Ann Officer")


def test_the_pre_migration_history_is_pinned_by_the_migration(tmp_path):
    where = _v2_copy(tmp_path)
    Ledger.migrate(where, officer="Ann Officer")
    # Edit a schema-2 entry and recompute its (unkeyed) links up to the migration entry.
    rows = _entries(where)
    raw_sql(where, ["UPDATE ledger_entries SET epsilon_micro = 1 WHERE seq = 2"])
    statements, params, prev = [], [], "0" * 64
    for row in rows[:-1]:
        row = {**row, "epsilon_micro": 1 if row["seq"] == 2 else row["epsilon_micro"],
               "prev_hash": prev}
        row["hash"] = prev = _unkeyed_hash(row)
        statements.append("UPDATE ledger_entries SET prev_hash = ?, hash = ? WHERE seq = ?")
        params.append((row["prev_hash"], row["hash"], row["seq"]))
    raw_sql(where, statements, params)
    with Ledger.open(where, create=False) as ledger:
        problems = ledger.verify()
    assert any("does not link" in p for p in problems), problems


def test_budget_migrate_command(tmp_path):
    from typer.testing import CliRunner

    from privsynth.cli import app

    where = _v2_copy(tmp_path)
    runner = CliRunner()
    done = runner.invoke(app, ["budget", "migrate", "--ledger", where, "--officer", "Ann"])
    assert done.exit_code == 0, done.output
    assert "migrated" in done.output
    ok = runner.invoke(app, ["budget", "verify", "--ledger", where])
    assert ok.exit_code == 0, ok.output


# ---------------------------------------------------------------------- PostgreSQL table rights
def test_postgres_writer_role_can_only_append(pg_server):
    # The rights docs/ledger.md tells a deployment to set: the releasing role may read and
    # append, never rewrite, delete or switch off the append-only triggers.
    import uuid

    import psycopg

    url = pg_server()
    _filled(url, releases=1)  # the owner (an administrator role) creates the tables
    role = "ps_writer_" + uuid.uuid4().hex[:8]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute("REVOKE ALL ON ledger_entries, ledger_sketches, ledger_meta FROM PUBLIC")
        conn.execute(f"GRANT SELECT, INSERT ON ledger_entries, ledger_sketches TO {role}")
        conn.execute(f"GRANT SELECT, INSERT, UPDATE ON ledger_meta TO {role}")
    writer = url.replace("postgresql://privsynth@", f"postgresql://{role}@")
    with Ledger.open(writer, create=False) as ledger:
        assert ledger.verify() == []
        res = ledger.reserve(population=POP, release_id="as-writer", epsilon=0.1, delta=1e-6)
        ledger.record_charges(res, [Charge("training", "laplace", 0.1, 0.0)])
        assert ledger.verify() == []
    with psycopg.connect(writer, autocommit=True) as conn:
        for attack in ("UPDATE ledger_entries SET epsilon_micro = 1",
                       "DELETE FROM ledger_entries WHERE seq = 2",
                       "DELETE FROM ledger_sketches",
                       "ALTER TABLE ledger_entries DISABLE TRIGGER USER",
                       "DROP TABLE ledger_entries"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(attack)
    with Ledger.open(url, create=False) as ledger:
        assert ledger.verify() == [] and ledger.head()["count"] == 5


def test_a_release_never_creates_a_ledger(tmp_path, adult_policy_path):
    # Old code: a release against a mistyped ledger path created an empty ledger there.
    from privsynth import pipeline
    from privsynth.policy.loader import load_policy

    missing = tmp_path / "typo" / "ledger.sqlite"
    data = Path(__file__).resolve().parents[1] / "privsynth" / "demo" / "adult.csv.gz"
    with pytest.raises(LedgerError, match="no ledger there") as err:
        pipeline.synthesize(data, load_policy(adult_policy_path), ledger=str(missing))
    assert str(missing) in str(err.value) and "privsynth budget register" in str(err.value)
    assert not missing.exists()


def test_an_unwritable_anchor_sink_is_refused_on_open(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("PRIVSYNTH_LEDGER_ANCHOR_SINK", str(blocker / "anchors.log"))
    with pytest.raises(LedgerError, match="anchor sink"):
        Ledger.open(tmp_path / "ledger.sqlite")
    assert not (tmp_path / "ledger.sqlite").exists()


_WRITER = """
import sys
from privsynth.privacy.ledger import Ledger
with Ledger.open(sys.argv[1], create=False) as ledger:
    for i in range(int(sys.argv[2])):
        ledger.reserve(population="ds", release_id=f"w{i}", epsilon=0.001, delta=1e-9)
"""


def test_verify_during_concurrent_releases_reports_nothing(location):
    # A reader's snapshot must hold every write the anchors it reads record; otherwise a
    # release committing (and anchoring) mid-check looks like a truncation.
    import subprocess
    import sys

    _filled(location, releases=0, total=1000.0)
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, location, "60"],
                                stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    seen: list[str] = []
    with Ledger.open(location, create=False) as ledger:
        while any(w.poll() is None for w in writers):
            seen += ledger.verify()
    errors = [w.communicate()[1] for w in writers]
    assert all(w.returncode == 0 for w in writers), errors
    with Ledger.open(location, create=False) as ledger:
        assert ledger.head()["count"] == 121
    assert seen == []


def test_a_ledger_without_its_key_store_is_an_error_that_says_so(tmp_path, monkeypatch):
    where = str(tmp_path / "ledger.sqlite")
    _filled(where, releases=0)
    with Ledger.open(where, create=False) as ledger:
        key_id = ledger.head()["key_id"]
    empty = tmp_path / "no-keys"
    monkeypatch.setenv("PRIVSYNTH_KEY_DIR", str(empty))
    with pytest.raises(LedgerError, match="PRIVSYNTH_KEY_DIR") as err:
        Ledger.open(where, create=False)
    assert key_id in str(err.value) and "\n" not in str(err.value)
    assert not (empty / "installation.key").exists()  # no new keys made for an old ledger


def test_an_auditor_without_write_access_to_the_key_store_can_still_verify(tmp_path,
                                                                          monkeypatch):
    # The anchors folder is read-only for an auditor: opening a ledger at a new place cannot
    # bind it, which must not stop the check (creating a ledger there, though, is refused).
    import privsynth.privacy.ledger as ledger_module

    first = tmp_path / "a.sqlite"
    _filled(str(first), releases=0)
    moved = tmp_path / "moved.sqlite"
    shutil.move(first, moved)  # a place the anchors do not know yet
    real = ledger_module._append_line

    def read_only(path: Path, line: str) -> None:
        if path.parent == ledger_module.anchor_dir():
            raise PermissionError(13, "Permission denied", str(path))
        real(path, line)

    monkeypatch.setattr(ledger_module, "_append_line", read_only)
    with Ledger.open(moved, create=False) as ledger:
        assert ledger.verify() == []
        with pytest.raises(LedgerError, match="anchor could not be written"):
            ledger.reserve(population=POP, release_id="r", epsilon=0.1, delta=1e-6)
    with pytest.raises(LedgerError, match="anchors folder writable"):
        Ledger.open(tmp_path / "new.sqlite")
