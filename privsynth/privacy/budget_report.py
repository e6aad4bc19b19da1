"""What the ``privsynth budget`` commands do and print, as plain functions."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from privsynth.privacy.ledger import (
    DEFAULT_TOTAL_DELTA,
    ENV_VAR,
    Ledger,
    default_ledger_location,
    home_ledger_location,
)


def resolve_ledger_location(ledger: str | None, policy_path: Path | None) -> str:
    """``--ledger`` wins; else the policy's rule (env, ``budget.ledger``, home default)."""
    if ledger:
        return ledger
    if policy_path is not None:
        from privsynth.policy.loader import load_policy

        return default_ledger_location(load_policy(policy_path), policy_path)
    env = os.environ.get(ENV_VAR, "").strip()
    return env or home_ledger_location()


def register_population(ledger: Ledger, console: Console, population: str, *, data: Path,
                        total_epsilon: float, total_delta: float = DEFAULT_TOTAL_DELTA,
                        officer: str, note: str = "", composition: str = "sum",
                        allow_overlap_with: Sequence[str] = ()) -> dict[str, Any]:
    """Sketch ``data`` (read as text, or Parquet) and register ``population``. Prints the
    outcome: never a cell value and never a row count."""
    sketch = ledger.sketch(data)
    result = ledger.register(population, total_epsilon=total_epsilon, total_delta=total_delta,
                             sketch=sketch, officer=officer, note=note, composition=composition,
                             allow_overlap_with=allow_overlap_with)
    facts = (f"total ε={result['total_epsilon']:g}, δ={result['total_delta']:g}, "
             f"composition {result['composition']}")
    if result["created"]:
        console.print(f"[green]registered[/] population '{population}' in {ledger.location}: "
                      f"{facts}; officer {officer}")
        for other in result["allow_overlap_with"]:
            console.print(f"[yellow]recorded:[/] the officer accepted an overlap with '{other}'")
    else:
        console.print(f"[green]already registered[/] population '{population}' with the same "
                      f"totals and table ({facts}); nothing changed")
    return result


def set_population_total(ledger: Ledger, console: Console, population: str, *,
                         total_epsilon: float | None, total_delta: float | None, officer: str,
                         reason: str) -> dict[str, Any]:
    """Record a new total for ``population`` and print it."""
    result = ledger.set_total(population, total_epsilon=total_epsilon, total_delta=total_delta,
                              officer=officer, reason=reason)
    console.print(f"[green]recorded[/] new total for '{population}': "
                  f"ε={result['total_epsilon']:g}, δ={result['total_delta']:g} "
                  f"(spent ε={result['spent_epsilon']:.6g}, Σδ={result['spent_delta']:.3g}); "
                  f"officer {officer}")
    return result


def show_budget(ledger: Ledger, console: Console, *, population: str | None = None) -> int:
    """Print every registered population: totals, ε spent, Σδ, releases; then each one's
    releases and recorded total changes. Returns the number of populations shown. A ledger
    that fails its check is said so first (its figures cannot be trusted)."""
    problems = ledger.verify()
    if problems:
        console.print(f"[bold red]warning:[/] the ledger {escape(ledger.location)} does not "
                      f"verify ({len(problems)} problem(s); first: {escape(problems[0])}); the "
                      "figures below cannot be trusted: run `privsynth budget verify`")
    summaries = ledger.populations()
    if population:
        summaries = [s for s in summaries if s["population"] == population]
    if not summaries:
        what = f"population '{population}' is not" if population else "no population is"
        console.print(f"{what} registered in {ledger.location}")
        return 0
    overview = Table(title=f"Privacy budget — {ledger.location}")
    for col in ("population", "composition", "releases", "ε total", "ε spent", "ε remaining",
                "δ total", "Σδ spent", "officer", "registered (UTC)"):
        overview.add_column(col, justify="right" if col[0] in "εδΣ" or col == "releases"
                            else "left")
    for s in summaries:
        spent = f"{s['spent_epsilon']:.6g}"
        if s["composition"] == "accountant":
            spent += f" (sum {s['spent_epsilon_sum']:.6g})"
        overview.add_row(s["population"], s["composition"], str(len(s["releases"])),
                         f"{s['total_epsilon']:.6g}", spent, f"{s['remaining_epsilon']:.6g}",
                         f"{s['total_delta']:.3g}", f"{s['spent_delta']:.3g}", s["officer"],
                         s["registered_at"][:19])
    console.print(overview)
    for s in summaries:
        _show_population(ledger, console, s)
    return len(summaries)


def _show_population(ledger: Ledger, console: Console, summary: dict[str, Any]) -> None:
    entries = ledger.entries(summary["population"])
    if summary["changes"] or summary["allow_overlap_with"] or summary["note"]:
        if summary["note"]:
            console.print(f"{summary['population']}: note: {summary['note']}")
        for other, score in summary["allow_overlap_with"].items():
            console.print(f"{summary['population']}: registered with an accepted overlap with "
                          f"'{other}' ({score:.2f})")
        for change in summary["changes"]:
            console.print(f"{summary['population']}: total set to ε={change['total_epsilon']:g}, "
                          f"δ={change['total_delta']:g} on {change['ts'][:19]} by "
                          f"{change['officer']}: {change['reason']}")
    if not summary["releases"]:
        return
    releases = Table(title=f"Releases of {summary['population']}")
    for col in ("release", "reserved at (UTC)", "ε reserved", "δ reserved",
                "ε of recorded runs", "mechanisms"):
        releases.add_column(col, justify="right" if col[0] in "εδ" else "left")
    rows: dict[str, dict[str, Any]] = {}
    for e in entries:
        if e["kind"] not in ("reserve", "charge", "overrun"):
            continue
        rel = rows.setdefault(e["release_id"], {"ts": e["ts"], "reserved": 0.0, "delta": 0.0,
                                                "charged": 0.0, "mechanisms": []})
        if e["kind"] in ("reserve", "overrun"):
            rel["reserved"] += e["epsilon"]
            rel["delta"] += e["delta"]
        else:
            rel["charged"] += e["epsilon"]
            rel["mechanisms"].append(e["details"]["mechanism"])
    for release_id, rel in rows.items():
        ran = rel["mechanisms"]
        summary_text = ", ".join(f"{m}×{ran.count(m)}" for m in dict.fromkeys(ran)) or \
            "none recorded (counted as reserved)"
        releases.add_row(release_id, rel["ts"][:19], f"{rel['reserved']:.6g}",
                         f"{rel['delta']:.3g}", f"{rel['charged']:.6g}", summary_text)
    console.print(releases)


def verify_ledger(ledger: Ledger, console: Console) -> list[str]:
    """Print the ledger's check (keyed chain, sketches, anchors); returns the problems (empty
    when intact)."""
    problems = ledger.verify()
    head = ledger.head()
    for problem in problems:
        console.print(f"[red]problem:[/] {escape(problem)}")
    if problems:
        console.print(f"[bold red]the ledger {escape(ledger.location)} does not verify[/] "
                      f"({len(problems)} problem(s))")
    else:
        console.print(f"[green]ok[/] {escape(ledger.location)}: {head['count']} entries; keyed "
                      "chain, population sketches and anchors intact (ledger "
                      f"{head['ledger_id']}, head {head['hash'][:16]})")
    return problems
