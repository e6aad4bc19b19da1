"""The audit report: schema-valid JSON, a self-contained HTML page that renders in headless
Chromium and shows the decision, and never a cell value of a real row (canary test)."""

from __future__ import annotations

import html as html_mod
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest

from privsynth.audit.runner import run_audit
from privsynth.audit.testing import DATASETS, load_model_space, three_way_split
from privsynth.gate import decide
from privsynth.policy.model import AuditPolicy
from privsynth.release.report import (
    MAX_CATEGORIES,
    TO_FILL,
    ChromiumNotFoundError,
    build_report,
    export_pdf,
    regulatory_sections,
    render_html,
    write_report,
)

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "privsynth/schemas/audit-report.schema.json"
CANARIES = ["CANARY-7f3a91-workclass", "CANARY-c2d4e8-country", "CANARY-91bb07-income"]
NUMERIC_CANARY = 987654321.0



def _audit(tmp_path: Path, *, copy: bool):
    if not (Path(DATASETS) / "adult.csv.gz").exists():
        pytest.skip("shared datasets not available")
    frame, schema = load_model_space("adult")  # domains from the clean table: public facts
    train, holdout, fresh = three_way_split(frame, 1500, 5)
    # plant canaries in real rows: categorical cells, the target, and a numeric cell
    train.loc[:9, "workclass"] = CANARIES[0]
    holdout.loc[:9, "native_country"] = CANARIES[1]
    train.loc[10:14, "income"] = CANARIES[2]
    train.loc[15, "fnlwgt"] = NUMERIC_CANARY
    synthetic = train.copy() if copy else fresh
    attacks = ["exact_copy", "dcr", "mia", "unique_qi", "singling_out", "linkability"]
    if copy:  # inference needs thousands of attacks to pass honest data (see Thresholds)
        attacks.append("inference")
    config = AuditPolicy(
        attacks=attacks,
        quasi_identifiers=["age", "sex", "race", "native_country"], secrets=["income"],
        linkability_aux=(["age", "sex", "race"], ["education", "occupation", "workclass"]),
        target="income", anonymeter_attacks=300 if copy else 500,
        singling_out_attacks=300 if copy else 500,
    )
    result = run_audit(train, holdout, synthetic, schema, config, seed=1)
    decision = decide(result, config.thresholds, dp_claim=True, require_dp_claim=True,
                      attacks_requested=config.attacks)
    report = build_report(
        scope={"dataset": "adult", "dataset_fingerprint": "sha256:" + "0" * 64,
               "policy": "test-policy", "policy_digest": "f" * 64, "release": "r1"},
        columns={n: {**v, "rule": "keep"} for n, v in schema.to_dict().items()},
        mechanism={"epsilon": 3.0, "delta": 1e-6, "unit": "row", "accountant": "prv",
                   "per_stage_epsilon": {"encoding": 0.3, "training": 2.7},
                   "cumulative_epsilon": 3.0},
        audit=result, decision=decision,
        versions={"privsynth": "0.1.0", "anonymeter": "1.1.0"},
    )
    paths = write_report(report, tmp_path / ("copy" if copy else "honest"))
    return report, decision, paths


@pytest.fixture(scope="module")
def honest(tmp_path_factory):
    return _audit(tmp_path_factory.mktemp("report"), copy=False)


@pytest.fixture(scope="module")
def copied(tmp_path_factory):
    return _audit(tmp_path_factory.mktemp("report"), copy=True)


