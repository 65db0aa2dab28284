"""HMAC-SHA256 (RFC 2104) on hashlib's SHA-256, without OpenSSL's per-call set-up.

`hmac.digest` asks OpenSSL 3 to look up the algorithm and build a MAC context on every
call, several times the cost of hashing a short message; the consent write computes two
(the event's details digest and the read token). The same construction over hashlib
gives the same bytes (tests compare it with `hmac.digest`).
"""
from __future__ import annotations

import hashlib

_BLOCK = 64  # SHA-256's block size
_INNER = bytes(b ^ 0x36 for b in range(256))
_OUTER = bytes(b ^ 0x5C for b in range(256))


def _padded(key: bytes) -> bytes:
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    return key.ljust(_BLOCK, b"\0")


def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    """HMAC-SHA256 of MSG under KEY (the bytes `hmac.digest(key, msg, "sha256")` gives)."""
    key = _padded(key)
    inner = hashlib.sha256(key.translate(_INNER) + msg).digest()
    return hashlib.sha256(key.translate(_OUTER) + inner).digest()


class KeyedSha256:
    """HMAC-SHA256 under one fixed key, its two padded key blocks hashed once."""

    def __init__(self, key: bytes) -> None:
        key = _padded(key)
        self._inner = hashlib.sha256(key.translate(_INNER))
        self._outer = hashlib.sha256(key.translate(_OUTER))

    def digest(self, msg: bytes) -> bytes:
        """HMAC-SHA256 of MSG (hash objects' copy() is safe across threads)."""
        inner = self._inner.copy()
        inner.update(msg)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()
