"""privsynth: differentially private synthetic tables behind a policy, a ledger and an audit gate.

Public API::

    policy = load_policy("policies/adult-demo.yaml")
    release = synthesize("patients.csv", policy)
    release.decision, release.write("releases/v1")
"""

from __future__ import annotations

from privsynth.errors import (
    AuditError,
    BudgetExceededError,
    DataError,
    GateBlocked,
    IdentifierError,
    LedgerError,
    PolicyError,
    PrivacyError,
    PrivsynthError,
)
from privsynth.policy.loader import load_policy, parse_policy
from privsynth.policy.model import Policy

__version__ = "0.1.0"

__all__ = [
    "AuditError",
    "BudgetExceededError",
    "DataError",
    "GateBlocked",
    "IdentifierError",
    "LedgerError",
    "Policy",
    "PolicyError",
    "PrivacyError",
    "PrivsynthError",
    "Release",
    "load_policy",
    "parse_policy",
    "synthesize",
]


def __getattr__(name: str):
    """Import the heavy pipeline (torch, Opacus) only when it is first used."""
    if name in ("synthesize", "Release"):
        from privsynth import pipeline  # noqa: PLC0415

        return getattr(pipeline, name)
    raise AttributeError(f"module 'privsynth' has no attribute {name!r}")
