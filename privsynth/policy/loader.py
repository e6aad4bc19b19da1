"""Load a policy YAML file into a :class:`Policy`; every problem with its file, line and fix.

A policy decides how much privacy a release spends, so the reader is strict where YAML is
lenient, and refuses (naming the line and the fix) what would otherwise be read silently as
something the author did not write:

* a key written twice (YAML keeps only the last: ``epsilon: 1.0`` then ``epsilon: 50.0`` would
  run at 50);
* a number that is not finite (``.inf``, ``.nan``, ``inf``) or larger in magnitude than 2**53,
  the largest at which a float64 still holds every whole number (``1e300`` as a bound would make
  every sensitivity, and so every noise scale, meaningless);
* YAML 1.1's other booleans (``yes``, ``no``, ``on``, ``off``): a column called ``on`` or a
  domain ``[yes, no]`` would become ``True``/``False``; write ``true``/``false`` for a switch
  and quote names and categories;
* keys that are not text (a column ``2020:`` read as a number), anchors and aliases (a value
  defined in one place and silently reused in another; also the "billion laughs" expansion),
  merge keys (``<<:``) and explicit tags (``!!set``, ``!!binary``);
* a file that is not UTF-8 text (UTF-16 with a byte-order mark, a binary file), larger than
  :data:`MAX_POLICY_BYTES`, or nested too deeply to parse.

Unquoted dates (``2000-01-01``) stay text, as the model expects ISO date strings.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from privsynth.console import clean
from privsynth.errors import PolicyError
from privsynth.policy.model import Policy

#: A policy is a page of YAML; a larger file is a mistake (or an attack on the reader).
MAX_POLICY_BYTES = 1 << 20
#: Largest magnitude of a number in a policy: 2**53, beyond which float64 skips whole numbers.
MAX_MAGNITUDE = float(2**53)

_FIXES = {
    "extra_forbidden": "remove this key or check its spelling",
    "missing": "add this key",
    "literal_error": "use one of the allowed values",
    "greater_than": "use a larger value",
    "less_than": "use a smaller value",
    "float_parsing": "write a number",
    "int_parsing": "write a whole number",
    "finite_number": "write a finite number",
}

_TAG = "tag:yaml.org,2002:"
_PLAIN_TAGS = {f"{_TAG}{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map")}
_KIND_NAMES = {"int": "whole number", "float": "number", "bool": "boolean"}
_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32",
         b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}
_FIX_ENCODING = "save it as UTF-8 text (in most editors: 'Save with encoding' > UTF-8)"


class _PolicyLoader(yaml.SafeLoader):
    """SafeLoader without the timestamp resolver: ``2000-01-01`` stays the text the model
    parses, instead of a ``datetime.date`` the model rejects with a puzzling message."""


_PolicyLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != f"{_TAG}timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_policy(path: str | Path) -> Policy:
    """Read, parse and validate a policy file. Raises :class:`PolicyError` listing all problems."""
    path = Path(path)
    source = clean(path)
    try:
        if path.is_dir():
            raise PolicyError(["is a folder, not a file; give the policy's YAML file"], source)
        with path.open("rb") as handle:
            raw = handle.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise PolicyError([f"cannot read the file ({reason}); check the path"], source) from None
    return parse_policy(_decode(raw, source), source=source)


def _decode(raw: bytes, source: str) -> str:
    """The text of a policy file, or a :class:`PolicyError` naming the encoding problem."""
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError([f"the file is larger than {MAX_POLICY_BYTES // 1024} KiB; a policy is "
                           "a page of YAML: give the policy file, not a data file"], source)
    for bom, encoding in _BOMS.items():
        if raw.startswith(bom):
            raise PolicyError([f"the file is {encoding} text (it starts with a byte-order mark); "
                               f"{_FIX_ENCODING}"], source)
    if b"\x00" in raw:
        line = raw[:raw.index(b"\x00")].count(b"\n") + 1
        raise PolicyError([f"line {line}: the file holds NUL bytes, so it is binary or UTF-16/32 "
                           f"text, not a YAML policy; {_FIX_ENCODING}"], source)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise PolicyError([f"line {line}: bytes that are not UTF-8 (the file is in another "
                           f"encoding, or not text); {_FIX_ENCODING}"], source) from None


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate policy YAML text. ``source`` names the file in error messages."""
    data, root = _read_yaml(text, source)
    if not isinstance(data, dict):
        raise PolicyError(["line 1: the policy must be a mapping of keys (e.g. 'name: ...')"],
                          source)
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError([_describe(err, root) for err in exc.errors()], source) from None


