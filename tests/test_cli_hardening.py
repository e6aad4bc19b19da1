"""Issue 12, CLI and policy files: every data-derived string is printed as inert plain text,
results go to stdout and everything else to stderr, nothing wraps off a terminal, no credential
is printed, and a policy file is read strictly (duplicate keys, non-finite numbers, YAML 1.1
booleans, non-UTF-8 text refused with file, line and fix). Malformed input of any kind gives a
one-line error and exit 1, never a traceback."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import ledger_helpers
import pytest
from ledger_helpers import people
from typer.testing import CliRunner

from privsynth.cli import app
from privsynth.console import (
    PlainConsole,
    clean,
    install_logging,
    plain,
)
from privsynth.errors import PolicyError
from privsynth.policy.loader import load_policy, parse_policy

pg_server = ledger_helpers.pg_server  # fixture: a throw-away PostgreSQL server

ROOT = Path(__file__).resolve().parents[1]
ESC = "\x1b"

POLICY = """\
version: 1
name: hardening
dataset:
  id: hardening-data
privacy:
  epsilon: 1.0
  delta: 1.0e-6
columns:
  age: {kind: integer, bounds: [0, 120]}
  sex: {kind: categorical, domain: [F, M]}
"""


def _invoke(args: list[str], **kwargs) -> object:
    result = CliRunner().invoke(app, [str(a) for a in args], **kwargs)
    # typer.Exit surfaces as SystemExit; any other exception is a traceback the user would see
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{args}: {type(result.exception).__name__}: {result.exception}\n{result.output}")
    return result


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _write_policy(tmp_path: Path, text: str = POLICY, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------ data-derived strings are inert


def test_markup_in_csv_headers_prints_literally(tmp_path):
    """A header ``[/]`` crashed the old CLI with a MarkupError traceback; ``[bold]x`` lost its
    brackets. Both must appear verbatim in the error, on stderr, exit 1."""
    data = tmp_path / "t.csv"
    data.write_text("age,sex,[/],[bold]x,:warning:\n30,F,a,b,c\n", encoding="utf-8")
    result = _invoke(["release", data, "-p", _write_policy(tmp_path), "-o", tmp_path / "r",
                      "--ledger", tmp_path / "l.sqlite"])
    assert result.exit_code == 1
    assert "[/]" in result.stderr and "[bold]x" in result.stderr
    assert ":warning:" in result.stderr  # no emoji substitution either
    assert len(_lines(result.stderr)) == 1 and result.stdout == ""
    assert "DP training" not in result.output  # no (empty) progress bar before an early error


def test_control_characters_in_headers_are_escaped(tmp_path):
    """An ANSI escape in a header reached the terminal raw; a newline could forge a line."""
    data = tmp_path / "t.csv"
    data.write_text(f'age,sex,"x{ESC}[31mred","a\nRELEASED","\u202eevil"\n1,F,a,b,c\n',
                    encoding="utf-8")
    result = _invoke(["release", data, "-p", _write_policy(tmp_path), "-o", tmp_path / "r",
                      "--ledger", tmp_path / "l.sqlite"])
    assert result.exit_code == 1
    assert ESC not in result.output and "\u202e" not in result.output
    assert "\\x1b[31mred" in result.stderr and "\\u202e" in result.stderr
    assert len(_lines(result.stderr)) == 1  # the header's newline did not start a line
    assert not any(line.startswith("RELEASED") for line in result.output.splitlines())


def test_policy_init_and_check_show_markup_and_escapes_as_text(tmp_path):
    data = tmp_path / f"[bold]t{ESC}.csv"
    data.write_text("[/],[red]y\n1,a\n2,b\n", encoding="utf-8")
    draft = tmp_path / "out" / "[i]draft.yaml"
    made = _invoke(["policy", "init", data, "-o", draft])
    assert made.exit_code == 0, made.output
    assert "[i]draft.yaml" in made.stdout and ESC not in made.output
    checked = _invoke(["policy", "check", draft])
    assert "[i]draft.yaml" in checked.stdout and ESC not in checked.output
    assert "invalid" not in checked.stdout  # the file name's ESC did not break the draft


@pytest.fixture
def root_logger():
    """The root logger, its handlers and level restored after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_log_records_are_plain_text(capsys, root_logger):
    """Log lines (pre-flight warnings, near-copy notices) carry names from policies and
    ledgers: their arguments are cleaned and credentials redacted."""
    install_logging()
    logging.getLogger("privsynth").warning("column %s of %s", f"a{ESC}]0;x\a\nb",
                                           "postgresql://u:hunter2@db/x")
    err = capsys.readouterr().err
    assert ESC not in err and "\a" not in err and "hunter2" not in err
    assert err.count("\n") == 1 and "\\x1b" in err


