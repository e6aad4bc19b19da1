"""The ``privsynth`` command: a thin layer over the library. Exit codes carry meaning:

0 released (or check passed), 2 blocked by the audit gate, 1 error (nothing released).
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from privsynth.console import PlainConsole, clean, install_logging, plain
from privsynth.errors import PolicyError, PrivsynthError

EXIT_OK, EXIT_ERROR, EXIT_BLOCKED = 0, 1, 2

app = typer.Typer(help="Differentially private synthetic tables, gated by an audit.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
policy_app = typer.Typer(help="Write and check release policies.", no_args_is_help=True)
budget_app = typer.Typer(help="The privacy-budget ledger.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
app.add_typer(budget_app, name="budget")
keys_app = typer.Typer(help="This installation's bundle-signing key.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
report_app = typer.Typer(help="The audit report (internal to the data controller).",
                        no_args_is_help=True)
app.add_typer(report_app, name="report")
#: Progress, logs and errors go to stderr; results (summaries, check reports, tables) to stdout.
#: Every data-derived string is interpolated through ``plain`` (see privsynth.console).
console = PlainConsole(stderr=True)
out_console = PlainConsole(stderr=False)
DEBUG_ENV = "PRIVSYNTH_DEBUG"
DEMO_DATA = Path(__file__).parent / "demo" / "adult.csv.gz"


def main() -> None:
    """Entry point of the ``privsynth`` script. An exception no command expected is a bug: it is
    reported in one line with its type and place, never its message (which may quote a cell of
    the private table), unless ``$PRIVSYNTH_DEBUG`` asks for the traceback."""
    install_logging()
    try:
        app()
    except KeyboardInterrupt:
        console.print("[bold red]interrupted[/]")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        frames = traceback.extract_tb(exc.__traceback__)
        ours = [f for f in frames if "privsynth" in f.filename] or frames
        where = f" at {Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else ""
        console.print(f"[bold red]internal error:[/] {plain(type(exc).__name__)}{plain(where)} "
                      f"(a privsynth bug; set {DEBUG_ENV}=1 for the traceback, which may quote "
                      "private data, and report it)")
        sys.exit(EXIT_ERROR)


def _fail(exc: Exception) -> typer.Exit:
    """Print ``exc`` as an error on stderr (one line per problem, data made inert) and return
    the exit to raise."""
    if isinstance(exc, PolicyError) and len(exc.problems) == 1:
        console.print(f"[bold red]error:[/] {plain(exc.source)}: {plain(exc.problems[0])}")
    elif isinstance(exc, PolicyError):
        console.print(f"[bold red]error:[/] {plain(exc.source)}: {len(exc.problems)} problems:")
        for problem in exc.problems:
            console.print(f"  - {plain(problem)}")
    else:
        console.print(f"[bold red]error:[/] {plain(exc)}")
    return typer.Exit(EXIT_ERROR)


def _fail_file(path: Path, exc: OSError, doing: str, fix: str) -> NoReturn:
    """Exit on an OS error about ``path``: its reason (no traceback) and the fix."""
    reason = exc.strerror or type(exc).__name__
    raise _fail(PrivsynthError(f"{path}: cannot {doing} ({reason}); {fix}"))


# ---------------------------------------------------------------- release


@app.command()
def release(
    data: Annotated[Path, typer.Argument(help="CSV or Parquet table (private).")],
    policy: Annotated[Path, typer.Option("--policy", "-p", help="Policy YAML file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for the release bundle.")],
    ledger: Annotated[str | None, typer.Option(help="Ledger file or postgresql:// URL.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    audits: Annotated[Path | None, typer.Option(
        help="Folder for a second copy of the internal report; none by default.")] = None,
) -> None:
    """Train a DP generator, sample, audit, gate, and write the release bundle."""
    from privsynth.pipeline import synthesize  # noqa: PLC0415 (keeps `--help` fast)
    from privsynth.policy.loader import load_policy  # noqa: PLC0415

    try:
        loaded = load_policy(policy)
        _check_out_is_new(out)  # before the reservation: knowable without reading any cell
        with _LazyProgress() as progress:
            result = synthesize(data, loaded, policy_path=policy, ledger=ledger, device=device,
                                progress=progress.update)
        bundle = result.write(out, audits_dir=audits)
    except PrivsynthError as exc:
        raise _fail(exc) from None
    except OSError as exc:  # e.g. --out under a file, or in a read-only folder
        _fail_file(out, exc, "write the release", "choose a writable, new --out")
    _summary(result, bundle)
    raise typer.Exit(EXIT_OK if result.passed else EXIT_BLOCKED)


def _check_out_is_new(out: Path) -> None:
    if out.exists():
        raise PrivsynthError(f"{clean(out)}: already exists; releases are never overwritten, "
                             "choose a new --out")


class _LazyProgress:
    """A training progress bar that appears at the first DP-SGD step, so an early error is not
    preceded by an empty bar. It shows steps only: the batch loss is computed on real rows
    without noise (not DP), so it is never shown or logged."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task = None

    def __enter__(self) -> _LazyProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, step: int, total: int) -> None:
        if self._progress is None:
            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(),
                TextColumn("{task.completed}/{task.total} steps"), TimeElapsedColumn(),
                TimeRemainingColumn(), console=console, transient=False)
            self._progress.start()
            self._task = self._progress.add_task("DP training", total=total)
        self._progress.update(self._task, completed=step, total=total)


