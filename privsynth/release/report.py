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
import io
import json
import math
import os
import re
import shutil
import subprocess
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
    report = _clean(report)
    report["regulatory"] = regulatory_sections(report)
    return report


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
        if isinstance(v, dict) and v and all(not isinstance(x, dict | list)
                                             for x in v.values()):
            cell = _kv_table(v)  # a nested table, not a JSON dump
        elif isinstance(v, list) and v and all(isinstance(x, str) for x in v):
            cell = "<ul>" + "".join(f"<li>{_e(x)}</li>" for x in v) + "</ul>"
        elif isinstance(v, dict | list):
            cell = f"<code>{_e(json.dumps(v, sort_keys=True))}</code>"
        else:
            cell = _fmt(v, 6)
        rows.append(f"<tr><th>{_e(k)}</th><td>{cell}</td></tr>")
    return "<div class='wrap'><table class='kv'>" + "".join(rows) + "</table></div>"


# --- figures: matplotlib (Agg), rendered to inline SVG --------------------------------------

PASS_COLOR, FAIL_COLOR, INFO_COLOR = "#2e7d32", "#c62828", "#616161"
REAL_COLOR, SYN_COLOR, TRIVIAL_COLOR, THRESHOLD_COLOR = "#455a64", "#ef6c00", "#8e24aa", "#1565c0"
MAX_MARGINAL_LABELS = 24  # bars per categorical marginal before the rest is pooled
INTERVAL_SENTENCE = (
    "Each interval is a 95% confidence interval: were the audit repeated on fresh samples of the "
    "same size, about 95 in 100 such intervals would contain the true value; the gate compares "
    "the interval's upper end with the threshold. Copy and closeness rates are excesses (the rate "
    "measured against the training rows minus the same rate against the holdout rows, people the "
    "generator never saw), so chance alone makes them negative about half the time: a negative "
    "estimate or lower end means no more copying of training rows than of strangers.")


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


class _Figures:
    """Numbers the figures in page order and renders each one to an inline SVG element."""

    def __init__(self) -> None:
        self.numbers: dict[str, int] = {}

    def ref(self, fig_id: str, what: str = "Figure") -> str:
        """A link to a figure, or a note that it is absent from this report."""
        if fig_id in self.numbers:
            return f"<a href='#{_e(fig_id)}'>{what} {self.numbers[fig_id]}</a>"
        return "<span class='muted'>(no figure: not measured in this audit)</span>"

    def figure(self, fig_id: str, fig: Any, label: str, caption: str,
               max_width: int = 900) -> str:
        """Render a matplotlib Figure as a numbered <figure> with an HTML caption (which wraps
        and is never clipped)."""
        number = self.numbers.setdefault(fig_id, len(self.numbers) + 1)
        svg = _svg_text(fig, fig_id, label, max_width)
        return (f"<figure id='{_e(fig_id)}'><div class='fig'>{svg}</div><figcaption>"
                f"<b>Figure {number}.</b> {caption}</figcaption></figure>")


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _svg_text(fig: Any, fig_id: str, label: str, max_width: int) -> str:
    """SVG markup for inline use: text kept as <text> (readable, searchable), no XML prolog,
    no metadata, ids salted per figure so several figures on one page never clash, no
    external namespace other than SVG's own, and a viewBox that scales to the page width."""
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    FigureCanvasSVG(fig)
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": fig_id,
                                "font.family": "sans-serif",
                                "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"]}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None,
                                                 "Format": None, "Type": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    text = text.replace("xlink:href=", "href=")
    text = re.sub(r'\s+xmlns:xlink="[^"]*"', "", text)
    # element ids unique on the page: prefixed with the figure's own id, references too
    text = re.sub(r'\bid="([^"]+)"', rf'id="{fig_id}-\1"', text)
    text = re.sub(r'url\(#([^)]+)\)', rf'url(#{fig_id}-\1)', text)
    text = re.sub(r'href="#([^"]+)"', rf'href="#{fig_id}-\1"', text)
    head_end = text.index(">") + 1
    head = re.sub(r'\s(width|height)="[^"]*"', "", text[:head_end])
    head = head.replace("<svg", f"<svg role='img' aria-label='{_e(label)}' class='mpl' "
                        f"style='max-width:{max_width}px'", 1)
    return head + f"<title>{_e(label)}</title>" + text[head_end:]


def _style_axes(ax: Any) -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.tick_params(labelsize=8)
    ax.grid(True, color="#e0e0e0", linewidth=0.6)
    ax.set_axisbelow(True)


def _check_of(report: dict, name: str) -> dict:
    for c in (report.get("decision") or {}).get("checks") or []:
        if c.get("name") == name:
            return c
    return {}


def _risk_rows(report: dict) -> list[dict]:
    """Every risk with a finite estimate: gated ones first (in report order), then reported."""
    rows = [a for a in report.get("attacks") or [] if _finite(a.get("value"))]
    return [a for a in rows if a.get("gated")] + [a for a in rows if not a.get("gated")]


def _verdict(a: dict) -> tuple[str, str, str]:
    """(label, colour, marker) of one risk; the label says it in words, not colour alone."""
    if not a.get("gated"):
        return "REPORTED", INFO_COLOR, "s"
    return ("PASS", PASS_COLOR, "o") if a.get("passed") else ("FAIL", FAIL_COLOR, "X")


def _forest_figure(report: dict, figs: _Figures) -> str:
    rows = _risk_rows(report)
    if not rows:
        return "<p class='muted'>No risk was measured.</p>"
    from matplotlib.lines import Line2D

    fig = _new_figure(8.4, 0.55 * len(rows) + 1.2)
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, a in zip(axes, rows, strict=True):
        label, color, marker = _verdict(a)
        v, lo, hi = a["value"], a.get("ci_low"), a.get("ci_high")
        base, thr = a.get("baseline"), a.get("threshold")
        # zero is on the axis unless the no-risk value is far from it (AUC, DCR share: 0.5)
        zero = 0.0 if not (_finite(base) and base > 0.25) else None
        xs = [x for x in (v, lo, hi, base, thr, zero) if _finite(x)]
        span = (max(xs) - min(xs)) or 0.01
        ax.set_xlim(min(xs) - 0.08 * span, max(xs) + 0.08 * span)
        ax.set_ylim(-1, 1)
        if _finite(lo) and _finite(hi):
            ax.hlines(0, lo, hi, color=color, linewidth=2.4)
        if _finite(base):
            ax.plot(base, 0, marker="D", markersize=6, markerfacecolor="white",
                    markeredgecolor="#212121", linestyle="none")
        if _finite(thr):
            ax.axvline(thr, color=THRESHOLD_COLOR, linestyle="--", linewidth=1.4)
        if zero is not None:
            ax.axvline(0, color="#9e9e9e", linewidth=0.6)
        ax.plot(v, 0, marker=marker, markersize=7, color=color, linestyle="none")
        ax.set_yticks([])
        ax.set_ylabel(a["name"], rotation=0, ha="right", va="center", fontsize=8)
        _style_axes(ax)
        ax.spines["left"].set_visible(False)
        ax.grid(False, axis="y")
        check = _check_of(report, a["name"])
        upper = check.get("upper_bound", hi)
        detail = (f"{label}: upper {_fmt(upper, 3)} vs {_fmt(thr, 3)}" if a.get("gated")
                  else f"{label} (not gated)")
        ax.text(1.01, 0.5, detail, transform=ax.transAxes, color=color, fontsize=8,
                fontweight="bold", va="center")
    axes[-1].set_xlabel("risk value (each row on its own scale; see the tick labels)",
                        fontsize=9)
    handles = [
        Line2D([], [], marker="o", color=PASS_COLOR, linestyle="none", label="estimate, pass"),
        Line2D([], [], marker="X", color=FAIL_COLOR, linestyle="none", label="estimate, fail"),
        Line2D([], [], marker="s", color=INFO_COLOR, linestyle="none",
               label="estimate, reported only"),
        Line2D([], [], color="#424242", linewidth=2.4, label="95% interval"),
        Line2D([], [], marker="D", markerfacecolor="white", markeredgecolor="#212121",
               linestyle="none", label="baseline (no-risk value)"),
        Line2D([], [], color=THRESHOLD_COLOR, linestyle="--", label="gate threshold"),
    ]
    fig.legend(handles=handles, loc="outside upper center", ncol=3, fontsize=8, frameon=False)
    caption = ("Every measured risk: the estimate (marker), its 95% interval (line), the "
               "baseline a generator that learned nothing would score (diamond; none where the "
               "attack's null is built into the estimate, e.g. the MIA rows) and the gate's "
               "threshold (dashed). The gate passes a risk when the upper end of its interval "
               "(less any excess of the permutation null, see the checks) is at most the "
               "threshold; the verdict is written beside each row. " + INTERVAL_SENTENCE)
    return figs.figure("fig-risks", fig, "Risks with 95% intervals against gate thresholds",
                       _e(caption))


