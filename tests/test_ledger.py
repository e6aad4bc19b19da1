"""The privacy-budget ledger: exact budget edge, concurrency, crash safety, tamper evidence.

Concurrency and tamper tests run against SQLite always, and against a real PostgreSQL server that
the tests start themselves when ``initdb``/``pg_ctl`` and psycopg are available (skipped with a
visible reason otherwise).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from privsynth.errors import BudgetExceededError, LedgerError
from privsynth.policy.loader import parse_policy
from privsynth.privacy.events import Charge
from privsynth.privacy.ledger import Ledger, default_ledger_location, from_micro, to_micro

FP = "f" * 64


# ---------------------------------------------------------------------- PostgreSQL server
def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    for candidate in [shutil.which("pg_ctl"), *found]:
        if candidate and Path(candidate).exists():
            return Path(candidate).resolve().parent
    return None


@pytest.fixture(scope="session")
def pg_server():
    """Start a throw-away PostgreSQL server on a Unix socket; yield a URL factory."""
    try:
        import psycopg
    except ImportError:
        pytest.skip("PostgreSQL ledger tests skipped: psycopg is not installed "
                    "(pip install 'privsynth[postgres]')")
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL ledger tests skipped: no initdb/pg_ctl found "
                    "(apt-get install -y postgresql)")
    root = Path(tempfile.mkdtemp(prefix="privsynth-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        user = "postgres" if _user_exists("postgres") else "nobody"
        shutil.chown(root, user)
        shutil.chown(sock, user)
        prefix = ["runuser", "-u", user, "--"]
    port = str(random.randint(20000, 60000))
    env = {**os.environ, "LC_ALL": "C"}
    init = subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust",
                           "-U", "privsynth", "--no-sync", "-E", "UTF8"],
                          capture_output=True, text=True, env=env)
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"PostgreSQL ledger tests skipped: initdb failed: {init.stderr[-300:]}")
    opts = f"-k {sock} -p {port} -c listen_addresses='' -c fsync=off -c max_connections=60"
    start = subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-o", opts,
                            "-l", str(root / "log"), "-w", "-t", "60", "start"],
                           capture_output=True, text=True, env=env)
    if start.returncode != 0:
        log = (root / "log").read_text() if (root / "log").exists() else start.stderr
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"PostgreSQL ledger tests skipped: server did not start: {log[-300:]}")
    base = f"postgresql://privsynth@/postgres?host={sock}&port={port}"

    def new_database() -> str:
        name = "ledger_" + uuid.uuid4().hex[:12]
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://privsynth@/{name}?host={sock}&port={port}"

    try:
        yield new_database
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True, env=env)
        shutil.rmtree(root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(params=["sqlite", "postgres"])
def location(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite")
    return request.getfixturevalue("pg_server")()


def _raw(location: str, statements: list[str]) -> None:
    """Tamper with the ledger behind privsynth's back, as an attacker with file/DB access could."""
    if location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(location, autocommit=True) as conn:
            conn.execute("ALTER TABLE ledger_entries DISABLE TRIGGER USER")
            for s in statements:
                conn.execute(s)
    else:
        import sqlite3

        conn = sqlite3.connect(location, isolation_level=None)
        conn.execute("DROP TRIGGER ledger_no_update")
        conn.execute("DROP TRIGGER ledger_no_delete")
        for s in statements:
            conn.execute(s)
        conn.close()


def _reserve(ledger: Ledger, eps: float = 0.01, total: float = 1.0, release: str = "r",
             composition: str = "sum"):
    return ledger.reserve(fingerprint=FP, dataset_id="ds", release_id=release, epsilon=eps,
                          delta=1e-6, total_epsilon=total, composition=composition)


# ---------------------------------------------------------------------- exact arithmetic
def test_micro_epsilon_is_exact_at_the_edge():
    assert to_micro(0.01) == 10_000
    assert to_micro(0.1) == 100_000
    assert to_micro(1e-7) == 1  # requests round up: never under-charge
    assert to_micro(1.0000009, round_up=False) == 1_000_000  # budgets round down
    assert sum(to_micro(0.01) for _ in range(100)) == to_micro(1.0)
    assert from_micro(to_micro(0.3)) == 0.3


