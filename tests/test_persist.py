"""Saving a trained generator: it round-trips, and no training row is in the saved files."""

from __future__ import annotations

import struct

import numpy as np
import pandas as pd
import pytest
import torch

from privsynth.data.table import prepare_table
from privsynth.encoding.table_encoder import TableEncoder, encoding_budget
from privsynth.generators import registry
from privsynth.generators.dp_sgd import DPSGDConfig
from privsynth.generators.persist import CONFIG_FILE, WEIGHTS_FILE, load_generator, save_generator
from privsynth.policy.loader import parse_policy
from privsynth.privacy.events import PrivacySpend
from privsynth.privacy.noise import SeededNoise

POLICY = """
name: canary
dataset: {id: canary}
privacy: {epsilon: 2.0, delta: 1.0e-6, encoding_share: 0.5}
budget: {}
generator: {backend: BACKEND, epochs: 1, batch_size: 256, hidden: [16]}
columns:
  age:  {kind: integer, bounds: dp, binning: quantile, bins: 6}
  gain: {kind: numeric, bounds: [0, 100000], binning: quantile, bins: 6}
  job:  {kind: categorical, domain: dp}
  sex:  {kind: categorical, domain: [Female, Male]}
"""

CANARY_TEXT = ["CANARY-Zq7x-1f9e", "CANARY-Wv3k-80aa", "CANARY-Pp0m-c41d"]
CANARY_NUMBERS = [77777.123, 65432.987, 99991.25, 123.456]
CONFIG = DPSGDConfig(epsilon=1.0, delta=1e-6, expected_batch_size=256, epochs=1,
                     max_grad_norm=1.0, learning_rate=5e-3)


@pytest.fixture(scope="module")
def table(adult) -> pd.DataFrame:
    rows = adult.sample(3000, random_state=2)
    frame = pd.DataFrame({"age": rows["age"], "gain": rows["capital_gain"].astype(float),
                          "job": rows["occupation"], "sex": rows["sex"]})
    canaries = pd.DataFrame({"age": [123, 124, 125], "gain": CANARY_NUMBERS[:3],
                             "job": CANARY_TEXT, "sex": ["Female", "Male", "Female"]})
    return pd.concat([frame, canaries], ignore_index=True)


def needles() -> list[bytes]:
    out = []
    for text in CANARY_TEXT:
        out += [text.encode("utf-8"), text.encode("utf-16-le"), text.encode("utf-32-le")]
    for x in CANARY_NUMBERS:
        out += [repr(x).encode(), struct.pack("<d", x), struct.pack("<f", x)]
    return out


def fit_backend(backend: str, table: pd.DataFrame):
    policy = parse_policy(POLICY.replace("BACKEND", backend))
    frame = prepare_table(table, policy).frame
    encoder = TableEncoder.fit(frame, policy, encoding_budget(policy), PrivacySpend(),
                               SeededNoise(np.random.default_rng(0)))
    model = registry.make_generator(policy.generator)
    model.fit(encoder.transform(frame), encoder.widths, CONFIG,
              generator=torch.Generator().manual_seed(0), device=torch.device("cpu"),
              noise=SeededNoise(np.random.default_rng(1)))
    return model, encoder


@pytest.mark.parametrize("backend", registry.BACKENDS)
def test_saved_files_hold_no_canary_bytes(backend, table, tmp_path):
    model, encoder = fit_backend(backend, table)
    folder = save_generator(model, encoder, tmp_path / "model")
    files = sorted(p.name for p in folder.iterdir())
    assert files == sorted([CONFIG_FILE, WEIGHTS_FILE])
    blob = b"".join(p.read_bytes() for p in folder.iterdir())
    found = [n for n in needles() if n in blob]
    assert not found, f"training values found in the saved model: {found}"
    # the check can see: a value the encoder kept (a public domain entry) is in the files
    assert b"Female" in blob


@pytest.mark.parametrize("backend", registry.BACKENDS)
def test_round_trip_samples_the_same_rows(backend, table, tmp_path):
    model, encoder = fit_backend(backend, table)
    save_generator(model, encoder, tmp_path / "m")
    loaded, loaded_encoder = load_generator(tmp_path / "m")
    assert loaded.name == backend
    assert loaded_encoder.schema == encoder.schema
    assert [c.to_dict() for c in loaded.charges_] == [c.to_dict() for c in model.charges_]
    first = model.sample(300, generator=torch.Generator().manual_seed(5))
    again = loaded.sample(300, generator=torch.Generator().manual_seed(5))
    assert np.array_equal(first, again)
    rng = np.random.default_rng(1)
    decoded = loaded_encoder.inverse_transform(again, rng)
    assert list(decoded.columns) == encoder.schema.names


def test_weights_load_refuses_pickled_objects(tmp_path, table):
    model, encoder = fit_backend("vae", table)
    folder = save_generator(model, encoder, tmp_path / "m")
    torch.save({"evil": object()}, folder / WEIGHTS_FILE)
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        load_generator(folder)


def test_unfitted_generator_is_refused(tmp_path):
    from privsynth.errors import PrivacyError  # noqa: PLC0415
    from privsynth.generators.gan import DPGAN  # noqa: PLC0415

    with pytest.raises(PrivacyError):
        save_generator(DPGAN(), TableEncoder([]), tmp_path / "m")
