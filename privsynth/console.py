"""Terminal output that data cannot take over.

Every string privsynth prints may carry facts from outside the program: CSV headers, column and
category names, file paths, policy names, ledger locations, exception messages. Printed through
Rich as they are, such strings are *markup* (a header ``[/]`` crashes the command, ``[bold]x``
loses its brackets), their control characters reach the terminal (an ANSI escape in a header can
recolour, hide or rewrite what the user reads; a newline can forge a whole line of output), and a
PostgreSQL URL shows its password. This module is the one place that decides how such strings are
shown:

* :func:`clean` turns any value into one line of inert text: credentials redacted, every control,
  format, separator or surrogate character written as an escape (``\\x1b``, ``\\n``,
  ``\\u202e``). :func:`plain` also escapes Rich markup, for interpolation into a markup template.
* :class:`PlainConsole` is the Rich console of the CLI: no emoji codes, no highlighting, no
  wrapping, and, when the output is not a terminal, no width limit (a path is never split in a
  log file or a test). As a second line of defence it redacts credentials and escapes control
  characters in every string it renders, and prints a string literally instead of crashing when
  it is not valid markup.
* :func:`install_logging` sends log records to stderr as plain text, their arguments cleaned.
"""

from __future__ import annotations

import logging
import re
import sys
import unicodedata
from typing import IO, Any

from rich.console import Console, ConsoleDimensions
from rich.errors import MarkupError
from rich.markup import escape
from rich.text import Text

#: Characters never written raw: C0/C1 controls (ESC, BEL, CR, ...), format characters (the
#: bidirectional overrides of "Trojan Source", zero-width characters), line and paragraph
#: separators, and lone surrogates (undecodable file-name bytes, which would make the write fail).
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})

#: Width of a console whose output is not a terminal (a file, a pipe, a test): wide enough that
#: Rich never wraps or crops a path or a table cell there.
NOT_A_TERMINAL_WIDTH = 100_000

_URL_PASSWORD = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*:)(?P<secret>\S*)(?=@)")
_KEYWORD_PASSWORD = re.compile(
    r"(?P<head>\b(?:password|passwd|pwd|sslpassword)\s*=\s*)(?P<secret>'(?:[^'\\]|\\.)*'|[^\s&;]+)",
    re.IGNORECASE)
REDACTED = "***"


def redact_credentials(text: str) -> str:
    """``text`` with every URL password (``scheme://user:SECRET@host``) and every
    ``password=SECRET`` pair (URL query or libpq keyword form) replaced by ``***``.

    Errs on the side of hiding: a URL's secret runs to the last ``@`` of its whitespace-free
    token, so an unencoded ``@`` inside a password does not leak the rest of it."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{REDACTED}", text)
    return _KEYWORD_PASSWORD.sub(lambda m: f"{m['head']}{REDACTED}", text)


def redacted_location(location: object) -> str:
    """A ledger location fit to print or store: a PostgreSQL URL loses its password."""
    return redact_credentials(str(location))


def _escape_char(char: str) -> str:
    code = ord(char)
    if char in "\n\r\t":
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with unsafe characters written as Python-style escapes; ``keep_newlines`` keeps
    ``\\n`` (for the program's own multi-line templates, never for data)."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(
        char if (keep_newlines and char == "\n")
        or unicodedata.category(char) not in _UNSAFE_CATEGORIES else _escape_char(char)
        for char in text)


def clean(value: object) -> str:
    """``value`` as one line of inert text: credentials redacted, controls escaped."""
    return escape_controls(redact_credentials(str(value)))


def plain(value: object) -> str:
    """:func:`clean`, with Rich markup escaped: the form to interpolate into a markup template."""
    return escape(clean(value))


class PlainConsole(Console):
    """The CLI's Rich console: markup only in the program's own templates (data goes through
    :func:`plain`), no emoji codes, no highlighting, no soft wrapping, and no width limit when the
    output is not a terminal."""

    def __init__(self, *, stderr: bool, file: IO[str] | None = None) -> None:
        super().__init__(stderr=stderr, file=file, emoji=False, highlight=False, soft_wrap=True)

    @property
    def size(self) -> ConsoleDimensions:
        """The terminal's size, or an unlimited width when the output is not a terminal."""
        dimensions = Console.size.fget(self)  # type: ignore[attr-defined]
        if self._width is None and not self.is_terminal:
            return ConsoleDimensions(NOT_A_TERMINAL_WIDTH, dimensions.height)
        return dimensions

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]

    def render_str(self, text: str, **kwargs: Any) -> Text:
        """Second line of defence: a string that reaches the console unescaped still shows no
        password and no raw control character, and invalid markup prints literally."""
        text = escape_controls(redact_credentials(text), keep_newlines=True)
        try:
            return super().render_str(text, **kwargs)
        except MarkupError:
            return super().render_str(text, **{**kwargs, "markup": False})


class _CleanFormatter(logging.Formatter):
    """Log lines as plain text: arguments cleaned (one line each), the template's own newlines
    kept, credentials redacted and controls escaped everywhere."""

    def format(self, record: logging.LogRecord) -> str:
        if isinstance(record.args, tuple):
            record.args = tuple(a if isinstance(a, int | float) else clean(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: a if isinstance(a, int | float) else clean(a)
                           for k, a in record.args.items()}
        return escape_controls(redact_credentials(super().format(record)), keep_newlines=True)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record (tests swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass


def install_logging(level: int = logging.INFO) -> logging.Handler:
    """Send log records to stderr as ``level: message`` plain text (replacing earlier handlers
    of the root logger). Returns the handler."""
    handler = _StderrHandler()
    handler.setFormatter(_CleanFormatter("%(levelname)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


__all__ = ["NOT_A_TERMINAL_WIDTH", "PlainConsole", "clean", "escape_controls", "install_logging",
           "plain", "redact_credentials", "redacted_location"]
