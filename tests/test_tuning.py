"""Accounted tuning by random stopping (issue 11, item 2).

Training several configurations and releasing the best leaks through the choice. Papernot &
Steinke's random stopping bounds it when the number of runs K is random and secret; these tests
pin the accounting to an independent transcription of their Theorem 2, check the draws of K
against the distribution's mean, check that the score reads only paid-for tables, that the
selection finds a clearly better candidate, and that a tuned release states, pays and verifies
its cost without ever stating K.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from ledger_helpers import registered_ledger
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

import privsynth
from privsynth.data.schema import ColumnSchema
from privsynth.encoding.categorical import CategoricalEncoder
from privsynth.errors import PolicyError
from privsynth.generators.dp_sgd import DPSGDConfig
from privsynth.generators.registry import make_generator
from privsynth.generators.tuning import TuningScore, fit_tuned
from privsynth.pipeline import _trained_under_dp
from privsynth.policy.loader import parse_policy
from privsynth.privacy import random_stopping as rs
from privsynth.privacy.events import Charge, PrivacySpend
from privsynth.privacy.mechanisms import charge_cost
from privsynth.privacy.noise import SeededNoise


# ------------------------------------------------------------------ the accounting
def _theorem_2(runs, eta: float, gamma: float, delta: float) -> float:
    """Papernot & Steinke (2022), Theorem 2, transcribed loop by loop from the paper."""
    if eta == 0:
        mean_k = (1 / gamma - 1) / math.log(1 / gamma)
    else:
        mean_k = eta * (1 - gamma) / (gamma * (1 - gamma**eta))

    def q_rdp(order: float) -> float:
        return max(compute_rdp(q=q, noise_multiplier=s, steps=k, orders=[order])[0]
                   for s, q, k in runs)

    best_hat = min([(1 + eta) * math.log(1 / gamma)]  # λ̂ = 1
                   + [(1 + eta) * (1 - 1 / h) * q_rdp(h) + (1 + eta) * math.log(1 / gamma) / h
                      for h in rs.ORDERS])
    curve = [q_rdp(lam) + best_hat + math.log(mean_k) / (lam - 1) for lam in rs.ORDERS]
    return get_privacy_spent(orders=list(rs.ORDERS), rdp=curve, delta=delta)[0]


RUNS = [(1.2, 0.05, 200), (0.9, 0.02, 400), (1.5, 0.1, 100)]


@pytest.mark.parametrize(("eta", "expected"), [(0.0, 3.0), (1.0, 2.0), (0.5, 5.0)])
def test_tuned_epsilon_is_theorem_2(eta, expected):
    gamma = rs.gamma_for(expected, eta)
    assert rs.expected_runs(eta, gamma) == pytest.approx(expected, rel=1e-6)
    assert rs.tuned_epsilon(RUNS, eta, gamma, 1e-6) == pytest.approx(
        _theorem_2(RUNS, eta, gamma, 1e-6), rel=1e-9)


def test_tuning_costs_more_than_any_single_run_and_grows_with_the_runs():
    single = max(get_privacy_spent(orders=list(rs.ORDERS), delta=1e-6, rdp=compute_rdp(
        q=q, noise_multiplier=s, steps=k, orders=list(rs.ORDERS)))[0] for s, q, k in RUNS)
    costs = [rs.tuned_epsilon(RUNS, 0.0, rs.gamma_for(m, 0.0), 1e-6) for m in (2, 3, 5, 10)]
    assert single < costs[0]
    assert costs == sorted(costs) and costs[-1] > costs[0]
    # η = 1 (geometric) costs more than η = 0 (logarithmic) for the same E[K]
    assert rs.tuned_epsilon(RUNS, 1.0, rs.gamma_for(3, 1.0), 1e-6) > costs[1]


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0, 2.0])
def test_the_number_of_runs_follows_its_distribution(eta):
    gamma = rs.gamma_for(3.0, eta)
    uniforms = np.random.default_rng(7).random(40_000)
    draws = np.array([rs.draw_runs(eta, gamma, u) for u in uniforms])
    assert draws.min() >= 1
    # the mean of 40,000 draws is within 5 standard errors of E[K]
    assert abs(draws.mean() - 3.0) < 5 * draws.std() / math.sqrt(len(draws))
    if eta == 1.0:  # geometric: P[K = 1] = γ
        assert abs((draws == 1).mean() - gamma) < 5 * math.sqrt(gamma * (1 - gamma) / 40_000)


def test_calibration_spends_the_budget_and_no_more():
    plans = [(0.05, 200), (0.02, 400)]
    gamma = rs.gamma_for(3.0, 0.0)
    sigmas = rs.calibrate(plans, epsilon=2.0, delta=1e-6, eta=0.0, gamma=gamma)
    runs = [(s, q, k) for s, (q, k) in zip(sigmas, plans, strict=True)]
    assert rs.tuned_epsilon(runs, 0.0, gamma, 1e-6) <= 2.0
    tighter = [(0.995 * s, q, k) for s, q, k in runs]  # 0.5% less noise overspends
    assert rs.tuned_epsilon(tighter, 0.0, gamma, 1e-6) > 2.0


def test_the_recorded_charge_recomputes_and_counts_as_dp_training():
    gamma = rs.gamma_for(3.0, 0.0)
    eps = rs.tuned_epsilon(RUNS, 0.0, gamma, 1e-6)
    params = {"runs": [list(r) for r in RUNS], "eta": 0.0, "gamma": gamma, "row_count": "dp"}
    assert charge_cost("dp_sgd_tuned", params, 1e-6) == pytest.approx((eps, 1e-6))
    assert _trained_under_dp(Charge("training", "dp_sgd_tuned", eps, 1e-6, None, params))
    zero = {**params, "runs": [[0.0, 0.05, 200], *params["runs"][1:]]}
    assert not _trained_under_dp(Charge("training", "dp_sgd_tuned", eps, 1e-6, None, zero))


# ------------------------------------------------------------------ the score
def _codes(n: int, seed: int, linked: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = np.where(rng.random(n) < 0.9, y * 2 + rng.integers(0, 2, n), rng.integers(0, 4, n))
    if not linked:
        x = rng.permutation(x)
    return np.stack([x, y], axis=1)


def _encoders() -> list[CategoricalEncoder]:
    def encoder(name: str, cats: tuple[str, ...]) -> CategoricalEncoder:
        return CategoricalEncoder(ColumnSchema(name, "categorical", domain=cats,
                                               domain_source="policy"), cats, complete=True)

    return [encoder("x", ("a", "b", "c", "d")), encoder("y", ("no", "yes"))]


def test_the_score_pays_for_every_table_and_prefers_the_real_relation():
    spend = PrivacySpend()
    score = TuningScore.measure(_codes(20_000, 0), _encoders(), ["x", "y"], 1, 20_000, 1.0,
                                spend, SeededNoise(np.random.default_rng(0)))
    assert [c.stage for c in spend.charges] == ["tuning"]
    assert sum(c.epsilon for c in spend.charges) == pytest.approx(1.0)
    assert score.score(_codes(20_000, 1)) < 0.03  # a fresh draw of the same population
    assert score.score(_codes(20_000, 1, linked=False)) > 0.3  # the target relation lost


# ------------------------------------------------------------------ the selection
def test_random_stopping_keeps_the_candidate_that_learned():
    """Two candidates: one whose learning rate cannot move the weights in the steps it has.
    With K = 6 runs, the picks reach the one that learned unless all six miss it (1/64; the
    picks here are seeded), and the kept run must be it."""
    policy = parse_policy("""
