"""Privacy units in the budget ledger (issue 13): person-keyed populations, reservations at row or
person level, group privacy for row-level releases on person-keyed populations, and what verify
recomputes. docs/ledger.md, "Privacy units"."""

from __future__ import annotations

import json
import math

import ledger_helpers
import pytest
from ledger_helpers import people, raw_rows, raw_sql, registered_ledger
from typer.testing import CliRunner

from privsynth.errors import BudgetExceededError, LedgerError
from privsynth.privacy.events import Charge
from privsynth.privacy.ledger import Ledger, from_micro, group_delta, group_epsilon_micro

pg_server = ledger_helpers.pg_server  # fixtures: a throw-away PostgreSQL server ...
location = ledger_helpers.location  # ... and a fresh SQLite or PostgreSQL ledger location
POP = "visits"


def _register(book: Ledger, population: str = POP, *, total: float = 10.0,
              total_delta: float = 1e-3, person_id: str | None = "patient",
              k: int | None = 4, composition: str = "sum", seed: int = 0) -> dict:
    return book.register(population, total_epsilon=total, total_delta=total_delta,
                         sketch=book.sketch(people(seed)), officer="officer",
                         composition=composition, person_id=person_id,
                         max_rows_per_person=k)


def _row_population(book: Ledger, population: str = "rows", seed: int = 1) -> dict:
    return _register(book, population, person_id=None, k=None, seed=seed)


@pytest.fixture
def book(tmp_path):
    with Ledger.open(tmp_path / "ledger.sqlite") as ledger:
        yield ledger


def _group_delta(eps: float, delta: float, k: int) -> float:
    return k * math.exp((k - 1) * eps) * delta


# ---------------------------------------------------------------------- registration
def test_register_records_the_person_facts_in_the_chained_entry(book):
    created = _register(book, k=16)
    assert created["created"] is True
    assert (created["person_id"], created["max_rows_per_person"]) == ("patient", 16)
    shown = book.population(POP)
    assert (shown["person_id"], shown["max_rows_per_person"]) == ("patient", 16)
    entry = book.entries(POP)[0]
    assert entry["kind"] == "register"
    assert entry["details"]["person_id"] == "patient"
    assert entry["details"]["max_rows_per_person"] == 16
    row = _row_population(book)
    assert (row["person_id"], row["max_rows_per_person"]) == (None, None)
    assert book.verify() == []


def test_helper_registers_a_person_keyed_population(tmp_path):
    where = registered_ledger(tmp_path / "l.sqlite", POP, people(), person_id="patient",
                              max_rows_per_person=3)
    with Ledger.open(where, create=False) as book:
        assert book.population(POP)["max_rows_per_person"] == 3


def test_registering_again_with_the_same_person_facts_changes_nothing(book):
    _register(book, k=4)
    count = len(book.entries())
    again = _register(book, k=4)
    assert again["created"] is False and again["max_rows_per_person"] == 4
    assert len(book.entries()) == count


@pytest.mark.parametrize("change", [
    {"k": 5}, {"person_id": "visit_owner"}, {"person_id": None, "k": None},
])
def test_registering_again_with_other_person_facts_is_refused(book, change):
    _register(book, k=4)
    with pytest.raises(LedgerError, match="already registered.*per person: column patient, "
                                          "at most 4 rows.*set-total"):
        _register(book, **{"k": 4, **change})
    assert len(book.entries()) == 1


def test_a_row_population_cannot_be_registered_again_person_keyed(book):
    _row_population(book, "rows")
    with pytest.raises(LedgerError, match="already registered.*per row"):
        _register(book, "rows", seed=1)


@pytest.mark.parametrize(("person_id", "k", "message"), [
    ("patient", None, "both"),
    (None, 4, "both"),
    ("patient", 0, "max_rows_per_person must be an integer from 1 to 10000"),
    ("patient", 10_001, "from 1 to 10000"),
    ("patient", 2.0, "from 1 to 10000"),
    ("patient", True, "from 1 to 10000"),
    ("", 4, "person_id must be a non-empty string"),
    ("   ", 4, "person_id must be a non-empty string"),
    ("x" * 201, 4, "at most 200 characters"),
    ("pat\nient", 4, "control characters"),
])
def test_register_validates_the_person_facts(book, person_id, k, message):
    with pytest.raises(LedgerError, match=message):
        _register(book, person_id=person_id, k=k)
    assert book.entries() == []


