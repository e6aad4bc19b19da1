"""The VAE's target weight (issue 11): the column the analyst will predict gets a weight in the
reconstruction loss, chosen from public facts only (the policy names the target; ``auto`` is the
number of other modelled columns).

Before it, the loss summed every column's cross-entropy with weight 1, and under DP-SGD's noise
the one relation an analyst fits (target given the rest) was lost on small tables: TSTR at
chance on German credit, telecom churn and pbc visits at ε = 1 (docs/defaults_study.md).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from ledger_helpers import registered_ledger

from privsynth.errors import PolicyError
from privsynth.generators.base import block_cross_entropy
from privsynth.pipeline import _column_weights
from privsynth.policy.loader import parse_policy
from privsynth.synthesizer import Synthesizer

POLICY = """
name: planted-target
dataset: {{id: planted, rows: 4000}}
privacy: {{epsilon: 1.0, delta: 1.0e-6, encoding_share: 0.1}}
seed: {seed}
generator: {{backend: vae, device: cpu{extra}}}
columns:
  x: {{kind: numeric, bounds: [0, 10], binning: uniform, bins: 10, complete: true}}
{noise}
  y: {{kind: categorical, domain: ["no", "yes"], complete: true}}
audit: {{holdout_fraction: 0.5, target: y, attacks: [exact_copy], utility: {{tstr: false}}}}
"""
NOISE_COLUMNS = [f"c{i}" for i in range(12)]


def _policy(seed: int, extra: str = "") -> str:
    noise = "\n".join(f'  {c}: {{kind: categorical, domain: [a, b, c, d], complete: true}}'
                      for c in NOISE_COLUMNS)
    return POLICY.format(seed=seed, extra=extra, noise=noise)


def _planted(n: int, seed: int) -> pd.DataFrame:
    """y is "yes" for x > 5 with probability 0.9; twelve uniform columns carry nothing."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 10, n).round(2)
    y = np.where((x > 5) ^ (rng.random(n) < 0.1), "yes", "no")
    frame = {"x": x}
    frame.update({c: rng.choice(list("abcd"), n) for c in NOISE_COLUMNS})
    frame["y"] = y
    return pd.DataFrame(frame)


def test_a_weight_scales_its_own_block_only():
    logits = torch.randn(5, 7)
    codes = torch.tensor([[0, 1, 2]] * 5)
    widths = [2, 2, 3]
    plain = block_cross_entropy(logits, codes, widths)
    weighted = block_cross_entropy(logits, codes, widths, [1.0, 1.0, 4.0])
    last = -torch.log_softmax(logits[:, 4:], dim=1)[:, 2]
    torch.testing.assert_close(weighted - plain, 3.0 * last)


def test_auto_gives_the_target_the_weight_of_the_other_columns():
    policy = parse_policy(_policy(0), "p.yaml")
    assert policy.generator.target_weight == "auto"
    names = ["x", *NOISE_COLUMNS, "y"]
    encoder = SimpleNamespace(schema=SimpleNamespace(names=names), modelled_names=names)
    assert _column_weights(encoder, policy) == [1.0] * 13 + [13.0]
    fixed = parse_policy(_policy(0, ", target_weight: 3"), "p.yaml")
    assert _column_weights(encoder, fixed) == [1.0] * 13 + [3.0]
    off = parse_policy(_policy(0, ", target_weight: 1"), "p.yaml")
    assert _column_weights(encoder, off) is None
    no_target = parse_policy(_policy(0).replace("target: y, ", ""), "p.yaml")
    assert _column_weights(encoder, no_target) is None
    gan = parse_policy(_policy(0).replace("backend: vae", "backend: gan"), "p.yaml")
    assert _column_weights(encoder, gan) is None


def test_a_weight_below_one_is_refused_with_the_line():
    with pytest.raises(PolicyError) as err:
        parse_policy(_policy(0, ", target_weight: 0.5"), "p.yaml")
    assert "target_weight" in str(err.value) and "p.yaml" in str(err.value)


def _tstr(tmp_path, seed: int, extra: str = "") -> float:
    real = _planted(4000, seed=99)
    train, holdout = real.iloc[:2000], real.iloc[2000:]
    policy = parse_policy(_policy(seed, extra), "planted.yaml")
    ledger = registered_ledger(tmp_path / f"l{seed}{len(extra)}.sqlite", "planted", train,
                               total_epsilon=100.0)
    model = Synthesizer(policy, ledger=ledger).fit(train.reset_index(drop=True))
    tstr = model.audit(None, holdout.reset_index(drop=True)).utility["tstr"]
    return float(tstr["synthetic"]["roc_auc"])


def test_the_default_keeps_the_target_relation_at_epsilon_one(tmp_path):
    """Real TSTR here is about 0.9 (y follows x > 5 nine times in ten). Unweighted, 12 noise
    columns drown y's one-column relation under DP-SGD at ε = 1; the default weight keeps it.
    Two seeded fits each, compared in the mean; the limits leave about half the measured gap
    (0.80 against 0.56) for platform differences."""
    weighted = np.mean([_tstr(tmp_path, s) for s in (1, 2)])
    unweighted = np.mean([_tstr(tmp_path, s, ", target_weight: 1") for s in (1, 2)])
    assert weighted > 0.7, (weighted, unweighted)  # measured 0.80 (seeds 1, 2)
    assert weighted > unweighted + 0.1, (weighted, unweighted)  # measured 0.56


@pytest.mark.parametrize(("target", "expected"), [
    ("arm", ([1.0, 1.0, 1.0], [1.0, 1.0, 4.0])),   # a varying column: the row decoder's block
    ("sex", ([1.0, 4.0, 1.0], [1.0, 1.0, 1.0])),   # a fixed column: the person block
])
def test_the_person_vae_weights_the_target_where_it_is_modelled(target, expected):
    from test_person_privacy import policy_of, spec  # noqa: PLC0415

    from privsynth.encoding.person_encoder import PersonEncoder  # noqa: PLC0415

    data = spec()
    data["audit"]["target"] = target
    policy = policy_of(data)
    names = ["sex", "age", "day", "lab", "arm"]
    base = SimpleNamespace(schema=SimpleNamespace(names=names), modelled_names=names)
    encoder = PersonEncoder(base, 3, ("sex", "age"))
    assert encoder.column_groups == (["sex", "age"], ["day", "lab", "arm"])
    assert _column_weights(encoder, policy) == expected  # [row count, *fixed], [*varying]


def test_the_manifest_states_the_weight_the_pipeline_trained_with():
    from privsynth.release.manifest import _generator_settings  # noqa: PLC0415

    names = ["x", *NOISE_COLUMNS, "y"]
    schema = SimpleNamespace(names=names)
    vae = parse_policy(_policy(0), "p.yaml")
    gan = parse_policy(_policy(0).replace("backend: vae", "backend: gan"), "p.yaml")
    assert _generator_settings(vae, schema)["target_weight_applied"] == 13.0
    assert _generator_settings(gan, schema)["target_weight_applied"] == 1.0
    encoder = SimpleNamespace(schema=schema, modelled_names=names)
    assert max(_column_weights(encoder, vae)) == 13.0
