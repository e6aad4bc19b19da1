"""Person-level vs row-level releases at the same ε: what per-person privacy costs and buys.

For each panel table (``pbc_visits``: 312 patients, 1-16 visits; ``dropout_wages``: 888
respondents, 1-13 yearly rows) this runs ``--runs`` independent honest releases (OS entropy, no
seed) of

* (a) the **row-level** benchmark policy ``benchmarks/policies/<table>.yaml`` (one row = one unit
  of privacy; the person identifier is dropped), and
* (b) the **person-level** policy ``policies/<table>-person.yaml`` (one person with all of their
  at most k rows = one unit),

both at the same ε (``--epsilon``; default: the person-level policy's ε), through the real
pipeline (``privsynth.synthesize``) against a temporary ledger whose population is registered
person-keyed with K = the table's public maximum of rows per person (16 visits; 13 survey years).
The ledger then debits a row-level release K·ε (group privacy) and a person-level one ε; the
table prints that debit as the *effective person-level ε*.

Figures per release (means over the runs, min-max in brackets when runs > 1):

* ``gate``: releases the gate passed / runs;
* ``TSTR``: the audit's train-on-synthetic, test-on-real figure (``release.audit.utility``; R²
  for a numeric target, ROC AUC for a binary one, accuracy otherwise: the row-level wages policy
  targets lnw, the person-level one ged), with train-on-real for reference. The person
  release's audit scores one row per person, the row-level one every row;
* ``TVD``: mean total-variation distance of the released table's one-column marginals against the
  whole real table (numbers in the policy's uniform bins over its bounds, plus a missing cell);
  the same computation for both releases;
* within-person figures, on the released table against the real one: share of persons whose
  ``fixed`` columns are constant across their rows; TVD of the rows-per-person distribution
  against the real one clipped at the policy's k; lag-1 Spearman correlation of a varying numeric
  column between consecutive rows of a person in ``order_by`` order (lnw for wages, bili for
  pbc). A row-level release has no person ids: "n/a (no persons)", which is the point.

Measured (2-core shared CPU, torch CPU, no GPU)::

    python benchmarks/person_utility.py --runs 2 --json /tmp/person_utility.json   # ~6 min
    python benchmarks/person_utility.py --quick                                    # ~3 min

(results and settings: docs/person_level.md)

``--quick`` is one run per policy. Settings are the policies' own; ``--epsilon`` overrides both.
Never prints a cell value of the real table, only aggregates.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import privsynth as ps  # noqa: E402
from privsynth.errors import BudgetExceededError  # noqa: E402
from privsynth.policy.loader import load_policy, parse_policy  # noqa: E402
from privsynth.policy.model import Policy  # noqa: E402
from privsynth.privacy.ledger import Ledger, group_delta  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets"

#: table -> (person id column, public max rows per person K, lag-1 column)
TABLES = {
    "pbc_visits": ("id", 16, "bili"),
    "dropout_wages": ("id", 13, "lnw"),
}
NA = "n/a (no persons)"


def with_epsilon(policy: Policy, epsilon: float) -> Policy:
    """The policy at ``epsilon`` (everything else as written)."""
    spec = policy.model_dump(mode="json")
    spec["privacy"]["epsilon"] = float(epsilon)
    return parse_policy(yaml.safe_dump(spec, sort_keys=False), f"{policy.name}@eps{epsilon}")


# ----------------------------------------------------------------------------- figures
def _binned(values: pd.Series, rule) -> pd.Series:  # noqa: ANN001 - a ColumnPolicy
    """Cell labels of one column: uniform bins over the policy's bounds, categories as text,
    missing as its own cell."""
    if rule.kind in ("numeric", "integer") and isinstance(rule.bounds, tuple):
        lo, hi = (float(b) for b in rule.bounds)
        x = pd.to_numeric(values, errors="coerce").to_numpy(float)
        bins = int(rule.bins or 20)
        idx = np.clip(np.floor((x - lo) / max(hi - lo, 1e-12) * bins), 0, bins - 1)
        return pd.Series(idx).map(lambda v: "NA" if v != v else str(int(v)))
    text = values.astype(object).map(lambda v: "NA" if v is None or v != v else str(v).strip())
    # 1 and 1.0 are one category (a csv may read a 0/1 column as float)
    return text.map(lambda s: s[:-2] if s.endswith(".0") else s)


def tvd(a: pd.Series, b: pd.Series) -> float:
    """Total-variation distance between the empirical distributions of two label series."""
    pa, pb = a.value_counts(normalize=True), b.value_counts(normalize=True)
    keys = pa.index.union(pb.index)
    return 0.5 * float(np.abs(pa.reindex(keys, fill_value=0) - pb.reindex(keys, fill_value=0))
                       .sum())


def marginal_tvd_mean(real: pd.DataFrame, syn: pd.DataFrame, policy: Policy) -> float:
    cols = [n for n, c in policy.columns.items() if c.modelled and n in syn.columns]
    return float(np.mean([tvd(_binned(real[n], policy.columns[n]),
                              _binned(syn[n], policy.columns[n])) for n in cols]))


def lag1(frame: pd.DataFrame, pid: str, order_by: str, column: str) -> float:
    """Spearman correlation of ``column`` between consecutive rows of a person."""
    f = frame[[pid, order_by, column]].copy()
    f[order_by] = pd.to_numeric(f[order_by], errors="coerce")
    f[column] = pd.to_numeric(f[column], errors="coerce")
    f = f.sort_values([pid, order_by], kind="stable")
    nxt = f.groupby(pid, sort=False)[column].shift(-1)
    pairs = pd.DataFrame({"x": f[column], "y": nxt}).dropna()
    if len(pairs) < 3:
        return float("nan")
    return float(pairs["x"].rank().corr(pairs["y"].rank()))


def within_person(real: pd.DataFrame, syn: pd.DataFrame, policy: Policy, lag_col: str
                  ) -> dict[str, float]:
    """Within-person figures of a person-level release (synthetic) and of the real table."""
    person = policy.privacy.person
    pid, k, fixed = person.id, person.max_rows, list(person.fixed)

    def constant_share(frame: pd.DataFrame) -> float:
        if not fixed:
            return float("nan")
        labels = frame[fixed].astype(object).astype(str)
        labels[pid] = frame[pid].to_numpy()
        return float((labels.groupby(pid)[fixed].nunique(dropna=False) == 1).all(axis=1).mean())

    real_sizes = real.groupby(pid).size().clip(upper=k)
    syn_sizes = syn.groupby(pid).size()
    return {
        "fixed_constant_real": constant_share(real),
        "fixed_constant_syn": constant_share(syn),
        "rows_per_person_tvd": tvd(real_sizes.astype(str), syn_sizes.astype(str)),
        "rows_per_person_mean_real": float(real_sizes.mean()),
        "rows_per_person_mean_syn": float(syn_sizes.mean()),
        "lag1_real": lag1(real, pid, person.order_by, lag_col),
        "lag1_syn": lag1(syn, pid, person.order_by, lag_col),
    }


def tstr_figure(release) -> tuple[float | None, float | None, str]:  # noqa: ANN001
    """(synthetic, real, metric) from the audit's TSTR."""
    t = (release.audit.utility or {}).get("tstr") or {}
    syn, real = t.get("synthetic") or {}, t.get("real") or {}
    # a binary target is gated on ROC AUC (the audit's "metric" then still says accuracy)
    metric = "roc_auc" if "roc_auc" in real else (t.get("metric") or "accuracy")
    return syn.get(metric), real.get(metric), metric