def _summary(result, bundle: Path) -> None:
    privacy = result.manifest["privacy"]
    if result.development_run:
        verdict = "[bold yellow]DEVELOPMENT RUN[/] (seeded: no DP claim, nothing public written)"
    else:
        verdict = "[bold green]RELEASED[/]" if result.passed else "[bold red]BLOCKED[/]"
    say = out_console.print
    say(f"\n{verdict}  release {plain(result.release_id)}")
    say(f"  ε = {privacy['epsilon']:.4f} (allotted {plain(privacy['epsilon_allotted'])}), "
        f"δ = {privacy['delta']:.2e}, {plain(privacy['neighbouring_relation'])}")
    for facts in result.run_record.get("reservations", []):
        say(f"  population {plain(facts['population'])} has now spent "
            f"ε = {facts['population_epsilon_spent_after']:.4f} of "
            f"{plain(facts['population_total_epsilon'])}")
    _print_checks(result.decision)
    where = ("public/synthetic.csv" if result.passed
             else "internal/report.html (internal only; nothing to share)")
    say(f"  bundle: {plain(bundle)}  →  {where}")
    say("  note: the figures and reasons above come from raw data and are not covered "
        "by ε; they stay with the data controller")


def _print_checks(decision) -> None:
    """The gate's checks and reasons, on stdout; names and details are data-derived."""
    for check in decision.checks:
        mark = "[green]pass[/]" if check.passed else "[red]FAIL[/]"
        out_console.print(f"  {mark}  {plain(check.name)}: {plain(_check_text(check))}")
    for reason in decision.reasons:
        out_console.print(f"  [red]reason:[/] {plain(reason)}")


def _check_text(check) -> str:
    upper = getattr(check, "upper_bound", None)
    threshold = getattr(check, "threshold", None)
    if upper is None or threshold is None:
        return str(getattr(check, "detail", ""))
    return f"upper bound {upper:.4f} vs threshold {threshold:.4f}"


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o")] = Path("releases/adult-demo"),
    ledger: Annotated[str, typer.Option(help="Ledger for the demo.")] = ".privsynth/ledger.sqlite",
) -> None:
    """Register the bundled UCI Adult table (total ε = 10, once) and release it under the demo
    policy (ε = 1)."""
    from privsynth.privacy.budget_report import register_population  # noqa: PLC0415
    from privsynth.privacy.ledger import Ledger  # noqa: PLC0415

    policy = Path(__file__).parent / "demo" / "adult-demo.yaml"
    try:
        with Ledger.open(ledger) as book:
            register_population(book, out_console, "uci-adult", data=DEMO_DATA, total_epsilon=10.0,
                                total_delta=1e-5, officer="privsynth demo", note="demo",
                                composition="sum", allow_overlap_with=())
    except PrivsynthError as exc:
        raise _fail(exc) from None
    release(DEMO_DATA, policy, out, ledger=ledger, device=None, audits=None)


