"""The audit report: JSON for machines (schema in privsynth/schemas/audit-report.schema.json) and
one self-contained HTML page for people (inline SVG figures, inline CSS, no scripts, no external
assets).

What goes in: column names, public schema facts, counts, rates, intervals, histograms over public
bounds, and category labels only when they are in the public domain. What never goes in: a cell
value of a real row. Attack metrics are computed on the raw data and are *not* covered by the
release's epsilon; the report is internal to the data controller and says so on its first lines.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from privsynth.audit.result import AuditResult, _clean
from privsynth.gate import GateDecision

REPORT_VERSION = 1
NOTICE = (
    "INTERNAL TO THE DATA CONTROLLER. The attack metrics in this report are computed on the raw "
    "(real) data and are NOT covered by the release's differential-privacy budget (epsilon). Do "
    "not publish this report with the synthetic data. It contains no cell value of a real row: "
    "only column names, public schema facts, counts and aggregates."
)
THREAT_MODEL = {
    "adversary": "holds the released synthetic table and candidate records of real people "
                 "(membership inference, nearest-neighbour and copy attacks) or partial records "
                 "(anonymeter singling out, linkability, inference)",
    "members": "training rows used to fit the generator",
    "non_members": "holdout rows of the same population never shown to the generator",
    "what_attacks_show": "evidence of memorisation at the audit's sample size; they are not a "
                         "guarantee. The guarantee is the differential-privacy claim, checked "
                         "separately by the gate.",
    "not_covered": "attacks with auxiliary data beyond the above, and any re-use of the "
                   "holdout in other releases",
}


def build_report(*, scope: dict, columns: dict, mechanism: dict, audit: AuditResult,
                 decision: GateDecision, versions: dict) -> dict:
    """Assemble the report dictionary (JSON-safe)."""
    checks = {c.name: c for c in decision.checks}
    attacks = []
    for r in audit.risks:
        c = checks.get(r.name)
        attacks.append({
            "name": r.name, "attack": r.attack, "value": r.value, "ci_low": r.ci_low,
            "ci_high": r.ci_high, "baseline": r.baseline, "threshold_key": r.threshold_key,
            "threshold": c.threshold if c else None, "gated": r.threshold_key is not None,
            "passed": c.passed if c else None, "details": r.details,
        })
    report = {
        "report_version": REPORT_VERSION,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "notice": NOTICE,
        "internal": True,
        "attack_metrics_covered_by_epsilon": False,
        "decision": decision.to_dict(),
        "scope": scope,
        "columns": columns,
        "mechanism": mechanism,
        "threat_model": THREAT_MODEL,
        "attacks_requested": list(audit.attacks_requested),
        "attacks": attacks,
        "failures": [{"attack": e.attack, "reason_code": e.reason_code, "message": e.message}
                     for e in audit.errors],
        "not_applicable": [{"attack": n.attack, "reason": n.reason, "details": n.details}
                           for n in audit.not_applicable],
        "utility": audit.utility,
        "figures": audit.figures,
        "audit_settings": audit.meta,
        "versions": versions,
    }
    return _clean(report)


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(report: dict, out_dir: Path) -> list[Path]:
    """Write report.json and report.html into ``out_dir`` (each atomically: temp file, then
    os.replace). Returns the two paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out_dir / "report.json", out_dir / "report.html"
    _atomic_write(json_path, json.dumps(report, indent=2, sort_keys=False, allow_nan=False))
    _atomic_write(html_path, render_html(report))
    return [json_path, html_path]


# ----------------------------------------------------------------------------- HTML

def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "—"
        return f"{v:.{digits}g}"
    return _e(v)


def _kv_table(data: dict | None) -> str:
    if not data:
        return "<p class='muted'>Not provided.</p>"
    rows = []
    for k, v in data.items():
        if isinstance(v, dict | list):
            cell = f"<code>{_e(json.dumps(v, sort_keys=True))}</code>"
        else:
            cell = _fmt(v, 6)
        rows.append(f"<tr><th>{_e(k)}</th><td>{cell}</td></tr>")
    return "<table class='kv'>" + "".join(rows) + "</table>"


