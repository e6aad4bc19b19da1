"""privsynth: differentially private synthetic tables behind a policy, a ledger and an audit gate.

Public API::

    with Ledger.open(".privsynth/ledger.sqlite") as book:   # once, by a privacy officer
        book.register("patients", total_epsilon=5, total_delta=1e-5,
                      sketch=book.sketch("patients.csv"), officer="J. Doe")
    policy = load_policy("policies/patients.yaml")        # dataset.id: patients
    release = synthesize("patients.csv", policy, ledger=".privsynth/ledger.sqlite")
    release.decision, release.write("releases/v1")

    model = Synthesizer(policy, ledger=".privsynth/ledger.sqlite").fit(train)  # spends ε
    model.sample(1000)                                     # free post-processing
    model.release("releases/v2", holdout=holdout)          # audit, gate, signed bundle
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
    "Ledger",
    "LedgerError",
    "Policy",
    "PolicyError",
    "PrivacyError",
    "PrivsynthError",
    "Release",
    "Synthesizer",
    "load_policy",
    "parse_policy",
    "synthesize",
]


def __getattr__(name: str):
    """Import the heavy pipeline (torch, Opacus) only when it is first used."""
    if name in ("synthesize", "Release"):
        from privsynth import pipeline  # noqa: PLC0415

        return getattr(pipeline, name)
    if name == "Synthesizer":
        from privsynth.synthesizer import Synthesizer  # noqa: PLC0415

        return Synthesizer
    if name == "Ledger":
        from privsynth.privacy.ledger import Ledger  # noqa: PLC0415

        return Ledger
    raise AttributeError(f"module 'privsynth' has no attribute {name!r}")
