"""The audit of a person-level release: members and non-members are *persons*.

Train and holdout are a split of persons (never of rows), so the exchangeability null of every
attack holds for persons. Two views of the same tables are audited, and both must pass:

* **one row per person** (a uniformly chosen row of each real and each synthetic person): every
  attack the policy asks for, anonymeter included, on independent rows; a copy of any single
  row of a training person shows up here with probability 1/rows of that person per audit;
* **the whole person** (the wide record: row count and every slot): exact copies of a person's
  whole sequence, DCR and near-copies, and membership inference over persons. Their risks carry
  the suffix ``_whole_person`` and the same thresholds.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from privsynth.audit.result import AuditResult
from privsynth.audit.runner import run_audit
from privsynth.data.persons import PersonLayout, one_row_per_person
from privsynth.data.schema import TableSchema
from privsynth.policy.model import AuditPolicy

#: Attacks that also run on whole persons (the others need one row per person).
WHOLE_PERSON_ATTACKS = ("exact_copy", "dcr", "mia")
SUFFIX = "_whole_person"


def run_person_audit(train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame,
                     layout: PersonLayout, row_schema: TableSchema, config: AuditPolicy, *,
                     seed: int | None) -> AuditResult:
    """Audit wide person records (model space, columns ``layout.names``); see the module
    docstring. ``seed`` seeds the row choice and both audits."""
    seeds = np.random.SeedSequence(seed).spawn(3)
    pick = np.random.default_rng(seeds[0])
    rows = run_audit(one_row_per_person(train, layout, pick),
                     one_row_per_person(holdout, layout, pick),
                     one_row_per_person(synthetic, layout, pick),
                     row_schema, config, seed=int(seeds[1].generate_state(1)[0]))
    asked = [a for a in config.attacks if a in WHOLE_PERSON_ATTACKS]
    if not asked:
        return _with_meta(rows, None, layout)
    whole_config = config.model_copy(update={
        "attacks": asked, "target": None, "quasi_identifiers": [], "secrets": [],
        "protected_attributes": [], "linkability_aux": None})
    whole = run_audit(train, holdout, synthetic, layout.schema(row_schema), whole_config,
                      seed=int(seeds[2].generate_state(1)[0]))
    return _with_meta(rows, whole, layout)


def _with_meta(rows: AuditResult, whole: AuditResult | None,
               layout: PersonLayout) -> AuditResult:
    meta = {**rows.meta, "unit": "person", "max_rows_per_person": layout.max_rows,
            "views": "one row per person (all attacks); whole person (" + ", ".join(
                WHOLE_PERSON_ATTACKS) + ")"}
    if whole is None:
        return replace(rows, meta=meta)
    meta["whole_person"] = {"rows": whole.meta.get("rows"),
                            "timings_s": whole.meta.get("timings_s")}
    renamed = tuple(replace(r, name=r.name + SUFFIX) for r in whole.risks)
    errors = tuple(replace(e, attack=e.attack + SUFFIX) for e in whole.errors)
    skipped = tuple(replace(n, attack=n.attack + SUFFIX) for n in whole.not_applicable)
    return replace(rows, risks=rows.risks + renamed, errors=rows.errors + errors,
                   not_applicable=rows.not_applicable + skipped, meta=meta)
