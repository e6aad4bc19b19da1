"""Shared fixtures: small real tables from ../shared/datasets (skipped where absent) and the
bundled Adult demo table, which ships with the package."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one pytest worker per core (``pytest -n auto``): each worker's torch keeps to one thread,
    # so two workers on two cores do not fight over them
    torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
DEMO = ROOT / "privsynth" / "demo"


@pytest.fixture(scope="session")
def adult() -> pd.DataFrame:
    """The bundled UCI Adult table (48,842 rows)."""
    return pd.read_csv(DEMO / "adult.csv.gz", na_values=["?"], skipinitialspace=True)


@pytest.fixture(scope="session")
def adult_policy_path() -> Path:
    """The shipped demo policy."""
    return ROOT / "policies" / "adult-demo.yaml"


def shared_table(name: str) -> pd.DataFrame:
    """A table from ../shared/datasets, or skip the test with the reason."""
    path = SHARED / f"{name}.csv.gz"
    if not path.exists():
        pytest.skip(f"{path} is not present on this machine")
    return pd.read_csv(path)


@pytest.fixture(autouse=True, scope="session")
def _private_key_dir(tmp_path_factory: pytest.TempPathFactory):
    """Point PRIVSYNTH_KEY_DIR at a temporary folder so no test reads or writes the user's keys
    (session-wide: bundles signed in one test verify in another against the same key)."""
    path = tmp_path_factory.mktemp("privsynth-keys")
    mp = pytest.MonkeyPatch()
    mp.setenv("PRIVSYNTH_KEY_DIR", str(path))
    yield path
    mp.undo()