name: tune
dataset: {id: tune}
privacy: {epsilon: 8, delta: 1.0e-6}
generator:
  epochs: 8
  batch_size: 400
  tuning:
    candidates: [{learning_rate: 1.0e-7}, {learning_rate: 0.02}]
    expected_runs: 6
columns:
  x: {kind: categorical, domain: [a, b, c, d]}
  y: {kind: categorical, domain: ["no", "yes"]}
""")
    codes = _codes(2_000, 3)
    spend = PrivacySpend()
    score = TuningScore.measure(codes, _encoders(), ["x", "y"], 1, 2_000, 0.8, spend,
                                SeededNoise(np.random.default_rng(1)))
    config = DPSGDConfig(epsilon=6.0, delta=1e-6, expected_batch_size=400, epochs=8,
                         max_grad_norm=1.0, learning_rate=0.02, public_rows=2_000)
    gamma = rs.gamma_for(6.0, 0.0)
    six = next(u for u in np.linspace(0, 1, 10_001) if rs.draw_runs(0.0, gamma, u) == 6)
    uniforms = iter([six, *np.random.default_rng(5).random(6)])  # K = 6, then the picks
    fitted = fit_tuned(codes, [4, 2], policy.generator, config, score,
                       lambda g: make_generator(g), uniform=lambda: float(next(uniforms)),
                       generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    assert fitted.selected == 1
    (charge,) = fitted.generator.charges_
    assert charge.mechanism == "dp_sgd_tuned" and charge.epsilon <= 6.0
    assert charge.params["selected"] == 1 and len(charge.params["runs"]) == 2
    assert charge_cost(charge.mechanism, charge.params, charge.delta)[0] == pytest.approx(
        charge.epsilon)


# ------------------------------------------------------------------ the policy
@pytest.mark.parametrize(("block", "message"), [
    ("{backend: gan, tuning: {candidates: [{}, {}]}}", "VAE backend"),
    ("{tuning: {candidates: [{hidden: [16]}]}}", "at least 2"),
    ("{tuning: {candidates: [{hidden: [16]}, {depth: 3}]}}", "depth"),
    ("{tuning: {candidates: [{}, {}], expected_runs: 1}}", "expected_runs"),
    ("{tuning: {candidates: [{}, {}], score_share: 0.45}, }", "at least 0.1"),
])
def test_bad_tuning_blocks_are_policy_errors(block, message):
    with pytest.raises(PolicyError, match=message):
        parse_policy(f"""
name: bad
dataset: {{id: bad}}
privacy: {{epsilon: 1, encoding_share: 0.2, marginals_share: 0.3}}
generator: {block}
columns:
  x: {{kind: categorical, domain: [a, b]}}