def test_serial_reservations_fill_the_budget_exactly(tmp_path):
    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        granted = 0
        for i in range(105):
            try:
                _reserve(ledger, release=f"r{i}")
                granted += 1
            except BudgetExceededError as exc:
                assert exc.requested == 0.01 and exc.remaining == 0.0
                assert "Requested" in str(exc) and "Remaining" in str(exc)
                assert "Difference" in str(exc)
        assert granted == 100
        assert ledger.spent(FP) == 1.0
        assert ledger.verify() == []


def test_refusal_names_requested_remaining_difference(tmp_path):
    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        _reserve(ledger, eps=0.7)
        with pytest.raises(BudgetExceededError) as err:
            _reserve(ledger, eps=0.5)
        assert err.value.requested == 0.5
        assert err.value.remaining == pytest.approx(0.3)
        assert "dataset 'ds'" in str(err.value)
        assert ledger.spent(FP) == 0.7  # a refusal spends nothing


def test_charges_never_refund_and_overrun_is_charged(tmp_path):
    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        res = _reserve(ledger, eps=1.0, total=10)
        ledger.record_charges(res, [Charge("encoding", "laplace_histogram", 0.1, 0.0, "age")])
        assert ledger.spent(FP) == 1.0  # ran less than reserved: still spent in full
        res2 = _reserve(ledger, eps=1.0, total=10, release="r2")
        ledger.record_charges(res2, [Charge("training", "laplace", 1.5, 0.0)])
        assert ledger.spent(FP) == 2.5  # ran more than reserved: the overrun is charged
        kinds = [e["kind"] for e in ledger.entries(FP)]
        assert kinds == ["reserve", "charge", "reserve", "charge", "overrun"]
        assert ledger.verify() == []


def test_charges_need_a_known_reservation(tmp_path):
    with Ledger.open(tmp_path / "a.sqlite") as a, Ledger.open(tmp_path / "b.sqlite") as b:
        res = _reserve(a)
        with pytest.raises(LedgerError, match="not in this ledger"):
            b.record_charges(res, [])


def test_composed_epsilon_is_tighter_than_the_sum_and_never_below_what_ran(tmp_path):
    from privsynth.privacy.accounting import dpsgd_charge

    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        runs = []
        for i in range(3):
            charge = dpsgd_charge(sigma=1.2, q=0.01, steps=500, delta=1e-6, accountant="rdp",
                                  max_grad_norm=1.0)
            res = _reserve(ledger, eps=charge.epsilon + 0.1, total=100, release=f"r{i}")
            ledger.record_charges(res, [Charge("encoding", "laplace", 0.1, 0.0), charge])
            runs.append(charge.epsilon)
        plain = ledger.spent(FP)
        composed = ledger.composed_epsilon(FP, delta=1e-6, accountant="rdp")
        assert composed < plain
        assert composed >= max(runs) + 0.3 - 1e-9
        # A reservation with no recorded charges (a crashed run) counts in full.
        _reserve(ledger, eps=0.5, total=100, release="crashed")
        assert ledger.composed_epsilon(FP, 1e-6, "rdp") == pytest.approx(composed + 0.5)


def test_accountant_composition_budget_check(tmp_path):
    from privsynth.privacy.accounting import dpsgd_charge

    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        charge = dpsgd_charge(sigma=1.0, q=0.02, steps=300, delta=1e-6, accountant="rdp",
                              max_grad_norm=1.0)
        total = 2.2 * charge.epsilon
        for i in range(2):
            res = _reserve(ledger, eps=charge.epsilon, total=total, release=f"r{i}",
                           composition="accountant")
            ledger.record_charges(res, [charge])
        # By the plain sum the budget is nearly gone; composed, there is room for a small run.
        assert total - ledger.spent(FP) < 0.25 * charge.epsilon
        room = total - ledger.composed_epsilon(FP, 1e-6, "prv")
        assert room > 0.25 * charge.epsilon
        with pytest.raises(BudgetExceededError):
            _reserve(ledger, eps=0.25 * charge.epsilon, total=total, release="sum-check")
        _reserve(ledger, eps=0.25 * charge.epsilon, total=total, release="acc-check",
                 composition="accountant")


