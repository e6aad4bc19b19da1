"""The audit report: schema-valid JSON, a self-contained HTML page that renders in headless
Chromium and shows the decision, and never a cell value of a real row (canary test)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from privsynth.audit.runner import run_audit
from privsynth.audit.testing import DATASETS, load_model_space, three_way_split
from privsynth.gate import decide
from privsynth.policy.model import AuditPolicy
from privsynth.release.report import MAX_CATEGORIES, build_report, render_html, write_report

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
    mechanism = page[page.index("<h2>Privacy mechanism"):page.index("<h2>Columns and rules")]
    columns = page[page.index("<h2>Columns and rules"):page.index("<h2>Threat model")]
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
