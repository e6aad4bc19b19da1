"""Immutable records of what ran on private data, and at what privacy cost."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Charge:
    """One DP mechanism run on private data.

    ``mechanism`` names it (``laplace_histogram``, ``threshold_domain``, ``dp_sgd``); ``params``
    holds the exact inputs needed to recompute its epsilon (for DP-SGD: sigma, q, steps).
    """

    stage: str
    mechanism: str
    epsilon: float
    delta: float
    column: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


class PrivacySpend:
    """The list of charges one release made, in order. Append-only."""

    def __init__(self) -> None:
        self._charges: list[Charge] = []

    def add(self, charge: Charge) -> Charge:
        """Record ``charge`` and return it."""
        self._charges.append(charge)
        return charge

    @property
    def charges(self) -> tuple[Charge, ...]:
        """All charges so far."""
        return tuple(self._charges)

    @property
    def epsilon(self) -> float:
        """Basic composition: the sum of the charges' epsilons."""
        return float(sum(c.epsilon for c in self._charges))

    @property
    def delta(self) -> float:
        """Basic composition: the sum of the charges' deltas."""
        return float(sum(c.delta for c in self._charges))

    def by_stage(self) -> dict[str, dict[str, float]]:
        """Epsilon and delta summed per stage (``encoding``, ``training``)."""
        out: dict[str, dict[str, float]] = {}
        for c in self._charges:
            stage = out.setdefault(c.stage, {"epsilon": 0.0, "delta": 0.0})
            stage["epsilon"] += c.epsilon
            stage["delta"] += c.delta
        return out