def test_installation_key_is_random_and_stable(tmp_path):
    with Ledger.open(tmp_path / "a.sqlite") as a:
        key = a.installation_key()
    with Ledger.open(tmp_path / "a.sqlite") as a2, Ledger.open(tmp_path / "b.sqlite") as b:
        assert a2.installation_key() == key and len(key) == 32
        assert b.installation_key() != key


def test_default_location(tmp_path, monkeypatch):
    text = textwrap.dedent("""\
        name: t
        dataset: {id: d}
        privacy: {epsilon: 1}
        budget: {total_epsilon: 2, ledger: state/ledger.sqlite}
        columns: {a: {kind: integer, bounds: [0, 1]}}
        """)
    policy = parse_policy(text)
    monkeypatch.delenv("PRIVSYNTH_LEDGER", raising=False)
    assert default_ledger_location(policy, tmp_path / "p.yaml") == str(
        tmp_path.resolve() / "state" / "ledger.sqlite")
    monkeypatch.setenv("PRIVSYNTH_LEDGER", "/x/y.sqlite")
    assert default_ledger_location(policy, tmp_path / "p.yaml") == "/x/y.sqlite"
    monkeypatch.delenv("PRIVSYNTH_LEDGER")
    bare = parse_policy(text.replace(", ledger: state/ledger.sqlite", ""))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert default_ledger_location(bare, None) == str(
        tmp_path / ".local" / "share" / "privsynth" / "ledger.sqlite")


def test_not_a_ledger_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match="not a usable SQLite ledger"):
        Ledger.open(bad)


# ---------------------------------------------------------------------- concurrency
def _worker(location: str, count: int, barrier, results) -> None:
    granted = refused = other = 0
    granted_micro = 0
    ledger = Ledger.open(location)
    barrier.wait()
    for i in range(count):
        try:
            res = ledger.reserve(fingerprint=FP, dataset_id="ds",
                                 release_id=f"{os.getpid()}-{i}", epsilon=0.01, delta=1e-6,
                                 total_epsilon=1.0)
            granted += 1
            granted_micro += to_micro(res.epsilon)
        except BudgetExceededError:
            refused += 1
        except Exception:  # noqa: BLE001 - counted and asserted to be zero
            other += 1
    ledger.close()
    results.put((granted, refused, other, granted_micro))


def test_concurrent_reservations_grant_exactly_the_budget(location):
    Ledger.open(location).close()  # create the schema once, like an installation would
    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    procs, total = 16, 1000
    counts = [total // procs + (1 if i < total % procs else 0) for i in range(procs)]
    barrier, results = ctx.Barrier(procs), ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(location, n, barrier, results)) for n in counts]
    for w in workers:
        w.start()
    outcomes = [results.get(timeout=300) for _ in workers]
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    granted = sum(o[0] for o in outcomes)
    refused = sum(o[1] for o in outcomes)
    assert sum(o[2] for o in outcomes) == 0
    assert (granted, refused) == (100, 900)
    assert sum(o[3] for o in outcomes) == to_micro(1.0)
    with Ledger.open(location) as ledger:
        assert ledger.spent(FP) == 1.0
        assert len(ledger.entries(FP)) == 100
        assert ledger.verify() == []


# ---------------------------------------------------------------------- crash safety
_CRASH_SCRIPT = textwrap.dedent("""
    import sys
    from privsynth.errors import BudgetExceededError
    from privsynth.privacy.events import Charge
    from privsynth.privacy.ledger import Ledger
    ledger = Ledger.open(sys.argv[1])
    print("OPEN", flush=True)
    i = 0
    while True:
        i += 1
        try:
            res = ledger.reserve(fingerprint="@FP@", dataset_id="ds", release_id=f"k{i}",
                                 epsilon=0.001, delta=1e-9, total_epsilon=1e9)
        except BudgetExceededError:
            continue
        print("ACK", res.reservation_id, flush=True)
        ledger.record_charges(res, [Charge("encoding", "laplace", 0.0004, 0.0),
                                    Charge("training", "dp_sgd", 0.0005, 1e-9, None,
                                           {"sigma": 1.0, "q": 0.01, "steps": 10})])
""").replace("@FP@", FP)


