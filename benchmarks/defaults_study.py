"""Which DP-SGD schedule should a policy get when it names none? A study across tables and ε.

The shipped defaults were tuned on Adult (30 epochs at an expected batch of 4,096): on a table
of a few thousand rows that is a handful of DP-SGD steps. This study measures, on every shared
table with a target and its reviewed policy (``benchmarks/policies/<table>.yaml``), the
train-on-synthetic/test-on-real figure of the DP-VAE under a few schedules that depend only on
public facts (N̂, ε), everything else in the policy unchanged:

* ``constants``: the old defaults (30 epochs, expected batch 4,096; full batches under 4,096 rows);
* ``reviewed``: the schedule a person chose for the table in its reviewed policy;
* ``q<Q>/s<S>``: expected batch ``Q·N̂`` and ``S`` DP-SGD steps (epochs ``S·Q``);
* ``auto/<variant>``: the auto schedule with one model setting changed (KL weight, width,
  latent size, learning rate), to see what else a public rule could choose;
* ``auto``: the policy's defaults, ``batch_size: auto`` and ``epochs: auto``: the rule of
  ``privsynth.generators.schedule`` (VAE: rate 0.1 and 300 steps, the ``q0.1/s300`` column up
  to rounding; GAN: rate 0.02 and 1,000 steps).

Each cell is a mean over ``--seeds`` independent fits on one fixed, seeded train/holdout split
per table (half held out; the same rows for every schedule, so schedules differ only by their
own randomness). TSTR is the gate's own figure (``Synthesizer.audit``: HistGradientBoosting, ROC
AUC on a binary target, R² on a numeric one); ``real`` is the same model trained on the real
training half. Fits are development runs (seeded, no ledger debit worth keeping): the study
measures schedules, it releases nothing.

    python benchmarks/defaults_study.py --seeds 2 --jobs 2 --json /tmp/defaults_study.json

Prints a markdown table (schedule × table × ε) and each schedule's mean rank. Never prints a
cell value, only aggregate figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "datasets"
POLICIES = ROOT / "benchmarks" / "policies"
TABLES = ["german_credit", "pbc_visits", "telecom_churn", "dropout_wages", "flchain",
          "health_insurance", "lending_club"]

#: schedule name -> generator overrides (a callable of N for the q-rules)
SCHEDULES: dict[str, object] = {
    "constants": {"epochs": 30, "batch_size": 4096},
    "reviewed": {},
    "q0.1/s300": (0.1, 300),
    "q0.1/s1000": (0.1, 1000),
    "q0.03/s1000": (0.03, 1000),
    "auto": {"epochs": "auto", "batch_size": "auto"},
    # model variants at the auto schedule (what else a public rule could choose at ε = 1)
    "auto/kl1": {"epochs": "auto", "batch_size": "auto", "kl_weight": 1.0},
    "auto/h16": {"epochs": "auto", "batch_size": "auto", "hidden": [16]},
    "auto/h32": {"epochs": "auto", "batch_size": "auto", "hidden": [32]},
    "auto/h128": {"epochs": "auto", "batch_size": "auto", "hidden": [128]},
    "auto/lat2": {"epochs": "auto", "batch_size": "auto", "latent_dim": 2},
    "auto/lr0.003": {"epochs": "auto", "batch_size": "auto", "learning_rate": 0.003},
    "auto/lr0.03": {"epochs": "auto", "batch_size": "auto", "learning_rate": 0.03},
    # the target's weight in the VAE's reconstruction loss (the policy names the target)
    # (``auto`` gives it the weight of the other columns together; tw1 is the unweighted loss)
    "auto/tw1": {"epochs": "auto", "batch_size": "auto", "target_weight": 1.0},
    "auto/tw3": {"epochs": "auto", "batch_size": "auto", "target_weight": 3.0},
    "auto/tw10": {"epochs": "auto", "batch_size": "auto", "target_weight": 10.0},
    "auto/tw30": {"epochs": "auto", "batch_size": "auto", "target_weight": 30.0},
    "auto/tw100": {"epochs": "auto", "batch_size": "auto", "target_weight": 100.0},
}


#: the old constant defaults of the GAN (its Adult tuning)
GAN_CONSTANTS = {"epochs": 20, "batch_size": 512}


def _generator(schedule: str, n_train: int, backend: str) -> dict:
    spec = SCHEDULES[schedule]
    if backend == "gan" and schedule == "constants":
        spec = GAN_CONSTANTS
    if isinstance(spec, tuple):
        q, steps = spec
        batch = max(8, round(q * n_train))
        return {"batch_size": batch, "epochs": steps * batch / n_train}
    return dict(spec)


def _policy_text(table: str, schedule: str, epsilon: float, seed: int, n_train: int,
                 backend: str) -> str:
    spec = yaml.safe_load((POLICIES / f"{table}.yaml").read_text())
    spec["privacy"]["epsilon"] = float(epsilon)
    spec["seed"] = int(seed)
    gen = spec["generator"]
    if backend != gen.get("backend", "vae"):  # the other backend at its own learning rate
        gen["backend"] = backend
        gen.pop("learning_rate", None)
    overrides = _generator(schedule, n_train, backend)
    gen.update(overrides)
    spec["audit"]["attacks"] = ["exact_copy"]  # the study needs TSTR only
    # the study measures TSTR at every ε; the floor's TSTR judgement (and pre-flight's
    # target_unlearnable refusal that protects a user's budget) is not what it studies
    spec["audit"].setdefault("utility", {})["tstr"] = False
    spec["audit"]["holdout_fraction"] = 0.5
    return yaml.safe_dump(spec, sort_keys=False)


@contextmanager
def scratch_ledger(policy, train: pd.DataFrame, officer: str = "study") -> Iterator[Path]:  # noqa: ANN001
    """A throw-away ledger and key store with the policy's population registered at a total no
    study reaches (studies measure; they release nothing). ``PRIVSYNTH_KEY_DIR`` is restored."""
    import privsynth as ps

    key_dir = os.environ.get("PRIVSYNTH_KEY_DIR")
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Path(tmp) / "ledger.sqlite"
        os.environ["PRIVSYNTH_KEY_DIR"] = str(Path(tmp) / "keys")
        try:
            with ps.Ledger.open(ledger) as book:
                book.register(policy.dataset.id, total_epsilon=1e6, total_delta=0.5,
                              sketch=book.sketch(train), officer=officer)
            yield ledger
        finally:
            if key_dir is None:
                os.environ.pop("PRIVSYNTH_KEY_DIR", None)
            else:
                os.environ["PRIVSYNTH_KEY_DIR"] = key_dir


def _split(table: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = pd.read_csv(DATA / f"{table}.csv.gz", dtype=str, keep_default_na=False)
    order = np.random.default_rng(20261204).permutation(len(frame))
    half = len(frame) // 2
    return (frame.iloc[order[half:]].reset_index(drop=True),
            frame.iloc[order[:half]].reset_index(drop=True))


def one_fit(job: tuple[str, str, float, int, str]) -> dict:
    """Fit one schedule on one table at one ε and score TSTR (runs in a worker process)."""
    import torch

    torch.set_num_threads(1)
    import privsynth as ps
    from privsynth.policy.loader import parse_policy

    table, schedule, epsilon, seed, backend = job
    train, holdout = _split(table)
    policy = parse_policy(_policy_text(table, schedule, epsilon, seed, len(train), backend),
                          f"{table}-{schedule}")
    with scratch_ledger(policy, train) as ledger:
        start = time.perf_counter()
        model = ps.Synthesizer(policy, ledger=ledger).fit(train)
        fit_s = time.perf_counter() - start
        utility = model.audit(None, holdout).utility or {}
        tstr = utility.get("tstr") or {}
    metric = "roc_auc" if "roc_auc" in (tstr.get("real") or {}) else tstr.get("metric", "r2")
    plan = next((c for c in model.charges_ if c.get("mechanism") == "dp_sgd"), {})
    return {"table": table, "backend": backend, "schedule": schedule, "epsilon": epsilon,
            "seed": seed,
            "metric": metric, "synthetic": (tstr.get("synthetic") or {}).get(metric),
            "real": (tstr.get("real") or {}).get(metric), "fit_s": round(fit_s, 1),
            "marginal_tvd": utility.get("marginal_tvd_mean"),
            "steps": (plan.get("params") or {}).get("steps"),
            "sigma": (plan.get("params") or {}).get("sigma")}


def run_jobs(fit, jobs: list[tuple], workers: int, json_path: Path | None) -> list[dict]:
    """Run ``fit`` on every job in ``workers`` processes, printing each result as a JSON line
    and rewriting ``json_path`` after each (a stopped study keeps what it measured)."""
    rows: list[dict] = []
    with ProcessPoolExecutor(workers) as pool:
        for row in pool.map(fit, jobs):
            rows.append(row)
            print(json.dumps(row), flush=True)
            if json_path:
                json_path.write_text(json.dumps(rows, indent=1))
    return rows


def _table(rows: list[dict], schedules: list[str]) -> str:
    frame = pd.DataFrame(rows)
    lines = ["| table | ε | metric | real | " + " | ".join(schedules) + " |",
             "|---|---|---|---|" + "---|" * len(schedules)]
    for (table, eps), part in frame.groupby(["table", "epsilon"], sort=False):
        cells = []
        for s in schedules:
            vals = part.loc[part.schedule == s, "synthetic"].dropna().astype(float)
            cells.append(f"{vals.mean():.3f}" if len(vals) else "-")
        real = part["real"].dropna().astype(float)
        lines.append(f"| {table} | {eps:g} | {part.metric.iloc[0]} | "
                     f"{real.mean():.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ranks(rows: list[dict], schedules: list[str]) -> dict[str, float]:
    frame = pd.DataFrame(rows).dropna(subset=["synthetic"])
    means = frame.groupby(["table", "epsilon", "schedule"]).synthetic.mean().unstack()
    return means[schedules].rank(axis=1, ascending=False).mean().round(2).to_dict()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", nargs="+", default=TABLES)
    parser.add_argument("--schedules", nargs="+", default=list(SCHEDULES))
    parser.add_argument("--epsilons", nargs="+", type=float, default=[1.0, 10.0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--backend", choices=["vae", "gan"], default="vae",
                        help="the generator studied (default: the reviewed policies' VAE)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    jobs = [(t, s, e, 1000 + k, args.backend) for k in range(args.seeds) for e in args.epsilons
            for t in args.tables for s in args.schedules]
    rows = run_jobs(one_fit, jobs, args.jobs, args.json)
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, torch CPU; "
          f"backend {args.backend}; seeds {args.seeds}; half of each table held out")
    print(_table(rows, args.schedules))
    print("\nmean rank (1 = best):", _ranks(rows, args.schedules))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
