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
from privsynth.keys import load_keys
from privsynth.policy.loader import parse_policy
from privsynth.policy.model import Thresholds
from privsynth.privacy import mechanisms
from privsynth.privacy.accounting import dpsgd_charge
from privsynth.privacy.events import Charge, PrivacySpend
from privsynth.privacy.noise import SeededNoise
from privsynth.release.bundle import sha256_file, sign_public
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
    sign_public(public, manifest["release_id"], load_keys(create=True))  # the signature holds:
    return root  # what is tested is verify's recomputation of the charges


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


# ---------------------------------------------------------------------- the released row count
ADULT = ["age", "workclass", "education", "sex", "hours_per_week", "income"]
LIFT = 37  # planted DLap draw of the row count: N̂ = N + 37, deterministic


def test_the_output_and_manifest_carry_the_dp_row_count(adult, adult_policy_path, tmp_path,
                                                        monkeypatch):
    """The synthetic table has N̂ rows and the public manifest says N̂; the exact N is nowhere
    in the public manifest. N̂ is forced to N + 37 by planting the row count's noise draw (the
    mechanism itself runs, and its charge is recorded)."""
    import yaml
    from ledger_helpers import registered_ledger

    import privsynth.pipeline as pipeline
    from privsynth.policy.loader import load_policy

    spec = load_policy(adult_policy_path).model_dump(mode="json")
    spec["columns"] = {k: v for k, v in spec["columns"].items() if k in ADULT}
    spec.pop("relations", None)  # the demo's relation names columns cut here
    spec["audit"]["protected_attributes"] = [
        c for c in spec["audit"].get("protected_attributes", []) if c in spec["columns"]]
    spec["generator"].update(epochs=1, batch_size=256)
    spec["audit"].update(quasi_identifiers=["age", "sex"], secrets=["income"],
                         linkability_aux=None, attacks=["exact_copy"])
    policy = parse_policy(yaml.safe_dump(spec, sort_keys=False), "rows.yaml")
    table = adult[ADULT].sample(1201, random_state=5).reset_index(drop=True)
    ledger = registered_ledger(tmp_path / "ledger.sqlite", policy.dataset.id, table)

    class Lift(SeededNoise):
        name = "planted-test"

        def discrete_laplace(self, scale: float, size: int) -> np.ndarray:
            return np.full(size, LIFT, dtype=np.int64)

    real_count = pipeline.noisy_count
    monkeypatch.setattr(pipeline, "noisy_count", lambda n, eps, noise, **kw: real_count(
        n, eps, Lift(np.random.default_rng(0)), **kw))
    monkeypatch.setattr(pipeline, "run_audit", lambda *a, **k: AuditResult(risks=(), errors=()))
    release = pipeline.synthesize(table, policy, ledger=ledger)
    n_train = release.run_record["training_rows"]
    assert len(release.synthetic) == n_train + LIFT
    assert release.manifest["synthetic_rows"] == n_train + LIFT
    sgd = next(c for c in release.charges if c["mechanism"] == "dp_sgd")
    assert sgd["params"]["q"] == pytest.approx(256 / (n_train + LIFT), rel=1e-8)
    text = json.dumps(release.manifest, default=str)
    for exact in (n_train, release.run_record["holdout_rows"], len(table)):
        assert f" {exact}," not in text and f" {exact}}}" not in text, exact
