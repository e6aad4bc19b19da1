"""Signed statements over a release bundle's files (in-toto Statement v1 in a DSSE envelope).

Why: a digest list proves nothing if whoever edits a file can also rewrite the list. The
statement lists every file with its SHA-256 and is signed with the installation's Ed25519 key
(:mod:`privsynth.keys`), which does not live in the bundle. Verification pins the expected key
(the raw public key, or the local installation's key); a key *shipped* in the statement is only
a hint of which key was used, never the trust anchor.

Envelope (``statement.dsse.json``), as DSSE v1::

    {"payloadType": "application/vnd.in-toto+json",
     "payload": base64(statement JSON),
     "signatures": [{"keyid": <key id>, "sig": base64(Ed25519(PAE(payloadType, payload)))}]}

Statement::

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": <path>, "digest": {"sha256": <hex>}}, ...],
     "predicateType": "https://privsynth.dev/release/v1"   (full bundle)
                    | "https://privsynth.dev/release-public/v1"   (public/ alone),
     "predicate": {"release_id", "gate": {...}, "key_id", "public_key", ["ledger_head"]}}
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from privsynth.keys import InstallationKeys, key_id_of, verify_signature

STATEMENT_FILE = "statement.dsse.json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
BUNDLE_PREDICATE = "https://privsynth.dev/release/v1"
PUBLIC_PREDICATE = "https://privsynth.dev/release-public/v1"


class StatementError(ValueError):
    """A statement envelope is malformed or its signature does not verify (one-line reason)."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what the signature covers (type and body bound)."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def build_statement(subjects: dict[str, str], predicate_type: str,
                    predicate: dict[str, Any]) -> dict[str, Any]:
    """An in-toto statement over ``subjects`` (path -> hex SHA-256), sorted by path."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": digest}}
                    for name, digest in sorted(subjects.items())],
        "predicateType": predicate_type,
        "predicate": predicate,
    }


def sign_statement(statement: dict[str, Any], keys: InstallationKeys) -> str:
    """The DSSE envelope (JSON text) of ``statement`` signed with ``keys``."""
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":"),
                         allow_nan=False).encode("utf-8")
    signature = keys.sign(pae(PAYLOAD_TYPE, payload))
    envelope = {"payloadType": PAYLOAD_TYPE,
                "payload": base64.b64encode(payload).decode("ascii"),
                "signatures": [{"keyid": keys.key_id,
                                "sig": base64.b64encode(signature).decode("ascii")}]}
    return json.dumps(envelope, indent=2) + "\n"


def open_statement(text: str, public_key: bytes, predicate_type: str) -> dict[str, Any]:
    """The statement inside envelope ``text`` once its signature verifies under ``public_key``
    (the pinned key); :class:`StatementError` with a one-line reason otherwise."""
    try:
        envelope = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise StatementError(f"not valid JSON ({type(exc).__name__})") from None
    if not isinstance(envelope, dict) or envelope.get("payloadType") != PAYLOAD_TYPE:
        raise StatementError(f"not a DSSE envelope of type {PAYLOAD_TYPE}")
    signatures = envelope.get("signatures")
    if (not isinstance(signatures, list) or len(signatures) != 1
            or not isinstance(signatures[0], dict)):
        raise StatementError("expected exactly one signature")
    try:
        payload = base64.b64decode(str(envelope.get("payload")), validate=True)
        signature = base64.b64decode(str(signatures[0].get("sig")), validate=True)
    except (binascii.Error, ValueError):
        raise StatementError("payload or signature is not base64") from None
    expected_id = key_id_of(public_key)
    if signatures[0].get("keyid") != expected_id:
        raise StatementError(f"signed by key id {str(signatures[0].get('keyid'))[:40]!r}, "
                             f"not the expected key {expected_id}")
    if not verify_signature(public_key, signature, pae(PAYLOAD_TYPE, payload)):
        raise StatementError(f"the signature does not verify under key {expected_id}: the "
                             "statement was changed or signed by another key")
    try:
        statement = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise StatementError("signed payload is not valid JSON") from None
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise StatementError(f"signed payload is not an in-toto statement ({STATEMENT_TYPE})")
    if statement.get("predicateType") != predicate_type:
        raise StatementError(f"predicate type is {str(statement.get('predicateType'))[:80]!r}, "
                             f"expected {predicate_type!r}")
    if not isinstance(statement.get("predicate"), dict):
        raise StatementError("the statement has no predicate object")
    if statement["predicate"].get("key_id") != expected_id:
        raise StatementError("the statement names another signing key than the one it verifies "
                             "under")
    return statement


def subjects_of(statement: dict[str, Any]) -> dict[str, str]:
    """path -> sha256 of a verified statement; :class:`StatementError` on a malformed list."""
    subjects = statement.get("subject")
    if not isinstance(subjects, list):
        raise StatementError("the statement's subject is not a list")
    out: dict[str, str] = {}
    for item in subjects:
        name = item.get("name") if isinstance(item, dict) else None
        digest = item.get("digest") if isinstance(item, dict) else None
        sha = digest.get("sha256") if isinstance(digest, dict) else None
        if not isinstance(name, str) or not isinstance(sha, str) or len(sha) != 64:
            raise StatementError("a subject lacks a name or a SHA-256 digest")
        if name in out:
            raise StatementError(f"subject {name[:80]!r} listed twice")
        out[name] = sha
    return out