def test_sigkill_never_corrupts_or_undercharges(tmp_path):
    location = str(tmp_path / "ledger.sqlite")
    rng = random.Random(1234)
    acked: set[str] = set()
    for round_ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", _CRASH_SCRIPT, location],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        if round_ == 0:
            time.sleep(0.02)  # likely inside schema creation or the first transaction
        else:
            assert proc.stdout.readline().startswith("OPEN")
            deadline = time.monotonic() + rng.uniform(0.05, 0.6)
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                if line.startswith("ACK"):
                    acked.add(line.split()[1])
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate()
        acked |= {ln.split()[1] for ln in rest.splitlines() if ln.startswith("ACK")}
        assert proc.returncode == -signal.SIGKILL
        with Ledger.open(location) as ledger:
            assert ledger.verify() == []
            reserved = {e["reservation_id"] for e in ledger.entries(FP) if e["kind"] == "reserve"}
            assert acked <= reserved  # every acknowledged reservation survived the kill
            assert ledger.spent(FP) >= len(acked) * 0.001 - 1e-12
    assert len(acked) > 10


# ---------------------------------------------------------------------- tamper evidence
def _filled(location: str) -> Ledger:
    ledger = Ledger.open(location)
    for i in range(5):
        res = _reserve(ledger, eps=0.1, release=f"r{i}")
        ledger.record_charges(res, [Charge("training", "laplace", 0.1, 0.0)])
    assert ledger.verify() == []
    return ledger


def test_entries_cannot_be_updated_through_sql(location):
    ledger = _filled(location)
    if location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(location, autocommit=True) as conn, pytest.raises(psycopg.Error):
            conn.execute("UPDATE ledger_entries SET epsilon_micro = 0")
    else:
        import sqlite3

        conn = sqlite3.connect(location)
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM ledger_entries WHERE seq = 1")
        conn.close()
    ledger.close()


@pytest.mark.parametrize(
    ("attack", "expected"),
    [
        (["UPDATE ledger_entries SET epsilon_micro = 1 WHERE seq = 3"], "it was edited"),
        (["DELETE FROM ledger_entries WHERE seq = 4"], "removed"),
        (["DELETE FROM ledger_entries WHERE seq = 10"], "ledger head"),
        (["UPDATE ledger_entries SET seq = 100 WHERE seq = 3",
          "UPDATE ledger_entries SET seq = 3 WHERE seq = 4",
          "UPDATE ledger_entries SET seq = 4 WHERE seq = 100"], "does not link"),
    ],
    ids=["edit", "delete", "truncate", "reorder"],
)
def test_verify_detects_tampering(location, attack, expected):
    ledger = _filled(location)
    ledger.close()
    _raw(location, attack)
    with Ledger.open(location) as ledger:
        problems = ledger.verify()
    assert problems, "tampering went unnoticed"
    assert any(expected in p for p in problems), problems


# ---------------------------------------------------------------------- CLI
def test_budget_cli_show_and_verify(tmp_path):
    from typer.testing import CliRunner

    from privsynth.cli import app

    location = str(tmp_path / "ledger.sqlite")
    ledger = _filled(location)
    ledger.close()
    runner = CliRunner()
    shown = runner.invoke(app, ["budget", "show", "--ledger", location])
    assert shown.exit_code == 0, shown.output
    assert "ds" in shown.output and "0.5" in shown.output
    ok = runner.invoke(app, ["budget", "verify", "--ledger", location])
    assert ok.exit_code == 0, ok.output
    _raw(location, ["DELETE FROM ledger_entries WHERE seq = 2"])
    bad = runner.invoke(app, ["budget", "verify", "--ledger", location])
    assert bad.exit_code == 1
    assert "removed" in bad.output
