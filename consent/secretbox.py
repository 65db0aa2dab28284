"""Secrets the server must read back (webhook signing secrets, linked-account tokens),
encrypted at rest under CONSENT_DATA_KEY.

The key lives outside the database, so a copy of the database (a backup, a read-only SQL
injection, a replica) holds no usable secret. Values are Fernet tokens (AES-128-CBC +
HMAC-SHA256) under a key derived per purpose, so one purpose's ciphertext never opens as
another's; stored text is `enc1:<token>`. Encryption is independent of what the secret is
used for (e.g. the webhook signing scheme).

CONSENT_DATA_KEY: any random text of at least 32 characters. Production refuses to start
without it; development and tests derive one from SECRET_KEY and log a warning.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging

from flask import current_app

log = logging.getLogger(__name__)
PREFIX = "enc1:"
MIN_KEY_LENGTH = 32
_warned: set[str] = set()


class SecretUnreadable(Exception):
    """A stored secret that does not decrypt (another key, or edited)."""


def configured_key(config) -> str:
    """The data key of an app config: CONSENT_DATA_KEY, else (outside production) one
    derived from SECRET_KEY."""
    key = config.get("CONSENT_DATA_KEY") or ""
    if key:
        return key
    secret = config.get("SECRET_KEY") or ""
    return hmac.new(secret.encode(), b"consent-data-key-v1", hashlib.sha256).hexdigest()


def check_config(config) -> None:
    """Refuse a production config without a data key; warn once about a derived one."""
    key = config.get("CONSENT_DATA_KEY") or ""
    if config.get("ENV_NAME") == "production":
        if len(key) < MIN_KEY_LENGTH:
            raise RuntimeError(
                "CONSENT_DATA_KEY must be set to a random value of at least "
                f"{MIN_KEY_LENGTH} characters in production: it encrypts webhook signing "
                "secrets and linked-account tokens (e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))'`)")
        return
    if key and len(key) < MIN_KEY_LENGTH:
        raise RuntimeError(f"CONSENT_DATA_KEY, when set, must be at least {MIN_KEY_LENGTH} "
                           "characters")
    if not key and config.get("ENV_NAME") == "development" and "dev" not in _warned:
        _warned.add("dev")
        log.warning("CONSENT_DATA_KEY is not set: stored secrets are encrypted under a key "
                    "derived from SECRET_KEY (development only; production refuses this)")


def _fernet(purpose: str, key: str | None = None):
    from cryptography.fernet import Fernet

    material = (key if key is not None else configured_key(current_app.config)).encode()
    derived = hmac.new(material, b"consent-secretbox-v1\x00" + purpose.encode(),
                       hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(derived))


def is_sealed(stored: str | None) -> bool:
    """Whether STORED is an encrypted value (rather than legacy clear text)."""
    return bool(stored) and stored.startswith(PREFIX)


def seal(value: str, purpose: str, *, key: str | None = None) -> str:
    """Encrypt VALUE for PURPOSE (e.g. "webhook-secret"); the text to store."""
    return PREFIX + _fernet(purpose, key).encrypt(value.encode("utf-8")).decode("ascii")


def unseal(stored: str, purpose: str, *, key: str | None = None) -> str:
    """The clear value of a stored secret. Rows written before encryption was introduced
    (no prefix) are returned as they are until the migration has encrypted them."""
    from cryptography.fernet import InvalidToken

    if not is_sealed(stored):
        return stored
    try:
        return _fernet(purpose, key).decrypt(stored[len(PREFIX):].encode("ascii")).decode(
            "utf-8")
    except (InvalidToken, ValueError) as exc:
        raise SecretUnreadable(f"a stored {purpose} does not decrypt: CONSENT_DATA_KEY "
                               "differs from the one it was written with") from exc
