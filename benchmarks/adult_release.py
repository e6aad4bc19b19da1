"""Release Adult under the demo policy and measure utility: TSTR ROC AUC on ``income``.

Trains HistGradientBoosting on (a) the synthetic rows and (b) the real training half, and tests
both on the real holdout half (the same split the pipeline's audit uses; reproduced from the
policy's dev seed). Prints a table with wall times. Not a test: run it by hand::

    python benchmarks/adult_release.py [--backend vae|gan] [--epsilon 1.0] [--seeds 7 8 9]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

import privsynth as ps
from privsynth.data.split import train_holdout_split
from privsynth.data.table import prepare_table, read_table
from privsynth.privacy.rng import RandomSource

ROOT = Path(__file__).resolve().parents[1]


def features(frame: pd.DataFrame, categories: dict[str, list[str]]):
    x = frame.drop(columns=["income"]).copy()
    for column, cats in categories.items():
        x[column] = pd.Categorical(x[column], categories=cats)
    for column in x.columns:
        if column not in categories:
            x[column] = pd.to_numeric(x[column], errors="coerce").astype(float)
    return x, (frame["income"].astype(str) == ">50K").astype(int)


def tstr(train: pd.DataFrame, test: pd.DataFrame, categories) -> float:
    x_train, y_train = features(train, categories)
    x_test, y_test = features(test, categories)
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    return roc_auc_score(y_test, model.fit(x_train, y_train).predict_proba(x_test)[:, 1])


def run(backend: str, epsilon: float, seed: int) -> dict:
    data = ROOT / "privsynth" / "demo" / "adult.csv.gz"
    base = ps.load_policy(ROOT / "policies" / "adult-demo.yaml").model_dump(mode="json")
    if backend != base["generator"]["backend"]:
        # the demo policy spells out the VAE's training settings; take the other backend's own
        for key in ("epochs", "batch_size", "learning_rate"):
            base["generator"].pop(key)
        base["generator"]["backend"] = backend
    base["privacy"]["epsilon"] = epsilon
    base["seed"] = seed
    policy = ps.Policy.model_validate(base)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        release = ps.synthesize(data, policy, ledger=Path(tmp) / "ledger.sqlite")
        seconds = time.perf_counter() - start
    prepared = prepare_table(read_table(data), policy).frame
    train, holdout = train_holdout_split(prepared, policy.audit.holdout_fraction,
                                         RandomSource(seed).numpy("split"))
    categories = {n: [*c.domain] for n, c in policy.columns.items()
                  if c.modelled and c.kind == "categorical" and n != "income"}
    return {
        "backend": backend, "epsilon": release.manifest["privacy"]["epsilon"], "seed": seed,
        "release_s": seconds, "passed": release.passed,
        "tstr_auc_synthetic": tstr(release.synthetic, holdout, categories),
        "tstr_auc_real": tstr(train, holdout, categories),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="vae", choices=["vae", "gan"])
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7])
    args = parser.parse_args()
    rows = [run(args.backend, args.epsilon, s) for s in args.seeds]
    table = pd.DataFrame(rows)
    table["ratio_to_real"] = table["tstr_auc_synthetic"] / table["tstr_auc_real"]
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
