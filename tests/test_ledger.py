"""The privacy-budget ledger: exact budget edge, concurrency, crash safety, tamper evidence.

Concurrency and tamper tests run against SQLite always, and against a real PostgreSQL server that
the tests start themselves when ``initdb``/``pg_ctl`` and psycopg are available (skipped with a
visible reason otherwise).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import ledger_helpers
import numpy as np
import pandas as pd
import pytest
from ledger_helpers import people, raw_sql

from privsynth.errors import BudgetExceededError, LedgerError, PolicyError
from privsynth.policy.loader import parse_policy
from privsynth.privacy.events import Charge
from privsynth.privacy.ledger import Ledger, default_ledger_location, from_micro, to_micro
from privsynth.privacy.population import canonical_text, read_population_table

pg_server = ledger_helpers.pg_server  # fixtures: a throw-away PostgreSQL server ...
location = ledger_helpers.location  # ... and a fresh SQLite or PostgreSQL ledger location
POP = "ds"
ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "privsynth" / "demo" / "adult.csv.gz"


def _people(seed: int = 0, n: int = 400) -> pd.DataFrame:
    """A small table of distinct people (as text, the way the register command reads it)."""
    return people(seed, n)


def _register(ledger: Ledger, population: str = POP, total: float = 1.0,
              total_delta: float = 1e-3, composition: str = "sum", seed: int = 0) -> dict:
    return ledger.register(population, total_epsilon=total, total_delta=total_delta,
                           sketch=ledger.sketch(_people(seed)), officer="officer",
                           composition=composition)


def _raw(location: str, statements: list[str]) -> None:
    """Tamper with the ledger behind privsynth's back, as an attacker with file/DB access could."""
    raw_sql(location, statements)


def _reserve(ledger: Ledger, eps: float = 0.01, release: str = "r", delta: float = 1e-6,
             population: str = POP):
    return ledger.reserve(population=population, release_id=release, epsilon=eps, delta=delta)


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
        _register(ledger)
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
        assert ledger.spent(POP) == 1.0
        assert ledger.verify() == []


def test_refusal_names_requested_remaining_difference(tmp_path):
    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        _register(ledger)
        _reserve(ledger, eps=0.7)
        with pytest.raises(BudgetExceededError) as err:
            _reserve(ledger, eps=0.5)
        assert err.value.requested == 0.5
        assert err.value.remaining == pytest.approx(0.3)
        assert "population 'ds'" in str(err.value)
        assert "privsynth budget set-total ds" in str(err.value)
        assert ledger.spent(POP) == 0.7  # a refusal spends nothing


def test_charges_never_refund_and_overrun_is_charged(tmp_path):
    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        _register(ledger, total=10)
        res = _reserve(ledger, eps=1.0)
        ledger.record_charges(res, [Charge("encoding", "laplace_histogram", 0.1, 0.0, "age")])
        assert ledger.spent(POP) == 1.0  # ran less than reserved: still spent in full
        res2 = _reserve(ledger, eps=1.0, release="r2")
        ledger.record_charges(res2, [Charge("training", "laplace", 1.5, 0.0)])
        assert ledger.spent(POP) == 2.5  # ran more than reserved: the overrun is charged
        kinds = [e["kind"] for e in ledger.entries(POP)]
        assert kinds == ["register", "reserve", "charge", "reserve", "charge", "overrun"]
        assert ledger.verify() == []


def test_charges_need_a_known_reservation(tmp_path):
    with Ledger.open(tmp_path / "a.sqlite") as a, Ledger.open(tmp_path / "b.sqlite") as b:
        _register(a)
        res = _reserve(a)
        with pytest.raises(LedgerError, match="not in this ledger"):
            b.record_charges(res, [])


def test_composed_epsilon_is_tighter_than_the_sum_and_never_below_what_ran(tmp_path):
    from privsynth.privacy.accounting import dpsgd_charge

    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        _register(ledger, total=100, composition="accountant")
        runs = []
        for i in range(3):
            charge = dpsgd_charge(sigma=1.2, q=0.01, steps=500, delta=1e-6, accountant="rdp",
                                  max_grad_norm=1.0)
            res = _reserve(ledger, eps=charge.epsilon + 0.1, release=f"r{i}")
            ledger.record_charges(res, [Charge("encoding", "laplace", 0.1, 0.0), charge])
            runs.append(charge.epsilon)
        plain = ledger.spent(POP)
        composed = ledger.composed_epsilon(POP, accountant="rdp")
        assert composed < plain
        assert composed >= max(runs) + 0.3 - 1e-9
        # A reservation with no recorded charges (a crashed run) counts in full.
        _reserve(ledger, eps=0.5, release="crashed")
        assert ledger.composed_epsilon(POP, "rdp") == pytest.approx(composed + 0.5)


