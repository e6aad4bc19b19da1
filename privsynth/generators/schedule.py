"""The DP-SGD schedule a policy gets when it does not set one: a rule on public facts only.

``generator.batch_size: auto`` and ``generator.epochs: auto`` (the defaults) are resolved here
from the *public* training row count (N̂, the DP row count, or persons under ``unit: person``;
the pre-flight uses the policy's declared ``dataset.rows``) and the backend. No cell value, no
private count and no tuning on the user's table enters the rule, so it costs no ε.

**The rule** (derived from ``benchmarks/defaults_study.py``, table in the module docs below):

* expected batch ``B = clamp(round(RATE·N̂), MIN_BATCH, MAX_BATCH)`` (VAE: RATE 0.1; GAN: 0.02);
* ``STEPS`` DP-SGD steps (VAE 300, GAN 1,000), i.e. ``epochs = STEPS·B/N̂``.

Why a fixed sampling rate and a fixed number of steps rather than fixed epochs and batch: at a
fixed ε the calibrated noise multiplier grows about like q·√steps, so the noise in the averaged
gradient, σ·C/(q·N̂), depends on the number of steps and N̂ far more than on the batch; what a
constant batch does is change the number of steps with the table's size. The old defaults (30
epochs at E[B] = 4,096, tuned on Adult's 24k training rows: 179 steps) gave a 500-row table 30
full-batch steps, and every column of the outcome came out independent. A rate of 0.1 keeps the
Poisson amplification effective (σ stays in the large-noise regime where the accountant is
tight) and 300 steps is where the study's tables stopped improving at ε = 1.

The measured study (``python benchmarks/defaults_study.py --seeds 2 --jobs 2``) is quoted in
``docs/architecture.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: target Poisson sampling rate q = E[B] / N̂, per backend
RATE = {"vae": 0.1, "gan": 0.02}
#: DP-SGD steps per backend. The GAN's pair (rate 0.02, 1,000 steps) is its Adult tuning
#: (20 epochs at E[B] = 512 of 24k rows: about 950 discriminator steps) written as a rate, so a
#: small table gets the same number of steps instead of a handful of full batches.
STEPS = {"vae": 300, "gan": 1000}
MIN_BATCH = 16
MAX_BATCH = 16384
AUTO = "auto"


@dataclass(frozen=True)
class Schedule:
    """A resolved schedule: expected batch, epochs (passes in expectation), and how it was set."""

    batch_size: int
    epochs: float
    source: str  # "policy", "auto" or "policy batch, auto epochs" ...

    def steps_for(self, n_rows: int) -> int:
        """Steps the trainer runs for ``n_rows`` public rows: ``ceil(epochs / q)``, q = B / n."""
        rate = min(1.0, self.batch_size / max(n_rows, 1))
        return max(1, math.ceil(self.epochs / rate - 1e-9))


def auto_batch(n_public: int, backend: str = "vae") -> int:
    """The rule's expected batch for ``n_public`` public training rows (or persons)."""
    rate = RATE.get(backend, RATE["vae"])
    return int(min(MAX_BATCH, max(MIN_BATCH, round(rate * n_public))))


def resolve_schedule(batch_size: int | str, epochs: float | str, n_public: int,
                     backend: str) -> Schedule:
    """The expected batch and epochs for a policy's ``batch_size``/``epochs`` (each a number or
    ``"auto"``) and the public row count ``n_public``. A number given by the policy is kept;
    ``auto`` epochs give the backend's ``STEPS`` steps at the resolved batch."""
    n = max(int(n_public), 1)
    batch = auto_batch(n, backend) if batch_size == AUTO else int(batch_size)
    if epochs == AUTO:
        rate = min(1.0, batch / n)
        epochs_value = STEPS.get(backend, STEPS["vae"]) * rate
    else:
        epochs_value = float(epochs)
    given = [name for name, v in (("batch", batch_size), ("epochs", epochs)) if v != AUTO]
    source = ("policy" if len(given) == 2 else AUTO if not given
              else f"policy {given[0]}, auto {'epochs' if given[0] == 'batch' else 'batch'}")
    return Schedule(batch, epochs_value, source)
