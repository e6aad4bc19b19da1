"""The installation key store: creation, permissions, signatures, per-purpose MAC keys."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from privsynth import keys
from privsynth.errors import PrivsynthError
from privsynth.keys import (
    InstallationKeys,
    KeyStoreError,
    check_apart,
    key_dir,
    load_keys,
    parse_public_key,
    verify_signature,
)


@pytest.fixture
def fresh_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty key folder of its own (the session one is shared by other tests)."""
    path = tmp_path / "k"
    monkeypatch.setenv("PRIVSYNTH_KEY_DIR", str(path))
    return path


def test_session_fixture_keeps_tests_out_of_home() -> None:
    home_keys = Path.home() / ".config" / "privsynth" / "keys"
    assert key_dir().resolve() != home_keys.resolve()
    assert os.environ["PRIVSYNTH_KEY_DIR"]


def test_missing_keys_refused_with_the_fix(fresh_dir: Path) -> None:
    with pytest.raises(KeyStoreError, match="no installation keys") as info:
        load_keys()
    assert isinstance(info.value, PrivsynthError)
    assert "PRIVSYNTH_KEY_DIR" in str(info.value)
    assert not (fresh_dir / keys.KEY_FILE).exists()


def test_created_once_with_private_permissions(fresh_dir: Path) -> None:
    first = load_keys(create=True)
    assert stat.S_IMODE(fresh_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((fresh_dir / keys.KEY_FILE).stat().st_mode) == 0o600
    again = load_keys(create=True)
    assert again.key_id == first.key_id
    assert again.public_key_bytes() == first.public_key_bytes()
    assert again.mac_key("ledger-chain") == first.mac_key("ledger-chain")
    assert load_keys().key_id == first.key_id
    assert [p.name for p in fresh_dir.iterdir()] == [keys.KEY_FILE]  # no temp file left


def test_key_id_and_signature(fresh_dir: Path) -> None:
    k = load_keys(create=True)
    pub = k.public_key_bytes()
    assert len(pub) == 32
    assert len(k.key_id) == 16 and int(k.key_id, 16) >= 0
    assert k.key_id == keys.key_id_of(pub)
    sig = k.sign(b"statement")
    assert len(sig) == 64
    assert verify_signature(pub, sig, b"statement")
    assert not verify_signature(pub, sig, b"statemenT")
    bad = bytes([sig[0] ^ 1]) + sig[1:]
    assert not verify_signature(pub, bad, b"statement")
    assert not verify_signature(pub[:31], sig, b"statement")  # malformed key: False, no raise
    assert not verify_signature(pub, sig[:10], b"statement")


def test_other_installation_key_does_not_verify(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIVSYNTH_KEY_DIR", str(tmp_path / "a"))
    a = load_keys(create=True)
    monkeypatch.setenv("PRIVSYNTH_KEY_DIR", str(tmp_path / "b"))
    b = load_keys(create=True)
    assert a.key_id != b.key_id
    assert not verify_signature(b.public_key_bytes(), a.sign(b"x"), b"x")
    assert a.mac_key("ledger-chain") != b.mac_key("ledger-chain")


def test_mac_keys_differ_per_purpose(fresh_dir: Path) -> None:
    k = load_keys(create=True)
    chain, other = k.mac_key("ledger-chain"), k.mac_key("ledger-anchor")
    assert len(chain) == 32 and chain != other
    assert chain != k.public_key_bytes()
    with pytest.raises(ValueError):
        k.mac_key("")


def test_repr_holds_no_secret(fresh_dir: Path) -> None:
    k = load_keys(create=True)
    text = repr(k)
    secret_hex = (fresh_dir / keys.KEY_FILE).read_text().split("\n")[1:3]
    assert k.key_id in text
    assert all(s not in text for s in secret_hex)
    assert isinstance(k, InstallationKeys)
    with pytest.raises(AttributeError):
        k.key_id = "x"  # type: ignore[misc]  # frozen


def test_world_readable_key_file_refused(fresh_dir: Path) -> None:
    load_keys(create=True)
    (fresh_dir / keys.KEY_FILE).chmod(0o644)
    with pytest.raises(KeyStoreError, match="chmod 600"):
        load_keys()


@pytest.mark.parametrize("text", ["", "garbage\n", "privsynth-installation-key/1\nzz\n",
                                  "privsynth-installation-key/1\n" + "ab" * 31 + "\n" + "cd" * 32])
def test_malformed_key_file_refused(fresh_dir: Path, text: str) -> None:
    fresh_dir.mkdir(mode=0o700)
    path = fresh_dir / keys.KEY_FILE
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(KeyStoreError, match="malformed"):
        load_keys(create=True)  # never silently replaced by a new key


def test_public_key_text_round_trip(fresh_dir: Path) -> None:
    k = load_keys(create=True)
    assert parse_public_key(keys.export_public_key(k) + "\n") == k.public_key_bytes()
    with pytest.raises(KeyStoreError, match="64 hex"):
        parse_public_key("abc")


def test_check_apart(fresh_dir: Path, tmp_path: Path) -> None:
    load_keys(create=True)
    with pytest.raises(KeyStoreError, match="beside the installation keys"):
        check_apart(fresh_dir / "ledger.sqlite", "ledger")
    with pytest.raises(KeyStoreError):
        check_apart(tmp_path, "bundle")  # a bundle folder holding the keys
    check_apart(tmp_path / "elsewhere" / "ledger.sqlite", "ledger")