def test_accountant_composition_budget_check(tmp_path):
    from privsynth.privacy.accounting import dpsgd_charge

    charge = dpsgd_charge(sigma=1.0, q=0.02, steps=300, delta=1e-6, accountant="rdp",
                          max_grad_norm=1.0)
    total = 2.2 * charge.epsilon
    for composition in ("accountant", "sum"):
        with Ledger.open(tmp_path / f"{composition}.sqlite") as ledger:
            _register(ledger, total=total, composition=composition)
            for i in range(2):
                res = _reserve(ledger, eps=charge.epsilon, release=f"r{i}")
                ledger.record_charges(res, [charge])
            # By the plain sum the budget is nearly gone; composed, there is room for a run.
            assert total - ledger.spent(POP) < 0.25 * charge.epsilon
            assert total - ledger.composed_epsilon(POP, "prv") > 0.25 * charge.epsilon
            if composition == "sum":
                with pytest.raises(BudgetExceededError):
                    _reserve(ledger, eps=0.25 * charge.epsilon, release="check")
            else:
                _reserve(ledger, eps=0.25 * charge.epsilon, release="check")


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
        budget: {ledger: state/ledger.sqlite}
        columns: {a: {kind: integer, bounds: [0, 1]}}
        """)
    policy = parse_policy(text)
    monkeypatch.delenv("PRIVSYNTH_LEDGER", raising=False)
    assert default_ledger_location(policy, tmp_path / "p.yaml") == str(
        tmp_path.resolve() / "state" / "ledger.sqlite")
    monkeypatch.setenv("PRIVSYNTH_LEDGER", "/x/y.sqlite")
    assert default_ledger_location(policy, tmp_path / "p.yaml") == "/x/y.sqlite"
    monkeypatch.delenv("PRIVSYNTH_LEDGER")
    bare = parse_policy(text.replace("{ledger: state/ledger.sqlite}", "{}"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert default_ledger_location(bare, None) == str(
        tmp_path / ".local" / "share" / "privsynth" / "ledger.sqlite")


def test_not_a_ledger_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError, match="not a usable SQLite ledger"):
        Ledger.open(bad)


def test_a_version_1_ledger_says_how_to_proceed(tmp_path):
    import sqlite3

    old = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(old)
    conn.execute("CREATE TABLE ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("INSERT INTO ledger_meta VALUES ('schema_version', '1')")
    conn.execute("CREATE TABLE ledger_entries (seq INTEGER PRIMARY KEY, fingerprint TEXT, "
                 "dataset_id TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(LedgerError) as err:
        Ledger.open(old)
    text = str(err.value)
    assert "schema version 1" in text and "new ledger" in text
    assert "privsynth budget register" in text


# ---------------------------------------------------------------------- populations
def test_reserve_needs_a_registered_population(tmp_path):
    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        with pytest.raises(LedgerError) as err:
            _reserve(ledger, population="nobody")
        assert "privsynth budget register nobody --total-epsilon" in str(err.value)
        assert ledger.entries() == []  # nothing granted, nothing written


def test_a_policy_cannot_set_or_raise_the_total(tmp_path):
    # Old code: every policy carried budget.total_epsilon and the ledger took the cap from it,
    # so a new policy with a larger total lifted the cap.
    raised = textwrap.dedent("""\
        name: t
        dataset: {id: ds}
        privacy: {epsilon: 1}
        budget: {total_epsilon: 1000}
        columns: {a: {kind: integer, bounds: [0, 1]}}
        """)
    with pytest.raises(PolicyError) as err:
        parse_policy(raised)
    assert "privsynth budget register" in str(err.value)
    assert "privsynth budget set-total" in str(err.value)
    with pytest.raises(PolicyError, match="--composition"):
        parse_policy(raised.replace("{total_epsilon: 1000}", "{composition: accountant}"))
    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        _register(ledger, total=1.0)
        with pytest.raises(TypeError):
            ledger.reserve(population=POP, release_id="r", epsilon=0.5, delta=1e-6,
                           total_epsilon=1000)  # type: ignore[call-arg]
        _reserve(ledger, eps=1.0)
        with pytest.raises(BudgetExceededError):
            _reserve(ledger, eps=0.01, release="again")


def test_register_once_and_a_rerun_is_a_no_op(tmp_path):
    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        first = _register(ledger, total=2.0)
        assert first["created"] is True and first["total_epsilon"] == 2.0
        again = _register(ledger, total=2.0)
        assert again["created"] is False
        assert [e["kind"] for e in ledger.entries()] == ["register"]
        with pytest.raises(LedgerError, match="already registered.*set-total"):
            _register(ledger, total=5.0)  # a second registration cannot raise the total
        with pytest.raises(LedgerError, match="different table"):
            _register(ledger, total=2.0, seed=1)
        assert ledger.population(POP)["total_epsilon"] == 2.0
        assert ledger.population("other") is None


def test_set_total_is_recorded_chained_and_verified(location):
    ledger = Ledger.open(location)
    _register(ledger, total=1.0, total_delta=1e-5)
    _reserve(ledger, eps=1.0)
    with pytest.raises(BudgetExceededError):
        _reserve(ledger, eps=0.5, release="r2")
    with pytest.raises(LedgerError):
        ledger.set_total(POP, total_epsilon=3.0, officer="", reason="why")
    with pytest.raises(LedgerError, match="not registered"):
        ledger.set_total("nobody", total_epsilon=3.0, officer="o", reason="r")
    after = ledger.set_total(POP, total_epsilon=3.0, officer="Dr. Officer",
                             reason="board decision 2024-17")
    assert after["total_epsilon"] == 3.0 and after["total_delta"] == 1e-5
    assert after["changes"][-1]["officer"] == "Dr. Officer"
    entry = ledger.entries(POP)[-1]
    assert entry["kind"] == "set_total"
    assert entry["details"]["reason"] == "board decision 2024-17"
    assert entry["details"]["previous"]["total_epsilon_micro"] == to_micro(1.0)
    _reserve(ledger, eps=0.5, release="r2")
    assert ledger.verify() == []
    ledger.close()
    # Raising the total behind the ledger's back is an edit the chain reveals.
    _raw(location, ["UPDATE ledger_entries SET details = replace(details, "
                    "'\"total_epsilon_micro\":3000000', '\"total_epsilon_micro\":9000000') "
                    "WHERE kind = 'set_total'"])
    with Ledger.open(location) as ledger:
        assert any("it was edited" in p for p in ledger.verify())


def test_delta_is_budgeted(tmp_path):
    # Old code: δ was never summed across releases.
    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        _register(ledger, total=100, total_delta=1e-5)
        for i in range(10):
            _reserve(ledger, eps=0.1, delta=1e-6, release=f"r{i}")
        assert ledger.spent_delta(POP) == pytest.approx(1e-5)
        with pytest.raises(BudgetExceededError) as err:
            _reserve(ledger, eps=0.1, delta=1e-9, release="one-more")
        assert "δ" in str(err.value) and "--total-delta" in str(err.value)
        assert err.value.quantity == "delta"
        # A run whose charges use more δ than it reserved is charged the difference.
        ledger.set_total(POP, total_delta=3e-5, officer="o", reason="more")
        res = _reserve(ledger, eps=0.1, delta=1e-6, release="over")
        ledger.record_charges(res, [Charge("encoding", "threshold_domain", 0.05, 1.5e-6, "c")])
        # 10 x 1e-6, then 1e-6 reserved and 0.5e-6 more charged (the overrun)
        assert ledger.spent_delta(POP) == pytest.approx(1.15e-5)
        assert ledger.population(POP)["spent_delta"] == pytest.approx(1.15e-5)
        assert ledger.entries(POP)[-1]["kind"] == "overrun"


def test_accountant_composition_includes_threshold_delta(tmp_path):
    # Old code: the accountant composition composed DP-SGD at one δ and dropped the threshold
    # mechanisms' δ altogether.
    from privsynth.privacy.accounting import dpsgd_charge, history_epsilon

    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        _register(ledger, total=100, total_delta=1e-4, composition="accountant")
        sgd = [dpsgd_charge(sigma=1.1, q=0.01, steps=400, delta=d, accountant="rdp",
                            max_grad_norm=1.0) for d in (1e-6, 3e-6)]
        threshold = Charge("encoding", "threshold_domain", 0.2, 2e-6, "city")
        for i, charge in enumerate(sgd):
            res = _reserve(ledger, eps=charge.epsilon + 0.2, delta=charge.delta + 2e-6,
                           release=f"r{i}")
            ledger.record_charges(res, [threshold, charge])
        eps, delta = ledger.composed(POP, accountant="rdp")
        expected = history_epsilon([(1.1, 0.01, 400)] * 2, delta=4e-6, accountant="rdp")
        assert eps == pytest.approx(expected + 2 * 0.2)
        assert delta == pytest.approx(4e-6 + 2 * 2e-6)  # δ_A plus every threshold δ
        with pytest.raises(BudgetExceededError, match="δ"):
            _reserve(ledger, eps=0.1, delta=1e-4 - 7e-6, release="too much δ")


def test_reserve_refuses_a_ledger_that_does_not_verify(location):
    ledger = Ledger.open(location)
    _register(ledger, total=1.0)
    _reserve(ledger, eps=0.9)
    ledger.close()
    # Someone lowers a recorded reservation to free budget: old code granted from it.
    _raw(location, ["UPDATE ledger_entries SET epsilon_micro = 1 WHERE kind = 'reserve'"])
    with Ledger.open(location) as ledger:
        with pytest.raises(LedgerError, match="does not verify"):
            _reserve(ledger, eps=0.5, release="r2")
        assert [e["kind"] for e in ledger.entries()] == ["register", "reserve"]


def test_near_copies_are_found_and_cannot_be_registered_again(tmp_path):
    # Old code keyed the budget by an exact content hash: each of these was a fresh budget.
    adult = read_population_table(DEMO)
    adult.to_parquet(tmp_path / "adult.parquet")
    rng = np.random.default_rng(0)
    copies = {
        "one row added": pd.concat([adult, adult.iloc[[0]]]),
        "one row removed": adult.iloc[1:],
        "a column renamed": adult.rename(columns={"age": "years"}),
        "a dropped column edited": adult.assign(fnlwgt=rng.permutation(adult["fnlwgt"].to_numpy())),
        "a column added": adult.assign(extra=rng.integers(0, 10**9, len(adult)).astype(str)),
        "parquet": read_population_table(tmp_path / "adult.parquet"),
    }
    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        ledger.register("adult", total_epsilon=2.0, total_delta=1e-5,
                        sketch=ledger.sketch(DEMO), officer="officer")
        for name, table in copies.items():
            found = dict(ledger.overlaps(table))
            assert found.get("adult", 0) >= 0.9, name
            with pytest.raises(LedgerError, match="near-copy of registered population.*'adult'"):
                ledger.register("adult-copy", total_epsilon=2.0, total_delta=1e-5,
                                sketch=ledger.sketch(table), officer="officer")
        assert [p["population"] for p in ledger.populations()] == ["adult"]


def test_other_people_are_not_flagged_and_an_accepted_overlap_is_recorded(tmp_path):
    adult = read_population_table(DEMO)
    perm = np.random.default_rng(1).permutation(len(adult))
    first, second = adult.iloc[perm[: len(adult) // 2]], adult.iloc[perm[len(adult) // 2:]]
    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        ledger.register("first-half", total_epsilon=1.0, total_delta=1e-5,
                        sketch=ledger.sketch(first), officer="officer")
        assert ledger.overlaps(second) == []
        ledger.register("second-half", total_epsilon=1.0, total_delta=1e-5,
                        sketch=ledger.sketch(second), officer="officer")
        # The officer may register an overlapping table by naming the overlap: recorded.
        both = ledger.register("everyone", total_epsilon=1.0, total_delta=1e-5,
                               sketch=ledger.sketch(adult), officer="officer",
                               allow_overlap_with=["first-half", "second-half"])
        assert set(both["allow_overlap_with"]) == {"first-half", "second-half"}
        register = [e for e in ledger.entries("everyone") if e["kind"] == "register"][0]
        assert register["details"]["allow_overlap_with"]["first-half"] >= 0.9
        assert ledger.verify() == []


def test_the_ledger_stores_no_raw_value(tmp_path):
    table = pd.DataFrame({
        "pt_full_name": ["Zyphora Quenby", "Aldric Vantwell", "Mirelle Ostrava", "Tobiah Krell"],
        "ward_code": ["ward-Kestrel-71", "ward-Heron-522", "ward-Kestrel-71", "ward-Osprey-9"],
        "bank_acct_no": ["193847265", "558201934", "773910482", "610293847"],
        "admission_day": ["1987-06-05", "1991-11-23", "1979-02-14", "2003-08-30"],
        "body_weight_kg": ["71.125", "93.875", "58.625", "82.375"],
    })
    path = tmp_path / "patients.csv"
    table.to_csv(path, index=False)
    folder = tmp_path / "ledger"
    with Ledger.open(folder / "l.sqlite") as ledger:
        ledger.register("patients", total_epsilon=1.0, total_delta=1e-5,
                        sketch=ledger.sketch(path), officer="officer")
        assert ledger.verify() == []
    blob = b"".join(f.read_bytes() for f in sorted(folder.iterdir()))
    assert b"officer" in blob  # the scan does see what the ledger wrote
    for column in table.columns:
        assert column.encode() not in blob
        for value in table[column]:
            for text in {value, canonical_text(value)}:
                assert text.encode() not in blob, text


# ---------------------------------------------------------------------- concurrency
def _worker(location: str, count: int, barrier, results) -> None:
    granted = refused = other = 0
    granted_micro = 0
    ledger = Ledger.open(location)
    barrier.wait()
    for i in range(count):
        try:
            res = ledger.reserve(population=POP, release_id=f"{os.getpid()}-{i}", epsilon=0.01,
                                 delta=1e-6)
            granted += 1
            granted_micro += to_micro(res.epsilon)
        except BudgetExceededError:
            refused += 1
        except Exception:  # noqa: BLE001 - counted and asserted to be zero
            other += 1
    ledger.close()
    results.put((granted, refused, other, granted_micro))


def test_concurrent_reservations_grant_exactly_the_budget(location):
    with Ledger.open(location) as ledger:  # the officer registers once, before any release
        _register(ledger, total=1.0, total_delta=0.5)
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
        assert ledger.spent(POP) == 1.0
        assert len([e for e in ledger.entries(POP) if e["kind"] == "reserve"]) == 100
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
            res = ledger.reserve(population="@POP@", release_id=f"k{i}", epsilon=0.001,
                                 delta=1e-9)
        except BudgetExceededError:
            continue
        print("ACK", res.reservation_id, flush=True)
        ledger.record_charges(res, [Charge("encoding", "laplace", 0.0004, 0.0),
                                    Charge("training", "dp_sgd", 0.0005, 1e-9, None,
                                           {"sigma": 1.0, "q": 0.01, "steps": 10})])
""").replace("@POP@", POP)


