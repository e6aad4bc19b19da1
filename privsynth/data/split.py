"""The audit holdout: a random split the generator never sees.

The split uses only a random permutation (no value of the data), so it costs no privacy budget.
Its sizes depend on the exact row count, so they stay internal; the error below names none.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from privsynth.errors import DataError


def train_holdout_split(
    frame: pd.DataFrame, holdout_fraction: float, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout) with ``round(n · holdout_fraction)`` rows held out, both non-empty."""
    n = len(frame)
    n_holdout = int(round(n * holdout_fraction))
    if n_holdout < 1 or n - n_holdout < 2:
        raise DataError(
            f"the table has too few rows to hold out {holdout_fraction:.0%} for the audit and "
            "still train; give more rows or change audit.holdout_fraction"
        )
    order = rng.permutation(n)
    holdout = frame.iloc[np.sort(order[:n_holdout])].reset_index(drop=True)
    train = frame.iloc[np.sort(order[n_holdout:])].reset_index(drop=True)
    return train, holdout