def _read_public_key(path: Path | None) -> str | None:
    """The text of a `privsynth keys export` file, or None for this installation's own key."""
    try:
        return path.read_text(encoding="ascii") if path is not None else None
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(PrivsynthError(f"{clean(path)}: cannot read the public key "
                                   f"({type(exc).__name__}); give the file that `privsynth "
                                   "keys export` wrote")) from None


@app.command()
def verify(
    bundle: Annotated[Path, typer.Argument(help="A release bundle folder, or a copy of its "
                                                 "public/ part.")],
    public_key: Annotated[Path | None, typer.Option(
        "--public-key", help="File holding the releasing installation's public key (from "
                             "`privsynth keys export` there); default: this installation's "
                             "own key.")] = None,
    ledger: Annotated[str | None, typer.Option(
        help="The ledger the release charged: its anchored head and the release's charges "
             "must be in it.")] = None,
) -> None:
    """Check a bundle: its signature under the pinned key, the file set, the gate decision,
    every charge recomputed, and (with --ledger) the charges in the ledger."""
    from privsynth.release.verify import NO_PUBLIC_PART, verify_bundle  # noqa: PLC0415

    problems = verify_bundle(bundle, public_key=_read_public_key(public_key), ledger=ledger)
    for problem in problems:
        out_console.print(f"[red]problem:[/] {plain(problem)}")  # names come from the bundle
    if problems:
        raise typer.Exit(EXIT_ERROR)
    if (bundle / "manifest.json").exists():
        out_console.print(f"[green]ok[/] {plain(bundle)}: a public copy signed by the pinned "
                          "key; files match; every charge's ε and δ recompute from its recorded "
                          "inputs")
        return
    if not (bundle / "public").exists():
        out_console.print(f"[green]ok[/] {plain(bundle)}: signed by the pinned key; "
                          f"{NO_PUBLIC_PART}; nothing in it is to be shared")
        return
    out_console.print(f"[green]ok[/] {plain(bundle)}: signed by the pinned key; files match "
                      "the signed statement; every charge's ε and δ recompute from its recorded "
                      "inputs")


@keys_app.command("export")
def keys_export() -> None:
    """Print this installation's public key (64 hex characters; made on first use) for the
    recipients and auditors who verify its bundles: `privsynth keys export > release.pub`."""
    from privsynth.keys import export_public_key, load_keys  # noqa: PLC0415

    try:
        typer.echo(export_public_key(load_keys(create=True)))
    except PrivsynthError as exc:
        raise _fail(exc) from None