def test_sigkill_never_corrupts_or_undercharges(tmp_path):
    location = str(tmp_path / "ledger.sqlite")
    with Ledger.open(location) as ledger:
        _register(ledger, total=1e9, total_delta=0.5)
    rng = random.Random(1234)
    acked: set[str] = set()
    for round_ in range(8):
        proc = subprocess.Popen([sys.executable, "-c", _CRASH_SCRIPT, location],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        if round_ == 0:
            time.sleep(0.02)  # likely inside opening or the first transaction
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
            reserved = {e["reservation_id"] for e in ledger.entries(POP)
                        if e["kind"] == "reserve"}
            assert acked <= reserved  # every acknowledged reservation survived the kill
            assert ledger.spent(POP) >= len(acked) * 0.001 - 1e-12
    assert len(acked) > 10


# ---------------------------------------------------------------------- tamper evidence
def _filled(location: str) -> Ledger:
    ledger = Ledger.open(location)
    _register(ledger)
    for i in range(5):
        res = _reserve(ledger, eps=0.1, release=f"r{i}")
        ledger.record_charges(res, [Charge("training", "laplace", 0.1, 0.0)])
    assert ledger.verify() == []
    return ledger


def test_entries_cannot_be_updated_through_sql(location):
    ledger = _filled(location)
    if location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(location, autocommit=True) as conn:
            with pytest.raises(psycopg.Error):
                conn.execute("UPDATE ledger_entries SET epsilon_micro = 0")
            with pytest.raises(psycopg.Error):
                conn.execute("DELETE FROM ledger_sketches")
    else:
        import sqlite3

        conn = sqlite3.connect(location)
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM ledger_entries WHERE seq = 1")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE ledger_sketches SET sketch = ''")
        conn.close()
    ledger.close()