# ---------------------------------------------------------------------- reservations
def test_a_person_level_release_on_a_person_keyed_population_is_debited_as_asked(book):
    _register(book, k=4)
    res = book.reserve(population=POP, release_id="r1", epsilon=0.5, delta=1e-6,
                       unit="person", rows_per_person=4)
    assert (res.epsilon, res.delta) == (0.5, 1e-6)
    assert (res.unit, res.rows_per_person, res.group_factor) == ("person", 4, 1)
    assert (res.requested_epsilon, res.requested_delta) == (0.5, 1e-6)
    assert (res.debited_epsilon, res.debited_delta) == (0.5, 1e-6)
    assert res.spent_after == 0.5
    details = book.entries(POP)[-1]["details"]
    assert details["unit"] == "person" and details["rows_per_person"] == 4
    assert details["group_factor"] == 1 and details["debited_epsilon"] == 0.5
    assert book.verify() == []


def test_a_person_level_release_needs_its_bound_within_the_registered_one(book):
    _register(book, k=4)
    with pytest.raises(LedgerError, match="needs rows_per_person"):
        book.reserve(population=POP, release_id="r", epsilon=0.5, delta=1e-6, unit="person")
    with pytest.raises(LedgerError, match="at most 4 rows per person.*contribution bound.*at "
                                          "most 4"):
        book.reserve(population=POP, release_id="r", epsilon=0.5, delta=1e-6, unit="person",
                     rows_per_person=5)
    with pytest.raises(LedgerError, match="from 1 to 10000"):
        book.reserve(population=POP, release_id="r", epsilon=0.5, delta=1e-6, unit="person",
                     rows_per_person=0)
    with pytest.raises(LedgerError, match="takes none"):
        book.reserve(population=POP, release_id="r", epsilon=0.5, delta=1e-6,
                     rows_per_person=2)
    with pytest.raises(LedgerError, match="'row' or 'person'"):
        book.reserve(population=POP, release_id="r", epsilon=0.5, delta=1e-6, unit="people")
    assert [e["kind"] for e in book.entries(POP)] == ["register"]


@pytest.mark.parametrize(("k", "eps", "delta"), [(4, 0.25, 1e-7), (16, 0.05, 1e-9),
                                                 (2, 1.0, 1e-6)])
def test_a_row_level_release_on_a_person_keyed_population_pays_group_privacy(
        book, k, eps, delta):
    _register(book, k=k, total=100.0, total_delta=0.5)
    res = book.reserve(population=POP, release_id="r", epsilon=eps, delta=delta)
    expected_d = _group_delta(eps, delta, k)
    assert res.epsilon == pytest.approx(k * eps, abs=1e-12)
    assert res.epsilon * 1e6 == pytest.approx(round(k * eps * 1e6))  # exact micro-ε
    assert res.delta == pytest.approx(expected_d, rel=1e-11)
    assert res.delta >= expected_d * (1 - 1e-15)  # rounded up, never under-charged
    assert (res.unit, res.group_factor, res.rows_per_person) == ("row", k, None)
    assert (res.requested_epsilon, res.requested_delta) == (eps, delta)
    assert book.spent(POP) == res.epsilon and book.spent_delta(POP) == res.delta
    entry = book.entries(POP)[-1]
    assert entry["epsilon"] == res.epsilon and entry["delta"] == res.delta
    details = entry["details"]
    assert details["unit"] == "row" and details["group_factor"] == k
    assert (details["requested_epsilon"], details["requested_delta"]) == (eps, delta)
    assert (details["debited_epsilon"], details["debited_delta"]) == (res.epsilon, res.delta)
    assert book.verify() == []


def test_the_worked_example_k16_costs_16_per_row_level_epsilon(book):
    _register(book, k=16, total=40.0, total_delta=0.5)
    res = book.reserve(population=POP, release_id="r", epsilon=1.0, delta=1e-9)
    assert res.epsilon == 16.0
    assert res.delta == pytest.approx(16 * math.exp(15) * 1e-9, rel=1e-11)


def test_group_epsilon_rounds_the_micro_epsilon_up():
    assert group_epsilon_micro(0.3333333, 3) == 1_000_000  # 999,999.9 micro-ε -> up
    assert group_epsilon_micro(1e-7, 3) == 1
    assert group_epsilon_micro(0.1, 16) == 1_600_000
    assert float(group_delta(1.0, 1e-6, 1)) == 1e-6
    assert group_delta(0.5, 0.0, 8) == 0
    assert group_delta(100.0, 1e-6, 16).is_infinite()


