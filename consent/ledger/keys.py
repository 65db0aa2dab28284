"""The server's Ed25519 signing key: checkpoints, export manifests, retention checkpoints.

`CONSENT_SIGNING_KEY` is a path to a PEM private key, 64 hex digits (a 32-byte seed) or a
Go-style `PRIVATE+KEY+<name>+<id>+<base64>` signer key. It is its own secret: never
derived from SECRET_KEY and never stored in the database, so someone who can write to
the database cannot forge a checkpoint. Production refuses to start without it;
development generates one on first use and keeps it in `CONSENT_SIGNING_KEY_FILE`
(default instance/signing-key.pem), with a warning.

Rotation: put the old public keys in `CONSENT_SIGNING_KEY_PREVIOUS` (comma-separated,
`ed25519:<base64>`, hex, or verifier keys); they stay published so old checkpoints,
receipts and exports still verify.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import threading

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (Ed25519PrivateKey,
                                                               Ed25519PublicKey)
from flask import current_app

from .notes import NoteError, Verifier, parse_verifier_key

log = logging.getLogger(__name__)
_cache: dict[bytes, Ed25519PrivateKey] = {}
_generate_lock = threading.Lock()


class SigningKeyMissing(RuntimeError):
    """No signing key is configured where one is required."""


def _seed_from_text(configured: str) -> bytes:
    """A 32-byte seed from the configured value (hex seed, Go signer key or PEM path)."""
    configured = configured.strip()
    if len(configured) == 64 and all(c in "0123456789abcdefABCDEF" for c in configured):
        return bytes.fromhex(configured)
    if configured.startswith("PRIVATE+KEY+"):
        try:
            # PRIVATE+KEY+<name>+<id>+<base64>: the base64 may itself hold '+'.
            raw = base64.b64decode(configured.split("+", 4)[4], validate=True)
        except (binascii.Error, IndexError):
            raw = b""
        if len(raw) != 33 or raw[0] != 1:
            raise RuntimeError("CONSENT_SIGNING_KEY is not an Ed25519 signer key")
        return raw[1:]
    with open(configured, "rb") as fh:
        key = serialization.load_pem_private_key(fh.read(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise RuntimeError("CONSENT_SIGNING_KEY must be an Ed25519 private key")
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())


def key_file() -> str:
    """Where development keeps a generated signing key."""
    return current_app.config.get("CONSENT_SIGNING_KEY_FILE") or os.path.join(
        current_app.instance_path, "signing-key.pem")


def _generated_seed() -> bytes:
    """Development only: the key kept in the instance folder, generated on first use."""
    path = key_file()
    with _generate_lock:
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption())
            try:
                # O_EXCL: of several processes starting at once, one writes the key.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(pem)
                log.warning("generated a signing key for development in %s; set "
                            "CONSENT_SIGNING_KEY in production", path)
    return _seed_from_text(path)


def configured_seed() -> bytes:
    """The signing key's seed from the configuration (see module docstring)."""
    configured = (current_app.config.get("CONSENT_SIGNING_KEY")
                  or os.environ.get("CONSENT_SIGNING_KEY", ""))
    if configured.strip():
        return _seed_from_text(configured)
    if current_app.config.get("ENV_NAME") == "production":
        raise SigningKeyMissing("CONSENT_SIGNING_KEY must be set in production")
    return _generated_seed()


def signing_key() -> Ed25519PrivateKey:
    """The server's Ed25519 private key."""
    seed = configured_seed()
    key = _cache.get(seed)
    if key is None:
        key = _cache[seed] = Ed25519PrivateKey.from_private_bytes(seed)
    return key


def public_key_raw(key: Ed25519PrivateKey | None = None) -> bytes:
    """The 32 raw bytes of the server's public key."""
    return (key or signing_key()).public_key().public_bytes_raw()


def public_key_text(key: Ed25519PrivateKey | None = None) -> str:
    """The public key as auditors pin it: `ed25519:` + base64 of the raw key."""
    return "ed25519:" + base64.b64encode(public_key_raw(key)).decode()


def public_key_pem(key: Ed25519PrivateKey | None = None) -> str:
    """The public key as a PEM (SubjectPublicKeyInfo) document."""
    return (key or signing_key()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def key_id(raw: bytes) -> str:
    """A short, stable name of a public key (export manifests)."""
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(message: bytes) -> str:
    """Ed25519 signature of MESSAGE, 128 hex digits."""
    return signing_key().sign(message).hex()


def verify_signature(raw_public_key: bytes, message: bytes, signature_hex: str) -> bool:
    """True when SIGNATURE_HEX is a valid Ed25519 signature of MESSAGE."""
    try:
        Ed25519PublicKey.from_public_bytes(raw_public_key).verify(
            bytes.fromhex(signature_hex), message)
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def parse_public_key(text: str) -> bytes:
    """Raw public key bytes from `ed25519:<base64>`, bare base64, hex, a verifier key
    (`name+id+base64`) or a PEM (text or path)."""
    text = (text or "").strip()
    if text and "BEGIN" not in text and os.path.exists(text):
        with open(text, encoding="utf-8") as fh:
            text = fh.read().strip()
    if "BEGIN PUBLIC KEY" in text:
        key = serialization.load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if text.count("+") >= 2 and not text.startswith("ed25519:"):
        try:
            return parse_verifier_key(text).public_key
        except NoteError as exc:
            raise ValueError(str(exc)) from None
    text = text.removeprefix("ed25519:")
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("not a public key (ed25519:<base64>, hex, verifier key or PEM)")
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key has 32 bytes")
    return raw


def previous_public_keys() -> list[bytes]:
    """Public keys of earlier signing keys (CONSENT_SIGNING_KEY_PREVIOUS), oldest first."""
    text = (current_app.config.get("CONSENT_SIGNING_KEY_PREVIOUS")
            or os.environ.get("CONSENT_SIGNING_KEY_PREVIOUS", ""))
    keys = []
    for part in text.replace("\n", ",").split(","):
        if part.strip():
            keys.append(parse_public_key(part))
    return keys


def verifiers_for(name: str, keys: list[bytes]) -> list[Verifier]:
    """The signed-note verifiers of KEYS under the key name NAME."""
    return [Verifier(name, raw) for raw in keys]