def _roc_figure(report: dict, figs: _Figures) -> str:
    roc = (report.get("figures") or {}).get("roc") or {}
    curves = {k: c for k, c in roc.items() if c.get("fpr") and c.get("tpr")}
    if not curves:
        return "<p class='muted'>No membership-inference ROC (attack not run).</p>"
    import numpy as np

    fig = _new_figure(8.4, 3.8)
    lin, log = fig.subplots(1, 2)
    for kind, curve in sorted(curves.items()):
        fpr = np.asarray(curve["fpr"], float)
        tpr = np.asarray(curve["tpr"], float)
        name = f"{kind.replace('_', ' ')} attack (AUC {_fmt(curve.get('auc'), 3)})"
        lin.plot(fpr, tpr, linewidth=1.8, label=name)
        keep = fpr > 0
        log.plot(fpr[keep], tpr[keep], linewidth=1.8, label=name)
    grid = np.logspace(-3, 0, 50)
    lin.plot([0, 1], [0, 1], color="#9e9e9e", linestyle="--", label="chance (AUC 0.5)")
    log.plot(grid, grid, color="#9e9e9e", linestyle="--", label="chance")
    for ax in (lin, log):
        ax.set_xlabel("false-positive rate (non-members flagged)", fontsize=9)
        ax.set_ylabel("true-positive rate (members found)", fontsize=9)
        _style_axes(ax)
    lin.set_xlim(0, 1)
    lin.set_ylim(0, 1)
    lin.set_title("linear axes", fontsize=9)
    log.set_xscale("log")
    log.set_yscale("log")
    log.set_xlim(1e-3, 1)
    log.set_ylim(1e-3, 1)
    log.axvline(0.01, color=THRESHOLD_COLOR, linestyle=":", linewidth=1)
    log.set_title("log axes (low false-positive rates; dotted: 1%)", fontsize=9)
    lin.legend(fontsize=7, loc="lower right")
    caption = ("Receiver operating characteristic of each membership-inference attack: how many "
               "training rows (members) it flags against how many holdout rows (non-members) it "
               "flags at every score cut-off. A curve on the dashed diagonal means the attacker "
               "cannot tell members from strangers; the right panel enlarges the low "
               "false-positive region where the gated TPR at 1% FPR is read. Backs the "
               "mia_* rows of the risk plot.")
    return figs.figure("fig-roc", fig, "Membership inference ROC curves", _e(caption))


def _dcr_figure(report: dict, figs: _Figures) -> str:
    hist = (report.get("figures") or {}).get("dcr_histogram")
    if not hist or not hist.get("edges"):
        return "<p class='muted'>No DCR histogram (attack not run).</p>"
    edges, train, hold = hist["edges"], hist["train"], hist["holdout"]
    fig = _new_figure(8.4, 3.4)
    ax = fig.subplots()
    ax.stairs(train, edges, color=FAIL_COLOR, linewidth=1.6, fill=False,
              label=f"distance to the closest training row ({sum(train)} synthetic rows)")
    ax.stairs(hold, edges, color=THRESHOLD_COLOR, linewidth=1.6, linestyle="--", fill=False,
              label=f"distance to the closest holdout row ({sum(hold)} synthetic rows)")
    ax.set_xlabel("distance from a synthetic row to its closest real row (scaled units)",
                  fontsize=9)
    ax.set_ylabel("synthetic rows", fontsize=9)
    ax.set_xlim(edges[0], edges[-1])
    _style_axes(ax)
    ax.legend(fontsize=8, loc="upper right")
    caption = ("Distance to closest record (DCR): for each synthetic row, the distance to the "
               "nearest training row (solid) and, separately, to the nearest holdout row "
               "(dashed), over the same bins. If the generator memorised its training rows, "
               "the solid curve would pile up near zero above the dashed one; overlapping "
               "curves mean synthetic rows are no closer to the people trained on than to "
               "strangers. Backs dcr_share and near_copy_rate.")
    return figs.figure("fig-dcr", fig, "DCR histogram, train vs holdout", _e(caption))


def _column_schemas(report: dict) -> dict[str, dict]:
    cols = report.get("columns") or {}
    if isinstance(cols.get("schema"), dict):
        return {k: v for k, v in cols["schema"].items() if isinstance(v, dict)}
    return {k: v for k, v in cols.items() if isinstance(v, dict)}


def _public_bounds(info: dict | None) -> bool:
    return bool(info) and info.get("bounds_source") in _SOURCES


def _edge(x: float) -> str:
    """A public bin edge for a tick label: thousands separated, no exponent below 1e9."""
    return f"{x:,.0f}" if abs(x) >= 1000 and abs(x) < 1e9 else f"{x:.4g}"


def _bin_labels(name: str, m: dict, info: dict | None) -> list[str]:
    """Labels of a numeric marginal's bins: the public bounds' bins, or bin numbers when the
    bounds are not public (so no value read from real rows is ever printed)."""
    edges = m.get("edges") or []
    k = max(len(edges) - 1, 0)
    if not _public_bounds(info):
        out = [f"bin {i + 1}" for i in range(k)]
    elif (info or {}).get("kind") == "datetime":
        out = [f"{_date(edges[i])[:7]}–{_date(edges[i + 1])[:7]}" for i in range(k)]
    else:
        out = [f"{_edge(edges[i])}–{_edge(edges[i + 1])}" for i in range(k)]
    return out + ["(missing)"] * (len(m.get("real") or []) - k)


def _marginal_labels(name: str, m: dict, info: dict | None) -> list[str]:
    if m.get("kind") == "numeric" or "edges" in m:
        return _bin_labels(name, m, info)
    labels = [str(x) for x in m.get("labels") or []]
    return labels + [f"category {i + 1}" for i in range(len(labels), len(m.get("real") or []))]


def _pooled(labels: list[str], real: list, syn: list) -> tuple[list[str], list, list]:
    if len(labels) <= MAX_MARGINAL_LABELS:
        return labels, real, syn
    order = sorted(range(len(labels)), key=lambda i: -max(real[i], syn[i]))
    keep = sorted(order[:MAX_MARGINAL_LABELS - 1])
    rest = [i for i in range(len(labels)) if i not in keep]
    return ([labels[i] for i in keep] + [f"({len(rest)} more, pooled)"],
            [real[i] for i in keep] + [sum(real[i] for i in rest)],
            [syn[i] for i in keep] + [sum(syn[i] for i in rest)])