def test_writes_json_and_html_atomically(honest):
    report, _, paths = honest
    assert [p.name for p in paths] == ["report.json", "report.html"]
    leftovers = [p.name for p in paths[0].parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    assert json.loads(paths[0].read_text()) == json.loads(json.dumps(report))


def test_json_validates_against_schema(honest, copied):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    for _report, _, paths in (honest, copied):
        jsonschema.validate(json.loads(paths[0].read_text()), schema)


def test_report_says_it_is_internal_and_not_covered_by_epsilon(honest):
    report, _, paths = honest
    assert report["internal"] is True and report["attack_metrics_covered_by_epsilon"] is False
    for text in (report["notice"], paths[1].read_text()):
        assert "INTERNAL TO THE DATA CONTROLLER" in text
        assert "computed on the raw" in text and "NOT covered" in text


def test_report_contents(honest, copied):
    report, decision, _ = honest
    assert decision.passed, decision.reasons
    assert report["decision"]["decision"] == "pass"
    names = {a["name"] for a in report["attacks"]}
    assert {"exact_copy_rate", "dcr_share", "mia_distance_auc", "mia_density_auc",
            "singling_out_univariate", "linkability"} <= names
    assert report["utility"]["tstr"]["real"]["accuracy"] > 0.7
    assert set(report["figures"]) >= {"roc", "dcr_histogram", "marginals",
                                      "association_difference"}
    copy_report, copy_decision, _ = copied
    assert "inference_income" in {a["name"] for a in copy_report["attacks"]}
    assert not copy_decision.passed and copy_report["decision"]["decision"] == "blocked"


@pytest.mark.parametrize("which", ["honest", "copied"])
def test_no_cell_value_of_a_real_row_in_any_written_file(which, request):
    _, _, paths = request.getfixturevalue(which)
    for path in paths:
        text = path.read_text()
        for canary in CANARIES:
            assert canary not in text, f"{canary} leaked into {path.name}"
        assert "987654321" not in text


def test_html_is_self_contained(honest):
    html = honest[2][1].read_text()
    lowered = html.lower()
    assert "<script" not in lowered and "<link" not in lowered and " src=" not in lowered
    assert "http://" not in lowered.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in lowered
    assert lowered.count("<svg") >= 5


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _run_chromium(exe: str, args: list[str], url: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
               f"--user-data-dir={profile}", *args, url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "HOME": profile})


@pytest.mark.parametrize("which,expected", [("honest", "RELEASE PASSED"),
                                            ("copied", "RELEASE BLOCKED")])
