"""``privsynth policy init``: a *draft* policy for a human to review, never a decision.

What it reads: every cell of every column. Kinds are inferred from the cells' formats, and
suspected identifiers are flagged from column names and from the shapes of a sample of values.
That reading is not differentially private and is not charged to any budget: the draft is a
local aid for the data owner, not a DP output, and must not be shared as if it were one (which
columns look like identifiers, and each column's kind, are facts about the data).

What it writes: no cell value and no count. It never fills bounds or category domains from the
data: every kept column gets ``bounds: dp`` or ``domain: dp`` (estimated with a DP mechanism paid
from epsilon) and a comment asking the human to declare public values instead where they are
known (a codebook, a regulation, a form's options). Delta is a fixed default, not derived from the
row count, and ``dataset.rows`` (the public size pre-flight needs) is left as a comment for the
human to fill from public knowledge.
"""

from __future__ import annotations

import json
import re
import textwrap

import pandas as pd

from privsynth.console import clean
from privsynth.policy.identifiers import KINDS, detect_identifiers, kind_by_name

_TRUE_FALSE = {"true", "false", "t", "f", "yes", "no", "y", "n"}
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def infer_kind(series: pd.Series) -> str:
    """The column kind its *format* suggests: boolean, integer, numeric, datetime, categorical."""
    values = series.dropna()
    if pd.api.types.is_bool_dtype(series.dtype):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return "datetime"
    if pd.api.types.is_numeric_dtype(series.dtype):
        if len(values) and values.isin([0, 1]).all():
            return "boolean"
        if pd.api.types.is_integer_dtype(series.dtype) or bool((values % 1 == 0).all()):
            return "integer"
        return "numeric"
    text = values.astype(str).str.strip()
    if len(text) and text.str.lower().isin(_TRUE_FALSE).all():
        return "boolean"
    numbers = pd.to_numeric(text, errors="coerce")
    if len(text) and numbers.notna().all():
        if numbers.isin([0, 1]).all():
            return "boolean"
        return "integer" if bool((numbers % 1 == 0).all()) else "numeric"
    if len(text) and text.str.match(r"^\d{4}-\d{2}-\d{2}").all():
        dates = pd.to_datetime(text, errors="coerce", format="ISO8601")
        if dates.notna().all():
            return "datetime"
    return "categorical"


def draft_policy(frame: pd.DataFrame, *, source_name: str) -> str:
    """Commented YAML of a draft policy for ``frame``. Loads with ``load_policy`` as written."""
    suspects = detect_identifiers(frame)
    slug = _slug(source_name)
    lines = [
        f"# DRAFT policy for {_comment_text(source_name)}, written by `privsynth policy init`.",
        "# Review every line before any release.",
        "# What was read: every cell of every column, to infer each column's kind from its",
        "# format and to flag suspected identifiers from names and value shapes. That reading is",
        "# not differentially private and costs no epsilon: this draft is a local aid for the",
        "# data owner, not a DP output; do not share it as if it were one (the kinds and the",
        "# flagged columns are facts about the data).",
        "# What was written: no cell value and no count. Every bound or domain is left to a DP",
        "# estimate (paid from epsilon) until you declare public values. Declared values must",
        "# be public knowledge (a codebook, a form, a regulation), never read off this table.",
        "# Before any release run `privsynth policy check THIS_FILE --rows N` (N: the table's",
        "# approximate public size): as drafted, with every bound and domain left to DP, most",
        "# tables are refused there, each finding naming its fix.",
        "version: 1",
        f"name: {slug}-draft",
        f"description: Draft for {_quote(source_name)}; reviewed by nobody yet.",
        "dataset:",
        f"  id: {slug}                        # the registered population it is charged to",
        '  missing_values: [""]               # texts marking a missing cell, e.g. ["", "?"]',
        "  # rows: N                          # the table's approximate PUBLIC size (\"about",
        "  #                                  # 30,000 patients\"), for pre-flight; fill it from",
        "  #                                  # public knowledge, never by counting this table",
        "privacy:",
        "  epsilon: 1.0                       # whole-pipeline epsilon of one release",
        "  delta: 1.0e-9                      # fixed default; must stay below 1/(10 n)",
        "  accountant: prv                    # Opacus PRV accountant; rdp is also allowed",
        "  encoding_share: 0.1                # share of epsilon for DP bounds, bins and domains",
        "budget: {}                           # total ε and δ: set once by a privacy officer",
        "                                     # with `privsynth budget register`",
        "columns:",
    ]
    kept = 0
    for column in frame.columns:
        name = str(column)
        key = _key(name)
        kind = suspects.get(name)
        if kind is not None:
            how = "its name" if kind_by_name(name) == kind else "the shape of its values"
            fixes = ["rule: pseudonymize (fresh random values in the output)"]
            fixes += [f"rule: generalize with to: {to}" for to in sorted(KINDS[kind].generalize_ok)]
            lines.append(f"  # SUSPECTED IDENTIFIER: {KINDS[kind].label} (by {how}). Dropped.")
            advice = (f"Alternatives: {'; '.join(fixes)}; or keep it with 'identifier: false' "
                      "once a human has checked that it is not one.")
            lines += [f"  # {part}" for part in textwrap.wrap(advice, 94)]
            lines.append(f"  {key}: {{rule: drop}}")
            continue
        column_kind = infer_kind(frame[column])
        kept += 1
        if column_kind == "categorical":
            lines.append(f"  {key}: {{kind: categorical, domain: dp}}"
                         "   # declare the public category list if known (free)")
        elif column_kind == "boolean":
            lines.append(f"  {key}: {{kind: boolean}}")
        else:
            example = "['2000-01-01', '2030-12-31']" if column_kind == "datetime" else "[low, high]"
            lines.append(f"  {key}: {{kind: {column_kind}, bounds: dp}}"
                         f"   # declare public bounds {example} if known (free)")
    if kept == 0:
        lines.append("  # Every column looks like an identifier: keep at least one column.")
    lines += [
        "audit:",
        "  holdout_fraction: 0.5              # rows held out as the audit's non-member control",
        "  quasi_identifiers: []              # columns an attacker could know (age, sex, ...)",
        "  secrets: []                        # columns an attacker must not infer",
        "  attacks: [exact_copy, dcr, mia, unique_qi, singling_out, targeted_mia]",
        "",
    ]
    return "\n".join(lines)


def _slug(source_name: str) -> str:
    stem = re.sub(r"(\.(csv|gz|parquet|pq|tsv|txt))+$", "", str(source_name).split("/")[-1],
                  flags=re.IGNORECASE)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "dataset"
    return slug[:60]


def _key(name: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name) and name.lower() not in _YAML_WORDS:
        return name
    return json.dumps(name)


def _quote(text: str) -> str:
    return json.dumps(str(text))[1:-1].replace(":", " -").replace("#", "")


def _comment_text(text: str) -> str:
    """``text`` fit for a YAML comment: one line, control characters escaped (YAML refuses
    them, so a file name holding one would make the whole draft unreadable)."""
    return clean(text)


__all__ = ["draft_policy", "infer_kind"]