def test_group_privacy_refusals_say_why_and_what_costs_less(book):
    _register(book, k=16, total=10.0, total_delta=1e-5)
    with pytest.raises(BudgetExceededError) as eps_err:
        book.reserve(population=POP, release_id="r", epsilon=1.0, delta=0.0)
    text = str(eps_err.value)
    assert eps_err.value.quantity == "epsilon" and eps_err.value.requested == 16.0
    assert "person-keyed" in text and "16·ε = 16" in text and "privacy.unit: person" in text
    # The δ a row-level δ turns into at person level (K·e^((K-1)ε)·δ ≈ 0.05 here) is refused.
    with pytest.raises(BudgetExceededError) as delta_err:
        book.reserve(population=POP, release_id="r", epsilon=0.5, delta=1e-9)
    assert delta_err.value.quantity == "delta"
    assert delta_err.value.requested == pytest.approx(_group_delta(0.5, 1e-9, 16), rel=1e-11)
    assert "privacy.unit: person" in str(delta_err.value)
    # A group δ of 1 or more is refused, never stored (16·e^9·1e-4 ≈ 13).
    with pytest.raises(BudgetExceededError) as huge:
        book.reserve(population=POP, release_id="r", epsilon=0.6, delta=1e-4)
    assert huge.value.quantity == "delta" and huge.value.requested >= 1
    # The same release at person level costs what it asks.
    book.reserve(population=POP, release_id="r", epsilon=1.0, delta=1e-9, unit="person",
                 rows_per_person=16)
    assert book.spent(POP) == 1.0
    assert [e["kind"] for e in book.entries(POP)] == ["register", "reserve"]


def test_a_person_level_release_on_a_row_population_is_refused_with_the_fix(book):
    _row_population(book, "rows")
    with pytest.raises(LedgerError) as err:
        book.reserve(population="rows", release_id="r", epsilon=0.5, delta=1e-6,
                     unit="person", rows_per_person=2)
    text = str(err.value)
    assert "not registered with its person id" in text
    assert "privsynth budget register" in text and "--person-id COL" in text
    assert "--max-rows-per-person K" in text
    assert [e["kind"] for e in book.entries("rows")] == ["register"]


def test_a_row_level_release_on_a_row_population_is_debited_as_asked(book):
    _row_population(book, "rows")
    res = book.reserve(population="rows", release_id="r", epsilon=0.7, delta=1e-6)
    assert (res.epsilon, res.delta, res.unit, res.group_factor) == (0.7, 1e-6, "row", 1)
    details = book.entries("rows")[-1]["details"]
    assert details["unit"] == "row" and details["group_factor"] == 1
    assert book.spent("rows") == 0.7


def test_mixed_units_exhaust_the_person_level_budget(location):
    with Ledger.open(location) as book:
        _register(book, k=4, total=10.0, total_delta=1e-3)
        first = book.reserve(population=POP, release_id="row-1", epsilon=1.0, delta=1e-7)
        assert first.epsilon == 4.0 and first.spent_after == 4.0
        second = book.reserve(population=POP, release_id="person-1", epsilon=3.0, delta=1e-7,
                              unit="person", rows_per_person=4)
        assert second.spent_after == 7.0 and second.remaining_after == 3.0
        with pytest.raises(BudgetExceededError) as err:
            book.reserve(population=POP, release_id="row-2", epsilon=1.0, delta=1e-7)
        assert err.value.quantity == "epsilon"
        assert (err.value.requested, err.value.remaining) == (4.0, 3.0)
        last = book.reserve(population=POP, release_id="person-2", epsilon=3.0, delta=1e-7,
                            unit="person", rows_per_person=1)
        assert last.spent_after == 10.0
        summary = book.population(POP)
        assert summary["spent_epsilon"] == 10.0 and summary["remaining_epsilon"] == 0.0
        assert summary["spent_delta"] == pytest.approx(_group_delta(1.0, 1e-7, 4) + 2e-7)
        assert book.verify() == []


