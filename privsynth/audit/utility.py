"""Utility evidence: marginals, association differences, TSTR, and the gate's utility floor.

Everything here is reported internally; only the *utility floor* (``floor`` in the result, see
``privsynth.policy.model.UtilityFloor``) is gated: a release whose columns are no better than a
generator that learned nothing is blocked.

Only aggregates leave this module, and category labels only when they are public (in the
schema's domain); any other category is pooled into "(other)". Numeric histograms use bins over
the public bounds.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from privsynth.audit.stats import TSTR_ROWS, auc_ci_delong
from privsynth.data.schema import ColumnSchema, TableSchema
from privsynth.policy.model import UtilityFloor

OTHER = "(other)"
MISSING = "(missing)"
MAX_TSTR_ROWS = TSTR_ROWS  # the audit draws this many where the floor judges TSTR


_BOOLEAN_TOKENS = {"true", "false", "t", "f", "yes", "no", "y", "n", "0", "1", "0.0", "1.0"}


def _public_domain(col: ColumnSchema) -> tuple[str, ...]:
    """Categories that may be named in a report: declared by the policy or released by a DP
    mechanism. A domain read from real rows (an external audit's fallback) is not."""
    return tuple(col.domain or ()) if col.domain_source is not None else ()


def _public_labels(col: ColumnSchema, series: pd.Series) -> pd.Series:
    domain = {str(v) for v in _public_domain(col)}
    if col.kind == "boolean":  # a boolean's domain is public by definition
        domain |= {str(v) for v in pd.unique(series.dropna().astype(object))
                   if str(v).strip().lower() in _BOOLEAN_TOKENS}
    s = series.astype(object)
    miss = pd.isna(s)
    strs = s.map(str)
    out = strs.where(strs.isin(domain), OTHER)
    return out.where(~miss, MISSING)


def _marginal(col: ColumnSchema, real: pd.Series, syn: pd.Series, bins: int = 20) -> dict:
    if col.is_numeric:
        public = col.bounds if col.bounds and col.bounds_source is not None else None
        lo, hi = public or (np.nanmin(syn), np.nanmax(syn))
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
            hi = lo + 1.0
        edges = np.linspace(lo, hi, bins + 1)
        r = pd.to_numeric(real, errors="coerce").to_numpy(float)
        s = pd.to_numeric(syn, errors="coerce").to_numpy(float)
        hr, _ = np.histogram(np.clip(r[~np.isnan(r)], lo, hi), bins=edges)
        hs, _ = np.histogram(np.clip(s[~np.isnan(s)], lo, hi), bins=edges)
        pr = np.append(hr, np.isnan(r).sum()) / max(len(r), 1)
        ps = np.append(hs, np.isnan(s).sum()) / max(len(s), 1)
        # Wasserstein-1 on the public range, in units of the range
        cr, cs = np.cumsum(hr / max(hr.sum(), 1)), np.cumsum(hs / max(hs.sum(), 1))
        w1 = float(np.abs(cr - cs).sum() / bins)
        return {"kind": "numeric", "edges": [float(e) for e in edges],
                "real": pr.round(6).tolist(), "synthetic": ps.round(6).tolist(),
                "tvd": float(0.5 * np.abs(pr - ps).sum()), "wasserstein_scaled": w1}
    lr = _public_labels(col, real).value_counts(normalize=True)
    ls = _public_labels(col, syn).value_counts(normalize=True)
    labels = [str(v) for v in _public_domain(col)]
    labels += sorted((set(lr.index) | set(ls.index)) - set(labels) - {OTHER, MISSING})
    labels += [OTHER, MISSING]
    labels = [lab for lab in labels if lab in lr.index or lab in ls.index]
    pr = np.array([lr.get(lab, 0.0) for lab in labels])
    ps = np.array([ls.get(lab, 0.0) for lab in labels])
    return {"kind": "categorical", "labels": labels, "real": pr.round(6).tolist(),
            "synthetic": ps.round(6).tolist(), "tvd": float(0.5 * np.abs(pr - ps).sum())}


def _analyst_cells(col: ColumnSchema, real: pd.Series, syn: pd.Series, bins: int
                   ) -> tuple[np.ndarray, np.ndarray, int]:
    """Both columns as codes of the same analyst cells: ``bins`` equal bins over the public
    bounds (or the synthetic range) plus missing for a number; public labels, other and
    missing for a category (the cells ``_marginal`` reports)."""
    if col.is_numeric:
        public = col.bounds if col.bounds and col.bounds_source is not None else None
        lo, hi = public or (np.nanmin(pd.to_numeric(syn, errors="coerce")),
                            np.nanmax(pd.to_numeric(syn, errors="coerce")))
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
            hi = lo + 1.0

        def code(s: pd.Series) -> np.ndarray:
            v = pd.to_numeric(s, errors="coerce").to_numpy(float)
            seen = ~np.isnan(v)
            out = np.full(len(v), bins, dtype=np.int64)  # the missing cell
            out[seen] = np.clip(((v[seen] - lo) / (hi - lo) * bins).astype(np.int64), 0,
                                bins - 1)
            return out

        return code(real), code(syn), bins + 1
    lr, ls = _public_labels(col, real), _public_labels(col, syn)
    labels = list(dict.fromkeys([*lr.unique(), *ls.unique()]))
    return (pd.Categorical(lr, categories=labels).codes.astype(np.int64),
            pd.Categorical(ls, categories=labels).codes.astype(np.int64), len(labels))


def pairwise_tvd(schema: TableSchema, real: pd.DataFrame, syn: pd.DataFrame,
                 bins: int = 10) -> float:
    """Mean total variation distance between the real and synthetic 2-way marginals of every
    pair of columns, on analyst cells (``bins`` equal bins per number over its public bounds,
    public labels per category): the joint structure a one-way TVD cannot see. 0 for fewer
    than two columns."""
    cells = [_analyst_cells(c, real[c.name], syn[c.name], bins) for c in schema.columns]
    tvds = []
    for i in range(len(cells)):
        for j in range(i + 1, len(cells)):
            (ri, si, ki), (rj, sj, kj) = cells[i], cells[j]
            pr = np.bincount(ri * kj + rj, minlength=ki * kj) / max(len(ri), 1)
            ps = np.bincount(si * kj + sj, minlength=ki * kj) / max(len(si), 1)
            tvds.append(0.5 * np.abs(pr - ps).sum())
    return float(np.mean(tvds)) if tvds else 0.0


def _codes(col: ColumnSchema, s: pd.Series, cats: list[str]) -> np.ndarray:
    v = s.astype(object)
    strs = v.map(str).where(~pd.isna(v), MISSING)
    return pd.Categorical(strs, categories=cats).codes.astype(float)


def _association(schema: TableSchema, frame: pd.DataFrame, cats: dict) -> np.ndarray:
    """Pairwise association in [0, 1]: |Pearson| (num-num), Cramér's V (cat-cat), correlation
    ratio (num-cat)."""
    cols = schema.columns
    k = len(cols)
    a = np.eye(k)
    data = {}
    for c in cols:
        if c.is_numeric:
            x = pd.to_numeric(frame[c.name], errors="coerce").to_numpy(float)
            data[c.name] = np.where(np.isnan(x), np.nanmean(x) if np.isfinite(x).any() else 0, x)
        else:
            data[c.name] = _codes(c, frame[c.name], cats[c.name]).astype(int)
    for i in range(k):
        for j in range(i + 1, k):
            ci, cj = cols[i], cols[j]
            xi, xj = data[ci.name], data[cj.name]
            if ci.is_numeric and cj.is_numeric:
                v = abs(np.corrcoef(xi, xj)[0, 1]) if xi.std() > 0 and xj.std() > 0 else 0.0
            elif not ci.is_numeric and not cj.is_numeric:
                v = _cramers_v(xi, xj)
            else:
                num, cat = (xi, xj) if ci.is_numeric else (xj, xi)
                v = _corr_ratio(cat, num)
            a[i, j] = a[j, i] = 0.0 if not math.isfinite(v) else v
    return a


def _cramers_v(x: np.ndarray, y: np.ndarray) -> float:
    n = x.size
    if n == 0:
        return 0.0
    table = np.zeros((x.max() + 1, y.max() + 1))
    np.add.at(table, (x, y), 1)
    table = table[table.sum(1) > 0][:, table.sum(0) > 0]
    r, c = table.shape
    if min(r, c) < 2:
        return 0.0
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return math.sqrt(chi2 / (n * (min(r, c) - 1)))


def _corr_ratio(cat: np.ndarray, num: np.ndarray) -> float:
    if num.size == 0 or num.var() == 0:
        return 0.0
    sums = np.bincount(cat, weights=num)
    counts = np.bincount(cat)
    means = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    between = float((counts * (means - num.mean()) ** 2).sum())
    return math.sqrt(between / (num.var() * num.size))


def _tstr(schema: TableSchema, target: str, train: pd.DataFrame, holdout: pd.DataFrame,
          syn: pd.DataFrame, cats: dict, seed: int) -> dict:
    # One OpenMP thread: on a small, shared machine HistGradientBoosting's OpenMP threads spin
    # against each other and a 3k-row fit takes 30 s instead of 1 s.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="openmp"):
        return _tstr_inner(schema, target, train, holdout, syn, cats, seed)


def _tstr_inner(schema: TableSchema, target: str, train: pd.DataFrame, holdout: pd.DataFrame,
          syn: pd.DataFrame, cats: dict, seed: int) -> dict:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.metrics import accuracy_score, r2_score, roc_auc_score

    feats = [c for c in schema.columns if c.name != target]
    tcol = schema[target]

    def xy(frame: pd.DataFrame):
        frame = frame.iloc[:MAX_TSTR_ROWS]
        x = np.column_stack([
            pd.to_numeric(frame[c.name], errors="coerce").to_numpy(float) if c.is_numeric
            else np.where((k := _codes(c, frame[c.name], cats[c.name])) < 0, np.nan, k)
            for c in feats
        ]) if feats else np.zeros((len(frame), 0))
        if tcol.is_numeric:
            y = pd.to_numeric(frame[target], errors="coerce").to_numpy(float)
        else:  # a missing target is -1, like a category outside the domain
            y = _codes(tcol, frame[target], cats[target]).astype(int)
            y[pd.isna(frame[target].astype(object)).to_numpy()] = -1
        return x, y

    cat_mask = np.array([not c.is_numeric for c in feats], dtype=bool)
    # native categorical support needs < 256 categories per feature
    cat_mask &= np.array([c.is_numeric or len(cats[c.name]) < 250 for c in feats], dtype=bool)
    xte, yte = xy(holdout)
    if not tcol.is_numeric:  # rows with a missing target say nothing about predicting it
        xte, yte = xte[yte >= 0], yte[yte >= 0]
    out: dict = {"target": target, "test_rows": int(len(yte)),
                 "model": "HistGradientBoosting (scikit-learn), default settings"}
    for label, frame in (("real", train), ("synthetic", syn)):
        x, y = xy(frame)
        keep = ~np.isnan(y) if tcol.is_numeric else np.ones(len(y), bool)
        if tcol.is_numeric:
            model = HistGradientBoostingRegressor(categorical_features=cat_mask,
                                                  random_state=seed, max_iter=100)
            model.fit(x[keep], y[keep])
            ok = ~np.isnan(yte)
            out[label] = {"r2": float(r2_score(yte[ok], model.predict(xte[ok])))}
            out["metric"] = "r2"
            continue
        x, y = x[y >= 0], y[y >= 0]
        if len(np.unique(y)) < 2:
            out[label] = {"accuracy": None, "note": "one class only in the training set"}
            continue
        model = HistGradientBoostingClassifier(categorical_features=cat_mask,
                                               random_state=seed, max_iter=100)
        model.fit(x, y)
        pred = model.predict(xte)
        res = {"accuracy": float(accuracy_score(yte, pred))}
        if len(yte):
            out["majority_share"] = float(np.bincount(yte).max() / len(yte))
        if len(model.classes_) == 2 and len(np.unique(yte)) == 2:
            pos = model.classes_[1]
            score = model.predict_proba(xte)[:, 1]
            res["roc_auc"] = float(roc_auc_score(yte == pos, score))
            _, low, high = auc_ci_delong(score[yte == pos], score[yte != pos])
            res["roc_auc_ci"] = [float(low), float(high)]
        out[label] = res
        out["metric"] = "accuracy"
    return out


_OTHER_SLOT = "__other__"  # what a DP-discovered domain decodes its merged categories to
_MISSING_KEY = "\x00missing"


def _cells(col: ColumnSchema, real: pd.Series, values: pd.Series) -> tuple[np.ndarray, int]:
    """Cell index of each value on the real holdout's grid, and the number of cells.

    Numbers: below the real minimum, the real deciles, above the real maximum, missing.
    Categories: each real label, one cell for anything the real holdout lacks, missing."""
    if col.is_numeric:
        r = pd.to_numeric(real, errors="coerce").to_numpy(float)
        r = r[np.isfinite(r)]
        edges = np.unique(np.quantile(r, np.linspace(0, 1, 11))) if r.size else np.zeros(1)
        lo, hi, interior = edges[0], edges[-1], edges[1:-1]
        k = len(interior) + 1  # cells inside [lo, hi]
        x = pd.to_numeric(values, errors="coerce").to_numpy(float)
        cell = 1 + np.searchsorted(interior, x, side="right")
        cell = np.where(x < lo, 0, np.where(x > hi, k + 1, cell))
        cell = np.where(np.isnan(x), k + 2, cell)
        return cell.astype(int), k + 3
    rl = real.astype(object)
    labels = sorted({str(v) for v in rl[~pd.isna(rl)]})
    index = {lab: i for i, lab in enumerate(labels)}
    v = values.astype(object)
    miss = pd.isna(v).to_numpy()
    cell = np.array([index.get(str(x), len(labels)) for x in v], dtype=int)
    cell = np.where(miss, len(labels) + 1, cell)
    return cell, len(labels) + 2


def _dist(cell: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(cell, minlength=k)[:k] / max(cell.size, 1)


def _trivial_tvds(col: ColumnSchema, real: pd.Series, p_real: np.ndarray,
                  k: int) -> dict[str, float]:
    """TVD to the real holdout of generators that learned nothing from the data."""
    tvd = {}

    def point(value) -> float:
        cell, _ = _cells(col, real, pd.Series([value], dtype=object if not col.is_numeric
                                              else float))
        return float(1.0 - p_real[cell[0]])

    tvd["all_missing"] = float(1.0 - p_real[k - 1])
    if col.is_numeric:
        bounds = col.bounds if col.bounds and col.bounds_source is not None else None
        if bounds is not None and all(math.isfinite(float(b)) for b in bounds):
            lo, hi = float(bounds[0]), float(bounds[1])
            tvd["all_at_lower_bound"] = point(lo)
            tvd["all_at_upper_bound"] = point(hi)
            if hi > lo:
                grid = np.linspace(lo, hi, 4001)
                cell, _ = _cells(col, real, pd.Series(grid))
                tvd["uniform_over_bounds"] = float(0.5 * np.abs(p_real - _dist(cell, k)).sum())
    else:
        tvd["all_other"] = point(_OTHER_SLOT)
        domain = _public_domain(col)
        if domain:
            cell, _ = _cells(col, real, pd.Series(list(domain), dtype=object))
            tvd["uniform_over_domain"] = float(0.5 * np.abs(p_real - _dist(cell, k)).sum())
    return tvd


def utility_floor(schema: TableSchema, holdout: pd.DataFrame, syn: pd.DataFrame,
                  tstr: dict | None, config: UtilityFloor) -> dict:
    """Per-column TVD (real holdout vs synthetic) against trivial generators, and TSTR against a
    trivial classifier; ``passed`` is False when the release is no better than noise."""
    columns: dict = {}
    noise: list[str] = []
    for col in schema.columns:
        real = holdout[col.name]
        cell_r, k = _cells(col, real, real)
        cell_s, _ = _cells(col, real, syn[col.name])
        p_real, p_syn = _dist(cell_r, k), _dist(cell_s, k)
        tvd = float(0.5 * np.abs(p_real - p_syn).sum())
        trivial = _trivial_tvds(col, real, p_real, k)
        best = min(trivial, key=trivial.get)
        judged = tvd >= config.min_tvd
        is_noise = bool(judged and tvd >= config.noise_tvd_ratio * trivial[best])
        columns[col.name] = {"tvd": tvd, "trivial_tvd": trivial[best], "trivial": best,
                             "trivial_tvds": trivial, "judged": bool(judged),
                             "noise_level": is_noise}
        if is_noise:
            noise.append(col.name)
    tstr_check = None
    if config.tstr and tstr is not None:
        tstr_check = _tstr_floor(tstr, config)
    passed = len(noise) <= config.max_noise_columns and (
        tstr_check is None or tstr_check["passed"])
    return {
        "enabled": config.enabled, "passed": bool(passed or not config.enabled),
        "noise_columns": noise, "max_noise_columns": config.max_noise_columns,
        "columns": columns, "tstr": tstr_check,
        "rule": (f"a column is noise-level when its TVD to the real holdout is at least "
                 f"{config.noise_tvd_ratio:g} x the TVD of the best trivial generator (all "
                 f"missing, all __other__ / at a public bound, uniform over the public domain / "
                 f"bounds) and itself at least {config.min_tvd:g}; blocked "
                 f"when more than {config.max_noise_columns} column(s) are noise-level or TSTR "
                 f"does not beat a trivial classifier"),
    }


def _real_is_trivial(tstr: dict) -> bool:
    """True when a model trained on the *real* training rows does not beat the trivial one
    either (R² ≤ 0, AUC interval reaching 0.5, accuracy at most the majority share): then no
    synthetic table can meet the floor, and failing it says nothing about the release."""
    real = tstr.get("real") or {}
    if tstr.get("metric") == "r2":
        return real.get("r2") is not None and real["r2"] <= 0
    if real.get("roc_auc") is not None:
        low = (real.get("roc_auc_ci") or [real["roc_auc"]])[0]
        return low is not None and low <= 0.5
    base = tstr.get("majority_share")
    return real.get("accuracy") is not None and base is not None and real["accuracy"] <= base


def _tstr_floor(tstr: dict, config: UtilityFloor) -> dict:
    syn = tstr.get("synthetic") or {}
    if _real_is_trivial(tstr):
        return {"metric": tstr.get("metric"), "value": None, "baseline": None, "passed": True,
                "not_applicable": "a model trained on the real training rows does not beat "
                                  "the trivial baseline either: the target is not predictable "
                                  "from the other columns here, so TSTR cannot judge the "
                                  "release (the marginal floor still applies)"}
    if tstr.get("metric") == "r2":
        value = syn.get("r2")
        ok = value is not None and value > 0
        return {"metric": "r2", "value": value, "baseline": 0.0, "passed": bool(ok)}
    if syn.get("roc_auc") is not None:
        # better than chance with confidence (the interval's lower end above 0.5), and by at
        # least the margin: a model that learned nothing scores 0.5 ± 1.96·SE, which a bare
        # margin of 0.02 lets through about one time in six on 600 test rows
        value, base = syn["roc_auc"], 0.5 + config.tstr_auc_margin
        low = (syn.get("roc_auc_ci") or [math.nan])[0]
        return {"metric": "roc_auc", "value": value, "baseline": base, "ci_low": low,
                "passed": bool(value > base and low > 0.5)}
    value, base = syn.get("accuracy"), tstr.get("majority_share")
    if value is None:
        return {"metric": "accuracy", "value": None, "baseline": base, "passed": False,
                "note": syn.get("note", "no synthetic model")}
    floor = None if base is None else base - config.tstr_accuracy_slack
    return {"metric": "accuracy", "value": value, "baseline": floor, "majority_share": base,
            "passed": bool(floor is None or value > floor)}


def utility_report(schema: TableSchema, train: pd.DataFrame, holdout: pd.DataFrame,
                   syn: pd.DataFrame, target: str | None, seed: int,
                   floor: UtilityFloor | None = None) -> tuple[dict, dict]:
    """Returns (utility numbers, figure data). With ``floor``, ``utility["floor"]`` holds the
    gate's utility-floor evidence."""
    marginals = {c.name: _marginal(c, train[c.name], syn[c.name]) for c in schema.columns}
    cats = {}
    for c in schema.columns:
        if not c.is_numeric:
            seen = dict.fromkeys([MISSING])
            for f in (train, holdout, syn):
                v = f[c.name].astype(object)
                for s in pd.unique(v.map(str).where(~pd.isna(v), MISSING)):
                    seen[s] = None
            cats[c.name] = list(seen)
    a_real = _association(schema, train, cats)
    a_syn = _association(schema, syn, cats)
    diff = np.abs(a_real - a_syn)
    k = len(schema.columns)
    off = diff[~np.eye(k, dtype=bool)] if k > 1 else np.zeros(0)
    util = {
        "marginal_tvd": {n: m["tvd"] for n, m in marginals.items()},
        "marginal_tvd_mean": float(np.mean([m["tvd"] for m in marginals.values()])),
        "pairwise_tvd_mean": pairwise_tvd(schema, train, syn),
        "association_difference_mean": float(off.mean()) if off.size else 0.0,
        "association_difference_max": float(off.max()) if off.size else 0.0,
        "association_measures": "|Pearson| num-num, Cramér's V cat-cat, correlation ratio "
                                "num-cat",
    }
    if target:
        util["tstr"] = _tstr(schema, target, train, holdout, syn, cats, seed)
    if floor is not None:
        util["floor"] = utility_floor(schema, holdout, syn, util.get("tstr"), floor)
    figures = {"marginals": marginals,
               "association_difference": {"columns": schema.names,
                                          "matrix": diff.round(4).tolist()}}
    return util, figures
