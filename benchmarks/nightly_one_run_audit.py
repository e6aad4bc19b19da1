"""Nightly: one-run privacy audit of each generator backend (Steinke, Nasr & Jagielski 2023).

Not part of CI (minutes of training). Run from the repository root::

    python benchmarks/nightly_one_run_audit.py [--canaries 1000] [--backends vae gan]

Design (the paper's "auditing in one training run", black-box variant):

1. A base table: 500 rows of ``health_insurance`` (../shared/datasets), encoded under a policy
   that declares every domain and bound (so the encoding stage reads nothing private).
2. ``m`` canary rows: each column's slot drawn uniformly at random, so a canary is unlike the
   real rows and unlike the other canaries. Each is included in the training set independently
   with probability 1/2 (S_i = +1) or left out (S_i = -1). The coin flips are the only secret.
3. Train the backend through privsynth's own training path (``Generator.fit`` under DP-SGD,
   calibrated to epsilon = 2, delta = 1e-6), once.
4. Score every canary: VAE, minus its negative ELBO (latent noise 0); GAN, the discriminator's
   "real" logit. Guess S_i = +1 for the k/2 highest scores, -1 for the k/2 lowest, abstain on
   the rest.
5. If the training is (eps, delta)-DP, the number of correct guesses W out of k satisfies
   P[W >= v] <= P[Binomial(k, e^eps / (1 + e^eps)) >= v] + 2 m delta (their Theorem 3, bounding
   the delta term by 2 m delta). The empirical lower bound is the largest eps this rejects at
   confidence 1 - beta (beta = 0.05, Bonferroni over the k tried).

The same run with DP off (no noise: privsynth's test-only ``noise_off`` mutation; clipping norm
1e6) must give a lower bound above 2; otherwise the audit could not see a leak on this setup and
the script says it is uninformative. Exit code 1 if a DP run's lower bound exceeds its claim.

Figures on the 2-core dev machine (default settings, ~7 minutes in all): VAE DP on 0.000 <= 2,
DP off 3.770 (200 of 200 guesses right: informative). GAN (discriminator logit as the score) DP
on 0.000, DP off 0.000: uninformative, the non-private discriminator does not single out its
canaries at this size; a stronger score (e.g. a shadow-model or white-box gradient score) is
needed before this audit says anything about the GAN.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import binom

from privsynth.data.table import prepare_table
from privsynth.encoding.table_encoder import TableEncoder, encoding_budget
from privsynth.generators.base import block_offsets, one_hot_blocks
from privsynth.generators.dp_sgd import DPSGDConfig
from privsynth.policy.loader import parse_policy
from privsynth.privacy import _mutants
from privsynth.privacy.events import PrivacySpend
from privsynth.privacy.noise import SeededNoise

warnings.filterwarnings("ignore")

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT.parent / "shared" / "datasets" / "health_insurance.csv.gz"
EPSILON, DELTA, BETA = 2.0, 1e-6, 0.05
GUESSES = (20, 50, 100, 200)

POLICY = """
name: one-run-audit
dataset: {id: health-insurance}
privacy: {epsilon: 2.0, delta: 1.0e-6}
budget: {}
columns:
  health:    {kind: categorical, domain: ["yes", "no"]}
  age:       {kind: integer, bounds: [18, 62], binning: uniform, bins: 12}
  limit:     {kind: categorical, domain: ["yes", "no"]}
  gender:    {kind: categorical, domain: [male, female]}
  insurance: {kind: categorical, domain: ["yes", "no"]}
  married:   {kind: categorical, domain: ["yes", "no"]}
  selfemp:   {kind: categorical, domain: ["yes", "no"]}
  family:    {kind: integer, bounds: [1, 14], binning: uniform, bins: 14}
  region:    {kind: categorical, domain: [midwest, northeast, south, west]}
  ethnicity: {kind: categorical, domain: [afam, cauc, other]}
  education: {kind: categorical, domain: [bachelor, ged, highschool, master, none, other, phd]}
