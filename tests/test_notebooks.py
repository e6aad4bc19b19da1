"""The notebooks in notebooks/ run top to bottom with nbclient (public API only), show what they
say they show, and leave nothing behind.

The committed notebooks carry their outputs (so they render on GitHub); to refresh them after a
change, run ``python tests/test_notebooks.py`` (executes each one in place, about 2-3 minutes on
2 cores)."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 300
# the only module outside the top-level `privsynth` namespace a notebook may import from
PUBLIC_MODULES = {"privsynth.audit.external"}


def execute(path: Path, out: Path | None = None):
    """Execute a copy of the notebook (the file itself is not touched) from notebooks/."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
    client.execute()
    if out is not None:
        nbformat.write(notebook, out)
    return notebook


def outputs(notebook) -> tuple[str, list[dict]]:
    """All stream text (stdout and stderr) and every output, in cell order."""
    every = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") for o in every if o.output_type == "stream")
    return text, every


def stdout_of(notebook) -> str:
    return "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code"
                   for o in c.outputs if o.output_type == "stream" and o.name == "stdout")


@pytest.fixture()
def run(tmp_path, monkeypatch):
    """Execute a notebook with TMPDIR in tmp_path, check what every notebook must hold, and
    return it with its stdout."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))

    def _run(name: str):
        path = NOTEBOOKS_DIR / name
        notebook = execute(path, tmp_path / f"executed-{name}")
        text, every = outputs(notebook)
        assert not [o for o in every if o.output_type == "error"]
        assert "Traceback" not in text
        # the notebook removed its temporary folder (ledger, bundle, keys)
        assert not list(tmp_path.glob("privsynth-notebook-*"))
        # at least one figure, drawn inline
        assert any("image/png" in o.get("data", {}) for o in every)
        return notebook, stdout_of(notebook)

    return _run


def test_every_notebook_is_tested_and_committed_with_its_outputs():
    assert [p.name for p in NOTEBOOKS] == ["01_hospital_release.ipynb",
                                           "02_two_institutions_and_a_partner.ipynb",
                                           "03_auditing_another_tool.ipynb"]
    assert not list(NOTEBOOKS_DIR.glob("*.py"))  # the old percent-format walkthrough is gone
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        code = [c for c in notebook.cells if c.cell_type == "code"]
        counts = [c.execution_count for c in code]
        assert counts == list(range(1, len(code) + 1)), (path.name, "run top to bottom")
        assert all(c.outputs for c in code[1:]), (path.name, "committed with outputs")
        assert not [o for c in code for o in c.outputs if o.output_type == "error"], path.name


def test_notebooks_use_the_public_api_only():
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        source = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
        imported = set(re.findall(r"^\s*(?:from|import)\s+(privsynth\.[\w.]+)", source, re.M))
        assert imported <= PUBLIC_MODULES, (path.name, imported - PUBLIC_MODULES)
        assert not re.search(r"\bps\._", source), path.name
        assert "/work/shared" not in source, path.name  # users do not have the shared tables


@pytest.mark.slow
def test_hospital_release_notebook(run):
    notebook, out = run("01_hospital_release.ipynb")
    refusal = next(line for line in out.splitlines() if line.startswith("refused:"))
    assert "'email'" in refusal and "no rule" in refusal
    # the refusal came before the reservation: the ledger holds the registration only
    assert "ledger entries: ['register']" in out
    assert "policy check $WORK/hipaa.yaml --rows 240" in out
    assert re.search(r"^gate: (PASSED|BLOCKED)$", out, re.M)
    assert "claim: (" in out and ")-differential privacy" in out
    assert re.search(r"budget verify .*# exit 0\nok ", out)
    html = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
            if "Risks against thresholds" in o.get("data", {}).get("text/html", "")]
    assert html, "the report's risk section is shown inline"


@pytest.mark.slow
def test_two_institutions_and_a_partner_notebook(run):
    _, out = run("02_two_institutions_and_a_partner.ipynb")
    assert re.search(r"^North: PASSED", out, re.M), "the partner needs a public copy"
    assert "census-north │ sum" in out and "census-south │ sum" in out
    assert re.search(r"North ledger entries: \['register', 'reserve', 'charge", out)
    assert re.search(r"verify \S+ --public-key \S+north\.pub +# exit 0\nok ", out)
    assert re.search(r"verify \S+ --public-key \S+south\.pub +# exit 1\nproblem: .*not the "
                     r"expected key", out)
    # the partner's command-line audit (no --bundle: it has no --public-key) and the Python
    # one, whose DP claim is backed by the copy verified under North's key
    assert re.search(r"privsynth audit .*--out \S+ +# exit [02]\n(PASSED|BLOCKED) ", out)
    assert "DP claim backed by the verified bundle: True" in out


@pytest.mark.slow
def test_auditing_another_tool_notebook(run):
    notebook, out = run("03_auditing_another_tool.ipynb")
    first = out.index("gate: BLOCKED")  # the kernel sampler, audited from Python
    reasons = out[first:out.index("privsynth audit")]
    for check in ("exact_copy_rate", "dcr_share", "mia_distance_auc"):
        assert f"threshold_exceeded: {check} upper bound" in reasons, check
    assert re.search(r"privsynth audit .*# exit 2\nBLOCKED ", out)
    # the honest release was gated and carries a DP claim
    assert re.search(r"^gate: (PASSED|BLOCKED) .*\nclaim: \([\d.]+, 1e-06\)-differential", out,
                     re.M)


if __name__ == "__main__":  # refresh the committed outputs in place
    for path in sys.argv[1:] and [Path(a) for a in sys.argv[1:]] or NOTEBOOKS:
        started = time.monotonic()
        nbformat.write(execute(path), path)
        print(f"{path.name}: {time.monotonic() - started:.0f} s")