def _svg(width: int, height: int, body: str, label: str) -> str:
    return (f"<svg xmlns='http://www.w3.org/2000/svg' role='img' aria-label='{_e(label)}' "
            f"width='{width}' height='{height}' viewBox='0 0 {width} {height}'>"
            f"<title>{_e(label)}</title>{body}</svg>")


def _risk_bars(attacks: list[dict]) -> str:
    gated = [a for a in attacks if a.get("gated") and a.get("threshold") is not None]
    if not gated:
        return "<p class='muted'>No gated risk was measured.</p>"
    row_h, left, w = 26, 230, 360
    h = row_h * len(gated) + 30
    parts = []
    for i, a in enumerate(gated):
        # axis per row: from the baseline (the no-risk value: 0, or 0.5 for AUC and DCR share)
        # to twice the threshold's distance from it
        base = float(a.get("baseline") or 0.0)
        base = base if base < float(a["threshold"]) else 0.0
        thr = max(float(a["threshold"]) - base, 1e-9)
        scale = max(thr * 2, 1e-9)
        y = 20 + i * row_h
        val = max(float(a.get("value") or 0) - base, 0)
        hi = max(float(a.get("ci_high") or 0) - base, 0)
        lo = max(float(a.get("ci_low") or 0) - base, 0)
        color = "#2e7d32" if a.get("passed") else "#c62828"
        parts.append(f"<text x='{left - 6}' y='{y + 13}' text-anchor='end' font-size='12'>"
                     f"{_e(a['name'])}</text>")
        parts.append(f"<rect x='{left}' y='{y + 3}' width='{w * min(val / scale, 1):.1f}' "
                     f"height='14' fill='{color}' opacity='0.6'/>")
        parts.append(f"<line x1='{left + w * min(lo / scale, 1):.1f}' y1='{y + 10}' "
                     f"x2='{left + w * min(hi / scale, 1):.1f}' y2='{y + 10}' stroke='#000' "
                     f"stroke-width='2'/>")
        parts.append(f"<line x1='{left + w * thr / scale:.1f}' y1='{y}' "
                     f"x2='{left + w * thr / scale:.1f}' y2='{y + 20}' stroke='#1565c0' "
                     f"stroke-width='2' stroke-dasharray='3,2'/>")
    parts.append(f"<text x='{left}' y='12' font-size='11' fill='#555'>bar: estimate; black: "
                 f"95% interval; blue dashes: threshold (axis per row: baseline to 2x threshold)"
                 f"</text>")
    return _svg(left + w + 20, h, "".join(parts), "Risks against thresholds")


def _axes(x0: int, y0: int, w: int, h: int, xlabel: str, ylabel: str) -> str:
    return (f"<line x1='{x0}' y1='{y0 + h}' x2='{x0 + w}' y2='{y0 + h}' stroke='#333'/>"
            f"<line x1='{x0}' y1='{y0}' x2='{x0}' y2='{y0 + h}' stroke='#333'/>"
            f"<text x='{x0 + w / 2}' y='{y0 + h + 28}' font-size='11' text-anchor='middle'>"
            f"{_e(xlabel)}</text><text x='12' y='{y0 + h / 2}' font-size='11' "
            f"transform='rotate(-90 12 {y0 + h / 2})' text-anchor='middle'>{_e(ylabel)}</text>")


