"""Release Adult under the demo policy and measure utility: TSTR ROC AUC on ``income``.

Trains HistGradientBoosting on (a) the synthetic rows and (b) the real training half, and tests
both on the real holdout half (the split the pipeline's audit used, captured from the run).
Every run is a real release: OS entropy, no seed (a seeded run is a development run and is never
released). Prints a table with wall times. Not a test: run it by hand::

    python benchmarks/adult_release.py [--backend vae|gan] [--epsilon 1.0] [--runs 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from unittest import mock

import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

import privsynth as ps
import privsynth.pipeline as pipeline
from privsynth.data.split import train_holdout_split

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


def run(backend: str, epsilon: float) -> dict:
    data = ROOT / "privsynth" / "demo" / "adult.csv.gz"
    base = ps.load_policy(ROOT / "policies" / "adult-demo.yaml").model_dump(mode="json")
    if backend != base["generator"]["backend"]:
        # the demo policy spells out the VAE's training settings; take the other backend's own
        for key in ("epochs", "batch_size", "learning_rate"):
            base["generator"].pop(key)
        base["generator"]["backend"] = backend
    base["privacy"]["epsilon"] = epsilon
    policy = ps.Policy.model_validate(base)
    split = {}

    def capture(frame, fraction, rng):  # the benchmark keeps the audit's split, for TSTR
        split["train"], split["holdout"] = train_holdout_split(frame, fraction, rng)
        return split["train"], split["holdout"]

    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(
            pipeline, "train_holdout_split", capture):
        ledger = Path(tmp) / "ledger.sqlite"
        with ps.Ledger.open(ledger) as book:
            book.register(policy.dataset.id, total_epsilon=10 * epsilon, total_delta=1e-5,
                          sketch=book.sketch(data), officer="benchmark")
        start = time.perf_counter()
        release = ps.synthesize(data, policy, ledger=ledger)
        seconds = time.perf_counter() - start
    categories = {n: [*c.domain] for n, c in policy.columns.items()
                  if c.modelled and c.kind == "categorical" and n != "income"}
    return {
        "backend": backend, "epsilon": release.manifest["privacy"]["epsilon"],
        "release_s": seconds, "passed": release.passed,
        "tstr_auc_synthetic": tstr(release.synthetic, split["holdout"], categories),
        "tstr_auc_real": tstr(split["train"], split["holdout"], categories),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="vae", choices=["vae", "gan"])
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=1, help="independent releases")
    args = parser.parse_args()
    rows = [run(args.backend, args.epsilon) for _ in range(args.runs)]
    table = pd.DataFrame(rows)
    table["ratio_to_real"] = table["tstr_auc_synthetic"] / table["tstr_auc_real"]
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
