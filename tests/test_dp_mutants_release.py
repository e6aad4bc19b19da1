"""Gate and release checks written for the mutation panel (``benchmarks/mutation_panel.py``).

* **A seeded development run is never released**, whatever the attacks found and whether or
  not the policy waives the DP claim: its noise can be regenerated from the seed.
* **verify recomputes every charge.** A bundle is built from the public manifest of real
  charges (N̂ count, histogram, threshold domain, DP-SGD); it verifies. Then each charge in
  turn gets parameters that cost more than the ε or δ it states (a doubled noise scale is half
  the ε; a lower threshold is a larger δ; a larger σ a smaller ε): verify must name that
  charge. A verifier that reads the stated figures instead of recomputing them sees nothing.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from privsynth.audit.result import AuditResult, RiskResult
from privsynth.data.schema import TableSchema
from privsynth.gate import decide
from privsynth.policy.loader import parse_policy
from privsynth.policy.model import Thresholds
from privsynth.privacy import mechanisms
from privsynth.privacy.accounting import dpsgd_charge
from privsynth.privacy.events import Charge, PrivacySpend
from privsynth.privacy.noise import SeededNoise
from privsynth.release.bundle import sha256_file
from privsynth.release.manifest import build_manifest
from privsynth.release.verify import verify_bundle

GOOD = AuditResult(risks=(
    RiskResult("dcr_share", 0.50, 0.48, 0.51, 0.0, "dcr_share", {}, "dcr"),
    RiskResult("mia_distance_auc", 0.50, 0.48, 0.51, 0.0, "mia_auc", {}, "mia"),
), errors=())


@pytest.mark.parametrize("require", [True, False])
def test_the_gate_never_releases_a_development_run(require):
    released = decide(GOOD, Thresholds(), dp_claim=True, require_dp_claim=require,
                      attacks_requested=["dcr", "mia"])
    assert released.passed  # the same evidence passes in a release run
    dev = decide(GOOD, Thresholds(), dp_claim=True, require_dp_claim=require,
                 attacks_requested=["dcr", "mia"], development_run=True)
    assert not dev.passed and "development_run" in dev.reason_codes
    assert dev.development_run


POLICY = """
name: verify
dataset: {id: verify}
privacy: {epsilon: 5.0, delta: 1.0e-5, encoding_share: 0.2}
budget: {}
columns:
  amount: {kind: numeric, bounds: [0, 10], binning: quantile}
"""


def _spend() -> PrivacySpend:
    noise = SeededNoise(np.random.default_rng(0))
    spend = PrivacySpend()
    spend.add(mechanisms.noisy_count(500, 0.1, noise)[1])
    spend.add(mechanisms.laplace_histogram(np.linspace(0, 10, 500), np.linspace(0, 10, 9), 0.1,
                                           noise, column="amount")[1])
    values = np.array(["a"] * 300 + ["b"] * 200, dtype=object)
    spend.add(mechanisms.threshold_domain(values, 0.1, 1e-6, noise, column="city")[2])
    sgd = dpsgd_charge(sigma=1.5, q=0.05, steps=100, delta=5e-6, accountant="rdp",
                       max_grad_norm=1.0)
    spend.add(Charge(sgd.stage, sgd.mechanism, sgd.epsilon, sgd.delta, None,
                     {**sgd.params, "row_count": "dp", "secure_mode": True}))
    return spend


def _bundle(root: Path, manifest: dict) -> Path:
    public = root / "public"
    public.mkdir(parents=True)
    pd.DataFrame({"amount": np.linspace(0, 10, manifest["synthetic_rows"])}).to_csv(
        public / "synthetic.csv", index=False)
    manifest = {**manifest, "files": {"synthetic.csv": sha256_file(public / "synthetic.csv")}}
    (public / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


TAMPER = {  # mechanism -> (param, new value): each makes the true cost exceed the stated one
    "noisy_count": ("scale", lambda p: p["scale"] / 2),
    "laplace_histogram": ("scale", lambda p: p["scale"] / 2),
    "threshold_domain": ("threshold", lambda p: p["threshold"] - 3),
    "dp_sgd": ("sigma", lambda p: p["sigma"] / 2),
}


def test_verify_recomputes_every_charge(tmp_path):
    policy = parse_policy(POLICY)
    manifest = build_manifest(release_id="verify-1", policy=policy, spend=_spend(),
                              schema=TableSchema(()), synthetic_rows=40,
                              seed_mode="os-entropy", column_actions={})
    manifest = json.loads(json.dumps(manifest, default=str))
    assert verify_bundle(_bundle(tmp_path / "clean", manifest)) == []
    charges = manifest["privacy"]["charges"]
    assert sorted(c["mechanism"] for c in charges) == sorted(TAMPER)
    for i, charge in enumerate(charges):
        tampered = copy.deepcopy(manifest)
        key, change = TAMPER[charge["mechanism"]]
        params = tampered["privacy"]["charges"][i]["params"]
        params[key] = change(params)
        problems = verify_bundle(_bundle(tmp_path / f"tampered-{i}", tampered))
        assert any(f"charge {i + 1} ({charge['mechanism']}" in p for p in problems), (
            charge["mechanism"], problems)
