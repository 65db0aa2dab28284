"""Authentication of server-to-server callers by a site's API key."""
from __future__ import annotations

from functools import wraps

from flask import g, request

from ..errors import Forbidden, Unauthorized
from ..ratelimit import takes_bearer
from ..sites import site_for_api_key, site_snapshot


def bearer_token() -> str | None:
    """The token of an `Authorization: Bearer ...` header, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require_site_key(view):
    """Refuse callers without the API key of the site named in the URL."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        token = bearer_token()
        if token is None:
            raise Unauthorized("send the site's API key as 'Authorization: Bearer <key>'")
        site = site_snapshot(kwargs["site_key"])
        site_id = site_for_api_key(token)
        if site_id is None:
            raise Unauthorized("the API key is unknown or revoked")
        if site_id != site.id:
            raise Forbidden("this API key belongs to another site")
        g.api_site = site
        return view(*args, **kwargs)

    return takes_bearer(wrapper)
