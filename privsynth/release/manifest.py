"""The release manifest: what was released, under which policy, at what privacy cost.

Everything needed to recompute epsilon is here (each charge's mechanism and exact inputs), so
``privsynth verify`` or an auditor with Opacus can check the figure without trusting privsynth.
The dataset appears only as a *keyed* fingerprint: a plain content hash in a shared file would let
anyone holding all but one row test candidates for the last one.
"""

from __future__ import annotations

import datetime as dt
import platform
from importlib import metadata
from typing import Any

from privsynth.data.schema import TableSchema
from privsynth.policy.model import Policy
from privsynth.privacy.accounting import dpsgd_epsilon
from privsynth.privacy.events import PrivacySpend

_PACKAGES = ("privsynth", "torch", "opacus", "numpy", "pandas", "scikit-learn", "anonymeter")


def versions() -> dict[str, str]:
    """Versions of Python and the packages whose behaviour shapes a release."""
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def build_manifest(*, release_id: str, policy: Policy, spend: PrivacySpend, schema: TableSchema,
                   n_train: int, n_holdout: int, seed_mode: str, keyed_fingerprint: str,
                   decision, ledger_spent: float, column_actions: dict[str, str]) -> dict[str, Any]:
    """The manifest dict (file hashes are added by the bundle writer)."""
    return {
        "format": "privsynth-release/1",
        "release_id": release_id,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "dataset": {"id": policy.dataset.id, "keyed_fingerprint": keyed_fingerprint,
                    "training_rows": n_train, "holdout_rows": n_holdout},
        "policy": {"name": policy.name, "digest": policy.digest()},
        "privacy": {
            "unit": "one row (add/remove adjacency)",
            "epsilon": spend.epsilon,
            "delta": spend.delta,
            "epsilon_allotted": policy.privacy.epsilon,
            "delta_allotted": policy.privacy.delta,
            "composition": "basic (sum over charges)",
            "stages": spend.by_stage(),
            "charges": [c.to_dict() for c in spend.charges],
            "seed_mode": seed_mode,
            "dataset_epsilon_spent_after": ledger_spent,
            "public_facts": "row counts; bounds and domains marked 'policy' in schema",
        },
        "schema": schema.to_dict(),
        "columns": column_actions,
        "generator": policy.generator.model_dump(mode="json"),
        "decision": {"passed": decision.passed, "reasons": list(decision.reasons)},
        "versions": versions(),
    }


def recompute_epsilon(manifest: dict[str, Any]) -> float:
    """Epsilon from the manifest's recorded mechanism inputs (DP-SGD via Opacus' accountant)."""
    total = 0.0
    for charge in manifest["privacy"]["charges"]:
        if charge["mechanism"] == "dp_sgd":
            p = charge["params"]
            total += dpsgd_epsilon(sigma=p["sigma"], q=p["q"], steps=p["steps"],
                                   delta=charge["delta"], accountant=p["accountant"])
        else:
            total += charge["epsilon"]
    return total