""", "bad.yaml")


def test_tuning_is_refused_per_person():
    with pytest.raises(PolicyError, match="row level"):
        parse_policy("""
name: bad
dataset: {id: bad}
privacy: {epsilon: 1, unit: person, person: {id: pid, max_rows: 3}}
generator: {tuning: {candidates: [{}, {}]}}
columns:
  pid: {rule: drop}
  x: {kind: categorical, domain: [a, b]}
""", "bad.yaml")


# ------------------------------------------------------------------ a tuned release
def _frame(n: int, seed: int) -> pd.DataFrame:
    codes = _codes(n, seed)
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": np.array(list("abcd"))[codes[:, 0]],
                         "age": rng.integers(18, 90, n).astype(str),
                         "y": np.array(["no", "yes"])[codes[:, 1]]})


TUNED_POLICY = """
name: tuned
dataset: {id: tuned, rows: 3000}
privacy: {epsilon: 6, delta: 1.0e-6, marginals_share: 0}
generator:
  epochs: 4
  tuning:
    candidates: [{hidden: [16]}, {hidden: [32], learning_rate: 0.005}]
    expected_runs: 2
columns:
  x: {kind: categorical, domain: [a, b, c, d]}
  age: {kind: integer, bounds: [18, 90]}
  y: {kind: categorical, domain: ["no", "yes"]}
audit:
  target: y
  attacks: [exact_copy, dcr]
"""


def test_a_tuned_release_states_pays_and_verifies_its_cost_without_the_run_count(tmp_path):
    frame = _frame(3_000, 0)
    policy = parse_policy(TUNED_POLICY, "tuned.yaml")
    ledger = registered_ledger(tmp_path / "l.sqlite", "tuned", frame, total_epsilon=20)
    release = privsynth.synthesize(frame, policy, ledger=ledger)
    manifest = release.manifest
    tuning = manifest["tuning"]
    assert tuning["tuned"] is True and tuning["selected"] in (0, 1)
    assert tuning["candidates"] == [{"hidden": [16]}, {"hidden": [32], "learning_rate": 0.005}]
    charges = manifest["privacy"]["charges"]
    tuned = [c for c in charges if c["mechanism"] == "dp_sgd_tuned"]
    assert len(tuned) == 1 and not [c for c in charges if c["mechanism"] == "dp_sgd"]
    scored = [c for c in charges if c["stage"] == "tuning"]
    assert sum(c["epsilon"] for c in scored) == pytest.approx(0.1 * 6)
    assert tuning["score_epsilon"] == pytest.approx(0.6)
    assert sum(c["epsilon"] for c in charges) <= 6 + 1e-9
    assert release.decision.dp_claim
    # nothing states how many runs happened: the charge holds one entry per candidate
    assert len(tuned[0]["params"]["runs"]) == 2
    text = json.dumps(manifest)
    assert "runs_done" not in text and "\"k\"" not in text.lower()
    bundle = release.write(tmp_path / "bundle")
    from privsynth.release.verify import verify_bundle

    assert verify_bundle(bundle, ledger=ledger, policy=policy) == []


def test_preflight_judges_a_tuned_policy_at_the_noise_tuning_costs():
    """Random stopping over two copies of the same configuration needs more noise than one
    run: pre-flight's DP-SGD figure must say so (it would otherwise promise the untuned σ)."""
    import re
    from pathlib import Path

    import yaml

    from privsynth.preflight import preflight

    spec = yaml.safe_load((Path(__file__).parents[1] / "benchmarks" / "policies" /
                           "lending_club.yaml").read_text())
    sigmas = []
    for tuning in (None, {"candidates": [{}, {}]}):
        spec["generator"]["tuning"] = tuning
        policy = parse_policy(yaml.safe_dump(spec), "lending.yaml")
        (noise,) = [f for f in preflight(policy, 5_000) if f.code == "dpsgd_noise"]
        sigmas.append(float(re.search(r"σ = ([0-9.]+)", noise.message).group(1)))
    assert sigmas[1] > 1.1 * sigmas[0]


def test_a_saved_tuned_model_keeps_the_kept_candidates_network(tmp_path):
    """The candidates differ in width: loading must rebuild the kept one's, not the base's."""
    frame = _frame(1_500, 1)
    policy = parse_policy(TUNED_POLICY.replace("[{hidden: [16]}, {hidden: [32], "
                                               "learning_rate: 0.005}]",
                                               "[{hidden: [8]}, {hidden: [24]}]"), "t.yaml")
    ledger = registered_ledger(tmp_path / "l.sqlite", "tuned", frame, total_epsilon=20)
    model = privsynth.Synthesizer(policy, ledger=ledger).fit(frame)
    (tuned,) = [c for c in model.charges_ if c["mechanism"] == "dp_sgd_tuned"]
    width = [8, 24][tuned["params"]["selected"]]
    assert model.generator_.hidden == [width]
    loaded = privsynth.Synthesizer.load(model.save(tmp_path / "saved"), seed=2)
    assert loaded.generator_.hidden == [width]
    assert len(loaded.sample(50)) == 50