@pytest.mark.parametrize(
    ("attack", "expected"),
    [
        (["UPDATE ledger_entries SET epsilon_micro = 1 WHERE seq = 3"], "it was edited"),
        (["DELETE FROM ledger_entries WHERE seq = 4"], "removed"),
        (["DELETE FROM ledger_entries WHERE seq = 11"], "ledger head"),
        (["UPDATE ledger_entries SET seq = 100 WHERE seq = 3",
          "UPDATE ledger_entries SET seq = 3 WHERE seq = 4",
          "UPDATE ledger_entries SET seq = 4 WHERE seq = 100"], "does not link"),
        (["UPDATE ledger_entries SET details = replace(details, '\"total_epsilon_micro\":1000000',"
          " '\"total_epsilon_micro\":9000000') WHERE kind = 'register'"], "it was edited"),
        (["UPDATE ledger_sketches SET sketch = replace(sketch, 'A', 'B')"],
         "does not match the digest"),
        (["DELETE FROM ledger_sketches"], "sketch of population 'ds' is missing"),
    ],
    ids=["edit", "delete", "truncate", "reorder", "raise-total", "edit-sketch", "drop-sketch"],
)
def test_verify_detects_tampering(location, attack, expected):
    ledger = _filled(location)
    ledger.close()
    _raw(location, attack)
    with Ledger.open(location) as ledger:
        problems = ledger.verify()
        assert problems, "tampering went unnoticed"
        assert any(expected in p for p in problems), problems
        with pytest.raises(LedgerError, match="does not verify"):
            _reserve(ledger, eps=0.01, release="after-tampering")


