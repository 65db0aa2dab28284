"""The widget's files served compressed by the app itself (gzip or brotli, by Accept-Encoding).

Each body is compressed once per revision and kept in a small bounded cache keyed by its
ETag (the site script differs per site and language: at most CACHE_SIZE bodies are kept),
so `make run` and a bare gunicorn transfer what the widget's byte budget measures. Every
encoding has its own ETag, the response says `Vary: Accept-Encoding`, and a matching
If-None-Match is answered 304.
"""
from __future__ import annotations

import gzip
import threading
from collections import OrderedDict

import brotli
from flask import Response, current_app, request

CACHE_SIZE = 256
# Below this a compressed body saves too little to be worth a second variant.
MIN_SIZE = 256
_ENCODINGS = (("br", "br"), ("gzip", "gz"))
_cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
_lock = threading.Lock()


def _compress(body: bytes, coding: str) -> bytes:
    if coding == "br":
        return brotli.compress(body, quality=11, mode=brotli.MODE_TEXT)
    return gzip.compress(body, 9, mtime=0)


def _encoded(etag: str, body: bytes, coding: str) -> bytes:
    key = (etag, coding)
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    data = _compress(body, coding)  # outside the lock: other requests go on meanwhile
    with _lock:
        _cache[key] = data
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return data


def _chosen(accept_encoding) -> str | None:
    """The encoding to send: brotli, then gzip, when the client accepts it (q > 0)."""
    for coding, _ in _ENCODINGS:
        if accept_encoding[coding] > 0 and coding in accept_encoding.values():
            return coding
    return None


def compressed(body: str | bytes, etag: str, mimetype: str) -> Response:
    """BODY (whose ETag is ETAG) as a conditional response, compressed if the client takes it."""
    data = body.encode() if isinstance(body, str) else body
    coding = _chosen(request.accept_encodings) if len(data) >= MIN_SIZE else None
    suffix = dict(_ENCODINGS).get(coding, "")
    response = current_app.response_class(
        _encoded(etag, data, coding) if coding else data, mimetype=mimetype)
    if coding:
        response.headers["Content-Encoding"] = coding
    response.set_etag(f"{etag}-{suffix}" if suffix else etag)
    response.vary.add("Accept-Encoding")
    return response


def clear_cache() -> None:
    """Forget every compressed body (tests)."""
    with _lock:
        _cache.clear()