def test_console_defends_against_an_unescaped_string(capsys):
    """Second line of defence: a string that reaches the console without ``plain`` still does
    not crash on invalid markup, and shows no raw control character or password."""
    console = PlainConsole(stderr=False)
    console.print(f"[/] x{ESC}[2J postgres://a:topsecret@h/db")
    out = capsys.readouterr().out
    assert "[/]" in out and ESC not in out and "topsecret" not in out


@pytest.mark.parametrize("text, hidden", [
    ("postgresql://alice:s3cr3t@db:5432/ledger", "s3cr3t"),
    ("postgres://alice:p%40ss@db/ledger", "p%40ss"),
    ("postgresql://alice:pa@ss@db/ledger", "pa@ss"),  # unencoded @: nothing after it leaks
    ("postgresql://db/ledger?user=a&password=s3cr3t&sslmode=require", "s3cr3t"),
    ("host=db user=a password='two words' dbname=l", "two words"),
])
def test_credentials_are_redacted(text, hidden):
    shown = clean(text)
    assert hidden not in shown and "***" in shown
    assert "db" in shown  # the rest of the location stays readable


def test_plain_is_inert_markup():
    assert plain("[/]") != "[/]"  # escaped for a markup template ...
    console = PlainConsole(stderr=False)
    with console.capture() as captured:
        console.print(f"[green]ok[/] {plain('[bold]x [/] [link=http://e]y')}")
    assert captured.get().strip() == "ok [bold]x [/] [link=http://e]y"  # ... and shown as is


# ---------------------------------------------------------------------- stdout, stderr, width


def test_results_on_stdout_errors_on_stderr(tmp_path):
    passing = POLICY + "audit: {attacks: [exact_copy, dcr, mia]}\n"  # pre-flight passes
    ok = _invoke(["policy", "check", _write_policy(tmp_path, passing, "ok.yaml")])
    assert ok.exit_code == 0 and "ok" in ok.stdout and ok.stderr == ""
    failed = _invoke(["release", tmp_path / "missing.csv", "-p", _write_policy(tmp_path),
                      "-o", tmp_path / "r", "--ledger", tmp_path / "l.sqlite"])
    assert failed.exit_code == 1 and failed.stdout == ""
    assert failed.stderr.startswith("error:")


