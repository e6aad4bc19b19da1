"""Check a release bundle months later: the public part's files, and every charge recomputed.

What is checked, for a bundle with a public part:

* the manifest's format, neighbouring relation and seed mode (a seeded development run never has
  a public part, so one that claims to is a forgery or a bug);
* every charge's ε and δ recomputed from its recorded inputs (discrete Laplace: scale and
  sensitivity; threshold: scale and τ; DP-SGD: σ, q, steps through the accountant), their sums
  against the stated totals and the policy's allotment; a DP-SGD charge planned from the DP row
  count and a ``noisy_count`` charge present;
* every listed file present, a plain file inside the bundle, with its SHA-256; nothing unlisted;
  the synthetic CSV has exactly the stated number of rows.

A bundle without a public part (blocked, or a development run) has nothing to share; verify says
so, and checks that its internal decision agrees.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from privsynth.errors import PrivsynthError
from privsynth.release.bundle import sha256_file
from privsynth.release.manifest import FORMAT, RELATION

NO_PUBLIC_PART = "no public part: the release was blocked or is a development run"


def verify_bundle(bundle: Path) -> list[str]:
    """Problems found in ``bundle`` (empty when it verifies)."""
    bundle = Path(bundle)
    if not bundle.is_dir():
        return [f"{bundle}: not a folder; give a release bundle folder"]
    public = bundle / "public"
    if not public.exists():
        return _no_public_part(bundle)
    manifest_path = public / "manifest.json"
    if not manifest_path.is_file() or manifest_path.is_symlink():
        return [f"{manifest_path}: missing; this is not a privsynth release bundle"]
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return [f"{manifest_path}: not valid JSON ({type(exc).__name__})"]
    try:
        return (_header_problems(manifest) + _charge_problems(manifest)
                + _file_problems(public, manifest))
    except (KeyError, TypeError, ValueError, PrivsynthError) as exc:
        return [f"{manifest_path}: malformed manifest ({type(exc).__name__}: {exc})"]


def _no_public_part(bundle: Path) -> list[str]:
    decision = bundle / "internal" / "decision.json"
    if not decision.is_file():
        return [f"{bundle}: neither a public part nor internal/decision.json; not a bundle"]
    try:
        passed = json.loads(decision.read_text(encoding="utf-8")).get("passed")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return [f"{decision}: not valid JSON"]
    if passed is not False:
        return [f"{bundle}: the internal decision says released, but there is no public part"]
    return []


def _header_problems(manifest: dict) -> list[str]:
    problems = []
    if manifest.get("format") != FORMAT:
        problems.append(f"format is {manifest.get('format')!r}, expected {FORMAT!r}")
    privacy = manifest["privacy"]
    if privacy.get("neighbouring_relation") != RELATION:
        problems.append(f"neighbouring relation {privacy.get('neighbouring_relation')!r} is not "
                        f"the one privsynth accounts under ({RELATION!r})")
    if privacy.get("seed_mode") != "os-entropy":
        problems.append("seed mode is not os-entropy: a seeded development run carries no DP "
                        "claim and must never have a public part")
    return problems


def recompute_charges(manifest: dict) -> list[tuple[float, float]]:
    """(ε, δ) of every charge of a manifest, recomputed from its recorded inputs alone."""
    from privsynth.privacy.mechanisms import charge_cost  # noqa: PLC0415 (heavy import)

    return [charge_cost(c["mechanism"], c["params"], c["delta"])
            for c in manifest["privacy"]["charges"]]


def _charge_problems(manifest: dict) -> list[str]:
    privacy = manifest["privacy"]
    problems: list[str] = []
    total_eps = total_delta = 0.0
    costs = recompute_charges(manifest)
    for i, (charge, (eps, delta)) in enumerate(zip(privacy["charges"], costs, strict=True),
                                               start=1):
        label = f"charge {i} ({charge['mechanism']}, column {charge.get('column')})"
        if not _close(eps, charge["epsilon"]):
            problems.append(f"{label}: ε stated {charge['epsilon']!r} but recomputed {eps!r}")
        if not _close(delta, charge["delta"]):
            problems.append(f"{label}: δ stated {charge['delta']!r} but recomputed {delta!r}")
        total_eps += eps
        total_delta += delta
    if not _close(total_eps, privacy["epsilon"]):
        problems.append(f"ε stated {privacy['epsilon']!r} but the charges sum to {total_eps!r}")
    if not _close(total_delta, privacy["delta"]):
        problems.append(f"δ stated {privacy['delta']!r} but the charges sum to {total_delta!r}")
    if total_eps > privacy["epsilon_allotted"] + 1e-9:
        problems.append("ε spent exceeds the policy's allotment")
    if total_delta > privacy["delta_allotted"] * (1 + 1e-9):
        problems.append("δ spent exceeds the policy's allotment")
    mechanisms = [c["mechanism"] for c in privacy["charges"]]
    if "noisy_count" not in mechanisms:
        problems.append("no noisy_count charge: the row count that sets q and the output size "
                        "was not released under DP")
    sgd = [c for c in privacy["charges"] if c["mechanism"] == "dp_sgd"]
    if not sgd:
        problems.append("no DP-SGD charge: the generator was not trained under DP")
    for c in sgd:
        if c["params"].get("row_count") != "dp":
            problems.append("a DP-SGD charge was planned from an exact row count")
    return problems


def _file_problems(public: Path, manifest: dict) -> list[str]:
    problems = []
    listed = manifest.get("files") or {}
    if "synthetic.csv" not in listed:
        problems.append("the manifest lists no synthetic.csv")
    for name, digest in listed.items():
        path = public / name
        if Path(name).name != name or path.is_symlink() or not path.is_file():
            problems.append(f"{name}: listed in the manifest but not a plain file in public/")
        elif sha256_file(path) != digest:
            problems.append(f"{name}: SHA-256 differs from the manifest (file changed)")
    extra = sorted(p.name for p in public.iterdir()
                   if p.name not in listed and p.name != "manifest.json")
    if extra:
        problems.append(f"files not in the manifest: {extra}")
    csv = public / "synthetic.csv"
    if csv.is_file() and not csv.is_symlink():
        rows = len(pd.read_csv(csv, dtype=str, keep_default_na=False))
        if rows != manifest.get("synthetic_rows"):
            problems.append(f"synthetic.csv has {rows} rows; the manifest states "
                            f"{manifest.get('synthetic_rows')}")
    return problems


def _close(a: float, b: float) -> bool:
    return isinstance(b, int | float) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