def _roc(figures: dict) -> str:
    roc = figures.get("roc") or {}
    if not roc:
        return "<p class='muted'>No membership-inference ROC (attack not run).</p>"
    x0, y0, w, h = 45, 10, 260, 260
    colors = ["#c62828", "#1565c0", "#6a1b9a"]
    parts = [_axes(x0, y0, w, h, "false-positive rate", "true-positive rate"),
             f"<line x1='{x0}' y1='{y0 + h}' x2='{x0 + w}' y2='{y0}' stroke='#999' "
             f"stroke-dasharray='4,3'/>"]
    for i, (kind, curve) in enumerate(sorted(roc.items())):
        pts = " ".join(f"{x0 + w * float(f):.1f},{y0 + h - h * float(t):.1f}"
                       for f, t in zip(curve.get("fpr", []), curve.get("tpr", []), strict=False))
        c = colors[i % len(colors)]
        parts.append(f"<polyline points='{pts}' fill='none' stroke='{c}' stroke-width='2'/>")
        parts.append(f"<text x='{x0 + 10}' y='{y0 + 16 + 14 * i}' font-size='11' fill='{c}'>"
                     f"{_e(kind)} attack, AUC {_fmt(curve.get('auc'), 3)}</text>")
    return _svg(x0 + w + 20, y0 + h + 40, "".join(parts), "Membership inference ROC curve")


def _dcr_hist(figures: dict) -> str:
    hist = figures.get("dcr_histogram")
    if not hist:
        return "<p class='muted'>No DCR histogram (attack not run).</p>"
    edges, a, b = hist["edges"], hist["train"], hist["holdout"]
    x0, y0, w, h = 45, 20, 420, 180
    top = max(max(a, default=0), max(b, default=0), 1)
    bw = w / max(len(a), 1)
    parts = [_axes(x0, y0, w, h, "distance to the closest real row", "synthetic rows")]
    for i, (ca, cb) in enumerate(zip(a, b, strict=False)):
        x = x0 + i * bw
        parts.append(f"<rect x='{x:.1f}' y='{y0 + h - h * ca / top:.1f}' width='{bw / 2:.1f}' "
                     f"height='{h * ca / top:.1f}' fill='#c62828' opacity='0.7'/>")
        parts.append(f"<rect x='{x + bw / 2:.1f}' y='{y0 + h - h * cb / top:.1f}' "
                     f"width='{bw / 2:.1f}' height='{h * cb / top:.1f}' fill='#1565c0' "
                     f"opacity='0.7'/>")
    parts.append(f"<text x='{x0 + 5}' y='12' font-size='11'><tspan fill='#c62828'>■ to train"
                 f"</tspan> <tspan fill='#1565c0'>■ to holdout</tspan> (range 0–"
                 f"{_fmt(edges[-1] if edges else None, 3)})</text>")
    return _svg(x0 + w + 20, y0 + h + 40, "".join(parts), "DCR histogram train vs holdout")


def _marginal_svg(name: str, m: dict) -> str:
    real, syn = m.get("real", []), m.get("synthetic", [])
    n = max(len(real), 1)
    x0, y0, w, h = 30, 18, 220, 90
    top = max(max(real, default=0), max(syn, default=0), 1e-9)
    bw = w / n
    parts = [f"<text x='{x0}' y='12' font-size='11' font-weight='bold'>{_e(name)} "
             f"(TVD {_fmt(m.get('tvd'), 3)})</text>",
             f"<line x1='{x0}' y1='{y0 + h}' x2='{x0 + w}' y2='{y0 + h}' stroke='#333'/>"]
    labels = m.get("labels")
    for i, (r, s) in enumerate(zip(real, syn, strict=False)):
        x = x0 + i * bw
        tip = _e(labels[i]) if labels and i < len(labels) else f"bin {i + 1}"
        parts.append(f"<rect x='{x:.1f}' y='{y0 + h - h * r / top:.1f}' width='{bw / 2:.1f}' "
                     f"height='{h * r / top:.1f}' fill='#555'><title>{tip}: real "
                     f"{_fmt(r, 3)}</title></rect>")
        parts.append(f"<rect x='{x + bw / 2:.1f}' y='{y0 + h - h * s / top:.1f}' "
                     f"width='{bw / 2:.1f}' height='{h * s / top:.1f}' fill='#ef6c00'>"
                     f"<title>{tip}: synthetic {_fmt(s, 3)}</title></rect>")
    return _svg(x0 + w + 10, y0 + h + 8, "".join(parts), f"Marginal of {name}")


