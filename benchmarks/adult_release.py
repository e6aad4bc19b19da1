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

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

import privsynth as ps
from privsynth.data.table import prepare_table, read_table

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


def run(backend: str, epsilon: float, marginals_share: str | None = None) -> dict:
    data = ROOT / "privsynth" / "demo" / "adult.csv.gz"
    base = ps.load_policy(ROOT / "policies" / "adult-demo.yaml").model_dump(mode="json")
    if backend != base["generator"]["backend"]:
        # the demo policy spells out the VAE's training settings; take the other backend's own
        for key in ("epochs", "batch_size", "learning_rate"):
            base["generator"].pop(key)
        base["generator"]["backend"] = backend
    base["privacy"]["epsilon"] = epsilon
    if marginals_share is not None:
        base["privacy"]["marginals_share"] = (marginals_share if marginals_share == "auto"
                                              else float(marginals_share))
    policy = ps.Policy.model_validate(base)
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Path(tmp) / "ledger.sqlite"
        with ps.Ledger.open(ledger) as book:
            book.register(policy.dataset.id, total_epsilon=10 * epsilon, total_delta=1e-5,
                          sketch=book.sketch(data), officer="benchmark")
        start = time.perf_counter()
        release = ps.synthesize(data, policy, ledger=ledger)
        seconds = time.perf_counter() - start
    # the audit's split (row positions, internal/split.json), applied to the table as the
    # pipeline prepared it: the benchmark scores on the rows the audit held out
    records = prepare_table(read_table(data, policy), policy).frame.reset_index(drop=True)
    held = np.zeros(len(records), dtype=bool)
    held[release.split["holdout_positions"]] = True
    split = {"train": records[~held], "holdout": records[held]}
    categories = {n: [*c.domain] for n, c in policy.columns.items()
                  if c.modelled and c.kind == "categorical" and n != "income"}
    return {
        "backend": backend, "epsilon": release.manifest["privacy"]["epsilon"],
        "release_s": seconds, "passed": release.passed,
        "marginals_epsilon": release.manifest["one_way_marginals"]["epsilon"],
        "tstr_auc_synthetic": tstr(release.synthetic, split["holdout"], categories),
        "tstr_auc_real": tstr(split["train"], split["holdout"], categories),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="vae", choices=["vae", "gan"])
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=1, help="independent releases")
    parser.add_argument("--marginals-share", default=None,
                        help="override privacy.marginals_share (auto, or a number; 0: off)")
    args = parser.parse_args()
    rows = [run(args.backend, args.epsilon, args.marginals_share) for _ in range(args.runs)]
    table = pd.DataFrame(rows)
    table["ratio_to_real"] = table["tstr_auc_synthetic"] / table["tstr_auc_real"]
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
