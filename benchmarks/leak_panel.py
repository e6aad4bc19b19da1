"""Leak panel: does the audit gate block planted leaks and pass honest DP releases, per table?

For each shared table (``../shared/datasets``) and its reviewed policy
(``benchmarks/policies/<table>.yaml``):

1. **Honest releases.** ``--models M`` independent releases with the real pipeline
   (``privsynth.Synthesizer`` fit and release, as ``synthesize`` runs them: OS entropy, no
   seed, a temporary ledger with the population registered), each giving ``--samples S`` audit
   samples of its trained model: sample 0 is the release's own audit draw, the others fresh
   draws sized by the same rule (``Synthesizer._audit_draw``: ``audit_sample_rows``, topped up
   on low-entropy tables); independent given the model. What the
   audit needs (train and holdout rows, the audited synthetic rows in model space, the schema) is
   cached under ``benchmarks/.cache/leak_panel/`` (outside git), so the panel re-audits in minutes
   after a gate change; ``--retrain`` refreshes it.
2. **Audit + gate** (``run_audit``, ``decide`` with the policy's thresholds, ``dp_claim=True``) on
   each of the M x S honest samples (fresh audit randomness each time), and on planted leaks built
   on the first honest sample of the first model (``--leak-models K`` builds them on the first K
   models instead). Every leak is audited *with* a DP claim, so only the attack evidence can
   block it: the panel asks whether the attacks see the leak, not whether the claim is missing.

Leak kinds (``LEAKS``): ``full_copy`` (the training rows themselves), ``exact_1pct`` (1% of the
rows replaced by training rows), ``near_1pct`` (the same, every number moved by at most 1%,
categories kept), ``overfit_kde`` (a non-DP generator that memorises: every row a training row
with numbers jittered by 0.5% of the public range, a per-row kernel sampler with a tiny
bandwidth), ``isolated_near_1pct`` (1% near-copies drawn only from the 1% most isolated training
rows, the records a targeted attack goes after), ``column_values`` (one high-cardinality numeric
column's exact training values, drawn row by row, joined to the honest rows: a one-column leak).

Prints leak kind x table -> blocked? (with the gate's reason codes) and honest -> pass rate with
its 95% Wilson interval, plus timings; ``--json FILE`` writes every figure. Never prints a cell
value. Not part of the test command (``tests/test_leak_panel.py`` is the CI version).

    python benchmarks/leak_panel.py --tables all --models 5 --samples 4
    python benchmarks/leak_panel.py --tables german_credit adult --generate-only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import privsynth as ps  # noqa: E402
from privsynth.audit.distance import fit_embedding, nearest_neighbors  # noqa: E402
from privsynth.audit.runner import run_audit  # noqa: E402
from privsynth.data.schema import TableSchema  # noqa: E402
from privsynth.gate import GateDecision, decide  # noqa: E402
from privsynth.policy.model import Policy  # noqa: E402
from privsynth.synthesizer import Synthesizer  # noqa: E402

DATASETS = Path(os.environ.get("PRIVSYNTH_DATASETS", ROOT.parent / "shared" / "datasets"))
POLICIES = ROOT / "benchmarks" / "policies"
CACHE = ROOT / "benchmarks" / ".cache" / "leak_panel"
#: table name -> CSV file under DATASETS; the policy is POLICIES / f"{name}.yaml"
TABLES = ("german_credit", "pbc_visits", "telecom_churn", "dropout_wages", "flchain",
          "health_insurance", "lending_club", "adult")
LEAK_SHARE = 0.01          # the "1%" of the leak kinds
NEAR_MOVE = 0.01           # near-copies: every number moved by at most 1%
KDE_BANDWIDTH = 0.005      # overfit_kde: jitter sd as a share of the column's public range


# --------------------------------------------------------------------------- the cache

@dataclass
class Honest:
    """One trained model's audit inputs: model-space train/holdout, S audit samples, schema."""

    table: str
    model: int
    train: pd.DataFrame
    holdout: pd.DataFrame
    samples: list[pd.DataFrame]
    schema: TableSchema
    n_public: int
    seconds: float                 # the whole release (read, encode, train, sample, audit)
    pipeline_codes: tuple[str, ...]  # the pipeline's own gate on the S-sample draw (info only)


