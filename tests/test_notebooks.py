"""The walkthroughs in notebooks/ run top to bottom on a small sample (public API only)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.py"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_walkthrough_runs(notebook, monkeypatch, tmp_path):
    monkeypatch.setenv("PRIVSYNTH_WALKTHROUGH_ROWS", "3000")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    namespace = runpy.run_path(str(notebook), run_name="__main__")
    assert namespace["problems"] == []
    public_dir = namespace["bundle"] / "public"
    public = sorted(p.name for p in public_dir.iterdir()) if public_dir.exists() else []
    expected = ["manifest.json", "synthetic.csv", "synthetic.parquet"]
    assert namespace["bundle"].joinpath("public").exists() == namespace["release"].passed
    if namespace["release"].passed:
        assert public == expected