# ---------------------------------------------------------------------- charges, composition
def test_charges_are_compared_with_the_requested_epsilon(book):
    _register(book, k=4, total=20.0, total_delta=1e-3)
    res = book.reserve(population=POP, release_id="fits", epsilon=1.0, delta=1e-7)
    book.record_charges(res, [Charge("encoding", "laplace", 0.4, 0.0),
                              Charge("training", "laplace", 0.6, 1e-7)])
    assert [e["kind"] for e in book.entries(POP)][-1] == "charge"  # no overrun
    assert book.spent(POP) == 4.0
    over = book.reserve(population=POP, release_id="over", epsilon=1.0, delta=1e-7)
    book.record_charges(over, [Charge("training", "laplace", 1.5, 0.0)])
    overrun = book.entries(POP)[-1]
    assert overrun["kind"] == "overrun"
    assert overrun["epsilon"] == 2.0  # 4·1.5 ran at person level, 4·1 was debited
    assert overrun["delta"] == pytest.approx(
        _group_delta(1.5, 1e-7, 4) - _group_delta(1.0, 1e-7, 4), rel=1e-9)
    assert overrun["details"]["group_factor"] == 4
    assert book.spent(POP) == 10.0
    person = book.reserve(population=POP, release_id="person", epsilon=1.0, delta=1e-7,
                          unit="person", rows_per_person=4)
    book.record_charges(person, [Charge("training", "laplace", 1.0, 1e-7)])
    assert book.entries(POP)[-1]["kind"] == "charge"
    assert book.spent(POP) == 11.0
    assert book.verify() == []


def test_accountant_composition_counts_a_group_reservation_as_debited(book):
    from privsynth.privacy.accounting import dpsgd_charge, history_epsilon

    _register(book, k=4, total=100.0, total_delta=1e-3, composition="accountant")
    sgd = dpsgd_charge(sigma=1.1, q=0.01, steps=400, delta=1e-6, accountant="rdp",
                       max_grad_norm=1.0)
    row = book.reserve(population=POP, release_id="row", epsilon=sgd.epsilon, delta=1e-6)
    book.record_charges(row, [sgd])
    person = book.reserve(population=POP, release_id="person", epsilon=sgd.epsilon,
                          delta=1e-6, unit="person", rows_per_person=4)
    book.record_charges(person, [sgd])
    eps, _ = book.composed(POP, accountant="rdp")
    composed_person = history_epsilon([(1.1, 0.01, 400)], delta=1e-6, accountant="rdp")
    # The row-level run is not composed: it counts as its debited 4·ε.
    assert eps == pytest.approx(row.epsilon + composed_person)
    assert row.epsilon == pytest.approx(4 * sgd.epsilon, abs=1e-6)


# ---------------------------------------------------------------------- verify
def _forge_reserve(book: Ledger, population: str, *, micro: int, delta: float,
                   details: dict) -> None:
    """Append a reserve entry through privsynth's own writer (keyed MAC, anchored): what a
    buggy or hand-rolled writer holding the key store could record."""
    with book._write(verified=False) as tx:
        tx.append(kind="reserve", population=population, release_id="forged",
                  reservation_id="f" * 32, epsilon_micro=micro, delta=delta, details=details)


def _unit_details(unit: str, eps: float, delta: float, factor: int,
                  rows: int | None = None) -> dict:
    return {"composition": "sum", "unit": unit, "rows_per_person": rows,
            "requested_epsilon": eps, "requested_delta": delta, "group_factor": factor}


def test_verify_catches_a_sealed_reservation_that_breaks_its_unit_rule(book):
    _register(book, k=4)
    _row_population(book, "rows")
    assert book.verify() == []
    # A row-level reservation on the person-keyed population debited ε as if K were 1.
    _forge_reserve(book, POP, micro=1_000_000, delta=1e-7,
                   details=_unit_details("row", 1.0, 1e-7, 1))
    problems = book.verify()
    assert len(problems) == 1 and "group factor is 1, but the unit rule gives 4" in problems[0]
    with pytest.raises(LedgerError, match="does not verify"):
        book.reserve(population=POP, release_id="next", epsilon=0.1, delta=0.0)


@pytest.mark.parametrize(("population", "micro", "delta", "details", "message"), [
    (POP, 900_000, float(group_delta(0.25, 1e-7, 4)), _unit_details("row", 0.25, 1e-7, 4),
     "debits ε=0.9, but the unit rule gives 1"),
    (POP, 1_000_000, 1e-7, _unit_details("row", 0.25, 1e-7, 4),
     "debits δ=1e-07, but the unit rule gives"),
    (POP, 500_000, 1e-7, _unit_details("person", 0.5, 1e-7, 1, rows=9),
     "keeping 9 rows per person, beyond the registered bound of 4"),
    ("rows", 500_000, 1e-7, _unit_details("person", 0.5, 1e-7, 1, rows=2),
     "person-level reservation of a population registered per row"),
    ("rows", 2_000_000, 1e-7, _unit_details("row", 0.5, 1e-7, 4),
     "group factor is 4, but the unit rule gives 1"),
    (POP, 500_000, 1e-7, {"composition": "sum", "epsilon": 0.5},
     "person-keyed population that records no unit"),
])
def test_verify_recomputes_every_debit(book, population, micro, delta, details, message):
    _register(book, k=4)
    _row_population(book, "rows")
    _forge_reserve(book, population, micro=micro, delta=delta, details=details)
    problems = book.verify()
    assert len(problems) == 1 and message in problems[0], problems