def _marginals(figures: dict) -> str:
    ms = figures.get("marginals") or {}
    if not ms:
        return "<p class='muted'>No marginals.</p>"
    items = list(ms.items())[:60]
    return ("<p class='muted'>Grey: real (training rows); orange: synthetic. Shares per public "
            "category or per bin over the public bounds; the last bar of a numeric column is the "
            "missing share. Non-public categories are pooled into “(other)”.</p>"
            "<div class='grid'>" + "".join(_marginal_svg(n, m) for n, m in items) + "</div>")


def _heatmap(figures: dict) -> str:
    ad = figures.get("association_difference")
    if not ad or not ad.get("columns"):
        return "<p class='muted'>No association matrix.</p>"
    cols, mat = ad["columns"][:40], ad["matrix"]
    cell, left, top = 16, 150, 150
    k = len(cols)
    parts = []
    for i, c in enumerate(cols):
        parts.append(f"<text x='{left - 4}' y='{top + i * cell + 12}' font-size='10' "
                     f"text-anchor='end'>{_e(c)}</text>")
        parts.append(f"<text x='{left + i * cell + 11}' y='{top - 4}' font-size='10' "
                     f"transform='rotate(-60 {left + i * cell + 11} {top - 4})'>{_e(c)}</text>")
        for j in range(k):
            v = float(mat[i][j]) if i < len(mat) and j < len(mat[i]) else 0.0
            shade = int(255 - min(v, 0.5) / 0.5 * 200)
            parts.append(f"<rect x='{left + j * cell}' y='{top + i * cell}' width='{cell}' "
                         f"height='{cell}' fill='rgb(255,{shade},{shade})' stroke='#eee'>"
                         f"<title>{_e(c)} × {_e(cols[j])}: {v:.3f}</title></rect>")
    parts.append(f"<text x='{left}' y='{top + k * cell + 16}' font-size='10'>white 0 → red "
                 f"≥ 0.5 absolute difference in association</text>")
    return _svg(left + k * cell + 20, top + k * cell + 24, "".join(parts),
                "Association difference heatmap")


def _attack_table(attacks: list[dict]) -> str:
    head = ("<tr><th>risk</th><th>attack</th><th>estimate</th><th>95% interval</th>"
            "<th>baseline</th><th>threshold (on upper bound)</th><th>result</th></tr>")
    rows = []
    for a in attacks:
        if a.get("gated"):
            res = ("<span class='ok'>pass</span>" if a.get("passed")
                   else "<span class='bad'>fail</span>")
            thr = f"{_e(a.get('threshold_key'))} = {_fmt(a.get('threshold'))}"
        else:
            res, thr = "<span class='muted'>reported</span>", "—"
        rows.append(
            f"<tr><td>{_e(a['name'])}</td><td>{_e(a.get('attack'))}</td>"
            f"<td>{_fmt(a.get('value'))}</td><td>[{_fmt(a.get('ci_low'))}, "
            f"{_fmt(a.get('ci_high'))}]</td><td>{_fmt(a.get('baseline'))}</td><td>{thr}</td>"
            f"<td>{res}</td></tr>")
    return "<table class='grid-table'>" + head + "".join(rows) + "</table>"


def _details(attacks: list[dict]) -> str:
    out = []
    for a in attacks:
        out.append(f"<details><summary>{_e(a['name'])}</summary>{_kv_table(a.get('details'))}"
                   f"</details>")
    return "".join(out)


def _not_applicable(items: list[dict]) -> str:
    if not items:
        return ""
    rows = "".join(f"<tr><td>{_e(n.get('attack'))}</td><td>{_e(n.get('reason'))}</td></tr>"
                   for n in items)
    return ("<h3>Not applicable (neither a pass nor a failure)</h3><table class='grid-table'>"
            "<tr><th>attack</th><th>reason</th></tr>" + rows + "</table>")


