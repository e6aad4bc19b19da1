"""What ``privsynth budget show`` and ``privsynth budget verify`` print, as plain functions."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from privsynth.privacy.ledger import ENV_VAR, Ledger, default_ledger_location


def resolve_ledger_location(ledger: str | None, policy_path: Path | None) -> str:
    """``--ledger`` wins; else the policy's rule (env, ``budget.ledger``, home default)."""
    if ledger:
        return ledger
    if policy_path is not None:
        from privsynth.policy.loader import load_policy

        return default_ledger_location(load_policy(policy_path), policy_path)
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return env
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return str(base / "privsynth" / "ledger.sqlite")


def show_budget(ledger: Ledger, console: Console, *, accountant: str = "prv",
                dataset: str | None = None) -> int:
    """Print ε spent per population and per release. Returns the number of populations shown."""
    summaries = ledger.datasets()
    if dataset:
        summaries = [d for d in summaries
                     if d["fingerprint"].startswith(dataset) or dataset in d["dataset_ids"]]
    if not summaries:
        console.print(f"no releases recorded in {ledger.location}")
        return 0
    overview = Table(title=f"Privacy budget — {ledger.location}")
    for col in ("dataset", "fingerprint", "releases", "ε spent (sum)",
                f"ε composed ({accountant})", "ε total", "ε remaining"):
        overview.add_column(col, justify="right" if col.startswith(("ε", "rel")) else "left")
    for d in summaries:
        entries = ledger.entries(d["fingerprint"])
        deltas = [e["delta"] for e in entries if e["kind"] == "reserve" and e["delta"] > 0]
        composed = ledger.composed_epsilon(d["fingerprint"], max(deltas) if deltas else 1e-6,
                                           accountant)
        total = d["total_epsilon"]
        remaining = "—" if total is None else f"{max(0.0, total - d['spent']):.6g}"
        overview.add_row(", ".join(d["dataset_ids"]), d["fingerprint"][:12],
                         str(len(d["releases"])), f"{d['spent']:.6g}", f"{composed:.6g}",
                         "—" if total is None else f"{total:.6g}", remaining)
    console.print(overview)
    for d in summaries:
        releases = Table(title=f"Releases of {', '.join(d['dataset_ids'])} "
                               f"({d['fingerprint'][:12]})")
        for col in ("release", "reserved at (UTC)", "ε reserved", "ε of recorded runs",
                    "mechanisms"):
            releases.add_column(col, justify="right" if col.startswith("ε") else "left")
        mechanisms: dict[str, list[str]] = {}
        for e in ledger.entries(d["fingerprint"]):
            if e["kind"] == "charge":
                mechanisms.setdefault(e["release_id"], []).append(e["details"]["mechanism"])
        for release_id, rel in d["releases"].items():
            ran = mechanisms.get(release_id, [])
            summary = ", ".join(f"{m}×{ran.count(m)}" for m in dict.fromkeys(ran)) or \
                "none recorded (counted as reserved)"
            releases.add_row(release_id, rel["ts"][:19], f"{rel['reserved']:.6g}",
                             f"{rel['charged']:.6g}", summary)
        console.print(releases)
    return len(summaries)


def verify_ledger(ledger: Ledger, console: Console) -> list[str]:
    """Print the hash-chain check; returns the problems (empty when intact)."""
    problems = ledger.verify()
    head = ledger.head()
    for problem in problems:
        console.print(f"[red]problem:[/] {problem}")
    if problems:
        console.print(f"[bold red]the ledger {ledger.location} does not verify[/] "
                      f"({len(problems)} problem(s))")
    else:
        console.print(f"[green]ok[/] {ledger.location}: {head['count']} entries, hash chain "
                      f"intact (head {head['hash'][:16]})")
    return problems