def test_verify_catches_an_edited_group_factor(location):
    with Ledger.open(location) as book:
        _register(book, k=4)
        book.reserve(population=POP, release_id="r", epsilon=1.0, delta=1e-7)
        assert book.verify() == []
    seq, details = next((r[0], r[8]) for r in raw_rows(location, "ledger_entries", "seq")
                        if r[2] == "reserve")
    facts = json.loads(details)
    facts.update(group_factor=1, debited_epsilon=1.0, debited_delta=1e-7)
    # The insider lowers the debit to what a factor of 1 would give, behind privsynth's back.
    raw_sql(location, ["UPDATE ledger_entries SET details = ?, epsilon_micro = ?, delta = ? "
                       "WHERE seq = ?"],
            [(json.dumps(facts, sort_keys=True, separators=(",", ":")), 1_000_000,
              repr(1e-7), seq)])
    with Ledger.open(location, create=False) as book:
        problems = book.verify()
        assert any("does not match its MAC" in p for p in problems), problems
        assert any("group factor is 1, but the unit rule gives 4" in p for p in problems)
        with pytest.raises(LedgerError, match="does not verify"):
            book.reserve(population=POP, release_id="r2", epsilon=0.1, delta=0.0)


def test_reservations_from_before_privacy_units_still_verify(book):
    _row_population(book, "rows")
    # What an earlier privsynth wrote: no unit facts at all.
    _forge_reserve(book, "rows", micro=500_000, delta=1e-6,
                   details={"composition": "sum", "total_epsilon_micro": 10_000_000,
                            "total_delta": "0.001", "epsilon": 0.5})
    assert book.verify() == []
    assert book.spent("rows") == 0.5
    assert from_micro(book.entries("rows")[-1]["epsilon_micro"]) == 0.5


# ---------------------------------------------------------------------- CLI
def test_cli_register_and_show_the_privacy_unit(tmp_path):
    from privsynth.cli import app

    where = str(tmp_path / "ledger.sqlite")
    data, other = tmp_path / "visits.csv", tmp_path / "other.csv"
    people(0).to_csv(data, index=False)
    people(5).to_csv(other, index=False)
    runner = CliRunner()
    register = ["budget", "register", POP, "--total-epsilon", "10", "--data", str(data),
                "--officer", "Ann", "--person-id", "patient", "--max-rows-per-person", "16",
                "--ledger", where]
    done = runner.invoke(app, register)
    assert done.exit_code == 0, done.output
    assert "registered" in done.output
    assert "per person: column patient, at most 16 rows" in done.output
    again = runner.invoke(app, register)
    assert again.exit_code == 0 and "already registered" in again.output
    other_k = runner.invoke(app, [*register[:-4], "--max-rows-per-person", "8",
                                  "--ledger", where])
    assert other_k.exit_code == 1 and "already registered" in other_k.output
    half = runner.invoke(app, ["budget", "register", "half", "--total-epsilon", "1", "--data",
                               str(other), "--officer", "Ann", "--person-id", "patient",
                               "--ledger", where])
    assert half.exit_code == 1 and "--max-rows-per-person" in half.output
    rows = runner.invoke(app, ["budget", "register", "rows", "--total-epsilon", "1", "--data",
                               str(other), "--officer", "Ann", "--ledger", where])
    assert rows.exit_code == 0, rows.output
    assert "per row" in rows.output
    with Ledger.open(where, create=False) as book:
        assert book.population(POP)["max_rows_per_person"] == 16
        assert book.population("rows")["person_id"] is None
    shown = runner.invoke(app, ["budget", "show", "--ledger", where], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert f"{POP}: privacy unit per person: column patient, at most 16 rows" in shown.output
    assert "rows: privacy unit per row" in shown.output
    one = runner.invoke(app, ["budget", "show", "--ledger", where, "--population", "rows"],
                        env={"COLUMNS": "200"})
    assert one.exit_code == 0 and "per person" not in one.output
    ok = runner.invoke(app, ["budget", "verify", "--ledger", where])
    assert ok.exit_code == 0, ok.output