def test_html_renders_in_headless_chromium(which, expected, request, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium) - HTML not rendered")
    _, _, paths = request.getfixturevalue(which)
    url = paths[1].resolve().as_uri()
    dom = _run_chromium(exe, ["--dump-dom"], url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert expected in dom.stdout
    assert 'id="decision"' in dom.stdout and "INTERNAL TO THE DATA CONTROLLER" in dom.stdout
    assert 'id="stages"' in dom.stdout and 'id="columns"' in dom.stdout
    assert dom.stdout.count("<svg") >= 5
    shot = tmp_path / "page.png"
    res = _run_chromium(exe, [f"--screenshot={shot}", "--window-size=1200,2400"], url)
    assert res.returncode == 0 and shot.exists() and shot.stat().st_size > 10_000


def _release_shaped_report() -> dict:
    """Mechanism and columns as the pipeline writes them (manifest privacy, actions + schema)."""
    many = [f"cat{i:02d}" for i in range(MAX_CATEGORIES + 5)]
    return {
        "decision": {"passed": False, "reasons": ["blocked"]},
        "mechanism": {
            "unit": "one row", "epsilon": 0.99, "delta": 1e-6, "epsilon_allotted": 1.0,
            "delta_allotted": 1e-6, "composition": "basic (sum over charges)",
            "stages": {"encoding": {"epsilon": 0.1, "delta": 0.0},
                       "training": {"epsilon": 0.89, "delta": 1e-6}},
            "charges": [
                {"stage": "encoding", "mechanism": "threshold_domain", "epsilon": 0.05,
                 "delta": 0.0, "column": "zip", "params": {"threshold": 12.5, "sensitivity": 1}},
                {"stage": "encoding", "mechanism": "laplace_histogram", "epsilon": 0.05,
                 "delta": 0.0, "column": "age", "params": {"cells": 64, "sensitivity": 1.0}},
                {"stage": "training", "mechanism": "dp_sgd", "epsilon": 0.89, "delta": 1e-6,
                 "column": None, "params": {"sigma": 1.2345678, "q": 0.0123456, "steps": 179,
                                            "accountant": "prv", "max_grad_norm": 1.0}},
            ],
        },
        "columns": {
            "actions": {"name": "dropped", "zip": "generalized (zip3)", "age": "kept",
                        "sex": "kept", "ward": "kept", "visit": "kept", "ext": "kept"},
            "schema": {
                "zip": {"kind": "categorical", "bounds": None, "domain": many,
                        "bounds_source": None, "domain_source": "dp"},
                "age": {"kind": "integer", "bounds": [0.0, 90.0], "domain": None,
                        "bounds_source": "policy", "domain_source": None},
                "sex": {"kind": "categorical", "bounds": None, "domain": ["F", "M"],
                        "bounds_source": None, "domain_source": "policy"},
                "visit": {"kind": "datetime", "bounds": [16436.0, 20089.0], "domain": None,
                          "bounds_source": "policy", "domain_source": None},
                # an external audit reads these from the real rows: never listed in the page
                "ward": {"kind": "categorical", "bounds": None,
                         "domain": ["CANARY-ward-3f9a", "B"], "bounds_source": None,
                         "domain_source": None},
                "ext": {"kind": "numeric", "bounds": [1234.5678, 98765.4321], "domain": None,
                        "bounds_source": None, "domain_source": None},
            },
        },
    }


def test_mechanism_and_columns_are_tables_not_json_blobs():
    page = render_html(_release_shaped_report())
    for table in ("stages", "charges", "columns"):
        assert f"<table class='grid-table' id='{table}'>" in page, table
    mechanism = page[page.index('id="sec-mechanism">Privacy mechanism'):
                     page.index('id="sec-columns">Columns and rules')]
    columns = page[page.index('id="sec-columns">Columns and rules'):
                   page.index("<h2>Threat model")]
    for section in (mechanism, columns):
        assert "<code>{" not in section and "<code>[" not in section  # no raw JSON dumps
    # charges: one row each, readable parameters, a sum row
    assert mechanism.count("<tr><td>") >= 3 + 2
    for text in ("DP-SGD", "σ (noise multiplier) = <b>1.23457</b>", "q (sampling rate) = "
                 "<b>0.01235</b>", "steps = <b>179</b>", "accountant = <b>PRV</b>",
                 "C (clipping norm) = <b>1</b>", "threshold τ = <b>12.5</b>",
                 "Laplace threshold", "sum over charges", "allotted by the policy"):
        assert text in mechanism, text
    # columns: rule, kind, bounds and domains with their source
    assert "generalized (zip3)" in columns and "dropped" in columns
    assert "0 to 90" in columns and "2015-01-01 to 2025-01-01" in columns
    assert "F, M" in columns
    assert f"{MAX_CATEGORIES + 5} categories" in columns
    assert "cat00" in columns and f"cat{MAX_CATEGORIES - 1:02d}" in columns  # DP: public
    assert f"cat{MAX_CATEGORIES:02d}" not in columns and "and 5 more" in columns
    # facts not from the policy nor a DP mechanism: a count only, never the values
    assert "CANARY-ward" not in page and "1234" not in page and "98765" not in page
    assert "2 categories" in columns


# ----------------------------------------------------------------- figures (matplotlib SVG)

REFERENCE = Path(__file__).resolve().parents[1] / "audits/reference/adult-demo/report.json"


def _reference() -> dict:
    return json.loads(REFERENCE.read_text())


def _figure_svgs(page: str) -> dict[str, str]:
    """The inline SVG of each numbered figure, keyed by the figure's id."""
    out = {}
    for match in re.finditer(r"<figure id='([^']+)'>", page):
        rest = page[match.end():]
        out[match.group(1)] = rest[:rest.index("</figure>")]
    return out


def _texts(svg: str) -> list[str]:
    return [html_mod.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]


_NUMBER = re.compile(r"^[−-]?\d+(\.\d+)?$|^10\^|^\$?10")

# axis labels each figure must carry (x, y or legend text), read from the SVG's <text> nodes
_AXIS_TEXT = {
    "fig-risks": ["risk value", "95% interval", "gate threshold", "baseline"],
    "fig-roc": ["false-positive rate", "true-positive rate", "chance"],
    "fig-dcr": ["distance from a synthetic row", "synthetic rows", "closest training row",
                "closest holdout row"],
    "fig-fidelity": ["total variation distance", "best trivial generator", "real holdout"],
    "fig-tstr": ["score on the real holdout", "trained on synthetic rows", "trivial baseline",
                 "accuracy"],
    "fig-assoc": ["|association real − association synthetic|"],
}


@pytest.mark.parametrize("source", ["reference", "honest"])
def test_figures_have_axis_labels_ticks_and_text_inside_the_canvas(source, request):
    report = _reference() if source == "reference" else request.getfixturevalue("honest")[0]
    page = render_html(report)
    svgs = _figure_svgs(page)
    assert set(_AXIS_TEXT) <= set(svgs), sorted(svgs)
    for fig_id, needed in _AXIS_TEXT.items():
        svg = svgs[fig_id]
        texts = _texts(svg)
        joined = " | ".join(texts)
        for label in needed:
            assert label in joined, (fig_id, label, joined[:400])
        ticks = [t for t in texts if _NUMBER.match(t.strip())]
        assert len(ticks) >= 3, (fig_id, texts[:20])  # numbered tick labels
        assert 'id="' + fig_id + "-xtick_1" in svg or fig_id == "fig-assoc"
        # every text anchor lies inside the SVG's viewBox: nothing drawn off the canvas
        _, _, width, height = map(float, re.search(r'viewBox="([^"]+)"', svg).group(1).split())
        for x, y in re.findall(r'<text[^>]* x="([-\d.]+)" y="([-\d.]+)"', svg):
            assert -1 <= float(x) <= width + 1 and -1 <= float(y) <= height + 1, (fig_id, x, y)
        # the caption is HTML text beside the figure (it wraps, it is never clipped)
        assert "<figcaption><b>Figure " in svg


def test_every_risk_of_the_report_is_drawn_generically():
    report = _reference()
    extra = {"name": "targeted_mia_tpr", "attack": "targeted_mia", "value": 0.31,
             "ci_low": 0.12, "ci_high": 0.52, "baseline": None,
             "threshold_key": "targeted_mia_tpr", "threshold": 0.2, "gated": True,
             "passed": False, "details": {}}
    report["attacks"].append(extra)
    page = render_html(report)
    forest = " | ".join(_texts(_figure_svgs(page)["fig-risks"]))
    for a in report["attacks"]:
        assert a["name"] in forest, a["name"]
    assert "FAIL: upper 0.52 vs 0.2" in forest and "PASS: upper" in forest
    assert "REPORTED (not gated)" in forest  # reported-only risks are labelled in words
    # the WP29 inference criterion picks the new attack up and says it blocks
    inference = page[page.index("id='wp29-inference'"):]
    inference = inference[:inference.index("</div>")]
    assert "targeted_mia_tpr" in inference and "blocks the release" in inference


def test_intervals_and_negative_excesses_are_explained():
    page = render_html(_reference())
    how = page[page.index('id="how-to-read"'):]
    how = how[:how.index("</div>")]
    assert "95% confidence interval" in how and "about 95 in 100" in how
    assert "negative" in how and "minus the same rate against the holdout rows" in how
    # the forest plot's caption carries the same sentence
    assert "negative estimate" in _figure_svgs(page)["fig-risks"]


def test_tstr_uses_the_same_metric_for_real_and_synthetic_with_the_trivial_baseline():
    report = _reference()
    page = render_html(report)
    table = page[page.index("id='tab-tstr'"):]
    table = table[:table.index("</table>")]
    tstr = report["utility"]["tstr"]
    assert (f"<th>accuracy</th><td>{tstr['real']['accuracy']:.4f}</td><td>"
            f"{tstr['synthetic']['accuracy']:.4f}</td>") in table
    assert f"{tstr['majority_share']:.4g}" in table and "majority class" in table
    # AUC was measured for the real model only: said in words, not dumped as JSON
    assert "<th>ROC AUC</th>" in table and "not computed" in table
    utility = page[page.index('id="sec-utility"'):page.index('id="sec-hipaa"')]
    assert "<code>{" not in utility  # no raw JSON for either model


def test_non_public_bounds_never_label_a_marginal_axis():
    report = _release_shaped_report()
    report["figures"] = {"marginals": {
        "ext": {"kind": "numeric", "edges": [1234.5678, 50000.0, 98765.4321],
                "real": [0.5, 0.4, 0.1], "synthetic": [0.4, 0.5, 0.1], "tvd": 0.1},
        "age": {"kind": "numeric", "edges": [0.0, 45.0, 90.0], "real": [0.5, 0.5, 0.0],
                "synthetic": [0.6, 0.4, 0.0], "tvd": 0.1}}}
    page = render_html(report)
    assert "1234" not in page and "98765" not in page and "50,000" not in page
    assert "bin 1" in page and "bin 2" in page  # numbered, not labelled
    assert "0–45" in page and "45–90" in page  # public bounds: labelled bins


def test_page_has_no_script_and_no_external_reference(honest):
    page = honest[2][1].read_text()
    lowered = page.lower()
    for banned in ("<script", "<link", "<img", "<iframe", "<object", " src=", "@import",
                   "javascript:", "onload=", "onclick="):
        assert banned not in lowered, banned
    assert set(re.findall(r"url\(([^)]*)\)", page)) and all(
        u.startswith("#") for u in re.findall(r"url\(([^)]*)\)", page))
    assert all(h.startswith("#") for h in re.findall(r'href=["\']([^"\']*)', page))
    assert re.findall(r"https?://[^\s\"'<]+", page) == ["http://www.w3.org/2000/svg"] * len(
        re.findall(r"https?://[^\s\"'<]+", page))
    ids = re.findall(r'\bid=["\']([^"\']+)', page)
    assert len(ids) == len(set(ids))  # element ids unique across the inline figures


# ----------------------------------------------------------------- regulator sections


def test_regulator_sections_are_filled_from_the_reports_own_data(honest, copied):
    report, decision, paths = honest
    reg = report["regulatory"]
    assert reg == regulatory_sections(report)  # the JSON and the page say the same
    page = paths[1].read_text()
    for section in ("sec-hipaa", "sec-gdpr", "sec-nist", "sec-representativeness"):
        assert f'id="{section}"' in page, section
    # HIPAA: one Safe Harbor row per column, from the column actions
    assert [r["column"] for r in reg["hipaa"]["safe_harbor"]] == list(report["columns"])
    ed = reg["hipaa"]["expert_determination"]
    for field in ("recipient", "reasonably_available_information", "expiry"):
        assert ed[field]["value"] is None and ed[field]["fill"] == "officer"
    assert page.count(TO_FILL) >= 3 + 1  # three fields and the explanation
    checks = report["decision"]["checks"]
    assert ed["results"]["value"].endswith(
        f"{sum(c['passed'] for c in checks)} of {len(checks)} gated risks at or below "
        "threshold")
    assert ed["threshold"]["value"] == {c["threshold_key"]: c["threshold"] for c in checks}
    assert all(a in ed["method"]["value"] for a in report["attacks_requested"])
    # WP29: each criterion lists the risks of its attacks, with the gate's verdict
    wp = reg["gdpr_wp29"]
    assert {r["name"] for r in wp["singling_out"]["risks"]} >= {
        "singling_out_univariate", "exact_copy_rate", "unique_qi_copy_rate"}
    assert [r["name"] for r in wp["linkability"]["risks"]] == ["linkability"]
    assert "mia_distance_auc" in {r["name"] for r in wp["inference"]["risks"]}
    assert wp["singling_out"]["verdict"] == "every gated risk below its threshold"
    copy_wp = copied[0]["regulatory"]["gdpr_wp29"]
    failed = {c["name"] for c in copied[0]["decision"]["checks"] if not c["passed"]}
    blocked = {k for k, v in copy_wp.items() if v["verdict"].startswith("risk above")}
    assert blocked and all(any(r["name"] in failed for r in copy_wp[k]["risks"])
                           for k in blocked)
    # NIST SP 800-226: the mechanism's own numbers
    nist = reg["nist_sp_800_226"]
    assert (nist["epsilon"], nist["delta"], nist["unit_of_privacy"]) == (3.0, 1e-6, "row")
    assert nist["trust_model"].startswith("central")
    # representativeness: the audit's quasi-identifiers that look like protected attributes
    rep = reg["representativeness"]
    assert rep["source"] == "quasi_identifiers"
    assert [a["attribute"] for a in rep["attributes"]] == ["age", "sex", "race",
                                                           "native_country"]
    sex = next(a for a in rep["attributes"] if a["attribute"] == "sex")
    marg = report["figures"]["marginals"]["sex"]
    assert [g["real_share"] for g in sex["groups"]] == marg["real"]
    assert [g["group"] for g in sex["groups"]] == marg["labels"]
    assert "fig-groups" in _figure_svgs(page)


def test_regulator_sections_react_to_the_data():
    report = _release_shaped_report()
    report["columns"]["actions"]["email"] = "kept"  # a kept column that looks like (F)
    reg = regulatory_sections(report)
    status = {r["column"]: r["status"] for r in reg["hipaa"]["safe_harbor"]}
    assert status["name"] == "removed" and status["zip"] == "generalized"
    assert status["email"] == "check" and status["age"] == "kept"
    hazards = {h["hazard"]: h["status"] for h in reg["nist_sp_800_226"]["implementation_hazards"]}
    assert hazards["bounds and categories read from the data without DP"] == "open: 2 column(s)"
    assert reg["representativeness"]["source"] == "not_configured"
    page = render_html(report)
    assert "CHECK: kept, name suggests (F) e-mail" in page
    assert "id='representativeness-status'>Not configured." in page
    # a protected-attribute list in the audit settings takes precedence over the heuristic
    report["audit_settings"] = {"protected_attributes": ["sex"]}
    report["figures"] = {"marginals": {"sex": {"kind": "categorical", "labels": ["F", "M"],
                                               "real": [0.5, 0.5], "synthetic": [0.3, 0.7],
                                               "tvd": 0.2}}}
    rep = regulatory_sections(report)["representativeness"]
    assert rep["source"] == "policy"
    assert [round(g["ratio"], 3) for g in rep["attributes"][0]["groups"]] == [0.6, 1.4]


def test_reference_report_with_regulatory_sections_validates_against_schema():
    jsonschema = pytest.importorskip("jsonschema")
    report = _reference()
    report["regulatory"] = regulatory_sections(report)
    jsonschema.validate(report, json.loads(SCHEMA_PATH.read_text()))
    bad = json.loads(json.dumps(report))
    del bad["regulatory"]["hipaa"]["expert_determination"]["expiry"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, json.loads(SCHEMA_PATH.read_text()))


# ----------------------------------------------------------------- layout and PDF (Chromium)


@pytest.mark.parametrize("width,height", [(1280, 2400), (390, 2400)])
def test_screenshot_at_desktop_and_narrow_width(width, height, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium) - no screenshot")
    page = tmp_path / "report.html"
    page.write_text(render_html(_reference()))
    shot = tmp_path / f"report-{width}.png"
    res = _run_chromium(exe, [f"--screenshot={shot}", f"--window-size={width},{height}",
                              "--hide-scrollbars"], page.resolve().as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    got_w, got_h = struct.unpack(">II", png[16:24])
    assert (got_w, got_h) == (width, height)
    assert len(png) > 20_000  # a rendered page, not a blank one
    # the figures scale to the width: no fixed-size SVG wider than a phone
    assert "<svg role='img'" in page.read_text()
    assert not re.search(r"<svg[^>]* width=\"\d", page.read_text())


def test_pdf_export(honest, tmp_path):
    if _chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium) - no PDF")
    out = export_pdf(honest[2][1], tmp_path / "filed" / "report.pdf")
    data = out.read_bytes()
    assert data[:5] == b"%PDF-" and len(data) > 20_000 and b"%%EOF" in data[-1024:]


def test_pdf_export_without_chromium_says_so(honest, tmp_path, monkeypatch):
    import privsynth.release.report as report_mod

    monkeypatch.setattr(report_mod, "find_chromium", lambda: None)
    with pytest.raises(ChromiumNotFoundError, match="apt-get install chromium"):
        report_mod.export_pdf(honest[2][1], tmp_path / "x.pdf")
    assert not (tmp_path / "x.pdf").exists()


def test_report_pdf_command(honest, tmp_path):
    from typer.testing import CliRunner

    from privsynth.cli import app

    missing = CliRunner().invoke(app, ["report", "pdf", str(tmp_path / "none.html"), "-o",
                                       str(tmp_path / "a.pdf")])
    assert missing.exit_code == 1 and "no report page" in missing.output
    if _chromium() is None:
        pytest.skip("chromium is not installed - the success path is not run")
    ok = CliRunner().invoke(app, ["report", "pdf", str(honest[2][1]), "-o",
                                  str(tmp_path / "b.pdf")])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "b.pdf").read_bytes()[:5] == b"%PDF-"