def _utility_floor(floor: dict) -> str:
    if not isinstance(floor, dict):
        return ""
    verdict = ("<span class='ok'>pass</span>" if floor.get("passed")
               else "<span class='bad'>fail</span>")
    if not floor.get("enabled", True):
        verdict = "<span class='muted'>disabled by the policy</span>"
    rows = "".join(
        f"<tr><td>{_e(name)}</td><td>{_fmt(c.get('tvd'))}</td><td>{_fmt(c.get('trivial_tvd'))}"
        f" ({_e(c.get('trivial'))})</td><td>"
        + ("<span class='bad'>noise-level</span>" if c.get("noise_level") else
           "ok" if c.get("judged") else "<span class='muted'>not judged</span>")
        + "</td></tr>"
        for name, c in (floor.get("columns") or {}).items())
    parts = [f"<h3>Utility floor (gated): {verdict}</h3><p>{_e(floor.get('rule'))}</p>",
             "<table class='grid-table'><tr><th>column</th><th>TVD to real holdout</th>"
             "<th>best trivial generator</th><th>verdict</th></tr>" + rows + "</table>"]
    if floor.get("tstr"):
        parts.append(_kv_table(floor["tstr"]))
    return "".join(parts)


def _utility(util: dict) -> str:
    if not util:
        return "<p class='muted'>No utility evidence.</p>"
    flat = {k: v for k, v in util.items() if k not in ("marginal_tvd", "tstr", "floor")}
    parts = [_utility_floor(util.get("floor")), _kv_table(flat)]
    tstr = util.get("tstr")
    if tstr:
        parts.append("<h3>Train on synthetic, test on real (TSTR)</h3>")
        parts.append(_kv_table(tstr))
    if util.get("marginal_tvd"):
        parts.append("<h3>Total variation distance per column</h3>")
        parts.append(_kv_table(util["marginal_tvd"]))
    return "".join(parts)


# --- privacy mechanism and columns: readable tables ------------------------------------------

_MECHANISMS = {
    "dp_sgd": "DP-SGD (Opacus)",
    "laplace_histogram": "Laplace histogram",
    "laplace_category_counts": "Laplace category counts",
    "threshold_domain": "Laplace threshold (category discovery)",
    "noisy_count": "Laplace count (training rows N̂)",
}
_PARAMS = {  # key -> (label, digits); params not listed are shown under their own name
    "sigma": ("σ (noise multiplier)", 6),
    "q": ("q (sampling rate)", 4),
    "steps": ("steps", 6),
    "accountant": ("accountant", 6),
    "max_grad_norm": ("C (clipping norm)", 4),
    "cells": ("cells", 6),
    "categories": ("categories", 6),
    "sensitivity": ("sensitivity", 4),
    "threshold": ("threshold τ", 4),
}
_MECHANISM_FIELDS = {
    "unit": "unit of privacy",
    "epsilon": "ε spent by this release",
    "delta": "δ spent by this release",
    "epsilon_allotted": "ε allotted by the policy",
    "delta_allotted": "δ allotted by the policy",
    "composition": "composition",
    "accountant": "accountant",
    "seed_mode": "seed mode",
    "claim": "privacy claim",
    "neighbouring_relation": "neighbouring relation",
    "randomness": "randomness source",
    "treated_as_public": "treated as public",
    "not_covered_by_epsilon": "not covered by ε",
    "dataset_epsilon_spent_after": "ε spent on this dataset, all releases (after this one)",
    "cumulative_epsilon": "ε spent on this dataset, all releases",
    "public_facts": "treated as public",
}
_SOURCES = {"policy": "policy (public)", "dp": "DP mechanism"}
MAX_CATEGORIES = 12  # categories listed per column before "… and N more"


def _num(v: Any, digits: int = 6) -> str:
    """A number for people: whole floats without ".0", others to ``digits`` significant."""
    if isinstance(v, float) and math.isfinite(v) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return _fmt(v, digits)


def _mechanism_name(name: Any) -> str:
    label = _MECHANISMS.get(str(name))
    return (f"{_e(label)} <span class='muted'>({_e(name)})</span>" if label
            else _e(str(name).replace("_", " ")))