def _marginal_figure(name: str, m: dict, info: dict | None, figs: _Figures) -> str:
    import numpy as np

    real, syn = list(m.get("real") or []), list(m.get("synthetic") or [])
    labels = _marginal_labels(name, m, info)[:len(real)]
    labels, real, syn = _pooled(labels, real, syn)
    y = np.arange(len(labels))
    fig = _new_figure(4.2, 0.17 * len(labels) + 1.1)
    ax = fig.subplots()
    ax.barh(y - 0.2, real, height=0.4, color=REAL_COLOR, label="real (training rows)")
    ax.barh(y + 0.2, syn, height=0.4, color=SYN_COLOR, label="synthetic")
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("share of rows", fontsize=8)
    ax.set_title(f"{name} (TVD {_fmt(m.get('tvd'), 3)})", fontsize=9)
    _style_axes(ax)
    ax.legend(fontsize=7, loc="lower right")
    fid = f"fig-marginal-{re.sub(r'[^A-Za-z0-9_-]', '_', name)}"
    return ("<div class='small'>" + _svg_text(fig, fid, f"Marginal of {name}", 420) + "</div>")


def _marginals_block(report: dict, figs: _Figures) -> str:
    ms = (report.get("figures") or {}).get("marginals") or {}
    if not ms:
        return "<p class='muted'>No marginals.</p>"
    schemas = _column_schemas(report)
    items = list(ms.items())[:60]
    number = figs.numbers.setdefault("fig-marginals", len(figs.numbers) + 1)
    grid = "".join(_marginal_figure(n, m, schemas.get(n), figs) for n, m in items)
    caption = ("Share of rows per category (labels only from the public domain; others pooled "
               "into “(other)”) or per bin over the column's public bounds (bins are numbered, "
               "not labelled, where the bounds are not public), real training rows against the "
               "synthetic table. TVD is the total variation distance: half the sum of the "
               "absolute differences of the shares, 0 identical, 1 disjoint.")
    return (f"<figure id='fig-marginals'><div class='grid'>{grid}</div><figcaption><b>Figure "
            f"{number}.</b> {_e(caption)}</figcaption></figure>")


def _fidelity_figure(report: dict, figs: _Figures) -> str:
    util = report.get("utility") or {}
    train_tvd = util.get("marginal_tvd") or {}
    floor_cols = ((util.get("floor") or {}).get("columns")) or {}
    names = list(dict.fromkeys([*train_tvd, *floor_cols]))
    if not names:
        return "<p class='muted'>No per-column fidelity measured.</p>"
    import numpy as np

    y = np.arange(len(names))
    fig = _new_figure(8.4, 0.28 * len(names) + 1.3)
    ax = fig.subplots()
    tv = [train_tvd.get(n, np.nan) for n in names]
    hv = [(floor_cols.get(n) or {}).get("tvd", np.nan) for n in names]
    triv = [(floor_cols.get(n) or {}).get("trivial_tvd", np.nan) for n in names]
    ax.barh(y - 0.2, tv, height=0.4, color=REAL_COLOR, label="TVD to the real training rows")
    if floor_cols:
        ax.barh(y + 0.2, hv, height=0.4, color=SYN_COLOR, label="TVD to the real holdout rows")
        ax.plot(triv, y, marker="|", markersize=14, markeredgewidth=2.5, color=TRIVIAL_COLOR,
                linestyle="none", label="best trivial generator (learned nothing)")
        for i, n in enumerate(names):
            if (floor_cols.get(n) or {}).get("noise_level"):
                ax.text(1.0, i, " noise-level", color=FAIL_COLOR, fontsize=7, va="center")
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.08)
    ax.set_xlabel("total variation distance of the column's distribution to the real one "
                  "(0 identical, 1 disjoint; lower is better)", fontsize=9)
    _style_axes(ax)
    fig.legend(fontsize=8, loc="outside upper center", ncol=3, frameon=False)
    caption = ("Marginal fidelity per column: the synthetic column's distance to the real "
               "training rows and to the real holdout rows, beside the distance the best "
               "generator that learned nothing (uniform, a constant, all missing) reaches on the "
               "holdout. A bar well left of its trivial mark is real signal; the utility floor "
               "blocks a release whose columns sit at the trivial level (marked noise-level).")
    return figs.figure("fig-fidelity", fig, "Marginal fidelity per column", _e(caption))


_TSTR_METRICS = {"accuracy": ("accuracy", "majority_share", "always predict the majority class"),
                 "roc_auc": ("ROC AUC", None, "random scores (0.5)"),
                 "r2": ("R²", None, "predict the mean (0)")}


def _tstr_rows(tstr: dict) -> list[dict]:
    """One row per metric, the same metric for the real and the synthetic model."""
    real, syn = tstr.get("real") or {}, tstr.get("synthetic") or {}
    metrics = [k for k in _TSTR_METRICS if k in real or k in syn]
    metrics += [k for k in [*real, *syn] if k not in metrics and _finite((real | syn).get(k))]
    rows = []
    for key in dict.fromkeys(metrics):
        label, base_key, base_text = _TSTR_METRICS.get(key, (key, None, "—"))
        base = (tstr.get(base_key) if base_key else
                0.5 if key == "roc_auc" else 0.0 if key == "r2" else None)
        rows.append({"metric": key, "label": label, "real": real.get(key),
                     "real_ci": real.get(f"{key}_ci"), "synthetic": syn.get(key),
                     "synthetic_ci": syn.get(f"{key}_ci"), "baseline": base,
                     "baseline_text": base_text,
                     "synthetic_note": syn.get("note") or ("not computed for the synthetic "
                                                            "model" if key not in syn else None)})
    return rows


def _tstr_figure(report: dict, figs: _Figures) -> str:
    util = report.get("utility") or {}
    tstr = util.get("tstr") or {}
    rows = [r for r in _tstr_rows(tstr) if _finite(r["real"]) or _finite(r["synthetic"])]
    if not rows:
        return "<p class='muted'>No train-on-synthetic test (no target column).</p>"
    import numpy as np

    fig = _new_figure(7.0, 0.7 * len(rows) + 1.3)
    ax = fig.subplots()
    y = np.arange(len(rows))
    for i, r in enumerate(rows):
        for off, key, color, lab in ((-0.2, "real", REAL_COLOR, "trained on real training rows"),
                                     (0.2, "synthetic", SYN_COLOR, "trained on synthetic rows")):
            v = r[key]
            if _finite(v):
                ci = r.get(f"{key}_ci")
                seen = ax.get_legend_handles_labels()[1]
                ax.barh(i + off, v, height=0.38, color=color,
                        label=None if lab in seen else lab)
                if isinstance(ci, list) and len(ci) == 2 and all(_finite(c) for c in ci):
                    ax.hlines(i + off, ci[0], ci[1], color="#212121", linewidth=1.2)
                    ax.vlines(ci, i + off - 0.08, i + off + 0.08, color="#212121",
                              linewidth=1.2)
                ax.text(v, i + off, f" {v:.3f}", va="center", fontsize=7)
            else:
                ax.text(0.01, i + off, f"{key}: not computed", va="center", fontsize=7,
                        color=FAIL_COLOR)
        if _finite(r["baseline"]):
            ax.plot([r["baseline"]] * 2, [i - 0.45, i + 0.45], color=TRIVIAL_COLOR,
                    linestyle="--", linewidth=1.6,
                    label=None if "trivial baseline" in ax.get_legend_handles_labels()[1]
                    else "trivial baseline")
    floor = (util.get("floor") or {}).get("tstr") or {}
    if floor.get("metric") in [r["metric"] for r in rows] and _finite(floor.get("baseline")):
        i = [r["metric"] for r in rows].index(floor["metric"])
        ax.plot([floor["baseline"]] * 2, [i - 0.45, i + 0.45], color=THRESHOLD_COLOR,
                linestyle=":", linewidth=2, label="utility floor (gated)")
    ax.set_yticks(y, [r["label"] for r in rows], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.12)
    ax.set_xlabel(f"score on the real holdout ({tstr.get('test_rows', '?')} rows), higher is "
                  "better", fontsize=9)
    _style_axes(ax)
    fig.legend(fontsize=7, loc="outside upper center", ncol=2, frameon=False)
    caption = (f"Train on synthetic, test on real (TSTR): the same model "
               f"({tstr.get('model', 'a classifier')}) predicts “{tstr.get('target', '?')}” "
               "once trained on the real training rows and once on the synthetic table, both "
               "scored on the same real holdout with the same metric. The dashed mark is what a "
               "model that learned nothing scores; error bars are 95% intervals (DeLong) where "
               "computed.")
    return figs.figure("fig-tstr", fig, "Train on synthetic, test on real", _e(caption),
                       max_width=760)