# ---------------------------------------------------------------------- CLI
def test_budget_cli_register_set_total_show_verify(tmp_path):
    from typer.testing import CliRunner

    from privsynth.cli import app

    location = str(tmp_path / "ledger.sqlite")
    data = tmp_path / "people.csv"
    _people(3).to_csv(data, index=False)
    runner = CliRunner()
    register = ["budget", "register", "clinic", "--total-epsilon", "2", "--data", str(data),
                "--officer", "Ann Officer", "--note", "ward data", "--ledger", location]
    done = runner.invoke(app, register)
    assert done.exit_code == 0, done.output
    assert "registered" in done.output
    again = runner.invoke(app, register)  # a documented command can be re-run
    assert again.exit_code == 0 and "already registered" in again.output
    output = done.output + again.output
    table = _people(3)
    for value in [*table["person"], *table["income"]]:
        assert value not in output  # no data value ...
    assert "400" not in output  # ... and no row count
    copy = tmp_path / "copy.parquet"
    table.rename(columns={"person": "id"}).iloc[1:].to_parquet(copy)
    refused = runner.invoke(app, ["budget", "register", "clinic-copy", "--total-epsilon", "2",
                                  "--data", str(copy), "--officer", "Bob", "--ledger", location])
    assert refused.exit_code == 1 and "near-copy" in refused.output
    with Ledger.open(location) as ledger:
        _reserve(ledger, eps=1.5, population="clinic")
    changed = runner.invoke(app, ["budget", "set-total", "clinic", "--total-epsilon", "4",
                                  "--officer", "Ann Officer", "--reason", "approved",
                                  "--ledger", location])
    assert changed.exit_code == 0, changed.output
    shown = runner.invoke(app, ["budget", "show", "--ledger", location], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "clinic" in shown.output and "1.5" in shown.output and "approved" in shown.output
    ok = runner.invoke(app, ["budget", "verify", "--ledger", location])
    assert ok.exit_code == 0, ok.output
    _raw(location, ["DELETE FROM ledger_entries WHERE seq = 2"])
    bad = runner.invoke(app, ["budget", "verify", "--ledger", location])
    assert bad.exit_code == 1
    assert "removed" in bad.output
