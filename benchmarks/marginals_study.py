"""Do the numeric encoders keep what analysts use? One-column fidelity with and without the
policy's declarations (point masses, heavy-tail transform, complete columns).

For each shared table and its reviewed policy (``benchmarks/policies/<table>.yaml``) this fits
the DP-VAE twice per ε on the seeded half/half split of ``defaults_study.py``:

* ``declared``: the policy as written (its ``point_masses``, ``transform: asinh``,
  ``complete: true`` and ``binning: geometric`` declarations, each a public fact cited in the
  policy), without matched marginals;
* ``plain``: the same policy with those declarations removed (``binning: geometric`` back to
  uniform);
* ``matched``: the policy as written *and* its DP one-way marginals matched at sampling
  (``privacy.marginals_share: auto``, the default; the other two set it to 0);
* ``focused``: as ``matched``, with the share spent on the shape-declared columns only
  (``privacy.marginals_columns``), so each gets more cells.

and compares each column of a synthetic sample (20,000 rows, free post-processing) with the
real holdout, both as the pipeline reads them (cells trimmed, kinds converted), by
total-variation distance over cells an analyst would see: every value that holds at
least 5% of the real holdout's rows (a point mass: 0, an assay limit, a round number) is a cell
of its own, the other values fall in the real holdout's deciles, and a missing cell is a cell.
The same TVD between the two real halves (in brackets) is the metric's own noise at the
holdout's size: no synthesizer can be expected below it. It also reports the share of synthetic
cells that are missing in columns that are complete in the real table ("invented missing
values").

    python benchmarks/marginals_study.py --epsilons 10 1 --seeds 1 --json /tmp/marginals.json

Prints, per table and ε, the mean and max column TVD of each variant, the columns whose TVD
exceeds 0.05 in either, and the invented-missing share. Aggregates only, never a cell value
(the point-mass *values* are the policy's declarations, already public).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from defaults_study import POLICIES, TABLES, _split, run_jobs, scratch_ledger  # noqa: E402

DECLARATIONS = ("point_masses", "transform", "transform_scale", "complete")
ATOM_SHARE = 0.05
#: synthetic rows drawn per fit (free post-processing): the synthetic side adds little noise
SYNTHETIC_ROWS = 20_000


def _policy_text(table: str, variant: str, epsilon: float, seed: int) -> str:
    spec = yaml.safe_load((POLICIES / f"{table}.yaml").read_text())
    spec["privacy"]["epsilon"] = float(epsilon)
    spec["seed"] = int(seed)
    for key in ("epochs", "batch_size"):  # the default schedule (issue 11's rule)
        spec["generator"].pop(key, None)
    # `matched` is the policy as shipped: DP one-way marginals matched at sampling (auto share)
    spec["privacy"]["marginals_share"] = "auto" if variant in ("matched", "focused") else 0
    if variant == "focused":  # the share spent on the shape-declared columns only
        spec["privacy"]["marginals_columns"] = [
            name for name, rule in spec["columns"].items()
            if _declared(rule) and rule.get("rule", "keep") != "drop"] or None
    if variant == "plain":
        for rule in spec["columns"].values():
            for key in DECLARATIONS:
                rule.pop(key, None)
            if rule.get("binning") == "geometric":
                rule["binning"] = "uniform"
    spec["audit"]["attacks"] = ["exact_copy"]
    # the study measures TSTR at every ε; the floor's TSTR judgement (and pre-flight's
    # target_unlearnable refusal that protects a user's budget) is not what it studies
    spec["audit"].setdefault("utility", {})["tstr"] = False
    return yaml.safe_dump(spec, sort_keys=False)


def _cells(real: pd.Series, values: pd.Series, numeric: bool) -> tuple[pd.Series, pd.Series]:
    """Analyst-visible cells of a column: point masses, deciles of the rest, missing."""
    def text(s: pd.Series) -> pd.Series:
        s = s.astype(object)
        return s.where(s.notna() & (s != ""), None)

    r, v = text(real), text(values)
    if not numeric:  # "1" and "1.0" are one category (a CSV may write a 0/1 code as float)
        def cat(s: pd.Series) -> pd.Series:
            s = s.fillna("<missing>").astype(str)
            return s.str.replace(r"^(-?\d+)\.0$", r"\1", regex=True)

        return cat(r), cat(v)
    rn = pd.to_numeric(r, errors="coerce").astype(float)
    vn = pd.to_numeric(v, errors="coerce").astype(float)
    share = rn.value_counts(normalize=True) * rn.notna().mean()
    atoms = set(share[share >= ATOM_SHARE].index)
    rest = rn[rn.notna() & ~rn.isin(atoms)]
    edges = np.unique(rest.quantile(np.linspace(0, 1, 11)).to_numpy()) if len(rest) else []

    def label(x: pd.Series) -> pd.Series:
        out = pd.Series("<missing>", index=x.index, dtype=object)
        is_atom = x.isin(atoms)
        out[is_atom] = "=" + x[is_atom].astype(str)
        other = x.notna() & ~is_atom
        if len(edges) > 1:
            out[other] = "q" + pd.Series(np.searchsorted(edges[1:-1], x[other], side="right"),
                                         index=x[other].index).astype(str)
        else:
            out[other] = "q0"
        return out

    return label(rn), label(vn)


def _tvd(a: pd.Series, b: pd.Series) -> float:
    pa, pb = a.value_counts(normalize=True), b.value_counts(normalize=True)
    keys = pa.index.union(pb.index)
    return 0.5 * float((pa.reindex(keys, fill_value=0) - pb.reindex(keys, fill_value=0))
                       .abs().sum())


def one_fit(job: tuple[str, str, float, int]) -> dict:
    """Fit one variant on one table at one ε; per-column TVD against the real holdout."""
    import torch

    torch.set_num_threads(1)
    import privsynth as ps
    from privsynth.data.table import prepare_table
    from privsynth.pipeline import read_table
    from privsynth.policy.loader import parse_policy

    table, variant, epsilon, seed = job
    train, holdout = _split(table)
    policy = parse_policy(_policy_text(table, variant, epsilon, seed), f"{table}-{variant}")
    with scratch_ledger(policy, train) as ledger:
        model = ps.Synthesizer(policy, ledger=ledger).fit(train)
        syn = model.sample(SYNTHETIC_ROWS)
    # the real halves as the pipeline reads them (cells trimmed, kinds converted, rules applied)
    real = {name: prepare_table(read_table(frame, policy), policy).frame
            for name, frame in (("train", train), ("holdout", holdout))}
    tvd, floor, invented = {}, {}, []
    for name, rule in policy.columns.items():
        if not rule.modelled or name not in syn.columns:
            continue
        numeric = rule.kind in ("numeric", "integer")
        a, b = _cells(real["holdout"][name], syn[name], numeric)
        tvd[name] = round(_tvd(a, b), 4)
        a, b = _cells(real["holdout"][name], real["train"][name], numeric)
        floor[name] = round(_tvd(a, b), 4)  # two real halves: the metric's own noise
        if not real["holdout"][name].isna().any():
            cells = syn[name].astype(object)
            invented.append(float((cells.isna() | (cells == "")).mean()))
    shaped = {name: _declared(rule) for name, rule in
              yaml.safe_load((POLICIES / f"{table}.yaml").read_text())["columns"].items()
              if _declared(rule)}
    return {"table": table, "variant": variant, "epsilon": epsilon, "seed": seed,
            "tvd": tvd, "floor": floor, "shaped": shaped,
            "marginals_epsilon": round(sum(c["epsilon"] for c in model.charges_
                                           if c["stage"] == "marginals"), 4),
            "invented_missing": round(float(np.mean(invented)) if invented else 0, 5)}


def _declared(rule: dict) -> str:
    """The column's shape declarations as written in the policy ('' when none)."""
    keys = [*DECLARATIONS[:3], "binning"]
    return ", ".join(f"{k}: {rule[k]}" for k in keys
                     if k in rule and not (k == "binning" and rule[k] != "geometric"))