"""


def epsilon_lower_bound(k: int, correct: int, m: int, delta: float, beta: float) -> float:
    """Largest eps rejected at level beta: P[Bin(k, p_eps) >= correct] + 2 m delta <= beta."""
    def rejected(eps: float) -> bool:
        p = 1.0 / (1.0 + math.exp(-eps))
        return float(binom.sf(correct - 1, k, p)) + 2 * m * delta <= beta

    if not rejected(0.0):
        return 0.0
    lo, hi = 0.0, 30.0
    if rejected(hi):
        return hi
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if rejected(mid) else (lo, mid)
    return lo


def audit_scores(scores: np.ndarray, included: np.ndarray, m: int) -> tuple[float, dict]:
    """Best lower bound over the guess counts (Bonferroni), and the per-k details."""
    order = np.argsort(-scores)
    truth = np.where(included, 1, -1)
    best, details = 0.0, {}
    for k in GUESSES:
        plus, minus = order[: k // 2], order[-(k // 2):]
        correct = int((truth[plus] == 1).sum() + (truth[minus] == -1).sum())
        eps = epsilon_lower_bound(k, correct, m, DELTA, BETA / len(GUESSES))
        details[k] = (correct, round(eps, 3))
        best = max(best, eps)
    return best, details


def base_codes(rows: int, rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    policy = parse_policy(POLICY)
    frame = pd.read_csv(TABLE).sample(rows, random_state=int(rng.integers(2**31)))
    prepared = prepare_table(frame.reset_index(drop=True), policy).frame
    spend = PrivacySpend()
    encoder = TableEncoder.fit(prepared, policy, encoding_budget(policy), spend,
                               SeededNoise(rng))
    assert spend.charges == (), "the audit policy must declare every fact"
    return encoder.transform(prepared), encoder.widths


def make_backend(name: str):
    if name == "vae":
        from privsynth.generators.vae import DPVAE

        return DPVAE(hidden=[256, 256], latent_dim=16, kl_weight=0.1)
    from privsynth.generators.gan import DPGAN

    return DPGAN(hidden=[256, 256], generator_hidden=[128, 128], noise_dim=16,
                 conditioning="uniform")


@torch.no_grad()
def score(model, name: str, canaries: np.ndarray, widths: list[int]) -> np.ndarray:
    """Higher = more likely trained on."""
    x = torch.as_tensor(canaries, dtype=torch.long)
    total = sum(widths)
    onehot = one_hot_blocks(x, torch.tensor(block_offsets(widths)), total)
    if name == "vae":
        module = model.module_
        loss = module(onehot, x, torch.zeros(len(x), module.latent_dim))
        return (-loss).numpy()
    pair = torch.cat([onehot, torch.zeros(len(x), total)], 1)
    return model.discriminator_(torch.stack([pair, pair], 1))[:, 0].numpy()


def run(name: str, dp: bool, m: int, epochs: float, seed: int, base_rows: int = 500,
        lr: float = 1e-2) -> tuple[float, dict, float]:
    rng = np.random.default_rng(seed)
    base, widths = base_codes(base_rows, rng)
    canaries = np.stack([rng.integers(0, w, size=m) for w in widths], axis=1)
    included = rng.random(m) < 0.5
    train = np.concatenate([base, canaries[included]])
    train = train[rng.permutation(len(train))]
    config = DPSGDConfig(epsilon=EPSILON, delta=DELTA, expected_batch_size=256, epochs=epochs,
                         max_grad_norm=1.0 if dp else 1e6, learning_rate=lr,
                         accountant="prv")
    model = make_backend(name)
    switch = contextlib.nullcontext() if dp else _mutants._testing_only_mutation("noise_off")
    start = time.perf_counter()
    with switch:
        model.fit(train, widths, config, generator=torch.Generator().manual_seed(seed),
                  device=torch.device("cpu"))
    seconds = time.perf_counter() - start
    eps_lb, details = audit_scores(score(model, name, canaries, widths), included, m)
    return eps_lb, details, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--canaries", type=int, default=1000)
    parser.add_argument("--epochs", type=float, default=100)
    parser.add_argument("--backends", nargs="+", default=["vae", "gan"])
    parser.add_argument("--seed", type=int, default=20231)
    args = parser.parse_args(argv)
    if not TABLE.exists():
        print(f"{TABLE} is absent; nothing to audit")
        return 0
    failed = False
    for name in args.backends:
        if name == "gan":
            try:
                import privsynth.generators.gan  # noqa: F401
            except ImportError:
                print("gan: privsynth/generators/gan.py absent; skipped")
                continue
        eps_dp, det_dp, t_dp = run(name, True, args.canaries, args.epochs, args.seed)
        eps_off, det_off, t_off = run(name, False, args.canaries, args.epochs, args.seed)
        print(f"{name}: m={args.canaries} canaries, claimed eps={EPSILON}, delta={DELTA}")
        print(f"  DP on : empirical eps lower bound {eps_dp:.3f}  (k: correct, eps) {det_dp}"
              f"  [{t_dp:.0f}s]")
        print(f"  DP off: empirical eps lower bound {eps_off:.3f}  (k: correct, eps) {det_off}"
              f"  [{t_off:.0f}s]")
        if eps_dp > EPSILON:
            print(f"  FAIL: the DP run's lower bound {eps_dp:.3f} exceeds the claim {EPSILON}")
            failed = True
        else:
            print(f"  ok: {eps_dp:.3f} <= {EPSILON}")
        if eps_off <= EPSILON:
            print(f"  UNINFORMATIVE: with DP off the audit reaches only {eps_off:.3f} <= "
                  f"{EPSILON}; it could not have seen a leak of this size on this setup")
        else:
            print(f"  informative: DP off reaches {eps_off:.3f} > {EPSILON}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