def test_long_paths_do_not_wrap_off_a_terminal(tmp_path):
    """Off a terminal the old console wrapped at 80 columns, splitting paths (a test failed
    or passed depending on the length of $TMPDIR)."""
    deep = tmp_path / ("d" * 60) / ("e" * 60) / ("f" * 60)
    deep.mkdir(parents=True)
    passing = POLICY + "audit: {attacks: [exact_copy, dcr, mia]}\n"
    policy = _write_policy(deep, passing, name="policy-with-a-long-name.yaml")
    result = _invoke(["policy", "check", policy], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert any(str(policy) in line for line in result.stdout.splitlines())
    assert max(len(line) for line in result.stdout.splitlines()) > 200  # one line, unwrapped


# ---------------------------------------------------------------------- credentials


def test_postgres_password_never_printed(pg_server, tmp_path):
    """budget register/show/verify and the release summary name the ledger: never with its
    password (the throw-away server trusts every connection, so any password connects)."""
    location = pg_server().replace("postgresql://privsynth@", "postgresql://privsynth:"
                                   "Hunter2pw@")
    table = tmp_path / "people.csv"
    people(n=200).to_csv(table, index=False)
    outputs = []
    reg = _invoke(["budget", "register", "clinic", "--total-epsilon", "5", "--data", table,
                   "--officer", "O", "--ledger", location])
    assert reg.exit_code == 0, reg.output
    outputs.append(reg.output)
    for args in (["budget", "show"], ["budget", "verify"]):
        shown = _invoke([*args, "--ledger", location])
        assert shown.exit_code == 0, shown.output
        outputs.append(shown.output)
    bad = _invoke(["budget", "set-total", "nobody", "--total-epsilon", "1", "--officer", "O",
                   "--reason", "r", "--ledger", location])
    assert bad.exit_code == 1
    outputs.append(bad.output)
    assert all("Hunter2pw" not in text for text in outputs)
    assert any("***" in text or "postgresql://" in text for text in outputs)


# ---------------------------------------------------------------------- policy files


def _problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as err:
        parse_policy(text, source="p.yaml")
    return err.value.problems


def test_duplicate_key_is_refused_not_last_wins(tmp_path):
    text = POLICY.replace("  epsilon: 1.0\n", "  epsilon: 1.0\n  epsilon: 50.0\n")
    problems = _problems(text)
    assert len(problems) == 1
    assert problems[0].startswith("line 7:") and "'epsilon' appears twice" in problems[0]
    assert "first at line 6" in problems[0] and "keep one" in problems[0]
    result = _invoke(["release", tmp_path / "t.csv", "-p", _write_policy(tmp_path, text),
                      "-o", tmp_path / "r", "--ledger", tmp_path / "l.sqlite"])
    assert result.exit_code == 1 and "line 7" in result.stderr
    assert not (tmp_path / "l.sqlite").exists()  # refused before any ledger is touched


@pytest.mark.parametrize("where, value", [
    ("  delta: 1.0e-6", ".inf"), ("  delta: 1.0e-6", "-.Inf"), ("  delta: 1.0e-6", ".nan"),
    ("  delta: 1.0e-6", "inf"), ("  delta: 1.0e-6", "1e300"), ("  delta: 1.0e-6", "1.0e+300"),
])
def test_non_finite_and_absurd_numbers_are_refused(where, value):
    text = POLICY + f"generator:\n  max_grad_norm: {value}\n"
    problems = _problems(text)
    assert len(problems) == 1 and problems[0].startswith("line 12:"), problems
    assert repr(value) in problems[0] and ("finite" in problems[0] or "large" in problems[0])


def test_infinite_bounds_are_refused_at_their_line():
    problems = _problems(POLICY.replace("[0, 120]", "[0, .inf]"))
    assert problems[0].startswith("line 9:") and "'.inf' is not a finite number" in problems[0]
    problems = _problems(POLICY.replace("[0, 120]", "[0, 123456789012345678901234567890]"))
    assert problems[0].startswith("line 9:") and "too large" in problems[0]


def test_policy_check_refuses_inf_and_huge_numbers(tmp_path):
    """policy check used to pass `.inf` and `1e300`."""
    for value in (".inf", "1e300"):
        path = _write_policy(tmp_path, POLICY + f"generator:\n  learning_rate: {value}\n")
        result = _invoke(["policy", "check", path])
        assert result.exit_code == 1 and "line 12" in result.stdout, result.output


@pytest.mark.parametrize("key", ["yes", "on", "no", "OFF", "2020", "~"])
def test_keys_that_yaml_reads_as_non_text_are_refused(key):
    problems = _problems(POLICY.replace("  sex:", f"  {key}:"))
    assert len(problems) == 1 and problems[0].startswith("line 10:"), problems
    assert "quote" in problems[0] or "give it a name" in problems[0]


def test_quoted_yaml_words_are_names():
    policy = parse_policy(POLICY.replace("  sex: {kind: categorical, domain: [F, M]}",
                                         '  "on": {kind: categorical, domain: ["yes", "no"]}'))
    assert policy.columns["on"].domain == ["yes", "no"]


def test_yaml_11_booleans_as_values_are_refused_where_they_change_meaning():
    problems = _problems(POLICY.replace("[F, M]", "[yes, no]"))
    assert len(problems) == 2 and all(p.startswith("line 10:") for p in problems)
    assert parse_policy(POLICY.replace("{kind: integer,", "{identifier: false, kind: integer,"))


def test_aliases_merge_keys_and_tags_are_refused():
    assert "alias" in _problems(POLICY.replace("epsilon: 1.0", "epsilon: &e 1.0")
                                + "generator:\n  learning_rate: *e\n")[0]
    assert "merge key" in _problems(POLICY + "audit: {<<: {holdout_fraction: 0.3}}\n")[0]
    assert "tag" in _problems(POLICY.replace("[F, M]", "!!set {F: null}"))[0]


def test_unquoted_dates_stay_iso_text():
    text = POLICY + "  seen: {kind: datetime, bounds: [2000-01-01, 2030-12-31]}\n"
    assert parse_policy(text).columns["seen"].bounds == ("2000-01-01", "2030-12-31")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_a_utf16_policy_is_a_one_line_error(tmp_path, encoding):
    path = tmp_path / "p16.yaml"
    path.write_bytes(POLICY.encode(encoding))  # Python writes the byte-order mark
    result = _invoke(["policy", "check", path])
    assert result.exit_code == 1
    assert "p16.yaml" in result.stdout and "UTF-8" in result.stdout
    released = _invoke(["release", tmp_path / "t.csv", "-p", path, "-o", tmp_path / "r"])
    assert released.exit_code == 1 and len(_lines(released.stderr)) == 1
    assert "p16.yaml" in released.stderr and "save it as UTF-8" in released.stderr


def test_latin1_and_control_characters_name_their_line(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_bytes(POLICY.encode() + "  caf\xe9: {rule: drop}\n".encode("latin-1"))
    with pytest.raises(PolicyError, match=r"line 11: bytes that are not UTF-8"):
        load_policy(path)
    with pytest.raises(PolicyError, match=r"line 2: U\+001B is a control character"):
        parse_policy(POLICY.replace("hardening\n", f"hard{ESC}ening\n"))


def test_a_policy_that_is_too_large_or_too_deep_is_refused(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (2 << 20))
    with pytest.raises(PolicyError, match="larger than"):
        load_policy(big)
    with pytest.raises(PolicyError, match="nested too deeply"):
        parse_policy("a: " + "[" * 5000)


def test_shipped_policies_still_load():
    for path in sorted((ROOT / "policies").glob("*.yaml")):
        load_policy(path)


# ---------------------------------------------------------------------- policy init / schema


def test_policy_init_creates_the_missing_folder(tmp_path):
    """README's `policy init -o policies/x.yaml` without the folder gave a traceback."""
    target = tmp_path / "policies" / "sub" / "x.yaml"
    result = _invoke(["policy", "init", ROOT / "tests" / "fixtures" / "patients.csv",
                      "-o", target])
    assert result.exit_code == 0, result.output
    assert target.exists() and load_policy(target)


def test_policy_init_and_schema_unwritable_targets_are_one_line_errors(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for args in (["policy", "init", ROOT / "tests" / "fixtures" / "patients.csv",
                  "-o", blocker / "x.yaml"],
                 ["policy", "init", ROOT / "tests" / "fixtures" / "patients.csv",
                  "-o", tmp_path],
                 ["policy", "schema", "-o", blocker / "s.json"]):
        result = _invoke(args)
        assert result.exit_code == 1, result.output
        assert len(_lines(result.stderr)) == 1 and result.stderr.startswith("error:")


# ---------------------------------------------------------------------- malformed input fuzz


def _malformed(tmp_path: Path) -> dict[str, Path]:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 8 + b"\x1b[2J\x00\xff")
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    return {"empty": empty, "binary": binary, "folder": folder,
            "missing": tmp_path / "missing.csv"}


def _commands(tmp_path: Path, bad: Path) -> dict[str, list[object]]:
    good_policy = _write_policy(tmp_path, name="good.yaml")
    good_data = tmp_path / "good.csv"
    people(n=50).to_csv(good_data, index=False)
    ledger = tmp_path / "l.sqlite"
    return {
        "release data": ["release", bad, "-p", good_policy, "-o", tmp_path / "r1",
                         "--ledger", ledger],
        "release policy": ["release", good_data, "-p", bad, "-o", tmp_path / "r2",
                           "--ledger", ledger],
        "policy check": ["policy", "check", bad],
        "policy init": ["policy", "init", bad, "-o", "-"],
        "audit real": ["audit", "--real", bad, "--holdout", good_data, "--synthetic",
                       good_data, "-p", good_policy, "--out", tmp_path / "a1"],
        "audit policy": ["audit", "--real", good_data, "--holdout", good_data, "--synthetic",
                         good_data, "-p", bad, "--out", tmp_path / "a2"],
        "budget register": ["budget", "register", "pop", "--total-epsilon", "1", "--data", bad,
                            "--officer", "O", "--ledger", ledger],
        "budget show policy": ["budget", "show", "-p", bad],
    }


@pytest.mark.parametrize("kind", ["empty", "binary", "folder", "missing"])
def test_malformed_inputs_give_one_line_errors(tmp_path, kind):
    bad = _malformed(tmp_path)[kind]
    for name, args in _commands(tmp_path, bad).items():
        result = _invoke(args)
        assert result.exit_code == 1, (name, result.output)
        assert ESC not in result.output and "\x00" not in result.output, name
        if name == "policy check":  # the report (stdout) names the file and the problem
            assert bad.name in result.stdout, (name, result.output)
            continue
        lines = _lines(result.stderr)
        assert len(lines) == 1 and lines[0].startswith("error:"), (name, result.output)
        assert "Traceback" not in result.output


def test_internal_errors_print_no_message(monkeypatch, capsys, root_logger):
    """An exception no command expected is a bug: one line with its type and place, never its
    message (which could quote a private cell)."""
    import privsynth.cli as cli

    def boom(*_args: object, **_kwargs: object) -> None:
        raise ValueError("could not convert string to float: 'Alice Smith'")

    monkeypatch.setattr(cli, "app", boom)
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code == 1
    err = capsys.readouterr().err
    assert "Alice" not in err and "internal error: ValueError" in err
    assert re.search(r"at cli\.py:\d+ ", err)  # the deepest privsynth frame