@app.command()
def audit(
    real: Annotated[Path, typer.Option("--real", help="Rows the generator trained on.")],
    synthetic: Annotated[Path, typer.Option(help="The synthetic table to audit.")],
    policy: Annotated[Path, typer.Option("--policy", "-p", help="Policy YAML file.")],
    holdout: Annotated[Path | None, typer.Option(
        help="Real rows the generator never saw (or give --split).")] = None,
    split: Annotated[Path | None, typer.Option(
        help="A privsynth bundle's internal/split.json: --real is then the whole table the "
             "release was made from, and its recorded members and holdout are audited.")] = None,
    out: Annotated[Path | None, typer.Option(help="Report folder.")] = None,
    bundle: Annotated[Path | None, typer.Option(
        help="The privsynth release bundle that produced --synthetic: its DP claim counts only "
             "if the bundle verifies and lists the audited file's SHA-256.")] = None,
    public_key: Annotated[Path | None, typer.Option(
        "--public-key", help="With --bundle: the releasing installation's public key (from "
                             "`privsynth keys export` there); default: this installation's "
                             "own key.")] = None,
) -> None:
    """Audit any generator's output with the same attacks, gate and report. No ε is spent."""
    from privsynth.audit.external import (  # noqa: PLC0415
        audit_tables,
        dp_claim_from_bundle,
        write_external_report,
    )
    from privsynth.policy.loader import load_policy  # noqa: PLC0415

    try:
        loaded = load_policy(policy)
        key = _read_public_key(public_key)
        dp_claim = (dp_claim_from_bundle(bundle, synthetic, public_key=key)
                    if bundle is not None else False)
        result = audit_tables(real, holdout, synthetic, loaded, dp_claim=dp_claim,
                              label=synthetic.stem, split=split)
        target = out or Path("audits") / loaded.dataset.id / f"external-{synthetic.stem}"
        write_external_report(result, target)
    except PrivsynthError as exc:
        raise _fail(exc) from None
    verdict = "[bold green]PASSED[/]" if result.decision.passed else "[bold red]BLOCKED[/]"
    out_console.print(f"{verdict}  audit of {plain(synthetic.name)}; report in {plain(target)}")
    _print_checks(result.decision)
    raise typer.Exit(EXIT_OK if result.decision.passed else EXIT_BLOCKED)


# ---------------------------------------------------------------- policy


@policy_app.command("check")
def policy_check(
    policies: Annotated[list[Path], typer.Argument(help="Policy files.")],
    rows: Annotated[int | None, typer.Option(
        "--rows", min=1,
        help="Approximate PUBLIC size of the table (overrides dataset.rows); never a count "
             "read off the private table.")] = None,
) -> None:
    """Validate policy files and pre-flight them: print every problem with its fix; exit 1 on
    any invalid policy or any finding that would refuse the release. Reads no data."""
    from privsynth.policy.loader import load_policy  # noqa: PLC0415
    from privsynth.preflight import preflight  # noqa: PLC0415

    say = out_console.print  # the report is the result: stdout
    failed = False
    for path in policies:
        try:
            loaded = load_policy(path)
        except PolicyError as exc:
            failed = True
            say(f"[red]invalid[/] {plain(exc.source)}: {len(exc.problems)} problem(s):")
            for problem in exc.problems:
                say(f"  - {plain(problem)}")
            continue
        from privsynth.pipeline import public_records  # noqa: PLC0415

        declared = rows if rows is not None else public_records(loaded)
        say(f"[green]ok[/] {plain(path)}: policy '{plain(loaded.name)}', "
            f"ε={loaded.privacy.epsilon}, δ={loaded.privacy.delta:g}, charged to population "
            f"'{plain(loaded.dataset.id)}'")
        findings = preflight(loaded, declared)
        unit = "persons" if loaded.privacy.unit == "person" else "rows"
        size = (f"{declared} declared {unit}" if declared is not None
                else f"no declared {unit[:-1]} count")
        if not findings:
            say(f"  pre-flight ({size}): no problem found")
        for finding in findings:
            colour = "red" if finding.severity == "refuse" else "yellow"
            say(f"  [{colour}]{plain(finding.severity.upper())}[/] "
                f"{plain(f'[{finding.code}] {finding.message}')}")
        refused = sum(f.severity == "refuse" for f in findings)
        if refused:
            failed = True
            say(f"[red]pre-flight refuses[/] {plain(path)} ({size}): {refused} finding(s) "
                "above would make the release useless or blocked (whatever the data, or, for "
                "the noise rules, in most measured releases); fix them before spending ε")
    raise typer.Exit(EXIT_ERROR if failed else EXIT_OK)


