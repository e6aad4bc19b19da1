"""Result types of the audit. Everything in them is an aggregate: no cell value of a real row."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

REASON_CODES = (
    "attack_error",
    "timeout",
    "nan_result",
    "too_few_attacks",
    "empty_table",
    "schema_mismatch",
    "missing_config",
)


@dataclass(frozen=True)
class RiskResult:
    """One measured risk. ``threshold_key`` names the ``Thresholds`` field that gates it (None:
    reported, not gated). ``ci_low``/``ci_high`` are a two-sided interval at the audit's
    confidence level; the gate uses ``ci_high``."""

    name: str
    value: float
    ci_low: float
    ci_high: float
    baseline: float | None
    threshold_key: str | None
    details: dict = field(default_factory=dict)
    attack: str = ""

    def is_finite(self) -> bool:
        return all(
            isinstance(v, int | float) and math.isfinite(v)
            for v in (self.value, self.ci_low, self.ci_high)
        )


@dataclass(frozen=True)
class AuditFailure:
    """An attack that could not give a trustworthy answer. The gate blocks on every one."""

    attack: str
    reason_code: str
    message: str


@dataclass(frozen=True)
class NotApplicable:
    """An attack (or one mode of it) that the table cannot support, e.g. anonymeter could not
    generate its queries. Neither a pass nor a failure: the gate does not count it as evidence
    and does not block on it; the report shows it with the reason."""

    attack: str
    reason: str
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AuditResult:
    """Everything the audit found: risks, failures, utility evidence and figure data."""

    risks: tuple[RiskResult, ...]
    errors: tuple[AuditFailure, ...] = ()
    utility: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)
    attacks_requested: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict)
    not_applicable: tuple[NotApplicable, ...] = ()

    def risk(self, name: str) -> RiskResult:
        for r in self.risks:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "risks": [_clean(asdict(r)) for r in self.risks],
            "errors": [asdict(e) for e in self.errors],
            "utility": _clean(self.utility),
            "figures": _clean(self.figures),
            "attacks_requested": list(self.attacks_requested),
            "meta": _clean(self.meta),
            "not_applicable": [_clean(asdict(n)) for n in self.not_applicable],
        }


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf become None, numpy scalars become Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if hasattr(obj, "tolist"):
        return _clean(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