# ----------------------------------------------------------------------------- runs
def _spent(ledger: str, population: str) -> float:
    book = Ledger.open(ledger, create=False)
    try:
        return float(book.population(population)["spent_epsilon"])
    finally:
        book.close()


def one_release(table: str, policy: Policy, ledgers: dict[str, str], real: pd.DataFrame,
                lag_col: str, person_policy: Policy) -> dict:
    """One release. It reserves in the person-keyed ledger; a row-level release that ledger
    refuses (its group-privacy δ, K·e^((K-1)ε)·δ, is beyond any budget) is recorded as refused
    and then run against a ledger registered per row, so that its utility can be measured."""
    population = policy.dataset.id
    path = str(DATA / f"{table}.csv.gz")
    before = _spent(ledgers["person"], population)
    refused = None
    start = time.perf_counter()
    try:
        release = ps.synthesize(path, policy, ledger=ledgers["person"])
        used = "person"
    except BudgetExceededError as exc:  # refused at the reservation: nothing was read
        refused = str(exc).split(". ")[0]
        release = ps.synthesize(path, policy, ledger=ledgers["row"])
        used = "row"
    wall = time.perf_counter() - start
    debit = _spent(ledgers["person"], population) - before
    syn = release.synthetic
    tstr_syn, tstr_real, metric = tstr_figure(release)
    row = {"unit": policy.privacy.unit, "passed": bool(release.passed),
           "reasons": [r.split(":", 1)[0] for r in release.decision.reasons],
           "tstr_syn": tstr_syn, "tstr_real": tstr_real, "tstr_metric": metric,
           "tvd_mean": marginal_tvd_mean(real, syn, person_policy),
           "audit_tvd_mean": (release.audit.utility or {}).get("marginal_tvd_mean"),
           "epsilon": policy.privacy.epsilon, "delta": policy.privacy.delta,
           "ledger": used, "person_ledger_refused": refused,
           "person_ledger_debit_epsilon": round(debit, 6),
           "synthetic_rows": len(syn), "wall_s": round(wall, 1)}
    if policy.privacy.unit == "person":
        row.update(within_person(real, syn, policy, lag_col))
        row["synthetic_persons"] = int(syn[policy.privacy.person.id].nunique())
    return row