def shaped_report(rows: list[dict], variants: list[str]) -> str:
    """Per declared column (point masses, heavy tails, counts): TVD per variant."""
    lines = ["| table | ε | column | declared as | " + " | ".join(variants) +
             " | real halves |", "|---|---|---|---|" + "---|" * (len(variants) + 1)]
    frame = pd.DataFrame(rows)
    for (table, eps), part in frame.groupby(["table", "epsilon"], sort=False):
        first = part.iloc[0]
        for column, declared in first["shaped"].items():
            cells = []
            for v in variants:
                vals = [r[column] for r in part.loc[part.variant == v, "tvd"] if column in r]
                cells.append(f"{np.mean(vals):.3f}" if vals else "-")
            lines.append(f"| {table} | {eps:g} | {column} | `{declared}` | " + " | ".join(cells)
                         + f" | {first['floor'].get(column, float('nan')):.3f} |")
    return "\n".join(lines)


def report(rows: list[dict]) -> str:
    lines = ["| table | ε | variant | mean TVD (real halves) | max TVD | columns > 0.05 "
             "(real halves) | invented missing |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        t, f = row["tvd"], row["floor"]
        over = ", ".join(f"{k} {v:.2f} ({f[k]:.2f})" for k, v in
                         sorted(t.items(), key=lambda kv: -kv[1]) if v > 0.05) or "-"
        lines.append(f"| {row['table']} | {row['epsilon']:g} | {row['variant']} | "
                     f"{np.mean(list(t.values())):.3f} ({np.mean(list(f.values())):.3f}) | "
                     f"{max(t.values()):.3f} | {over} | {row['invented_missing']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", nargs="+", default=TABLES)
    parser.add_argument("--epsilons", nargs="+", type=float, default=[10.0, 1.0])
    parser.add_argument("--variants", nargs="+", default=["plain", "declared", "matched"])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    jobs = [(t, v, e, 2000 + k) for k in range(args.seeds) for e in args.epsilons
            for t in args.tables for v in args.variants]
    rows = run_jobs(one_fit, jobs, args.jobs, args.json)
    print(f"\n{os.cpu_count()} cores, torch CPU; schedule auto; seeds {args.seeds}")
    print(report(rows))
    print(shaped_report(rows, args.variants))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