def _heatmap_figure(report: dict, figs: _Figures) -> str:
    ad = (report.get("figures") or {}).get("association_difference")
    if not ad or not ad.get("columns"):
        return "<p class='muted'>No association matrix.</p>"
    import numpy as np

    cols = list(ad["columns"])[:40]
    k = len(cols)
    mat = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            try:
                mat[i, j] = float(ad["matrix"][i][j])
            except (IndexError, TypeError, ValueError):
                mat[i, j] = np.nan
    size = min(2.5 + 0.28 * k, 11)
    fig = _new_figure(size + 1.2, size)
    ax = fig.subplots()
    mesh = ax.pcolormesh(mat, cmap="Reds", vmin=0, vmax=0.5, edgecolors="#f5f5f5",
                         linewidth=0.4)
    ax.set_xticks(np.arange(k) + 0.5, cols, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(np.arange(k) + 0.5, cols, fontsize=7)
    ax.invert_yaxis()
    ax.set_aspect("equal")
    bar = fig.colorbar(mesh, ax=ax, shrink=0.8, extend="max")
    if bar.solids is not None:  # vector, not an embedded PNG
        bar.solids.set_rasterized(False)
    bar.set_label("|association real − association synthetic|", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    caption = ("Absolute difference, per pair of columns, between the association measured on "
               "the real training rows and on the synthetic table (|Pearson| for two numeric "
               "columns, Cramér's V for two categorical ones, the correlation ratio for a mixed "
               "pair). White: the pair relates in the synthetic data as in the real data; "
               "red: the relation is lost or invented (0.5 or more is the darkest shade).")
    return figs.figure("fig-assoc", fig, "Association difference heatmap", _e(caption),
                       max_width=760)


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


# --- privacy mechanism and columns: readable tables ------------------------------------------

_MECHANISMS = {
    "dp_sgd": "DP-SGD (Opacus)",
    "dp_sgd_tuned": "DP-SGD, tuned by random stopping (Papernot & Steinke 2022)",
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


# --- regulator sections: filled from the report's own data --------------------------------

TO_FILL = "TO BE COMPLETED BY THE EXPERT / PRIVACY OFFICER"
_WP29 = {  # attack -> WP29 criterion it gives evidence on (Opinion 05/2014)
    "singling_out": "singling_out", "unique_qi": "singling_out", "exact_copy": "singling_out",
    "dcr": "singling_out", "linkability": "linkability", "inference": "inference",
    "mia": "inference", "targeted_mia": "inference", "targeted": "inference",
}
_WP29_TEXT = {
    "singling_out": ("Singling out", "can one person's record be isolated in the released "
                     "table? Evidence: anonymeter's singling-out attack, copies of rows unique "
                     "on the quasi-identifiers, exact and near copies of training rows."),
    "linkability": ("Linkability", "can records about the same person be linked across "
                    "datasets? Evidence: anonymeter's linkability attack joining two "
                    "auxiliary column sets through the synthetic table."),
    "inference": ("Inference", "can an attribute of a person (a secret column, or the fact of "
                  "being in the training data) be deduced with significant probability? "
                  "Evidence: anonymeter's attribute inference and the membership-inference "
                  "attacks."),
}
_SAFE_HARBOR_HINTS = [  # (name pattern, Safe Harbor identifier class) for kept-column warnings
    (r"name", "(A) names"), (r"street|address|city|county|zip|postcode|postal", "(B) geography"),
    (r"birth|dob|date|admission|discharge|death", "(C) dates"), (r"phone|mobile", "(D) phone"),
    (r"fax", "(E) fax"), (r"e-?mail", "(F) e-mail"), (r"ssn|social", "(G) SSN"),
    (r"mrn|record_?n", "(H) medical record number"), (r"plan|insur", "(I) health plan number"),
    (r"account|card|iban", "(J) account number"), (r"licen[cs]e|certif", "(K) licence"),
    (r"vehicle|plate|vin\b", "(L) vehicle"), (r"device|serial|imei", "(M) device"),
    (r"url|web", "(N) URL"), (r"\bip\b|ip_?addr", "(O) IP address"),
    (r"finger|biometric|voice", "(P) biometric"), (r"photo|face|image", "(Q) photograph"),
    (r"notes|comment|free_?text", "(R) free text / other identifier"),
]
_PROTECTED = re.compile(r"(^|_)(sex|gender|race|ethnic\w*|age|birth\w*|religion|disab\w*|"
                        r"nationality|native_country|country_of_birth|origin)($|_)", re.I)


def _actions(report: dict) -> dict[str, str]:
    cols = report.get("columns") or {}
    if isinstance(cols.get("actions"), dict):
        return {k: str(v) for k, v in cols["actions"].items()}
    return {k: str(v.get("action", v.get("rule", "kept"))) for k, v in cols.items()
            if isinstance(v, dict)}


def _safe_harbor(report: dict) -> list[dict]:
    rows = []
    for name, action in _actions(report).items():
        hint = next((label for pat, label in _SAFE_HARBOR_HINTS
                     if re.search(pat, name, re.I)), None)
        if action.startswith("dropped"):
            handling, status = "removed before the generator saw the data", "removed"
        elif action.startswith("replaced"):
            handling = ("replaced by fresh random codes not derived from the identifier "
                        "(45 CFR 164.514(c)); never modelled")
            status = "removed"
        elif action.startswith("generalized"):
            handling, status = f"{action}: only the coarsened value is modelled", "generalized"
        else:
            handling = "kept: the policy treats it as none of the 18 identifiers"
            status = "check" if hint else "kept"
        rows.append({"column": name, "action": action, "handling": handling, "status": status,
                     "identifier_hint": hint})
    return rows


def _risk_summary(a: dict) -> dict:
    return {"name": a.get("name"), "attack": a.get("attack"), "value": a.get("value"),
            "ci_low": a.get("ci_low"), "ci_high": a.get("ci_high"),
            "threshold": a.get("threshold"), "gated": bool(a.get("gated")),
            "passed": a.get("passed")}


def _wp29(report: dict) -> dict:
    out: dict[str, dict] = {}
    na = report.get("not_applicable") or []
    for key, (title, question) in _WP29_TEXT.items():
        risks = [_risk_summary(a) for a in report.get("attacks") or []
                 if _WP29.get(str(a.get("attack")).split(":")[0]) == key
                 or (key == "inference" and str(a.get("name", "")).startswith("targeted"))]
        gated = [r for r in risks if r["gated"]]
        failed = [f for f in report.get("failures") or [] if _WP29.get(f.get("attack")) == key]
        if failed or any(r["passed"] is False for r in gated):
            verdict = "risk above threshold or attack failed: blocks the release"
        elif gated:
            verdict = "every gated risk below its threshold"
        elif risks:
            verdict = "measured, not gated"
        else:
            verdict = "not measured in this audit"
        out[key] = {"criterion": title, "question": question, "verdict": verdict,
                    "risks": risks,
                    "not_applicable": [n.get("reason") for n in na
                                       if _WP29.get(str(n.get("attack"))) == key],
                    "evidence": ["fig-risks", "tab-attacks"]
                    + (["fig-roc"] if key == "inference" else [])
                    + (["fig-dcr"] if key == "singling_out" else [])}
    return out


def _hazards(report: dict) -> list[dict]:
    mech = report.get("mechanism") or {}
    rand = mech.get("randomness") if isinstance(mech.get("randomness"), dict) else {}
    charges = [c for c in mech.get("charges") or [] if isinstance(c, dict)]
    dec = report.get("decision") or {}
    out = []
    counts = str(rand.get("counts", ""))
    out.append({"hazard": "secure noise for counts and histograms",
                "status": "checked" if "exact" in counts or "discrete" in counts
                else "not recorded", "evidence": counts or "no record in the manifest"})
    sgd = [c for c in charges if c.get("mechanism") in ("dp_sgd", "dp_sgd_tuned")]
    if sgd:
        secure = all((c.get("params") or {}).get("secure_mode") for c in sgd)
        out.append({"hazard": "floating-point attacks on Gaussian noise (DP-SGD)",
                    "status": "checked" if secure else "open: secure_mode off",
                    "evidence": str(rand.get("dp_sgd", "secure_mode "
                                             f"{'on' if secure else 'off'} in the charges"))})
    seed_mode = mech.get("seed_mode") or (report.get("scope") or {}).get("seed_mode")
    out.append({"hazard": "seeded (reproducible) noise",
                "status": "development run: no DP claim" if dec.get("development_run")
                else "checked" if seed_mode == "os-entropy" else "not recorded",
                "evidence": f"seed mode {seed_mode or 'unknown'}; "
                            + str(rand.get("post_processing", ""))})
    schemas = _column_schemas(report)
    leaky = [n for n, i in schemas.items()
             if (i.get("bounds") and i.get("bounds_source") not in _SOURCES)
             or (i.get("domain") and i.get("domain_source") not in _SOURCES)]
    out.append({"hazard": "bounds and categories read from the data without DP",
                "status": "checked" if not leaky else f"open: {len(leaky)} column(s)",
                "evidence": ("every bound and category is declared by the policy or found by a "
                             "DP mechanism (see the columns table)") if not leaky else
                            "columns with facts read from real rows: " + ", ".join(leaky)})
    if any(c.get("mechanism") == "noisy_count" for c in charges):
        out.append({"hazard": "the row count", "status": "checked",
                    "evidence": "the training-row count N̂ is released through a DP count"})
    if mech.get("accountant") or any((c.get("params") or {}).get("accountant") for c in sgd):
        acct = mech.get("accountant") or (sgd[0].get("params") or {}).get("accountant")
        out.append({"hazard": "privacy accounting", "status": "checked",
                    "evidence": f"{str(acct).upper()} accountant; privsynth verify recomputes "
                                "ε from the recorded charges"})
    return out


def _nist(report: dict) -> dict:
    mech = report.get("mechanism") or {}
    charges = [c for c in mech.get("charges") or [] if isinstance(c, dict)]
    algos = list(dict.fromkeys(_MECHANISMS.get(str(c.get("mechanism")), str(c.get("mechanism")))
                               for c in charges))
    return {
        "unit_of_privacy": mech.get("unit"),
        "epsilon": mech.get("epsilon"), "delta": mech.get("delta"),
        "claim": mech.get("claim"),
        "neighbouring_relation": mech.get("neighbouring_relation"),
        "composition": mech.get("composition"),
        "dataset_epsilon_spent_after": mech.get("dataset_epsilon_spent_after",
                                                mech.get("cumulative_epsilon")),
        "algorithm": algos,
        "implementation_hazards": _hazards(report),
        "trust_model": ("central (trusted curator): the data controller runs privsynth on the "
                        "raw rows in its own environment; only the synthetic table, which is "
                        "DP post-processing, leaves; this report stays with the controller"),
        "not_covered_by_epsilon": mech.get("not_covered_by_epsilon"),
        "evidence": ["stages", "charges", "columns"],
    }


def _protected(report: dict) -> tuple[list[str], str]:
    settings = report.get("audit_settings") or {}
    named = settings.get("protected_attributes")
    if isinstance(named, list) and named:
        return [str(x) for x in named], "policy"
    qis: list[str] = []
    for a in report.get("attacks") or []:
        qis += [str(q) for q in (a.get("details") or {}).get("quasi_identifiers") or []]
    qis = list(dict.fromkeys(qis))
    picked = [q for q in qis if _PROTECTED.search(q)]
    if picked:
        return picked, "quasi_identifiers"
    return [], "not_configured"


def _representativeness(report: dict) -> dict:
    attrs, source = _protected(report)
    ms = (report.get("figures") or {}).get("marginals") or {}
    schemas = _column_schemas(report)
    groups_util = (report.get("utility") or {}).get("groups") or {}
    out = []
    for name in attrs:
        m = ms.get(name)
        if not m:
            out.append({"attribute": name, "groups": [], "note": "no marginal in this audit"})
            continue
        labels = _marginal_labels(name, m, schemas.get(name))
        groups = []
        for lab, r, s in zip(labels, m.get("real") or [], m.get("synthetic") or [],
                             strict=False):
            groups.append({"group": lab, "real_share": r, "synthetic_share": s,
                           "ratio": (s / r) if r else None})
        out.append({"attribute": name, "tvd": m.get("tvd"), "groups": groups,
                    "per_group_utility": groups_util.get(name)})
    return {"source": source, "attributes": out,
            "note": {"policy": "protected attributes named by the audit settings",
                     "quasi_identifiers": "no protected attributes are configured; these are "
                     "the audit's quasi-identifiers whose names look like sex, race, age, "
                     "ethnicity or national origin",
                     "not_configured": "not configured: the policy names no protected "
                     "attribute and no quasi-identifier looks like one"}[source]}


def regulatory_sections(report: dict) -> dict:
    """The four sections reviewers ask for, filled from the report's own data (JSON-safe).
    Fields the data cannot know are ``None`` with ``"fill": "officer"``."""
    checks = (report.get("decision") or {}).get("checks") or []
    mech = report.get("mechanism") or {}
    dec = report.get("decision") or {}
    thresholds = {c.get("threshold_key"): c.get("threshold") for c in checks}
    worksheet = {
        "recipient": {"value": None, "fill": "officer"},
        "reasonably_available_information": {
            "value": None, "fill": "officer",
            "assumed_by_the_audit": (report.get("threat_model") or {}).get("adversary")},
        "method": {"value": (f"differentially private synthetic data, {mech.get('claim') or ''}"
                             f" (unit: {mech.get('unit') or '—'}), then an audit gate of "
                             f"{len(report.get('attacks_requested') or [])} attack families: "
                             + ", ".join(report.get("attacks_requested") or [])),
                   "evidence": ["stages", "charges"]},
        "results": {"value": (f"gate decision {dec.get('decision', '—')}; "
                              f"{sum(1 for c in checks if c.get('passed'))} of {len(checks)} "
                              "gated risks at or below threshold"),
                    "evidence": ["fig-risks", "tab-attacks"]},
        "threshold": {"value": thresholds, "evidence": ["tab-attacks"]},
        "expiry": {"value": None, "fill": "officer",
                   "hint": "a date or event (new auxiliary data, a further release of the same "
                           "population) after which the determination is reviewed"},
    }
    return _clean({
        "hipaa": {"safe_harbor": _safe_harbor(report), "expert_determination": worksheet},
        "gdpr_wp29": _wp29(report),
        "nist_sp_800_226": _nist(report),
        "representativeness": _representativeness(report),
    })


# --- HTML of the regulator sections ------------------------------------------------------

_TABLE_NAMES = {"tab-attacks": "Table: attacks", "stages": "Table: ε and δ per stage",
                "charges": "Table: DP charges", "columns": "Table: columns and rules",
                "tab-tstr": "Table: TSTR", "tab-floor": "Table: utility floor"}


def _refs(ids: list[str], figs: _Figures) -> str:
    out = []
    for i in ids:
        if i.startswith("fig-"):
            if i in figs.numbers:
                out.append(figs.ref(i))
        else:
            out.append(f"<a href='#{_e(i)}'>{_e(_TABLE_NAMES.get(i, i))}</a>")
    return "<span class='evidence'>Evidence: " + ", ".join(out) + "</span>" if out else ""


def _fill(field: dict) -> str:
    if field.get("fill") == "officer" and field.get("value") in (None, ""):
        hint = field.get("hint") or field.get("assumed_by_the_audit")
        which = "Assumed by the audit" if "assumed_by_the_audit" in field else "Hint"
        extra = f"<div class='muted'>{which}: {_e(hint)}</div>" if hint else ""
        return f"<span class='tofill'>{TO_FILL}</span>{extra}"
    value = field.get("value")
    if isinstance(value, dict):
        value = "; ".join(f"{k} ≤ {_fmt(v)}" for k, v in value.items())
    return _e(value)


def _hipaa_html(reg: dict, figs: _Figures) -> str:
    rows = []
    for r in reg["safe_harbor"]:
        status = {"removed": "<span class='ok'>removed</span>",
                  "generalized": "<span class='ok'>generalized</span>",
                  "check": "<span class='bad'>CHECK: kept, name suggests "
                           f"{_e(r.get('identifier_hint'))}</span>",
                  "kept": "kept"}[r["status"]]
        rows.append(f"<tr><th>{_e(r['column'])}</th><td>{_action_cell(r['action'])}</td>"
                    f"<td>{_e(r['handling'])}</td><td>{status}</td></tr>")
    checks = sum(1 for r in reg["safe_harbor"] if r["status"] == "check")
    ed = reg["expert_determination"]
    labels = {"recipient": "Recipient", "reasonably_available_information":
              "Reasonably available information (what the recipient could link with)",
              "method": "Method", "results": "Results", "threshold": "Threshold (gate)",
              "expiry": "Expiry / review date"}
    ws = "".join(f"<tr><th>{_e(labels[k])}</th><td>{_fill(v)} "
                 f"{_refs(v.get('evidence') or [], figs)}</td></tr>" for k, v in ed.items())
    return (
        "<h3>Safe Harbor (45 CFR 164.514(b)(2)): identifier handling per column</h3>"
        f"<p>From the policy's column actions ({_refs(['columns'], figs)}). "
        + (f"<b class='bad'>{checks} kept column(s) have a name that suggests a Safe Harbor "
           "identifier: confirm they are not one.</b>" if checks else
           "No kept column has a name that suggests one of the 18 identifiers.")
        + " Safe Harbor also requires that the covered entity has no actual knowledge that the "
        "rest could identify a person; the attacks below are evidence for that, not proof.</p>"
        "<div class='wrap'><table class='grid-table' id='safe-harbor'><tr><th>column</th>"
        "<th>action</th><th>handling</th><th>status</th></tr>" + "".join(rows) + "</table></div>"
        "<h3>Expert Determination worksheet (45 CFR 164.514(b)(1))</h3>"
        "<p class='muted'>Filled from this audit where the data can know; the fields marked "
        f"“{TO_FILL}” are for the expert, who signs the determination, not for privsynth.</p>"
        f"<div class='wrap'><table class='kv' id='expert-determination'>{ws}</table></div>")


def _risk_line(r: dict) -> str:
    if r["gated"]:
        verdict = ("<span class='ok'>PASS</span>" if r["passed"]
                   else "<span class='bad'>FAIL</span>")
    else:
        verdict = "<span class='muted'>reported</span>"
    return (f"<li><code>{_e(r['name'])}</code>: {_fmt(r['value'], 3)} "
            f"[{_fmt(r['ci_low'], 3)}, {_fmt(r['ci_high'], 3)}]"
            + (f", threshold {_fmt(r['threshold'], 3)}" if r["gated"] else "")
            + f" {verdict}</li>")


def _wp29_html(reg: dict, figs: _Figures) -> str:
    parts = ["<p>The three criteria of the Article 29 Working Party's Opinion 05/2014 on "
             "anonymisation techniques (the EDPB's reference for GDPR Recital 26), each with the "
             "measured evidence. Intervals are 95%; the gate reads their upper ends.</p>"]
    for key, c in reg.items():
        cls = ("bad" if c["verdict"].startswith("risk") else "ok"
               if c["verdict"].startswith("every") else "muted")
        items = "".join(_risk_line(r) for r in c["risks"]) or "<li class='muted'>none</li>"
        na = "".join(f"<li class='muted'>not applicable: {_e(n)}</li>"
                     for n in c["not_applicable"])
        parts.append(f"<div class='criterion' id='wp29-{_e(key)}'><h3>{_e(c['criterion'])}: "
                     f"<span class='{cls}'>{_e(c['verdict'])}</span></h3><p>{_e(c['question'])}"
                     f"</p><ul>{items}{na}</ul>{_refs(c['evidence'], figs)}</div>")
    return "".join(parts)


def _nist_html(reg: dict, figs: _Figures) -> str:
    hz = "".join(
        f"<tr><td>{_e(h['hazard'])}</td><td class='{'ok' if h['status'] == 'checked' else 'bad'}'>"
        f"{_e(h['status'])}</td><td>{_e(h['evidence'])}</td></tr>"
        for h in reg["implementation_hazards"])
    eps = (f"ε = {_num(reg.get('epsilon'))}, δ = {_num(reg.get('delta'))}"
           if reg.get("epsilon") is not None else "no DP claim recorded")
    fields = [
        ("Unit of privacy", _e(reg.get("unit_of_privacy") or "—")),
        ("ε / δ of this release", _e(eps)
         + (f" <span class='muted'>({_e(reg['claim'])})</span>" if reg.get("claim") else "")),
        ("ε spent on this population, all releases",
         _num(reg.get("dataset_epsilon_spent_after"))),
        ("Neighbouring relation", _e(reg.get("neighbouring_relation") or "—")),
        ("Composition", _e(reg.get("composition") or "—")),
        ("Algorithm", _e(", ".join(reg.get("algorithm") or []) or "—")),
        ("Trust model", _e(reg.get("trust_model"))),
        ("Not covered by ε", _e("; ".join(map(str, reg.get("not_covered_by_epsilon") or []))
                                or "—")),
    ]
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in fields)
    return (f"<p>The fields NIST SP 800-226 (Guidelines for Evaluating Differential Privacy "
            f"Guarantees) asks a DP deployment to state. {_refs(reg['evidence'], figs)}</p>"
            f"<div class='wrap'><table class='kv' id='nist-fields'>{rows}</table></div>"
            "<h3>Implementation hazards checked</h3><div class='wrap'><table class='grid-table' "
            "id='nist-hazards'><tr><th>hazard</th><th>status</th><th>evidence</th></tr>"
            f"{hz}</table></div>")


def _groups_figure(rep: dict, figs: _Figures) -> str:
    attrs = [a for a in rep["attributes"] if a.get("groups")]
    if not attrs:
        return ""
    import numpy as np

    heights = [0.2 * min(len(a["groups"]), MAX_MARGINAL_LABELS) + 0.9 for a in attrs]
    fig = _new_figure(8.4, sum(heights) + 0.6)
    axes = fig.subplots(len(attrs), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, a in zip(axes, attrs, strict=True):
        labels, real, syn = _pooled([g["group"] for g in a["groups"]],
                                    [g["real_share"] or 0 for g in a["groups"]],
                                    [g["synthetic_share"] or 0 for g in a["groups"]])
        y = np.arange(len(labels))
        ax.barh(y - 0.2, real, height=0.4, color=REAL_COLOR, label="real (training rows)")
        ax.barh(y + 0.2, syn, height=0.4, color=SYN_COLOR, label="synthetic")
        ax.set_yticks(y, labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{a['attribute']} (TVD {_fmt(a.get('tvd'), 3)})", fontsize=9)
        ax.set_xlabel("share of rows in the group", fontsize=8)
        _style_axes(ax)
        ax.legend(fontsize=7, loc="lower right")
    caption = ("Representation of each group of the protected attributes: the share of rows in "
               "the group among the real training rows and in the synthetic table. A group "
               "whose synthetic share is far below its real share is under-represented, and "
               "models trained on the synthetic table will see too few of its members.")
    return figs.figure("fig-groups", fig, "Group shares of the protected attributes",
                       _e(caption))


def _representativeness_html(rep: dict, figs: _Figures) -> str:
    if rep["source"] == "not_configured":
        return (f"<p class='tofill' id='representativeness-status'>Not configured.</p><p>"
                f"{_e(rep['note'])}. Name the attributes to examine (EU AI Act Art. 10(2)(f): "
                "examination of possible biases) in the audit settings of the policy.</p>")
    fig = _groups_figure(rep, figs)
    tables = []
    for a in rep["attributes"]:
        rows = "".join(
            f"<tr><td>{_e(g['group'])}</td><td class='num'>{_fmt(g['real_share'], 3)}</td>"
            f"<td class='num'>{_fmt(g['synthetic_share'], 3)}</td>"
            f"<td class='num {'bad' if g['ratio'] is not None and g['ratio'] < 0.8 else ''}'>"
            f"{_fmt(g['ratio'], 3)}</td></tr>" for g in a["groups"])
        util = a.get("per_group_utility")
        util_html = (_kv_table(util) if isinstance(util, dict) else
                     "<p class='muted'>Utility per group (TSTR scored within each group) is not "
                     "computed by this audit version; only the group shares are shown.</p>")
        tables.append(f"<h3>{_e(a['attribute'])}</h3><div class='wrap'><table class='grid-table'>"
                      "<tr><th>group</th><th>real share</th><th>synthetic share</th>"
                      "<th>ratio synthetic / real (below 0.8 in red)</th></tr>"
                      f"{rows}</table></div>{util_html}")
    return (f"<p id='representativeness-status'><b>Attributes examined:</b> "
            f"{_e(', '.join(a['attribute'] for a in rep['attributes']))} "
            f"<span class='muted'>({_e(rep['note'])})</span>. For the bias examination of EU AI "
            "Act Art. 10(2)(f) and (5). Backed by "
            f"{figs.ref('fig-groups') if 'fig-groups' in figs.numbers or fig else ''}.</p>"
            + fig + "".join(tables))


# --- utility tables -------------------------------------------------------------------------

def _tstr_table(tstr: dict) -> str:
    rows = _tstr_rows(tstr)
    if not rows:
        return ""

    def cell(v: Any, ci: Any, note: Any) -> str:
        if not _finite(v):
            return (f"<span class='bad'>not computed</span> "
                    f"<span class='muted'>{_e(note or '')}</span>")
        extra = (f" <span class='muted'>[{_fmt(ci[0], 3)}, {_fmt(ci[1], 3)}]</span>"
                 if isinstance(ci, list) and len(ci) == 2 else "")
        return f"{v:.4f}{extra}"

    body = "".join(
        f"<tr><th>{_e(r['label'])}</th><td>{cell(r['real'], r['real_ci'], None)}</td>"
        f"<td>{cell(r['synthetic'], r['synthetic_ci'], r['synthetic_note'])}</td>"
        f"<td>{_fmt(r['baseline'], 4)} <span class='muted'>({_e(r['baseline_text'])})</span>"
        "</td></tr>" for r in rows)
    return ("<div class='wrap'><table class='grid-table' id='tab-tstr'><tr><th>metric</th>"
            "<th>trained on real</th><th>trained on synthetic</th><th>trivial baseline</th></tr>"
            f"{body}</table></div><p class='muted'>Target “{_e(tstr.get('target'))}”, "
            f"{_e(tstr.get('test_rows'))} real holdout rows, model {_e(tstr.get('model'))}. "
            "Bracketed: 95% interval.</p>")


def _utility_floor(floor: Any) -> str:
    if not isinstance(floor, dict):
        return ""
    verdict = ("<span class='ok'>PASS</span>" if floor.get("passed")
               else "<span class='bad'>FAIL</span>")
    if not floor.get("enabled", True):
        verdict = "<span class='muted'>disabled by the policy</span>"
    rows = "".join(
        f"<tr><td>{_e(name)}</td><td class='num'>{_fmt(c.get('tvd'))}</td>"
        f"<td class='num'>{_fmt(c.get('trivial_tvd'))}</td><td>{_e(c.get('trivial'))}</td><td>"
        + ("<span class='bad'>noise-level</span>" if c.get("noise_level") else
           "ok" if c.get("judged") else "<span class='muted'>not judged</span>")
        + "</td></tr>"
        for name, c in (floor.get("columns") or {}).items())
    t = floor.get("tstr") or {}
    tstr = ""
    if t:
        tstr = (f"<p><b>TSTR floor</b> ({_e(t.get('metric'))}): synthetic model "
                f"{_fmt(t.get('value'))}"
                + (f", 95% interval lower end {_fmt(t.get('ci_low'))} (must exceed 0.5)"
                   if "ci_low" in t else "")
                + f", floor {_fmt(t.get('baseline'))}: "
                + ("<span class='ok'>PASS</span>" if t.get("passed")
                   else "<span class='bad'>FAIL</span>")
                + (f" <span class='muted'>{_e(t.get('note'))}</span>" if t.get("note") else "")
                + "</p>")
    return (f"<h3>Utility floor (gated): {verdict}</h3><p>{_e(floor.get('rule'))}</p>{tstr}"
            "<div class='wrap'><table class='grid-table' id='tab-floor'><tr><th>column</th>"
            "<th>TVD to real holdout</th><th>TVD of the best trivial generator</th>"
            "<th>trivial generator</th><th>verdict</th></tr>" + rows + "</table></div>")


def _utility(report: dict, figs: _Figures) -> str:
    util = report.get("utility") or {}
    if not util:
        return "<p class='muted'>No utility evidence.</p>"
    flat = {k: v for k, v in util.items()
            if k not in ("marginal_tvd", "tstr", "floor", "groups")}
    parts = [_utility_floor(util.get("floor")), _kv_table(flat)]
    if util.get("tstr"):
        parts.append("<h3>Train on synthetic, test on real (TSTR)</h3>")
        parts.append(_tstr_figure(report, figs))
        parts.append(_tstr_table(util["tstr"]))
    parts.append("<h3>Marginal fidelity per column</h3>" + _fidelity_figure(report, figs))
    return "".join(parts)


# --- PDF export -----------------------------------------------------------------------------

class ChromiumNotFoundError(RuntimeError):
    """Headless Chromium is needed for the PDF export and is not installed."""


def find_chromium() -> str | None:
    """The path of a Chromium or Chrome executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def export_pdf(html_path: Path | str, pdf_path: Path | str, *, chromium: str | None = None,
               timeout_s: float = 180) -> Path:
    """Print the report page to PDF with headless Chromium (for filing). The page has no
    scripts and no external assets, so Chromium runs offline with a throwaway profile and
    without its sandbox (which containers often lack). Raises ChromiumNotFoundError when no
    Chromium is installed, RuntimeError when printing fails."""
    html_path, pdf_path = Path(html_path).resolve(), Path(pdf_path).resolve()
    if not html_path.is_file():
        raise FileNotFoundError(f"no report page at {html_path}")
    exe = chromium or find_chromium()
    if exe is None:
        raise ChromiumNotFoundError(
            "the PDF export needs headless Chromium: install it (apt-get install chromium) or "
            "open report.html in a browser and print it to PDF")
    pdf_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        tmp = Path(profile) / "out.pdf"
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", f"--user-data-dir={profile}/p",
               "--no-pdf-header-footer", "--print-to-pdf-no-header",
               f"--print-to-pdf={tmp}", html_path.as_uri()]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                             env={**os.environ, "HOME": profile})
        if res.returncode != 0 or not tmp.is_file() or tmp.read_bytes()[:5] != b"%PDF-":
            raise RuntimeError(f"Chromium could not print {html_path.name} to PDF "
                               f"(exit {res.returncode}): {res.stderr[-1500:]}")
        shutil.move(str(tmp), pdf_path)
    return pdf_path


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1100px;padding:0 16px;color:#222;line-height:1.4}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
h3{font-size:15px;margin-top:20px}
.notice{background:#fff3e0;border:2px solid #ef6c00;padding:10px 14px;font-weight:600}
.decision{font-size:20px;padding:12px 16px;color:#fff;font-weight:700;margin:12px 0}
.decision.pass{background:#2e7d32}.decision.blocked{background:#c62828}
.howto{background:#f3f6fa;border-left:4px solid #1565c0;padding:8px 14px;margin:12px 0}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;
font-size:13px;text-align:left;vertical-align:top}code{font-size:12px;word-break:break-all}
.wrap{overflow-x:auto;max-width:100%}.kv td{overflow-wrap:anywhere}
.kv ul{margin:0;padding-left:18px}.kv .kv th{white-space:nowrap}
.ok{color:#2e7d32;font-weight:700}.bad{color:#c62828;font-weight:700}.muted{color:#666}
.tofill{background:#fff8c4;border:1px dashed #b59f00;padding:0 4px;font-weight:700;color:#5d4a00}
.evidence{display:inline-block;font-size:12px;color:#1565c0;margin-top:4px}
figure{margin:12px 0 20px;break-inside:avoid;page-break-inside:avoid}
figcaption{font-size:13px;color:#333;max-width:900px;margin-top:4px}
svg.mpl{width:100%;height:auto;display:block}.fig{overflow-x:auto}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:10px}
.small{min-width:0}
.criterion{border:1px solid #e0e0e0;padding:4px 12px;margin:8px 0}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.total th,tr.total td{border-top:2px solid #999;font-weight:700}
caption{caption-side:top;text-align:left;font-size:12px;color:#555;padding:2px 0}
.param{white-space:nowrap}.src{font-size:11px;color:#555;background:#eef3f8;padding:0 4px;
border-radius:3px}.cats{font-size:12px;color:#333;margin-top:2px;max-width:520px}
.act{white-space:nowrap}.act.drop{color:#c62828}.act.gen{color:#1565c0}.act.pseudo{color:#6a1b9a}
#columns tbody tr:nth-child(even),#charges tbody tr:nth-child(even){background:#fafafa}
nav.toc ol{columns:2;font-size:13px}
@media (max-width:640px){body{margin:8px auto;padding:0 8px}nav.toc ol{columns:1}
.fig svg.mpl{min-width:600px}.small svg.mpl{min-width:0}
.decision{font-size:16px}td,th{font-size:12px;padding:2px 4px}}
@media print{body{max-width:none;margin:0}.notice{break-after:avoid}h2,h3{break-after:avoid}
.wrap{overflow:visible}a{color:inherit;text-decoration:none}}
"""


def _attack_table(attacks: list[dict]) -> str:
    head = ("<tr><th>risk</th><th>attack</th><th>estimate</th><th>95% interval</th>"
            "<th>baseline</th><th>threshold (on upper bound)</th><th>result</th></tr>")
    rows = []
    for a in attacks:
        if a.get("gated"):
            res = ("<span class='ok'>PASS</span>" if a.get("passed")
                   else "<span class='bad'>FAIL</span>")
            thr = f"{_e(a.get('threshold_key'))} = {_fmt(a.get('threshold'))}"
        else:
            res, thr = "<span class='muted'>reported</span>", "—"
        rows.append(
            f"<tr><td>{_e(a['name'])}</td><td>{_e(a.get('attack'))}</td>"
            f"<td class='num'>{_fmt(a.get('value'))}</td><td class='num'>[{_fmt(a.get('ci_low'))}, "
            f"{_fmt(a.get('ci_high'))}]</td><td class='num'>{_fmt(a.get('baseline'))}</td>"
            f"<td>{thr}</td><td>{res}</td></tr>")
    return ("<div class='wrap'><table class='grid-table' id='tab-attacks'>" + head
            + "".join(rows) + "</table></div>")


_TOC = [("decision", "Decision and reasons"), ("how-to-read", "How to read the intervals"),
        ("sec-mechanism", "Privacy mechanism"), ("sec-columns", "Columns and rules"),
        ("sec-attacks", "Attacks and risks"), ("sec-utility", "Utility"),
        ("sec-hipaa", "HIPAA"), ("sec-gdpr", "GDPR / WP29"),
        ("sec-nist", "NIST SP 800-226"), ("sec-representativeness", "Representativeness"),
        ("sec-settings", "Audit settings and versions")]


def render_html(report: dict) -> str:
    """The self-contained HTML page for one report: inline CSS and inline SVG figures drawn
    with matplotlib, no scripts, no external assets."""
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
    figs = _Figures()
    attacks = report.get("attacks", [])
    risks = _forest_figure(report, figs)
    roc = _roc_figure(report, figs)
    dcr = _dcr_figure(report, figs)
    utility = _utility(report, figs)
    marginals = _marginals_block(report, figs)
    heatmap = _heatmap_figure(report, figs)
    reg = regulatory_sections(report)
    representativeness = _representativeness_html(reg["representativeness"], figs)
    toc = "".join(f"<li><a href='#{i}'>{_e(t)}</a></li>" for i, t in _TOC)
    body = f"""
<h1>privsynth audit report</h1>
<p class="notice" id="notice">{_e(report.get("notice", NOTICE))}</p>
<div class="decision {'pass' if passed else 'blocked'}" id="decision"
 data-passed="{str(passed).lower()}">{_e(verdict)}</div>
<p><b>Which evidence decided:</b> {_e(dec.get("evidence", ""))}</p>
<h2>Reasons</h2><ul id="reasons">{reasons}</ul>
<nav class="toc"><b>Contents</b><ol>{toc}</ol></nav>
<div class="howto" id="how-to-read"><b>How to read the numbers.</b> {_e(INTERVAL_SENTENCE)}
A baseline is what a generator that learned nothing from these people would score; a threshold
is the policy's limit for the interval's upper end.</div>
<h2>Scope</h2>{_kv_table(report.get("scope"))}
<p class="muted">Generated {_e(report.get("generated_at"))}; report format version
{_e(report.get("report_version"))}.</p>
<h2 id="sec-mechanism">Privacy mechanism</h2>{_mechanism(report.get("mechanism"))}
<p>DP claim present: <b>{_fmt(dec.get("dp_claim"))}</b>; required by the policy:
<b>{_fmt(dec.get("require_dp_claim"))}</b>.</p>
<h2 id="sec-columns">Columns and rules</h2>{_columns(report.get("columns"))}
<h2>Threat model</h2>{_kv_table(report.get("threat_model"))}
<h2 id="sec-attacks">Attacks</h2>
<p>The gate compares the upper end of each risk's 95% interval with its threshold. Attack
metrics are computed on raw data and are not covered by epsilon.</p>
{_attack_table(attacks)}
{_not_applicable(report.get("not_applicable") or [])}
<h3>Risks against thresholds</h3>{risks}
<h3>Membership inference ROC</h3>{roc}
<h3>Distance to closest record: train vs holdout</h3>{dcr}
<h3>Attack details</h3>{_details(attacks)}
<h2>Failures</h2>{fail_html}
<h2 id="sec-utility">Utility (the floor is gated; the rest is reported)</h2>{utility}
<h3>Marginals, real vs synthetic</h3>{marginals}
<h3>Association difference |real − synthetic|</h3>{heatmap}
<h2 id="sec-hipaa">HIPAA</h2>{_hipaa_html(reg["hipaa"], figs)}
<h2 id="sec-gdpr">GDPR: the WP29 criteria</h2>{_wp29_html(reg["gdpr_wp29"], figs)}
<h2 id="sec-nist">NIST SP 800-226</h2>{_nist_html(reg["nist_sp_800_226"], figs)}
<h2 id="sec-representativeness">Representativeness per protected attribute</h2>
{representativeness}
<h2 id="sec-settings">Audit settings</h2>{_kv_table(report.get("audit_settings"))}
<h2>Versions and hashes</h2>{_kv_table(report.get("versions"))}
"""
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            "<title>privsynth audit report</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>")
