"""Typed errors. Messages name columns, files and counts, never a cell value of private data."""

from __future__ import annotations


class PrivsynthError(Exception):
    """Base class of every error privsynth raises on purpose."""


class PolicyError(PrivsynthError):
    """A policy file is invalid. ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: list[str], source: str = "<policy>") -> None:
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s) in the policy:\n{lines}")

    def __reduce__(self):  # noqa: ANN204 - pickled across processes with its own arguments
        return (type(self), (self.problems, self.source))


class DataError(PrivsynthError):
    """The input table does not match what the policy declares, or cannot be read."""


class IdentifierError(DataError):
    """A column looks like a direct identifier and the policy gives it no rule."""


class PrivacyError(PrivsynthError):
    """A privacy parameter is unsafe or impossible (e.g. delta too large, sigma of zero)."""


class BudgetExceededError(PrivsynthError):
    """The ledger refuses a charge: the population's remaining budget is too small."""

    def __init__(self, dataset: str, requested: float, remaining: float) -> None:
        self.dataset = dataset
        self.requested = requested
        self.remaining = remaining
        super().__init__(
            f"budget for dataset '{dataset}' exceeded: Requested ε={requested:.6g}, "
            f"Remaining ε={remaining:.6g}, Difference ε={requested - remaining:.6g}. "
            "Lower privacy.epsilon in the policy, or have the privacy officer raise the "
            "population's total with `privsynth budget set-total` (a recorded action)."
        )

    def __reduce__(self):  # noqa: ANN204
        return (type(self), (self.dataset, self.requested, self.remaining))


class LedgerError(PrivsynthError):
    """The ledger cannot be opened, or its hash chain does not verify."""


class AuditError(PrivsynthError):
    """An audit attack could not run. The gate treats this as a block, never as a pass."""


class GateBlocked(PrivsynthError):
    """Raised by callers who want an exception when the gate blocks a release."""


class PreflightRefused(PolicyError):
    """Pre-flight predicts a useless or blocked release; nothing was reserved."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__(messages, "pre-flight (nothing was reserved)")

    def __reduce__(self):  # noqa: ANN204
        return (type(self), (self.problems,))