def _params_cell(params: Any) -> str:
    if not isinstance(params, dict) or not params:
        return "—" if not params else f"<code>{_e(json.dumps(params, sort_keys=True))}</code>"
    items = []
    for key, value in params.items():
        label, digits = _PARAMS.get(key, (key, 6))
        shown = (_e(str(value).upper()) if key == "accountant" and isinstance(value, str)
                 else _num(value, digits) if not isinstance(value, dict | list)
                 else f"<code>{_e(json.dumps(value, sort_keys=True))}</code>")
        items.append(f"<span class='param'>{_e(label)} = <b>{shown}</b></span>")
    return "<br>".join(items)


def _charges_table(charges: list) -> str:
    if not charges:
        return "<p class='muted'>No DP charge recorded.</p>"
    head = ("<tr><th>#</th><th>stage</th><th>mechanism</th><th>column</th><th>ε</th><th>δ</th>"
            "<th>parameters</th></tr>")
    rows, eps, delta = [], 0.0, 0.0
    for i, c in enumerate(charges, 1):
        c = c if isinstance(c, dict) else {"mechanism": c}
        eps += float(c.get("epsilon") or 0.0)
        delta += float(c.get("delta") or 0.0)
        column = _e(c["column"]) if c.get("column") else "<span class='muted'>all columns</span>"
        rows.append(f"<tr><td>{i}</td><td>{_e(c.get('stage', '—'))}</td>"
                    f"<td>{_mechanism_name(c.get('mechanism'))}</td><td>{column}</td>"
                    f"<td class='num'>{_num(c.get('epsilon'))}</td>"
                    f"<td class='num'>{_num(c.get('delta'))}</td>"
                    f"<td>{_params_cell(c.get('params'))}</td></tr>")
    rows.append(f"<tr class='total'><th colspan='4'>sum over charges</th>"
                f"<td class='num'>{_num(eps)}</td><td class='num'>{_num(delta)}</td><td></td>"
                f"</tr>")
    return ("<table class='grid-table' id='charges'><caption>Every DP read of the real data, "
            "with the exact inputs <code>privsynth verify</code> recomputes ε from</caption>"
            + head + "".join(rows) + "</table>")


def _stages_table(stages: dict, total: dict) -> str:
    head = "<tr><th>stage</th><th>ε</th><th>δ</th></tr>"
    rows, eps, delta = [], 0.0, 0.0
    for name, v in stages.items():
        v = v if isinstance(v, dict) else {"epsilon": v}
        eps += float(v.get("epsilon") or 0.0)
        delta += float(v.get("delta") or 0.0)
        rows.append(f"<tr><td>{_e(name)}</td><td class='num'>{_num(v.get('epsilon'))}</td>"
                    f"<td class='num'>{_num(v.get('delta'))}</td></tr>")
    rows.append(f"<tr class='total'><th>total</th><td class='num'>{_num(eps)}</td>"
                f"<td class='num'>{_num(delta)}</td></tr>")
    if total.get("epsilon_allotted") is not None:
        rows.append(f"<tr class='muted'><td>allotted by the policy</td>"
                    f"<td class='num'>{_num(total.get('epsilon_allotted'))}</td>"
                    f"<td class='num'>{_num(total.get('delta_allotted'))}</td></tr>")
    return "<table class='grid-table' id='stages'>" + head + "".join(rows) + "</table>"


def _mechanism(mech: dict | None) -> str:
    if not mech:
        return "<p class='muted'>Not provided.</p>"
    stages = next((mech[k] for k in ("stages", "per_stage_epsilon")
                   if isinstance(mech.get(k), dict)), None)
    charges = mech.get("charges") if isinstance(mech.get("charges"), list) else None
    skip = {"stages", "per_stage_epsilon", "charges"}
    rest = {_MECHANISM_FIELDS.get(k, k): v for k, v in mech.items() if k not in skip}
    parts = [_kv_table(rest)]
    if stages is not None:
        parts.append("<h3>ε and δ per stage</h3>" + _stages_table(stages, mech))
    if charges is not None:
        parts.append("<h3>DP charges</h3>" + _charges_table(charges))
    return "".join(parts)


def _date(days: float) -> str:
    try:
        return (dt.date(1970, 1, 1) + dt.timedelta(days=float(days))).isoformat()
    except (OverflowError, ValueError):
        return _num(days)


