"""Linked third-party accounts for the site's backend: authorise, read the token, deauthorise."""
from __future__ import annotations

import marshmallow as ma
from flask_smorest import Blueprint
from marshmallow import validate

from ..apidoc import problems
from ..database import iso
from ..linked_accounts import VIA, authorize, deauthorize, list_links, read_token
from ..subjects import PUBLIC_ID_RE
from ..validation import Exact, PersonFields
from .auth import require_site_key

blp = Blueprint("linked_accounts_api", __name__, url_prefix="/api/v1",
                description="Third-party accounts a person links (e.g. Zoom): tokens kept "
                            "encrypted, deleted on deauthorisation (site API key).")
SECURITY = [{"siteApiKey": []}]
INTEGRATION = dict(required=True, validate=Exact(r"^[a-z][a-z0-9_-]{0,39}$"),
                   metadata={"description": "e.g. zoom"})


class AuthorizeSchema(PersonFields):
    """The person authorised the site to use their third-party account."""

    integration = ma.fields.String(**INTEGRATION)
    token = ma.fields.String(required=True, load_only=True, validate=validate.Length(1, 8192),
                             metadata={"description": "The access token; kept encrypted"})


class LinkRefSchema(PersonFields):
    """A person's link to one integration."""

    integration = ma.fields.String(**INTEGRATION)


class DeauthorizeSchema(LinkRefSchema):
    via = ma.fields.String(load_default="third_party", validate=validate.OneOf(VIA),
                           metadata={"description": "Who deauthorised: the third party's "
                                                    "notice, the person on the site, the site"})


class LinkSchema(ma.Schema):
    """A linked account as the backend sees it (never its token)."""

    id = ma.fields.Integer()
    integration = ma.fields.String()
    active = ma.fields.Boolean()
    authorized_at = ma.fields.Function(lambda r: iso(r.authorized_at))
    deauthorized_at = ma.fields.Function(lambda r: iso(r.deauthorized_at))
    token_deleted_at = ma.fields.Function(lambda r: iso(r.token_deleted_at))
    grant_event_id = ma.fields.String(allow_none=True)
    withdraw_event_id = ma.fields.String(allow_none=True)


class LinkResultSchema(ma.Schema):
    subject = ma.fields.String()
    link = ma.fields.Nested(LinkSchema)
    event_id = ma.fields.String(allow_none=True)


class LinkListSchema(ma.Schema):
    subject = ma.fields.String()
    links = ma.fields.List(ma.fields.Nested(LinkSchema))


class ListQuery(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    subject = ma.fields.String(validate=Exact(PUBLIC_ID_RE))
    user_id = ma.fields.String(validate=validate.Length(1, 200))


class TokenSchema(ma.Schema):
    token = ma.fields.String()


def _result(result) -> dict:
    return {"subject": result.subject_public_id, "link": result.account,
            "event_id": result.event.event_id if result.event else None}


@blp.route("/sites/<site_key>/linked-accounts", methods=["POST"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.arguments(AuthorizeSchema)
@blp.response(201, LinkResultSchema)
def post_linked_account(data: dict, site_key: str):
    """Record an authorisation (a `grant` event naming the integration) and keep the token."""
    return _result(authorize(site_key, data["integration"], data["token"],
                             subject=data.get("subject"), user_id=data.get("user_id"))), 201


@blp.route("/sites/<site_key>/linked-accounts", methods=["GET"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.arguments(ListQuery, location="query")
@blp.response(200, LinkListSchema)
def get_linked_accounts(query: dict, site_key: str):
    """A person's linked accounts, current and past (tokens are never listed)."""
    subject, rows = list_links(site_key, subject=query.get("subject"),
                               user_id=query.get("user_id"))
    return {"subject": subject, "links": rows}


@blp.route("/sites/<site_key>/linked-accounts/token", methods=["POST"])
@require_site_key
@blp.doc(security=SECURITY)
@problems(410)  # deauthorised: the token is deleted
@blp.arguments(LinkRefSchema)
@blp.response(200, TokenSchema)
def post_token(data: dict, site_key: str):
    """The token of an active link (POST, so that it never appears in a URL or log)."""
    return {"token": read_token(site_key, data["integration"], subject=data.get("subject"),
                                user_id=data.get("user_id"))}


@blp.route("/sites/<site_key>/linked-accounts/deauthorize", methods=["POST"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.arguments(DeauthorizeSchema)
@blp.response(200, LinkResultSchema)
def post_deauthorize(data: dict, site_key: str):
    """Delete the token and record a `withdraw` event naming the integration (idempotent)."""
    return _result(deauthorize(site_key, data["integration"], subject=data.get("subject"),
                               user_id=data.get("user_id"), via=data["via"]))