def load_policy(table: str) -> Policy:
    """The reviewed benchmark policy of ``table``."""
    return ps.load_policy(POLICIES / f"{table}.yaml")


def data_path(table: str) -> Path:
    """The shared table's CSV; names the fix when the shared folder is missing."""
    path = DATASETS / f"{table}.csv.gz"
    if not path.is_file():
        raise SystemExit(f"{path}: not found; set PRIVSYNTH_DATASETS to the shared datasets "
                         "folder")
    return path


def cache_file(table: str, model: int) -> Path:
    return CACHE / table / f"model{model}.pkl"


class _Unpickler(pickle.Unpickler):
    """Reads caches written when this file ran as ``__main__``."""

    def find_class(self, module: str, name: str):
        if name == "Honest":
            return Honest
        return super().find_class(module, name)


def _load(path: Path) -> Honest:
    """One cached model (our own local file, written by :func:`generate`)."""
    with path.open("rb") as fh:
        obj = _Unpickler(fh).load()  # noqa: S301 - our own local cache
    return obj if isinstance(obj, Honest) else Honest(**obj)


def generate(table: str, models: int, samples: int, *, retrain: bool = False,
             log: Callable[[str], None] = print) -> list[Honest]:
    """Honest releases of ``table`` (cached): one real pipeline run per model, OS entropy.

    Sample 0 is the release's own audit draw (the released rows first); samples 1..S-1 are
    fresh draws of the same trained model (post-processing), each sized as the pipeline sizes
    its audit (``Synthesizer._audit_draw``: ``audit_sample_rows(N̂)``, topped up where honest
    output hits many rare real rows by chance).
    """
    policy = load_policy(table)
    out: list[Honest] = []
    todo = []
    for m in range(models):
        f = cache_file(table, m)
        if f.is_file() and not retrain:
            h = _load(f)
            if len(h.samples) >= samples:
                out.append(h)
                continue
        todo.append(m)
    if not todo:
        return out
    # The pipeline's own audit of its draw is information only (the panel re-audits each sample
    # with the reviewed policy): it runs the exact-copy check alone, to save CPU. Audit settings
    # change neither the encoding, the training nor the ε spent.
    audit = policy.audit.model_copy(update={"attacks": ["exact_copy"]})
    run_policy = policy.model_copy(update={"audit": audit})
    path = data_path(table)
    with tempfile.TemporaryDirectory(prefix="leak-panel-") as tmp:
        location = str(Path(tmp) / "ledger.sqlite")
        with ps.Ledger.open(location) as book:
            book.register(policy.dataset.id, total_epsilon=policy.privacy.epsilon * len(todo)
                          + 1, total_delta=min(0.5, policy.privacy.delta * (len(todo) + 1)),
                          sketch=book.sketch(path), officer="leak panel")
        for m in todo:
            start = time.perf_counter()
            model = Synthesizer(run_policy, ledger=location)
            model._fit_table(path, holdout_fraction=policy.audit.holdout_fraction,
                             release_id=None)
            release = model.release()
            seconds = time.perf_counter() - start
            inputs = release.audit_inputs
            assert inputs is not None
            n_public = int(release.manifest["synthetic_rows"])
            # sample 0 is the release's own audit draw (the released rows first); the others
            # are fresh draws of the same trained model, sized by the same rule (audit rows,
            # topped up on low-entropy tables: Synthesizer._audit_draw)
            frames = [inputs.synthetic.reset_index(drop=True)] + [
                model._model_records(*model._audit_draw(model._train, model._holdout,
                                                         f"panel-sample-{i}"))
                for i in range(1, samples)]
            chunk = len(frames[0])
            h = Honest(table, m, inputs.train.reset_index(drop=True),
                       inputs.holdout.reset_index(drop=True), frames, inputs.schema, n_public,
                       seconds, release.decision.reason_codes)
            f = cache_file(table, m)
            f.parent.mkdir(parents=True, exist_ok=True)
            tmp_file = f.with_suffix(".tmp")
            with tmp_file.open("wb") as fh:
                pickle.dump(vars(h), fh)
            tmp_file.replace(f)
            log(f"  {table}: model {m} trained and cached in {seconds:.0f} s "
                f"({samples} samples of {chunk} rows)")
            out.append(h)
    return sorted(out, key=lambda h: h.model)