def _read_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """Parse ``text`` into plain data and its node tree, refusing what :mod:`yaml` would read
    silently as something else (see the module's docstring)."""
    loader: _PolicyLoader | None = None
    try:
        loader = _PolicyLoader(text)
        root = loader.get_single_node()
        problems = _lint(root) if root is not None else []
        if problems:
            raise PolicyError(problems, source)
        data = loader.construct_document(root) if root is not None else None
    except yaml.reader.ReaderError as exc:
        line = text[:exc.position].count("\n") + 1 if isinstance(exc.position, int) else "?"
        char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else "a character"
        raise PolicyError([f"line {line}: {char} is a control character, which YAML does not "
                           "allow; remove it (inside double quotes write it as an escape, "
                           "e.g. \\x1b)"], source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "line ?"
        said = [getattr(exc, "context", None), getattr(exc, "problem", None)]
        problem = clean(" ".join(str(part) for part in said if part) or "invalid YAML")
        raise PolicyError([f"{where}: {problem}; fix the YAML syntax"], source) from None
    except RecursionError:
        raise PolicyError(["the YAML is nested too deeply to be a policy; fix its brackets or "
                           "indentation"], source) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, root


def _lint(root: yaml.Node) -> list[str]:
    """Every construct in the node tree that a policy refuses, with its line and fix."""
    problems: list[str] = []
    seen: set[int] = set()
    stack: list[yaml.Node] = [root]
    while stack:
        node = stack.pop()
        line = node.start_mark.line + 1
        if id(node) in seen:
            problems.append(f"line {line}: an alias (*name) reuses a value defined elsewhere; "
                            "write the value out where it is used (a policy allows no anchors "
                            "or aliases)")
            continue
        seen.add(id(node))
        if node.tag not in _PLAIN_TAGS and node.tag != f"{_TAG}merge":
            problems.append(f"line {line}: YAML tag {clean(node.tag)} is not allowed in a "
                            "policy; remove it (and quote the value if it is text)")
            continue
        if isinstance(node, yaml.ScalarNode):
            problem = _scalar_problem(node)
            if problem:
                problems.append(f"line {line}: {problem}")
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed(node.value))
        elif isinstance(node, yaml.MappingNode):
            problems += _mapping_problems(node)
            stack.extend(value for _key, value in reversed(node.value))  # keys: above
    return sorted(set(problems), key=_line_number)


def _mapping_problems(node: yaml.MappingNode) -> list[str]:
    """Duplicate keys, keys that are not text, merge keys."""
    problems: list[str] = []
    first: dict[str, int] = {}
    for key, _value in node.value:
        line = key.start_mark.line + 1
        if key.tag == f"{_TAG}merge":
            problems.append(f"line {line}: a merge key (<<) copies keys from elsewhere; write "
                            "the keys out (a policy allows no merge keys)")
            continue
        if not isinstance(key, yaml.ScalarNode):
            problems.append(f"line {line}: a key must be a name, not a list or a mapping")
            continue
        name = clean(key.value)
        if key.tag != f"{_TAG}str":
            if key.tag == f"{_TAG}null":
                problems.append(f"line {line}: a key is empty or null; give it a name, quoted "
                                "if it is literally null or ~")
                continue
            kind = _KIND_NAMES.get(key.tag.removeprefix(_TAG), "value that is not text")
            problems.append(f"line {line}: the key {name!r} is read by YAML as a {kind}, not "
                            f"a name; quote it (\"{name}\") if it is a name")
            continue
        if key.value in first:
            problems.append(f"line {line}: the key {name!r} appears twice in the same mapping "
                            f"(first at line {first[key.value]}); YAML would keep only this "
                            "last one silently; keep one")
        else:
            first[key.value] = line
    return problems


