"""Seeded DP-SGD bugs for the correctness tests, applied by patching from the outside.

Production code has no switch for these: each context manager monkeypatches the real trainer or
Opacus' module for the duration of a block, and the tests check that they catch the bug.

* ``noise_off``: the optimizer adds no noise (the accountant is still told sigma);
* ``noise_quarter``: the optimizer adds a quarter of the planned noise;
* ``clipping_off``: per-sample gradients are summed unclipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import torch
from opacus.grad_sample import GradSampleModuleFastGradientClipping

from privsynth.generators.dp_sgd import DPSGDTrainer

KINDS = ("noise_off", "noise_quarter", "clipping_off")


@contextmanager
def mutation(kind: str) -> Iterator[None]:
    """Run the block with one seeded DP-SGD bug patched in."""
    if kind not in KINDS:
        raise ValueError(f"unknown mutation {kind!r}; one of {KINDS}")
    if kind == "clipping_off":
        original = GradSampleModuleFastGradientClipping.get_clipping_coef

        def ones(self):
            return torch.ones_like(original(self))

        with mock.patch.object(GradSampleModuleFastGradientClipping, "get_clipping_coef", ones):
            yield
        return
    factor = 0.0 if kind == "noise_off" else 0.25
    init = DPSGDTrainer.__init__

    def scaled_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.optimizer.noise_multiplier = self.plan.noise_multiplier * factor

    with mock.patch.object(DPSGDTrainer, "__init__", scaled_init):
        yield
