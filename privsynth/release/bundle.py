"""Write a release bundle atomically and sign it: a staging folder beside ``out``, then one rename.

Layout and permissions (``public/`` is for the recipients' group, ``internal/`` for the owner)::

    <out>/                    0750
      statement.dsse.json     0600  signed statement over EVERY file below (paths, SHA-256), the
                                    release id, the gate decision, the ledger head after the
                                    release, the signing key id
      public/                 0750  present only when the gate passed
        synthetic.csv         0640
        synthetic.parquet     0640
        manifest.json         0640  DP outputs and public facts, the SHA-256 of each public file
        statement.dsse.json   0640  signed statement over public/ alone: a recipient's copy of
                                    public/ verifies on its own with the public key
      internal/               0700  for the data controller
        report.json, report.html, decision.json, run.json     0600
        split.json            0600  which rows trained and which were the audit's holdout (row
                                    positions, never a value), for `privsynth audit --split`

A blocked release and a seeded development run get ``internal/`` only: nothing in them is fit
to share. The statements are signed with the installation key (:mod:`privsynth.keys`), which
never lives in or beside a bundle. Give recipients the group (``chgrp``) and the public key
(``privsynth keys export``) out of band.

Staging: ``<parent>/.privsynth-staging-<name>-<random>/``, locked (``flock``) by the writing
process. A staging folder whose writer is gone (killed) is removed by the next write into the
same parent; ``verify`` refuses one. A second copy of the internal report is written only where
the caller says (``audits_dir``), never to an implicit folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from privsynth.errors import PrivsynthError
from privsynth.keys import InstallationKeys, check_apart, load_keys
from privsynth.release.signing import (
    BUNDLE_PREDICATE,
    PUBLIC_PREDICATE,
    STATEMENT_FILE,
    build_statement,
    sign_statement,
)

STAGING_PREFIX = ".privsynth-staging-"
STALE_AFTER_S = 60.0  # a staging folder younger than this is never touched (its writer may be
# between mkdir and taking its lock)
MODES = {"root": 0o750, "public_dir": 0o750, "public_file": 0o640,
         "internal_dir": 0o700, "internal_file": 0o600, "root_statement": 0o600}

try:  # POSIX advisory locks tell a dead writer's staging folder from a live one
    import fcntl
except ImportError:  # pragma: no cover - Windows: age alone decides
    fcntl = None  # type: ignore[assignment]


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


def _lock(path: Path) -> int | None:
    """Hold an exclusive lock on folder ``path`` for this process's lifetime (or until closed)."""
    if fcntl is None:
        return None
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def clean_stale_staging(parent: Path, *, stale_after_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove staging folders in ``parent`` left by a writer that died (no lock held, older than
    ``stale_after_s``). Returns what was removed; a live writer's folder is never touched."""
    try:
        candidates = [p for p in Path(parent).iterdir() if p.name.startswith(STAGING_PREFIX)]
    except OSError:
        return []
    removed = []
    for path in candidates:
        try:
            if path.is_symlink() or not path.is_dir():
                continue
            if time.time() - path.lstat().st_mtime < stale_after_s:
                continue
            fd = _lock(path)
        except OSError:  # locked by a live writer, or gone meanwhile
            continue
        try:
            with contextlib.suppress(OSError):
                shutil.rmtree(path)
                removed.append(path)
        finally:
            if fd is not None:
                os.close(fd)
    return removed


def bundle_files(root: Path) -> list[str]:
    """Every regular file under ``root`` as a POSIX path relative to it, sorted (no links)."""
    out = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        base = Path(folder).relative_to(root)
        out += [(base / f).as_posix() for f in files]
        dirs.sort()
    return sorted(out)


def sign_public(public: Path, release_id: str, keys: InstallationKeys) -> None:
    """Write ``public/statement.dsse.json``: every file of ``public`` signed with ``keys``."""
    subjects = {name: sha256_file(public / name) for name in bundle_files(public)}
    predicate = {"release_id": release_id, "gate": {"passed": True},
                 "key_id": keys.key_id, "public_key": keys.public_key_bytes().hex()}
    statement = build_statement(subjects, PUBLIC_PREDICATE, predicate)
    (public / STATEMENT_FILE).write_text(sign_statement(statement, keys), encoding="utf-8")


def _sign_bundle(root: Path, release, keys: InstallationKeys) -> None:
    subjects = {name: sha256_file(root / name) for name in bundle_files(root)}
    decision = release.decision
    predicate = {
        "release_id": release.release_id,
        "gate": {"passed": bool(decision.passed), "development_run": bool(decision.development_run),
                 "dp_claim": bool(decision.dp_claim)},
        "ledger_head": (release.run_record or {}).get("ledger_head"),
        "key_id": keys.key_id,
        "public_key": keys.public_key_bytes().hex(),
    }
    statement = build_statement(subjects, BUNDLE_PREDICATE, predicate)
    (root / STATEMENT_FILE).write_text(sign_statement(statement, keys), encoding="utf-8")


def _set_modes(root: Path) -> None:
    """Explicit modes, whatever the umask: the group reads public/, only the owner internal/."""
    for sub, dir_mode, file_mode in (("public", MODES["public_dir"], MODES["public_file"]),
                                     ("internal", MODES["internal_dir"],
                                      MODES["internal_file"])):
        folder = root / sub
        if folder.is_dir():
            for path in folder.iterdir():
                path.chmod(file_mode)
            folder.chmod(dir_mode)
    (root / STATEMENT_FILE).chmod(MODES["root_statement"])
    root.chmod(MODES["root"])


def write_bundle(release, out: Path, *, audits_dir: str | Path | None = None) -> Path:
    """Write ``release`` to ``out``, signed; refuses to overwrite an existing bundle.

    ``audits_dir``: where a second copy of the internal report goes (``<dir>/<dataset>/<id>/``,
    owner-only); ``None`` (the default) writes no copy.
    """
    from privsynth.release.report import write_report  # noqa: PLC0415

    out = Path(out).resolve()
    if out.exists() or out.is_symlink():
        raise PrivsynthError(f"{out}: already exists; releases are never overwritten, "
                             "choose a new --out")
    if out.name.startswith(STAGING_PREFIX):
        raise PrivsynthError(f"{out}: names starting with {STAGING_PREFIX!r} are reserved for "
                             "staging folders; choose another --out")
    check_apart(out, "bundle")
    keys = load_keys(create=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(out.parent)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{out.name[:60]}-", dir=out.parent))
    lock = None
    try:
        lock = _lock(staging)
        internal = staging / "internal"
        internal.mkdir()
        if release.decision.passed:
            _write_public(release, staging / "public")
            sign_public(staging / "public", release.release_id, keys)
        write_report(release.report, internal)
        write_json(internal / "decision.json", release.decision.to_dict())
        write_json(internal / "run.json", release.run_record)
        if getattr(release, "split", None) is not None:  # row positions only; never public/
            write_json(internal / "split.json", release.split)
        _sign_bundle(staging, release, keys)
        _set_modes(staging)
        os.mkdir(out)  # claims the name atomically; the rename then replaces this empty folder
        try:
            os.replace(staging, out)
        except BaseException:
            with contextlib.suppress(OSError):
                out.rmdir()
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if lock is not None:
            os.close(lock)
    if audits_dir is not None:
        target = Path(audits_dir) / release.policy.dataset.id / release.release_id
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        target.chmod(0o700)
        write_report(release.report, target)
    return out
