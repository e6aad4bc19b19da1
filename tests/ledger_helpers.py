"""Test helpers for the budget ledger: a registered ledger as a privacy officer sets it up, a
throw-away PostgreSQL server, and raw access to a ledger behind privsynth's back (what an insider
with the file or database could do)."""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from privsynth.privacy.ledger import Ledger
from privsynth.privacy.population import read_population_table

TABLES = ("ledger_meta", "ledger_entries", "ledger_sketches")
TRIGGERS = ("ledger_entries_no_update", "ledger_entries_no_delete",
            "ledger_sketches_no_update", "ledger_sketches_no_delete")


def registered_ledger(path: str | Path, population: str, frame_or_path: pd.DataFrame | str | Path,
                      total_epsilon: float = 10.0, total_delta: float = 1e-5, *,
                      composition: str = "sum", person_id: str | None = None,
                      max_rows_per_person: int | None = None) -> str:
    """Open (creating) the ledger at ``path``, register ``population`` with the given totals and
    the table's keyed sketch (a DataFrame, or a CSV/Parquet file read as the CLI reads it), and
    return the ledger location. Re-registering the same population with the same totals and
    table is a no-op. ``person_id`` and ``max_rows_per_person`` (both or neither) register it
    person-keyed (docs/ledger.md, "Privacy units")."""
    location = str(path)
    table = (read_population_table(frame_or_path) if isinstance(frame_or_path, str | Path)
             else frame_or_path)
    with Ledger.open(location) as book:
        book.register(population, total_epsilon=total_epsilon, total_delta=total_delta,
                      sketch=book.sketch(table), officer="test officer",
                      composition=composition, person_id=person_id,
                      max_rows_per_person=max_rows_per_person)
    return location


def people(seed: int = 0, n: int = 400) -> pd.DataFrame:
    """A small table of distinct people (as text, the way the register command reads it)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "person": [f"p{seed}-{i:05d}" for i in range(n)],
        "age": rng.integers(18, 90, n).astype(str),
        "income": rng.integers(1000, 99999, n).astype(str),
        "city": rng.choice(["Lyon", "Graz", "Oslo", "Turku"], n),
    })


# ---------------------------------------------------------------------- PostgreSQL server
def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    for candidate in [shutil.which("pg_ctl"), *found]:
        if candidate and Path(candidate).exists():
            return Path(candidate).resolve().parent
    return None


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="session")
def pg_server():
    """Start a throw-away PostgreSQL server on a Unix socket; yield a URL factory (one fresh
    database per call)."""
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


@pytest.fixture(params=["sqlite", "postgres"])
def location(request, tmp_path) -> str:
    """A fresh ledger location: a SQLite file, or a new database on the test PostgreSQL server."""
    if request.param == "sqlite":
        return str(tmp_path / "ledger.sqlite")
    return request.getfixturevalue("pg_server")()


def is_pg(location: str) -> bool:
    """True for a ``postgresql://`` location."""
    return location.startswith("postgresql://")


# ---------------------------------------------------------------------- behind privsynth's back
def raw_sql(location: str, statements: list[str], params: list[tuple] | None = None) -> None:
    """Run SQL on the ledger with the append-only triggers out of the way, as an attacker with
    file or database-owner access could."""
    params = params or [()] * len(statements)
    if is_pg(location):
        import psycopg

        with psycopg.connect(location, autocommit=True) as conn:
            conn.execute("ALTER TABLE ledger_entries DISABLE TRIGGER USER")
            conn.execute("ALTER TABLE ledger_sketches DISABLE TRIGGER USER")
            for s, p in zip(statements, params, strict=True):
                conn.execute(s.replace("?", "%s"), p)
            conn.execute("ALTER TABLE IF EXISTS ledger_entries ENABLE TRIGGER USER")
            conn.execute("ALTER TABLE IF EXISTS ledger_sketches ENABLE TRIGGER USER")
    else:
        conn = sqlite3.connect(location, isolation_level=None)
        for trigger in TRIGGERS:
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        for s, p in zip(statements, params, strict=True):
            conn.execute(s, p)
        conn.close()


def raw_rows(location: str, table: str, order: str = "") -> list[tuple[Any, ...]]:
    """Every row of a ledger table, read directly."""
    sql = f"SELECT * FROM {table}" + (f" ORDER BY {order}" if order else "")
    if is_pg(location):
        import psycopg

        with psycopg.connect(location, autocommit=True) as conn:
            return list(conn.execute(sql).fetchall())
    conn = sqlite3.connect(location)
    try:
        return list(conn.execute(sql).fetchall())
    finally:
        conn.close()


def snapshot(location: str) -> dict[str, list[tuple[Any, ...]]]:
    """A copy of every ledger table (a backup, as an insider might keep one)."""
    return {t: raw_rows(location, t) for t in TABLES}


def restore(location: str, snap: dict[str, list[tuple[Any, ...]]]) -> None:
    """Replace every ledger table's content by ``snap`` (a rollback, or another ledger swapped
    in); the tables themselves stay."""
    statements, params = [], []
    for table in TABLES:
        statements.append(f"DELETE FROM {table}")
        params.append(())
        for row in snap[table]:
            statements.append(f"INSERT INTO {table} VALUES ({', '.join('?' for _ in row)})")
            params.append(tuple(row))
    raw_sql(location, statements, params)


def drop_tables(location: str) -> None:
    """Remove the ledger from its database altogether."""
    raw_sql(location, [f"DROP TABLE {t}" for t in TABLES])
