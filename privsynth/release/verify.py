"""Check a release bundle months later: hashes, decision, and epsilon recomputed from inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

from privsynth.release.bundle import sha256_file
from privsynth.release.manifest import recompute_epsilon


def verify_bundle(bundle: Path) -> list[str]:
    """Problems found in ``bundle`` (empty when it verifies)."""
    manifest_path = bundle / "public" / "manifest.json"
    if not manifest_path.exists():
        return [f"{manifest_path}: missing; this is not a privsynth release bundle"]
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        return [f"{manifest_path}: not valid JSON ({exc.msg} at line {exc.lineno})"]
    problems = _file_problems(bundle / "public", manifest)
    recomputed = recompute_epsilon(manifest)
    stated = manifest["privacy"]["epsilon"]
    if not math.isclose(recomputed, stated, rel_tol=1e-9, abs_tol=1e-12):
        problems.append(f"ε stated {stated!r} but recomputed {recomputed!r} from the charges")
    if recomputed > manifest["privacy"]["epsilon_allotted"] + 1e-12:
        problems.append("ε spent exceeds the policy's allotment")
    if not manifest["decision"]["passed"] and manifest.get("files"):
        problems.append("a blocked release lists synthetic files")
    return problems


def _file_problems(public: Path, manifest: dict) -> list[str]:
    problems = []
    listed = manifest.get("files", {})
    for name, digest in listed.items():
        path = public / name
        if not path.exists():
            problems.append(f"{name}: listed in the manifest but missing")
        elif sha256_file(path) != digest:
            problems.append(f"{name}: SHA-256 differs from the manifest (file changed)")
    extra = sorted(p.name for p in public.iterdir() if p.name not in listed
                   and p.name != "manifest.json")
    if extra:
        problems.append(f"files not in the manifest: {extra}")
    return problems
