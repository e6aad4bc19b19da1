"""The installation key store: one Ed25519 signing key and one MAC secret per installation.

Why: a release bundle and the budget ledger must be tamper-evident against someone who can edit
the files they live in. The signing key signs each bundle's statement (verifiable by anyone
holding the public key); the MAC secret keys the ledger's hash chain. Both live in one file in
:func:`key_dir` (``$PRIVSYNTH_KEY_DIR``, else ``~/.config/privsynth/keys``), a folder created
``0700`` with the file ``0600``, and never beside a ledger or a bundle (:func:`check_apart`): an
insider who can rewrite a bundle or the ledger must not find the key next to it.

File format (``installation.key``, text)::

    privsynth-installation-key/1
    <64 hex chars: the Ed25519 private key's 32-byte seed>
    <64 hex chars: the 32-byte MAC secret>

The public key is exported as 64 hex characters (``privsynth keys export``); its id is the first
16 hex characters of the SHA-256 of the raw 32-byte public key.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from privsynth.errors import PrivsynthError

ENV = "PRIVSYNTH_KEY_DIR"
KEY_FILE = "installation.key"
_MAGIC = "privsynth-installation-key/1"
_HKDF_SALT = b"privsynth installation MAC keys v1"


class KeyStoreError(PrivsynthError):
    """The installation keys are missing, unreadable, malformed or too widely readable."""


def key_dir() -> Path:
    """The key folder: ``$PRIVSYNTH_KEY_DIR``, else ``~/.config/privsynth/keys``; made ``0700``."""
    configured = os.environ.get(ENV)
    path = Path(configured).expanduser() if configured else (
        Path.home() / ".config" / "privsynth" / "keys")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(0o700)
    return path


def key_id_of(public_key: bytes) -> str:
    """The id of a raw 32-byte Ed25519 public key: first 16 hex chars of its SHA-256."""
    return hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True)
class InstallationKeys:
    """This installation's signing key and MAC secret. The secrets never appear in a repr."""

    key_id: str
    _private: Ed25519PrivateKey = field(repr=False, compare=False)
    _mac_secret: bytes = field(repr=False, compare=False)

    def sign(self, data: bytes) -> bytes:
        """Ed25519 signature (64 bytes) of ``data``."""
        return self._private.sign(bytes(data))

    def public_key_bytes(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def mac_key(self, purpose: str) -> bytes:
        """A 32-byte key for ``purpose`` (e.g. ``"ledger-chain"``): HKDF-SHA256 of the MAC
        secret, so one purpose's key tells nothing about another's or about the signing key."""
        if not isinstance(purpose, str) or not purpose:
            raise ValueError("mac_key needs a non-empty purpose string, e.g. 'ledger-chain'")
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT,
                    info=b"privsynth/" + purpose.encode("utf-8")).derive(self._mac_secret)


def load_keys(create: bool = False) -> InstallationKeys:
    """This installation's keys; ``create=True`` makes them on first use (file ``0600``).

    Raises :class:`KeyStoreError` (with the fix) when there are none and ``create`` is false,
    or when the file is malformed or readable by others.
    """
    path = key_dir() / KEY_FILE
    if not path.exists():
        if not create:
            raise KeyStoreError(
                f"{path}: no installation keys. Run a release on this installation first "
                f"(it creates them), restore the key file from your backup, or point {ENV} at "
                "the folder that holds it.")
        _create(path)
    return _read(path)


def _create(path: Path) -> None:
    """Write a fresh key file without ever replacing one (a concurrent creator wins cleanly)."""
    text = f"{_MAGIC}\n{secrets.token_hex(32)}\n{secrets.token_hex(32)}\n".encode("ascii")
    tmp = path.with_name(f".{KEY_FILE}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process created it first
            os.link(tmp, path)  # atomic, and never replaces an existing key file
    finally:
        tmp.unlink(missing_ok=True)


def _read(path: Path) -> InstallationKeys:
    if not path.is_file() or path.is_symlink():
        raise KeyStoreError(f"{path}: not a plain file; restore the installation key file")
    if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise KeyStoreError(f"{path}: readable by others; run `chmod 600 {path}` (and consider "
                            "the key exposed if others could read it)")
    try:
        lines = path.read_text(encoding="ascii").split("\n")
        if lines[0] != _MAGIC:
            raise ValueError("header")
        seed, mac = bytes.fromhex(lines[1]), bytes.fromhex(lines[2])
        if len(seed) != 32 or len(mac) != 32:
            raise ValueError("length")
    except (OSError, UnicodeDecodeError, IndexError, ValueError) as exc:
        raise KeyStoreError(f"{path}: malformed installation key file ({type(exc).__name__}); "
                            "restore it from your backup") from None
    private = Ed25519PrivateKey.from_private_bytes(seed)
    public = private.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw)
    return InstallationKeys(key_id=key_id_of(public), _private=private, _mac_secret=mac)


def verify_signature(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``data`` under ``public_key``
    (raw 32 bytes); False for a bad signature or a malformed key/signature, never an exception."""
    try:
        Ed25519PublicKey.from_public_bytes(bytes(public_key)).verify(bytes(signature),
                                                                     bytes(data))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def export_public_key(keys: InstallationKeys) -> str:
    """The public key as text (64 hex characters), for ``privsynth keys export``."""
    return keys.public_key_bytes().hex()


def parse_public_key(text: str, source: str = "public key") -> bytes:
    """Raw 32 bytes from the exported text form (64 hex characters, surrounding space ignored)."""
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise KeyStoreError(f"{source}: not an Ed25519 public key; expected the 64 hex "
                            "characters that `privsynth keys export` prints")
    return raw


def check_apart(path: Path, what: str) -> None:
    """Refuse when ``path`` (a ledger or a bundle) and the key folder are one, or one holds the
    other: whoever can rewrite the ledger or the bundle must not find the key beside it."""
    keys = Path(os.environ.get(ENV) or Path.home() / ".config" / "privsynth" / "keys")
    keys = keys.expanduser().resolve()
    target = Path(path).expanduser().resolve()
    if target == keys or keys in target.parents or target in keys.parents:
        raise KeyStoreError(f"{target}: the {what} would live beside the installation keys in "
                            f"{keys}; put the {what} elsewhere or move the keys ({ENV})")
