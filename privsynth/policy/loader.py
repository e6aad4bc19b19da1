"""Load a policy YAML file into a :class:`Policy`; every problem with its file, line and path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from privsynth.errors import PolicyError
from privsynth.policy.model import Policy

_FIXES = {
    "extra_forbidden": "remove this key or check its spelling",
    "missing": "add this key",
    "literal_error": "use one of the allowed values",
    "greater_than": "use a larger value",
    "less_than": "use a smaller value",
    "float_parsing": "write a number",
    "int_parsing": "write a whole number",
}


def load_policy(path: str | Path) -> Policy:
    """Read, parse and validate a policy file. Raises :class:`PolicyError` listing all problems."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError([f"cannot read the file ({exc.strerror})"], str(path)) from None
    return parse_policy(text, source=str(path))


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate policy YAML text. ``source`` names the file in error messages."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "somewhere"
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise PolicyError([f"{where}: {problem}; fix the YAML syntax"], source) from None
    if not isinstance(data, dict):
        raise PolicyError(["line 1: the policy must be a mapping of keys (e.g. 'name: ...')"],
                          source)
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError([_describe(err, root) for err in exc.errors()], source) from None


def _describe(err: dict[str, Any], root: yaml.Node | None) -> str:
    loc = [part for part in err["loc"] if not _is_pydantic_branch(part)]
    path = ".".join(str(p) for p in loc) or "(top level)"
    message = str(err["msg"]).removeprefix("Value error, ")
    line = _line_of(root, loc or _path_in_message(message))
    fix = _FIXES.get(err["type"])
    if err["type"] == "literal_error" and "expected" in err.get("ctx", {}):
        fix = f"use one of {err['ctx']['expected']}"
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