def _source(src: Any) -> str:
    return f"<span class='src'>{_e(_SOURCES.get(str(src), src))}</span>"


def _bounds_cell(info: dict) -> str:
    bounds, src = info.get("bounds"), info.get("bounds_source")
    if not bounds:
        return "—"
    if src not in _SOURCES:  # e.g. an external audit's scaling read from the real rows
        return "<span class='muted'>from the real rows; internal, not listed</span>"
    low, high = bounds[0], bounds[-1]
    if info.get("kind") == "datetime":
        shown = f"{_date(low)} to {_date(high)}"
    else:
        shown = f"{_num(low)} to {_num(high)}"
    return f"{shown} {_source(src)}"


def _domain_cell(info: dict) -> str:
    domain, src = info.get("domain"), info.get("domain_source")
    if not domain:
        return "false / true" if info.get("kind") == "boolean" else "—"
    count = f"{len(domain)} categor{'y' if len(domain) == 1 else 'ies'}"
    if src not in _SOURCES:  # not public: a count only, never the labels
        return f"{count} <span class='muted'>(from the real rows; internal, not listed)</span>"
    shown = ", ".join(_e(v) for v in domain[:MAX_CATEGORIES])
    more = len(domain) - MAX_CATEGORIES
    if more > 0:
        shown += f" <span class='muted'>… and {more} more</span>"
    return f"{count} {_source(src)}<div class='cats'>{shown}</div>"


def _action_cell(action: Any) -> str:
    text = str(action)
    cls = ("drop" if text.startswith("dropped") else "gen" if text.startswith("generalized")
           else "pseudo" if text.startswith("replaced") else "keep")
    return f"<span class='act {cls}'>{_e(text)}</span>"


