"""Seeded bugs for the DP correctness suite. TEST-ONLY: never reachable from a policy or the CLI.

The correctness suite (``tests/test_canary_audit.py``, ``tests/test_dp_sgd.py``) must *fail*
when the DP-SGD mechanism is broken. To prove it does, the tests switch on one of these known
bugs inside :func:`_testing_only_mutation` and check that some test catches it:

* ``noise_off``: the optimizer adds no noise (the accountant is still told sigma);
* ``noise_quarter``: the optimizer adds a quarter of the planned noise;
* ``clipping_off``: per-sample gradients are summed unclipped.

Nothing outside ``tests/`` may import this module's context manager; the trainer only asks
:func:`noise_multiplier` and :func:`clipping_coefficients`, which are the identity unless a
test switched a mutation on. The switch is process-global and not thread-safe, on purpose:
it exists only for single-threaded tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

KINDS = ("noise_off", "noise_quarter", "clipping_off")

_active: str | None = None


@contextmanager
def _testing_only_mutation(kind: str) -> Iterator[None]:
    """Run the block with one seeded DP-SGD bug switched on (tests only)."""
    global _active
    if kind not in KINDS:
        raise ValueError(f"unknown mutation {kind!r}; one of {KINDS}")
    if _active is not None:
        raise RuntimeError("a mutation is already active; they do not nest")
    _active = kind
    try:
        yield
    finally:
        _active = None


def active() -> str | None:
    """The mutation switched on, or None (always None outside the correctness tests)."""
    return _active


def noise_multiplier(planned: float) -> float:
    """The noise multiplier the optimizer uses: ``planned`` unless a noise mutation is on."""
    if _active == "noise_off":
        return 0.0
    if _active == "noise_quarter":
        return planned / 4.0
    return planned


def clipping_coefficients(coefficients: torch.Tensor) -> torch.Tensor:
    """Per-sample clipping factors: unchanged unless ``clipping_off`` is on (then all ones)."""
    if _active == "clipping_off":
        return torch.ones_like(coefficients)
    return coefficients