def run_table(table: str, runs: int, epsilon: float | None, log) -> dict:  # noqa: ANN001
    pid, big_k, lag_col = TABLES[table]
    person = load_policy(ROOT / "policies" / f"{table.replace('_', '-')}-person.yaml")
    row_level = load_policy(ROOT / "benchmarks" / "policies" / f"{table}.yaml")
    eps = float(epsilon if epsilon is not None else person.privacy.epsilon)
    person, row_level = with_epsilon(person, eps), with_epsilon(row_level, eps)
    real = pd.read_csv(DATA / f"{table}.csv.gz")
    out = {"table": table, "epsilon": eps, "K_public_max_rows": big_k,
           "k_policy": person.privacy.person.max_rows, "runs": {"row": [], "person": []},
           "real": within_person(real, real, person, lag_col)}
    out["row_level_person_delta"] = float(group_delta(eps, row_level.privacy.delta, big_k))
    with tempfile.TemporaryDirectory() as tmp:
        ledgers = {"person": str(Path(tmp) / "person.sqlite"),
                   "row": str(Path(tmp) / "row.sqlite")}
        for unit, location in ledgers.items():
            keyed = {"person_id": pid, "max_rows_per_person": big_k} if unit == "person" else {}
            with Ledger.open(location) as book:
                book.register(person.dataset.id, total_epsilon=runs * eps * (big_k + 1) + 1,
                              total_delta=0.5, sketch=book.sketch(real), officer="benchmark",
                              note=f"person_utility benchmark ({unit} ledger)", **keyed)
        for i in range(runs):
            for unit, policy in (("row", row_level), ("person", person)):
                r = one_release(table, policy, ledgers, real, lag_col, person)
                out["runs"][unit].append(r)
                log(f"  {table} {unit:6s} run {i + 1}/{runs}: passed={r['passed']} "
                    f"{r['reasons']} TSTR={_f(r['tstr_syn'])} TVD={_f(r['tvd_mean'])} "
                    f"person-ledger debit ε={r['person_ledger_debit_epsilon']:g}"
                    + (f" (refused: {r['person_ledger_refused']})"
                       if r["person_ledger_refused"] else "") + f" ({r['wall_s']} s)")
    return out