def _columns(columns: dict | None) -> str:
    if not columns:
        return "<p class='muted'>Not provided.</p>"
    if isinstance(columns.get("actions"), dict) or isinstance(columns.get("schema"), dict):
        actions = columns.get("actions") or {}
        schema = columns.get("schema") or {}
        extra = {k: v for k, v in columns.items() if k not in ("actions", "schema")}
    else:  # one entry per column: schema facts with the rule beside them
        schema = {n: v for n, v in columns.items() if isinstance(v, dict)}
        actions = {n: v.get("action", v.get("rule", "—")) for n, v in schema.items()}
        extra = {n: v for n, v in columns.items() if not isinstance(v, dict)}
    names = list(actions) + [n for n in schema if n not in actions]
    head = ("<tr><th>column</th><th>rule / action</th><th>kind</th><th>bounds</th>"
            "<th>domain</th></tr>")
    rows = []
    for name in names:
        info = schema.get(name)
        if isinstance(info, dict):
            cells = (f"<td>{_e(info.get('kind', '—'))}</td><td>{_bounds_cell(info)}</td>"
                     f"<td>{_domain_cell(info)}</td>")
        else:
            cells = "<td colspan='3' class='muted'>not modelled</td>"
        rows.append(f"<tr><th>{_e(name)}</th><td>{_action_cell(actions.get(name, '—'))}</td>"
                    f"{cells}</tr>")
    note = ("<p class='muted'>Bounds and categories marked “policy” are declared public in the "
            "policy; those marked “DP mechanism” were found by a DP mechanism paid from ε "
            "(public after DP). Long category lists are cut after "
            f"{MAX_CATEGORIES}.</p>")
    table = "<table class='grid-table' id='columns'>" + head + "".join(rows) + "</table>"
    return note + table + (_kv_table(extra) if extra else "")


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;max-width:1100px;
color:#222}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
.notice{background:#fff3e0;border:2px solid #ef6c00;padding:10px 14px;font-weight:600}
.decision{font-size:20px;padding:12px 16px;color:#fff;font-weight:700;margin:12px 0}
.decision.pass{background:#2e7d32}.decision.blocked{background:#c62828}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;
font-size:13px;text-align:left;vertical-align:top}code{font-size:12px;word-break:break-all}
.ok{color:#2e7d32;font-weight:700}.bad{color:#c62828;font-weight:700}.muted{color:#666}
.grid{display:flex;flex-wrap:wrap;gap:8px}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.total th,tr.total td{border-top:2px solid #999;font-weight:700}
caption{caption-side:top;text-align:left;font-size:12px;color:#555;padding:2px 0}
.param{white-space:nowrap}.src{font-size:11px;color:#555;background:#eef3f8;padding:0 4px;
border-radius:3px}.cats{font-size:12px;color:#333;margin-top:2px;max-width:520px}
.act{white-space:nowrap}.act.drop{color:#c62828}.act.gen{color:#1565c0}.act.pseudo{color:#6a1b9a}
#columns tbody tr:nth-child(even),#charges tbody tr:nth-child(even){background:#fafafa}
"""


def render_html(report: dict) -> str:
    """The self-contained HTML page for one report."""
    dec = report.get("decision", {})
    passed = bool(dec.get("passed"))
    verdict = "RELEASE PASSED the audit gate" if passed else "RELEASE BLOCKED by the audit gate"
    if dec.get("development_run"):
        verdict = ("DEVELOPMENT RUN (seeded): no DP claim; its noise can be regenerated from the "
                   "seed, so nothing of it is ever released")
    reasons = "".join(f"<li>{_e(r)}</li>" for r in dec.get("reasons", [])) or "<li>none</li>"
    failures = report.get("failures", [])
    fail_html = ("<table class='grid-table'><tr><th>attack</th><th>reason code</th>"
                 "<th>message</th></tr>" + "".join(
                     f"<tr><td>{_e(f['attack'])}</td><td>{_e(f['reason_code'])}</td>"
                     f"<td>{_e(f['message'])}</td></tr>" for f in failures) + "</table>"
                 if failures else "<p>None: every requested attack ran.</p>")
    figs = report.get("figures") or {}
    body = f"""
<h1>privsynth audit report</h1>
<p class="notice" id="notice">{_e(report.get("notice", NOTICE))}</p>
<div class="decision {'pass' if passed else 'blocked'}" id="decision"
 data-passed="{str(passed).lower()}">{_e(verdict)}</div>
<p><b>Which evidence decided:</b> {_e(dec.get("evidence", ""))}</p>
<h2>Reasons</h2><ul id="reasons">{reasons}</ul>
<h2>Scope</h2>{_kv_table(report.get("scope"))}
<p class="muted">Generated {_e(report.get("generated_at"))}; report format version
{_e(report.get("report_version"))}.</p>
<h2>Privacy mechanism</h2>{_mechanism(report.get("mechanism"))}
<p>DP claim present: <b>{_fmt(dec.get("dp_claim"))}</b>; required by the policy:
<b>{_fmt(dec.get("require_dp_claim"))}</b>.</p>
<h2>Columns and rules</h2>{_columns(report.get("columns"))}
<h2>Threat model</h2>{_kv_table(report.get("threat_model"))}
<h2>Attacks</h2>
<p>The gate compares the upper end of each risk's 95% interval with its threshold. Attack
metrics are computed on raw data and are not covered by epsilon.</p>
{_attack_table(report.get("attacks", []))}
{_not_applicable(report.get("not_applicable") or [])}
<h3>Risks against thresholds</h3>{_risk_bars(report.get("attacks", []))}
<h3>Membership inference ROC</h3>{_roc(figs)}
<h3>Distance to closest record: train vs holdout</h3>{_dcr_hist(figs)}
<h3>Attack details</h3>{_details(report.get("attacks", []))}
<h2>Failures</h2>{fail_html}
<h2>Utility (the floor is gated; the rest is reported)</h2>{_utility(report.get("utility") or {})}
<h3>Marginals, real vs synthetic</h3>{_marginals(figs)}
<h3>Association difference |real − synthetic|</h3>{_heatmap(figs)}
<h2>Audit settings</h2>{_kv_table(report.get("audit_settings"))}
<h2>Versions and hashes</h2>{_kv_table(report.get("versions"))}
"""
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            "<title>privsynth audit report</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>")