def _scalar_problem(node: yaml.ScalarNode) -> str | None:
    """A YAML 1.1-only boolean, or a number that is not finite or too large."""
    value = node.value
    if node.tag == f"{_TAG}bool":
        if value.lower() not in ("true", "false"):
            return (f"{clean(value)!r} is read by YAML 1.1 as the boolean "
                    f"{str(value.lower() in ('yes', 'on')).lower()}; write true or false for a "
                    f"switch, or quote it (\"{clean(value)}\") if it is text")
        return None
    if node.style is not None and node.tag == f"{_TAG}str":
        return None  # quoted text is text
    number = _as_number(value, node.tag)
    if number is None:
        return None
    if math.isnan(number) or math.isinf(number):
        return (f"{clean(value)!r} is not a finite number; write a finite number (or quote it "
                "if it is text)")
    if abs(number) > MAX_MAGNITUDE:
        return (f"{clean(value)!r} is too large for a policy (above 2**53 ~ 9.0e15 in "
                "magnitude, beyond which float64 skips whole numbers); write a smaller number, or "
                "quote it if it is text")
    return None


_NUMBER_TEXT = re.compile(r"^[-+]?(\d[\d_]*\.?[\d_]*|\.\d[\d_]*)([eE][-+]?\d+)?$")
_NON_FINITE_TEXT = re.compile(r"^[-+]?\.?(inf|infinity|nan)$", re.IGNORECASE)


def _as_number(value: str, tag: str) -> float | None:
    """The number a scalar stands for: YAML ints and floats, and plain text that pydantic
    would read as a number (``1e300``, ``inf``: PyYAML's YAML 1.1 calls them strings)."""
    text = value.strip()
    if tag == f"{_TAG}int":
        try:
            return float(int(text.replace("_", ""), 0))
        except (ValueError, OverflowError):
            return math.inf if text.lstrip("+-").isdigit() else None
    if tag == f"{_TAG}float" or _NON_FINITE_TEXT.match(text) or _NUMBER_TEXT.match(text):
        lowered = text.replace("_", "").lower()
        lowered = re.sub(r"^([-+]?)\.(inf|nan)$", r"\1\2", lowered)
        try:
            return float(lowered)
        except (ValueError, OverflowError):
            return None
    return None


def _line_number(problem: str) -> int:
    match = re.match(r"line (\d+)", problem)
    return int(match.group(1)) if match else 0


def _describe(err: dict[str, Any], root: yaml.Node | None) -> str:
    loc = [part for part in err["loc"] if not _is_pydantic_branch(part)]
    path = ".".join(clean(p) for p in loc) or "(top level)"
    message = clean(str(err["msg"]).removeprefix("Value error, "))
    line = _line_of(root, loc or _path_in_message(message))
    fix = _FIXES.get(err["type"])
    if err["type"] == "literal_error" and "expected" in err.get("ctx", {}):
        fix = f"use one of {clean(err['ctx']['expected'])}"
    tail = f"; fix: {fix}" if fix else ""
    where = f"line {line}" if line else "line ?"
    return f"{where}: {path}: {message}{tail}"


_SECTIONS = r"(privacy|budget|audit|columns|generator|dataset)"


def _path_in_message(message: str) -> list[str]:
    """Whole-policy checks name the key they are about (``privacy.epsilon is larger ...``)."""
    match = re.match(rf"^{_SECTIONS}((?:\.[A-Za-z_][A-Za-z0-9_]*)*)\b", message)
    return [match.group(1), *match.group(2).split(".")[1:]] if match else []


def _is_pydantic_branch(part: Any) -> bool:
    """Pydantic adds union branch names (e.g. 'tuple[...]', 'literal[...]') to error locations."""
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "float", "bool"})


def _line_of(node: yaml.Node | None, loc: list[Any]) -> int | None:
    """1-based line of the deepest YAML node that ``loc`` reaches."""
    best = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            key_of = {getattr(k, "value", None): (k, v) for k, v in node.value}
            key, match = key_of.get(str(part), (None, None))
            if match is None:
                return key.start_mark.line + 1 if key is not None else best
            node = match
        elif (isinstance(node, yaml.SequenceNode) and isinstance(part, int)
              and part < len(node.value)):
            node = node.value[part]
        else:
            return best
        best = node.start_mark.line + 1
    return best