# --------------------------------------------------------------------------- leaks

def _numeric(schema: TableSchema) -> list:
    return [c for c in schema.columns if c.is_numeric]


def _pick(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(n, size=k, replace=k > n)


def _nudge(rows: pd.DataFrame, schema: TableSchema, rng: np.random.Generator,
           move: float = NEAR_MOVE) -> pd.DataFrame:
    """Every number multiplied by 1 + u, |u| <= move (so moved by at most ``move`` of itself);
    categories and missing cells kept."""
    out = rows.copy()
    for col in _numeric(schema):
        x = pd.to_numeric(out[col.name], errors="coerce").to_numpy(dtype=float)
        out[col.name] = x * (1.0 + rng.uniform(-move, move, size=len(x)))
    return out


def _replace(base: pd.DataFrame, rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """``base`` with ``len(rows)`` random positions overwritten by ``rows``."""
    out = base.copy()
    where = rng.choice(len(out), size=len(rows), replace=False)
    for name in out.columns:
        values = out[name].to_numpy(copy=True)
        values[where] = rows[name].to_numpy()
        out[name] = values
    return out


def isolation(train: pd.DataFrame, holdout: pd.DataFrame, schema: TableSchema) -> np.ndarray:
    """Distance of each training row to its nearest *other* training row, in the audit's
    embedding (rank-scaled numerics, categorical mismatches): large = isolated."""
    emb = fit_embedding(schema, train, holdout)
    x = emb.transform(train)
    d, _ = nearest_neighbors(x, x, 2)
    return d[:, 1]


def leak_full_copy(h: Honest, base: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    return h.train.sample(frac=1.0, random_state=rng.integers(2**31)).reset_index(drop=True)


def leak_exact(h: Honest, base: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    k = max(1, math.ceil(LEAK_SHARE * len(base)))
    rows = h.train.iloc[_pick(len(h.train), k, rng)].reset_index(drop=True)
    return _replace(base, rows, rng)


def leak_near(h: Honest, base: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    k = max(1, math.ceil(LEAK_SHARE * len(base)))
    rows = h.train.iloc[_pick(len(h.train), k, rng)].reset_index(drop=True)
    return _replace(base, _nudge(rows, h.schema, rng), rng)


def leak_isolated_near(h: Honest, base: pd.DataFrame, rng: np.random.Generator
                       ) -> pd.DataFrame:
    k = max(1, math.ceil(LEAK_SHARE * len(base)))
    iso = isolation(h.train, h.holdout, h.schema)
    top = np.argsort(-iso, kind="stable")[: max(1, math.ceil(LEAK_SHARE * len(h.train)))]
    rows = h.train.iloc[top[_pick(len(top), k, rng)]].reset_index(drop=True)
    return _replace(base, _nudge(rows, h.schema, rng), rng)


def leak_overfit_kde(h: Honest, base: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """A memorising non-DP generator: a Gaussian kernel on each training row, bandwidth 0.5% of
    the column's public range (clipped to it); categories and missing cells of the row kept."""
    out = h.train.iloc[_pick(len(h.train), len(base), rng)].reset_index(drop=True)
    for col in _numeric(h.schema):
        x = pd.to_numeric(out[col.name], errors="coerce").to_numpy(dtype=float)
        lo, hi = col.bounds if col.bounds is not None else (np.nanmin(x), np.nanmax(x))
        y = x + rng.normal(0.0, KDE_BANDWIDTH * (float(hi) - float(lo)), size=len(x))
        out[col.name] = np.clip(y, float(lo), float(hi))
    return out


def leak_column_values(h: Honest, base: pd.DataFrame, rng: np.random.Generator
                       ) -> pd.DataFrame:
    """The honest rows with one column (the numeric one with the most values held by a single
    real row) replaced by exact training values, one random training row per synthetic row.
    Not built where no numeric value is held by one real row (health_insurance: every age and
    family size is shared): such a column's values single nobody out, so copying them reveals
    no membership."""
    nums = _numeric(h.schema)
    if not nums:
        raise ValueError("no numeric column")

    def unique_values(name: str) -> int:
        counts = pd.concat([h.train[name], h.holdout[name]]).value_counts()
        return int((counts == 1).sum())

    name = max(nums, key=lambda c: unique_values(c.name)).name
    if unique_values(name) == 0:
        raise ValueError("no numeric value is held by a single real row")
    out = base.copy()
    out[name] = h.train[name].to_numpy()[_pick(len(h.train), len(base), rng)]
    return out


LEAKS: dict[str, Callable[[Honest, pd.DataFrame, np.random.Generator], pd.DataFrame]] = {
    "full_copy": leak_full_copy,
    "exact_1pct": leak_exact,
    "near_1pct": leak_near,
    "overfit_kde": leak_overfit_kde,
    "isolated_near_1pct": leak_isolated_near,
    "column_values": leak_column_values,
}


# --------------------------------------------------------------------------- audit

def gate(policy: Policy, train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame,
         schema: TableSchema, *, seed: int | None = None) -> tuple[GateDecision, dict]:
    """Audit ``synthetic`` and decide with the policy's thresholds, as a DP-claimed release.

    Returns the decision and a summary (each gated check's value and upper bound, the
    not-applicable attacks, the audit's timing) with no cell value in it."""
    result = run_audit(train, holdout, synthetic, schema, policy.audit, seed=seed)
    decision = decide(result, policy.audit.thresholds, dp_claim=True,
                      require_dp_claim=policy.audit.require_dp_claim,
                      attacks_requested=policy.audit.attacks)
    summary = {
        "passed": decision.passed,
        "reason_codes": sorted(set(decision.reason_codes)),
        "failed_checks": sorted({c.name for c in decision.checks if not c.passed}),
        "checks": {c.name: {"value": _round(c.value), "upper": _round(c.upper_bound),
                            "threshold": c.threshold, "passed": c.passed}
                   for c in decision.checks},
        "not_applicable": list(decision.not_applicable),
        "utility_floor_passed": (result.utility or {}).get("floor", {}).get("passed"),
        "audit_s": result.meta.get("timings_s", {}).get("total"),
    }
    return decision, summary


def _round(x):
    return None if x is None else round(float(x), 5)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of k successes in n trials."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def panel_policy(table: str, skip_attacks: tuple[str, ...] = ()) -> Policy:
    """The reviewed policy, less ``skip_attacks`` (a faster, *weaker* gate: say so when used)."""
    policy = load_policy(table)
    if not skip_attacks:
        return policy
    attacks = [a for a in policy.audit.attacks if a not in skip_attacks]
    return policy.model_copy(update={"audit": policy.audit.model_copy(
        update={"attacks": attacks})})


def run_table(table: str, models: int, samples: int, *, retrain: bool, leak_models: int,
              leaks: list[str], skip_attacks: tuple[str, ...] = (),
              log: Callable[[str], None] = print) -> dict:
    """Generate (or load) the honest releases of ``table`` and audit honest and leaked output."""
    policy = panel_policy(table, skip_attacks)
    t0 = time.perf_counter()
    honest = generate(table, models, samples, retrain=retrain, log=log)
    t_gen = time.perf_counter() - t0
    res: dict = {"table": table, "models": len(honest), "samples": samples,
                 "attacks": list(policy.audit.attacks),
                 "train_rows": len(honest[0].train), "holdout_rows": len(honest[0].holdout),
                 "audit_rows": len(honest[0].samples[0]),
                 "release_s": [round(h.seconds, 1) for h in honest],
                 "generate_or_load_s": round(t_gen, 1), "honest": [], "leaks": {}}
    t0 = time.perf_counter()
    for h in honest:
        for j, sample in enumerate(h.samples[:samples]):
            _, s = gate(policy, h.train, h.holdout, sample, h.schema)
            s.update(model=h.model, sample=j)
            res["honest"].append(s)
            verdict = "pass" if s["passed"] else "BLOCKED " + ",".join(
                s["failed_checks"] or s["reason_codes"])
            log(f"  {table}: honest model {h.model} sample {j}: {verdict}")
    res["honest_audit_s"] = round(time.perf_counter() - t0, 1)
    k = sum(s["passed"] for s in res["honest"])
    n = len(res["honest"])
    res["honest_pass"] = {"passed": k, "n": n, "rate": k / n if n else None,
                          "wilson95": [round(v, 4) for v in wilson(k, n)]}
    t0 = time.perf_counter()
    rng = np.random.default_rng()
    for name in leaks:
        runs = []
        for h in honest[:leak_models]:
            try:
                synthetic = LEAKS[name](h, h.samples[0], rng)
            except ValueError as exc:
                runs.append({"passed": None, "not_built": str(exc)})
                continue
            _, s = gate(policy, h.train, h.holdout, synthetic, h.schema)
            s["model"] = h.model
            runs.append(s)
            verdict = "PASSED (missed)" if s["passed"] else "blocked " + ",".join(
                s["failed_checks"] or s["reason_codes"])
            log(f"  {table}: leak {name} on model {h.model}: {verdict}")
        res["leaks"][name] = runs
    res["leak_audit_s"] = round(time.perf_counter() - t0, 1)
    return res


# --------------------------------------------------------------------------- report

def _attack_blocked(summary: dict) -> bool:
    """Blocked by the attack evidence: a failed check or a failed attack, not the utility
    floor alone (a leak that only looks useless is not caught)."""
    return bool(summary["failed_checks"]) or any(
        c != "utility_floor" for c in summary["reason_codes"])


def _codes(summary: dict) -> set[str]:
    return {_short(c) for c in (summary["failed_checks"] or summary["reason_codes"])}


def _cell(runs: list[dict]) -> str:
    built = [r for r in runs if r.get("passed") is not None]
    if not built:
        return "n/a"
    caught = [r for r in built if _attack_blocked(r)]
    if len(caught) < len(built):
        return f"MISSED {len(built) - len(caught)}/{len(built)}"
    return "blocked:" + ",".join(sorted({c for r in caught for c in _codes(r)}))


def _attack_pass(honest: list[dict]) -> str:
    """Honest samples that no attack blocked (the utility floor aside), with Wilson 95%."""
    k = sum(not _attack_blocked(s) for s in honest)
    return "{}/{} ({:.2f}-{:.2f})".format(k, len(honest), *wilson(k, len(honest)))


def _short(code: str) -> str:
    """A short name for a check (or a reason code, when no check failed)."""
    if code.startswith("mia_") and code.endswith("_auc"):
        return "auc"
    if code.startswith("mia_") and "tpr_at_1pct" in code:
        return "tpr"
    if code.startswith("targeted_mia") and code.endswith("_auc"):
        return "tauc"
    if code.startswith("targeted_mia") and "tpr_at_1pct" in code:
        return "ttpr"
    if code.startswith("singling_out"):
        return "so"
    return {"exact_copy_rate": "copy", "unique_qi_copy_rate": "qi", "dcr_share": "dcr",
            "near_copy_rate": "near", "column_value_copy_rate": "col",
            "utility_floor": "util"}.get(code, code)


def print_table(results: list[dict]) -> None:
    """A Markdown table, one row per table: each leak kind -> blocked? (the checks that failed),
    honest pass rate with its 95% Wilson interval, what blocked honest samples, timings."""
    kinds = list(dict.fromkeys(k for r in results for k in r["leaks"]))
    head = ["table", "train/holdout/audited rows", *kinds, "honest pass (Wilson 95%)",
            "honest: attacks pass (Wilson 95%)", "honest blocked by", "release s", "audit s"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in results:
        hp = r["honest_pass"]
        cells = [r["table"], f"{r['train_rows']}/{r['holdout_rows']}/{r['audit_rows']}",
                 *(_cell(r["leaks"].get(k, [])) for k in kinds),
                 "{}/{} ({:.2f}-{:.2f})".format(hp["passed"], hp["n"], *hp["wilson95"]),
                 _attack_pass(r["honest"]),
                 ",".join(sorted({c for s in r["honest"] if not s["passed"]
                                  for c in _codes(s)})) or "-",
                 f"{np.mean(r['release_s']):.0f}",
                 f"{np.mean([s['audit_s'] or 0 for s in r['honest']]):.1f}"]
        print("| " + " | ".join(cells) + " |")
    print("\nchecks that failed: copy=exact_copy_rate qi=unique_qi_copy_rate dcr=dcr_share "
          "col=column_value_copy_rate tauc/ttpr=targeted MIA AUC/TPR at 1% FPR "
          "auc=an MIA AUC near=near_copy_rate tpr=an MIA TPR at 1% FPR so=singling out "
          "util=utility floor; MISSED = passed the gate or blocked by the utility floor only")


def _write_json(path: Path, results: list[dict], seconds: float, skipped: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "command": " ".join(sys.argv), "seconds": round(seconds, 1), "attacks_left_out": skipped,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "results": results}, indent=1))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tables", nargs="+", default=["all"], help="table names, or 'all'")
    p.add_argument("--models", type=int, default=5, help="independently trained models/table")
    p.add_argument("--samples", type=int, default=4, help="fresh audit samples per model")
    p.add_argument("--leak-models", type=int, default=1,
                   help="build the planted leaks on the first K models' outputs")
    p.add_argument("--leaks", nargs="+", default=list(LEAKS), choices=list(LEAKS))
    p.add_argument("--skip-attacks", nargs="+", default=[], metavar="ATTACK",
                   help="leave these policy attacks out (faster, weaker gate; reported)")
    p.add_argument("--retrain", action="store_true", help="ignore the cache and retrain")
    p.add_argument("--generate-only", action="store_true",
                   help="train and cache the honest releases, audit nothing")
    p.add_argument("--json", type=Path, help="write every figure to this file")
    p.add_argument("--from-json", type=Path, help="print the table of an earlier --json file")
    args = p.parse_args(argv)
    if args.from_json:
        print_table(json.loads(args.from_json.read_text())["results"])
        return 0
    tables = list(TABLES) if args.tables == ["all"] else args.tables
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        p.error(f"unknown table(s) {unknown}; choose from {list(TABLES)} or 'all'")
    start = time.perf_counter()
    if args.generate_only:
        for t in tables:
            generate(t, args.models, args.samples, retrain=args.retrain)
        print(f"generated in {time.perf_counter() - start:.0f} s")
        return 0
    results = []
    for t in tables:
        print(f"== {t}", flush=True)
        results.append(run_table(t, args.models, args.samples, retrain=args.retrain,
                                 leak_models=args.leak_models, leaks=args.leaks,
                                 skip_attacks=tuple(args.skip_attacks)))
        if args.json:  # after every table, so a long run that is stopped keeps what it measured
            _write_json(args.json, results, time.perf_counter() - start, args.skip_attacks)
    total = time.perf_counter() - start
    print()
    print_table(results)
    if args.skip_attacks:
        print(f"\nattacks LEFT OUT of every policy (a weaker gate): {args.skip_attacks}")
    print(f"\nM={args.models} models x S={args.samples} samples per table; "
          f"{total:.0f} s on {os.cpu_count()} cores ({platform.processor() or platform.machine()})")
    leaked = any(r.get("passed") is not None and not _attack_blocked(r)
                 for res in results for runs in res["leaks"].values() for r in runs)
    low = any((res["honest_pass"]["rate"] or 0) < 0.95 for res in results)
    return 1 if leaked or low else 0


if __name__ == "__main__":
    raise SystemExit(main())
