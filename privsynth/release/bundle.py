"""Write a release bundle atomically: a temporary folder, then one rename.

Layout::

    <out>/public/     shareable, and present only when the gate passed: synthetic.csv,
                      synthetic.parquet, manifest.json (DP outputs and public facts, with the
                      SHA-256 of each public file)
    <out>/internal/   for the data controller: report.json, report.html, decision.json,
                      run.json (exact counts, ledger reservations, the gate's reasons)

A blocked release and a seeded development run get ``internal/`` only: nothing in them is fit
to share. A copy of the report also goes to ``audits/<dataset>/<release>/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from privsynth.errors import PrivsynthError


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: Path, data: Any) -> None:
    """Pretty JSON with a trailing newline."""
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def _write_public(release, public: Path) -> None:
    """The shareable part: synthetic files and the public manifest listing their hashes."""
    if release.decision.development_run:  # the gate never passes one; refuse to be sure
        raise PrivsynthError("a seeded development run has no public part")
    public.mkdir()
    release.synthetic.to_csv(public / "synthetic.csv", index=False)
    release.synthetic.to_parquet(public / "synthetic.parquet", index=False)
    files = {p.name: sha256_file(p) for p in sorted(public.iterdir())}
    write_json(public / "manifest.json", {**release.manifest, "files": files})


def write_bundle(release, out: Path, *, audits_dir: str | Path | None = "audits") -> Path:
    """Write ``release`` to ``out``; refuses to overwrite an existing bundle."""
    from privsynth.release.report import write_report  # noqa: PLC0415

    out = out.resolve()
    if out.exists():
        raise PrivsynthError(f"{out}: already exists; releases are never overwritten, "
                             "choose a new --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        internal = staging / "internal"
        internal.mkdir()
        if release.decision.passed:
            _write_public(release, staging / "public")
        write_report(release.report, internal)
        write_json(internal / "decision.json", release.decision.to_dict())
        write_json(internal / "run.json", release.run_record)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if audits_dir is not None:
        target = Path(audits_dir) / release.policy.dataset.id / release.release_id
        target.mkdir(parents=True, exist_ok=True)
        write_report(release.report, target)
    return out