# ----------------------------------------------------------------------------- table
def _f(x: float | None, nd: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{nd}f}"


def _agg(rows: list[dict], key: str, nd: int = 3) -> str:
    vals = [r[key] for r in rows if r.get(key) is not None
            and not (isinstance(r[key], float) and np.isnan(r[key]))]
    if not vals:
        return "-"
    mean = float(np.mean(vals))
    return _f(mean, nd) if len(vals) == 1 else f"{_f(mean, nd)} [{_f(min(vals), nd)}-" \
                                               f"{_f(max(vals), nd)}]"


def render(results: list[dict]) -> str:
    head = ["table", "unit", "ε", "gate", "TSTR syn (real)", "TVD mean", "fixed const",
            "rows/person TVD", "lag-1 syn (real)", "person-level ε"]
    lines = []
    for res in results:
        real = res["real"]
        for unit in ("row", "person"):
            rows = res["runs"][unit]
            if not rows:
                continue
            passed = sum(r["passed"] for r in rows)
            metric = rows[0]["tstr_metric"]
            tstr = f"{_agg(rows, 'tstr_syn')} ({_agg(rows, 'tstr_real')}) {metric}"
            if unit == "person":
                fixed = _agg(rows, "fixed_constant_syn", 2)
                sizes = f"{_agg(rows, 'rows_per_person_tvd')} (k={res['k_policy']})"
                lag = f"{_agg(rows, 'lag1_syn')} ({_f(real['lag1_real'])})"
                eff = (f"{res['epsilon']:g} (ledger debit "
                       f"{_agg(rows, 'person_ledger_debit_epsilon', 2)})")
            else:
                fixed = sizes = lag = NA
                big_k = res["K_public_max_rows"]
                delta = res["row_level_person_delta"]
                eff = (f"{big_k}·{res['epsilon']:g} = {big_k * res['epsilon']:g}, δ "
                       + (f"{delta:.2g}" if delta < 1 else "≥ 1 (vacuous)")
                       + (": ledger refused" if all(r["person_ledger_refused"] for r in rows)
                          else f" (ledger debit {_agg(rows, 'person_ledger_debit_epsilon', 2)})"))
            lines.append([res["table"], unit, f"{res['epsilon']:g}", f"{passed}/{len(rows)}",
                          tstr, _agg(rows, "tvd_mean"), fixed, sizes, lag, eff])
    widths = [max(len(h), *(len(r[i]) for r in lines)) for i, h in enumerate(head)]
    fmt = " | ".join(f"{{:{w}}}" for w in widths)
    out = [fmt.format(*head), "-+-".join("-" * w for w in widths)]
    out += [fmt.format(*r) for r in lines]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES))
    ap.add_argument("--runs", type=int, default=3, help="releases per policy (default 3)")
    ap.add_argument("--quick", action="store_true", help="one release per policy")
    ap.add_argument("--epsilon", type=float, default=None,
                    help="ε for both releases (default: the person-level policy's)")
    ap.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = ap.parse_args(argv)
    runs = 1 if args.quick else max(1, args.runs)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    start = time.perf_counter()
    results = [run_table(t, runs, args.epsilon, log) for t in args.tables]
    wall = time.perf_counter() - start
    print(render(results))
    print(f"\n{runs} release(s) per policy; wall {wall:.0f} s on {platform.machine()} "
          f"({platform.processor() or platform.system()}); real within-person figures: "
          + "; ".join(f"{r['table']}: fixed const {_f(r['real']['fixed_constant_real'], 2)}, "
                      f"rows/person mean {_f(r['real']['rows_per_person_mean_real'], 2)} "
                      f"(clipped at k={r['k_policy']})" for r in results))
    if args.json:
        args.json.write_text(json.dumps({"wall_s": round(wall, 1), "runs": runs,
                                         "results": results}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