@policy_app.command("init")
def policy_init(
    data: Annotated[Path, typer.Argument(help="CSV or Parquet table (private).")],
    out: Annotated[Path | None, typer.Option("--out", "-o",
                                             help="Draft file to write; '-' prints it.")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing draft.")] = False,
) -> None:
    """Write a DRAFT policy for a table: kinds, suspected identifiers, nothing read from values."""
    from privsynth.data.table import read_table  # noqa: PLC0415
    from privsynth.policy.draft import draft_policy  # noqa: PLC0415

    target = out if out is not None else Path(f"{data.name.split('.')[0]}.policy.yaml")
    to_stdout = str(target) == "-"
    if not to_stdout and target.is_dir():
        raise _fail(PrivsynthError(f"{clean(target)}: is a folder; give a file name for the "
                                   "draft, e.g. -o policies/mytable.yaml"))
    if not to_stdout and target.exists() and not force:
        raise _fail(PrivsynthError(f"{clean(target)}: exists; pass --force to overwrite it"))
    problem = _table_file_problem(data)
    if problem:
        raise _fail(PrivsynthError(problem))
    try:
        text = draft_policy(read_table(data), source_name=data.name)
    except PrivsynthError as exc:
        raise _fail(exc) from None
    if to_stdout:
        typer.echo(text, nl=False)
        return
    _write_text(target, text, "the draft")
    out_console.print(f"[green]wrote[/] {plain(target)}: a draft; review every line, declare "
                      "public bounds and domains, then "
                      f"`privsynth policy check {plain(target)}`")


_PACKED = (".gz", ".bz2", ".xz", ".zip", ".zst", ".tar", ".parquet", ".pq")


def _table_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a table file (missing, a folder, binary where text is expected),
    or None. A NUL byte in the first 64 KiB of an uncompressed CSV means it is not text."""
    if path.is_dir():
        return f"{clean(path)}: is a folder; give a CSV or Parquet file"
    if not path.is_file():
        return f"{clean(path)}: no such file; check the path"
    if not any(suffix.lower() in _PACKED for suffix in path.suffixes):
        try:
            with path.open("rb") as handle:
                head = handle.read(1 << 16)
        except OSError as exc:
            return f"{clean(path)}: cannot be read ({exc.strerror or type(exc).__name__})"
        if b"\x00" in head:
            return (f"{clean(path)}: holds NUL bytes, so it is not a CSV text file; give a "
                    "CSV (UTF-8, optionally .gz) or a Parquet file")
    return None


def _write_text(target: Path, text: str, what: str) -> None:
    """Write ``text`` to ``target``, creating its folder; an OS error exits in one line."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail_file(target, exc, f"write {what}", "choose a writable file path (-o)")


@policy_app.command("schema")
def policy_schema(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File to write.")] = None,
) -> None:
    """Print (or write) the JSON Schema of policy files, for editors and CI linters."""
    from privsynth.policy.export import schema_text  # noqa: PLC0415

    if out is None:
        typer.echo(schema_text(), nl=False)
    else:
        _write_text(out, schema_text(), "the schema")
        out_console.print(f"[green]wrote[/] {plain(out)}")


# ---------------------------------------------------------------- budget


_LEDGER_HELP = "Ledger file or postgresql:// URL (default: $PRIVSYNTH_LEDGER, the policy's, ~)."
_POLICY_HELP = "Take the ledger location from this policy."


@budget_app.command("register")
def budget_register(
    population: Annotated[str, typer.Argument(help="Population id (policies name it dataset.id).")],
    total_epsilon: Annotated[float, typer.Option(help="Total ε of every release, ever.")],
    data: Annotated[Path, typer.Option(help="The population's table (CSV or Parquet).")],
    officer: Annotated[str, typer.Option(help="The privacy officer registering it.")],
    total_delta: Annotated[float, typer.Option(help="Total δ of every release, ever.")] = 1e-5,
    note: Annotated[str, typer.Option(help="Recorded with the registration.")] = "",
    composition: Annotated[str, typer.Option(
        help="sum (plain sum of reservations) or accountant (compose DP-SGD runs).")] = "sum",
    allow_overlap_with: Annotated[list[str] | None, typer.Option(
        help="A registered population this table may overlap (the officer's recorded call).",
    )] = None,
    person_id: Annotated[str | None, typer.Option(
        help="The column identifying a person: the population's budget is then per person "
             "(with --max-rows-per-person).")] = None,
    max_rows_per_person: Annotated[int | None, typer.Option(
        help="The most rows one person has in any table of this population (the officer's "
             "declaration, with --person-id).")] = None,
    ledger: Annotated[str | None, typer.Option(help=_LEDGER_HELP)] = None,
    policy: Annotated[Path | None, typer.Option("--policy", "-p", help=_POLICY_HELP)] = None,
) -> None:
    """Register a population once, with its total budget (privacy officer). Stores a keyed
    sketch of its rows (no value); prints no value and no row count. With --person-id and
    --max-rows-per-person the budget protects a person (docs/ledger.md, "Privacy units")."""
    from privsynth.privacy.budget_report import resolve_ledger_location  # noqa: PLC0415
    from privsynth.privacy.ledger import Ledger, unit_text  # noqa: PLC0415

    if composition not in ("sum", "accountant"):
        raise _fail(PrivsynthError("--composition must be sum or accountant; got "
                                   f"{clean(composition)!r}"))
    if (person_id is None) != (max_rows_per_person is None):
        raise _fail(PrivsynthError("--person-id and --max-rows-per-person go together: give "
                                   "both for a population protected per person, or neither "
                                   "for one protected per row"))
    problem = _table_file_problem(data)
    if problem:
        raise _fail(PrivsynthError(problem))
    say = out_console.print
    try:
        with Ledger.open(resolve_ledger_location(ledger, policy)) as book:
            result = book.register(population, total_epsilon=total_epsilon,
                                   total_delta=total_delta, sketch=book.sketch(data),
                                   officer=officer, note=note, composition=composition,
                                   allow_overlap_with=allow_overlap_with or (),
                                   person_id=person_id, max_rows_per_person=max_rows_per_person)
            where = book.location
    except PrivsynthError as exc:
        raise _fail(exc) from None
    except (OSError, ValueError) as exc:
        problem = PrivsynthError(f"{clean(data)}: cannot be read as a table "
                                 f"({type(exc).__name__}); give a CSV or Parquet file")
        raise _fail(problem) from None
    facts = plain(f"total ε={result['total_epsilon']:g}, δ={result['total_delta']:g}, "
                  f"composition {result['composition']}, "
                  f"{unit_text(result['person_id'], result['max_rows_per_person'])}")
    if result["created"]:
        say(f"[green]registered[/] population '{plain(population)}' in {plain(where)}: "
            f"{facts}; officer {plain(officer)}")
        for other in result["allow_overlap_with"]:
            say(f"[yellow]recorded:[/] the officer accepted an overlap with '{plain(other)}'")
    else:
        say(f"[green]already registered[/] population '{plain(population)}' with the same "
            f"totals, unit and table ({facts}); nothing changed")
    raise typer.Exit(EXIT_OK)


@budget_app.command("set-total")
def budget_set_total(
    population: Annotated[str, typer.Argument(help="A registered population id.")],
    officer: Annotated[str, typer.Option(help="The privacy officer changing it.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the ledger).")],
    total_epsilon: Annotated[float | None, typer.Option(help="New total ε.")] = None,
    total_delta: Annotated[float | None, typer.Option(help="New total δ.")] = None,
    ledger: Annotated[str | None, typer.Option(help=_LEDGER_HELP)] = None,
    policy: Annotated[Path | None, typer.Option("--policy", "-p", help=_POLICY_HELP)] = None,
) -> None:
    """Change a registered population's total ε and/or δ: a recorded, chained ledger entry."""
    from privsynth.privacy.budget_report import (  # noqa: PLC0415
        resolve_ledger_location,
        set_population_total,
    )
    from privsynth.privacy.ledger import Ledger  # noqa: PLC0415

    if total_epsilon is None and total_delta is None:
        raise _fail(PrivsynthError("give --total-epsilon, --total-delta or both"))
    try:
        with Ledger.open(resolve_ledger_location(ledger, policy), create=False) as book:
            set_population_total(book, out_console, population, total_epsilon=total_epsilon,
                                 total_delta=total_delta, officer=officer, reason=reason)
    except PrivsynthError as exc:
        raise _fail(exc) from None
    raise typer.Exit(EXIT_OK)


@budget_app.command("show")
def budget_show(
    ledger: Annotated[str | None, typer.Option(help=_LEDGER_HELP)] = None,
    policy: Annotated[Path | None, typer.Option("--policy", "-p", help=_POLICY_HELP)] = None,
    population: Annotated[str | None, typer.Option(help="Show only this population.")] = None,
) -> None:
    """List registered populations: totals, ε spent, Σδ spent, releases, total changes, and
    each population's privacy unit (per row, or per person)."""
    from privsynth.privacy.budget_report import (  # noqa: PLC0415
        resolve_ledger_location,
        show_budget,
    )
    from privsynth.privacy.ledger import Ledger, unit_text  # noqa: PLC0415

    try:
        with Ledger.open(resolve_ledger_location(ledger, policy), create=False) as book:
            if show_budget(book, out_console, population=population):
                for s in book.populations():
                    if population is None or s["population"] == population:
                        out_console.print(
                            f"{plain(s['population'])}: privacy unit "
                            f"{plain(unit_text(s['person_id'], s['max_rows_per_person']))}")
    except PrivsynthError as exc:
        raise _fail(exc) from None


@budget_app.command("verify")
def budget_verify(
    ledger: Annotated[str | None, typer.Option(help=_LEDGER_HELP)] = None,
    policy: Annotated[Path | None, typer.Option("--policy", "-p", help=_POLICY_HELP)] = None,
) -> None:
    """Check the ledger's hash chain and sketches; exit 1 if anything was edited, removed or
    reordered."""
    from privsynth.privacy.budget_report import (  # noqa: PLC0415
        resolve_ledger_location,
        verify_ledger,
    )
    from privsynth.privacy.ledger import Ledger  # noqa: PLC0415

    try:
        with Ledger.open(resolve_ledger_location(ledger, policy), create=False) as book:
            problems = verify_ledger(book, out_console)
    except PrivsynthError as exc:
        raise _fail(exc) from None
    raise typer.Exit(EXIT_ERROR if problems else EXIT_OK)


@budget_app.command("migrate")
def budget_migrate(
    officer: Annotated[str, typer.Option(help="The privacy officer migrating it (recorded).")],
    note: Annotated[str, typer.Option(help="Recorded with the migration.")] = "",
    ledger: Annotated[str | None, typer.Option(help=_LEDGER_HELP)] = None,
    policy: Annotated[Path | None, typer.Option("--policy", "-p", help=_POLICY_HELP)] = None,
) -> None:
    """Convert a schema-2 ledger to schema 3 (keyed chain, sketch key out of the file): one
    recorded entry. Keep a backup of the file first."""
    from privsynth.privacy.budget_report import resolve_ledger_location  # noqa: PLC0415
    from privsynth.privacy.ledger import Ledger  # noqa: PLC0415

    try:
        done = Ledger.migrate(resolve_ledger_location(ledger, policy), officer=officer,
                              note=note)
    except PrivsynthError as exc:
        raise _fail(exc) from None
    say = out_console.print
    say(f"[green]migrated[/] {plain(done['location'])} to schema 3: {done['entries']} schema-2 "
        f"entries kept, ledger id {done['ledger_id']}; officer {plain(officer)}")
    raise typer.Exit(EXIT_OK)


# ---------------------------------------------------------------- report


@report_app.command("pdf")
def report_pdf(
    html: Annotated[Path, typer.Argument(help="A report.html written by a release or audit.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The PDF to write.")],
) -> None:
    """Print an audit report page to PDF for filing (headless Chromium). The PDF is as internal
    as the page: it stays with the data controller."""
    from privsynth.release.report import export_pdf  # noqa: PLC0415

    try:
        written = export_pdf(html, out)
    except (FileNotFoundError, RuntimeError) as exc:
        raise _fail(exc) from None
    out_console.print(f"[green]wrote[/] {plain(written)}")
    raise typer.Exit(EXIT_OK)
