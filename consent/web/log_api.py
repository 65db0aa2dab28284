"""The verifiable log over HTTP: signed checkpoints, RFC 9162 proofs, public keys and
per-decision receipts (docs/audit.md, "Proof an outsider can check")."""
from __future__ import annotations

import marshmallow as ma
from flask import Blueprint as FlaskBlueprint
from flask import current_app, make_response, request
from flask_smorest import Blueprint
from marshmallow import validate

from ..apidoc import problems
from ..errors import Conflict, Forbidden, Unauthorized
from ..ledger.keys import previous_public_keys, public_key_text
from ..ledger.serving import (checkpoint_note, consistency_document,
                                  inclusion_document, site_keys_text)
from ..ledger.receipts import ReceiptPending, build_receipt, token_allows
from ..notices import attach_notice, get_notice
from ..sites import NotFound, site_for_api_key, site_snapshot
from ..ratelimit import takes_bearer
from ..subjects import READ_TOKEN_RE
from ..validation import Exact
from .auth import bearer_token
from .common import apply_site_cors

blp = Blueprint("log_api", __name__, url_prefix="/api/v1",
                description="The verifiable log: checkpoints, proofs, receipts.")
bp = FlaskBlueprint("log_keys", __name__)

BIG = 2 ** 62


class InclusionQuery(ma.Schema):
    """Which event, in the tree of which size."""

    class Meta:
        unknown = ma.RAISE

    event = ma.fields.String(required=True, validate=Exact(r"^[0-9a-f]{32}$"),
                             metadata={"description": "The event id"})
    size = ma.fields.Integer(strict=False, validate=validate.Range(1, BIG), metadata={
        "description": "Tree size (default: the latest signed checkpoint)"})


class ConsistencyQuery(ma.Schema):
    """From which tree size to which."""

    class Meta:
        unknown = ma.RAISE

    from_ = ma.fields.Integer(data_key="from", required=True,
                              validate=validate.Range(0, BIG))
    to = ma.fields.Integer(validate=validate.Range(1, BIG), metadata={
        "description": "Default: the size of the latest signed checkpoint"})

    @ma.validates_schema
    def _ordered(self, data, **kwargs):
        if "to" in data and data["from_"] > data["to"]:
            raise ma.ValidationError("must not be larger than `to`", "from")


class InclusionSchema(ma.Schema):
    """RFC 9162 inclusion proof (hashes in standard base64)."""

    origin = ma.fields.String()
    event_id = ma.fields.String()
    index = ma.fields.Integer()
    tree_size = ma.fields.Integer()
    inclusion_path = ma.fields.List(ma.fields.String())
    leaf_hash = ma.fields.String()
    checkpoint = ma.fields.String(allow_none=True, metadata={
        "description": "The signed checkpoint of tree_size, when the log signed one"})


class ConsistencySchema(ma.Schema):
    """RFC 9162 consistency proof (hashes in standard base64)."""

    origin = ma.fields.String()
    from_ = ma.fields.Integer(data_key="from", attribute="from")
    to = ma.fields.Integer()
    consistency_path = ma.fields.List(ma.fields.String())
    checkpoint = ma.fields.String(allow_none=True)


class ReceiptQuery(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    token = ma.fields.String(validate=validate.Length(1, 400), metadata={
        "description": "The visitor's capability for this receipt (instead of the API key)"})
    r = ma.fields.String(validate=Exact(READ_TOKEN_RE), metadata={
        "description": "The visitor's read token (`r` in the consent cookie, `read_token` "
                       "in the decision's answer), instead of the API key: only for that "
                       "visitor's own events (another's event is 404, as an unknown one)"})


class ReceiptSchema(ma.Schema):
    """An event with its log index, inclusion proof and signed checkpoint."""

    receipt = ma.fields.String()
    site = ma.fields.String()
    event = ma.fields.Dict()
    log = ma.fields.Dict()
    public_key = ma.fields.String()
    notice = ma.fields.Dict(metadata={
        "description": "For an event that names one: what the person was shown (GET "
                       ".../notices/{digest}); its canonical JSON's SHA-256 is the event's "
                       "meta.notice"})


@blp.after_request
def _cors(response):
    return apply_site_cors(response, (request.view_args or {}).get("site_key"),
                           methods="GET, OPTIONS")


@blp.route("/sites/<site_key>/log/checkpoint", methods=["GET"])
@blp.response(200, content_type="text/plain")
def get_checkpoint(site_key: str):
    """The latest signed checkpoint of the site's log (C2SP tlog-checkpoint)."""
    response = make_response(checkpoint_note(site_key))
    response.mimetype = "text/plain"
    response.headers["Cache-Control"] = (
        f"public, max-age={current_app.config['CONSENT_CHECKPOINT_MAX_AGE']}")
    return response


@blp.route("/sites/<site_key>/log/inclusion", methods=["GET"])
@blp.arguments(InclusionQuery, location="query", as_kwargs=True)
@blp.response(200, InclusionSchema)
def get_inclusion(site_key: str, event: str, size: int | None = None):
    """RFC 9162 inclusion proof of an event in the tree of SIZE entries."""
    return inclusion_document(site_key, event, size)


@blp.route("/sites/<site_key>/log/consistency", methods=["GET"])
@blp.arguments(ConsistencyQuery, location="query", as_kwargs=True)
@blp.response(200, ConsistencySchema)
def get_consistency(site_key: str, from_: int, to: int | None = None):
    """RFC 9162 consistency proof from the tree of FROM entries to the tree of TO."""
    return consistency_document(site_key, from_, to)


@blp.route("/sites/<site_key>/log/keys", methods=["GET"])
@blp.response(200, content_type="text/plain")
def get_log_keys(site_key: str):
    """The keys of the site's checkpoints as signed-note verifier keys (current first)."""
    response = make_response(site_keys_text(site_key))
    response.mimetype = "text/plain"
    return response


@blp.route("/sites/<site_key>/receipts/<event_id>", methods=["GET"])
@blp.arguments(ReceiptQuery, location="query", as_kwargs=True)
@blp.response(200, ReceiptSchema)
@blp.doc(security=[{"siteApiKey": []}, {}])
@problems(409)
@takes_bearer  # an API key is one of its credentials
def get_receipt(site_key: str, event_id: str, token: str | None = None, r: str | None = None):
    """Proof of one decision: the event, its log index, an inclusion proof and the signed
    checkpoint, as a file to keep (`consent-proof-<site>-<event>.json`).

    Needs the site's API key (another site's: 403), the visitor's capability for this
    receipt (`token`), or the visitor's read token (`r`, the widget's "Download proof of
    my choice"); none of them: 401. With `r`, an event of another visitor is 404, as an
    unknown one. 409 while the event cannot be in the log yet.
    """
    site = site_snapshot(site_key)
    key = bearer_token()
    reader = None
    if key is not None:
        owner = site_for_api_key(key)
        if owner is None:
            raise Unauthorized("the API key is unknown or revoked")
        if owner != site.id:
            raise Forbidden("this API key belongs to another site")
    elif not token_allows(token, site.key, event_id):
        if r is None:
            raise Unauthorized("send the site's API key, the visitor's receipt token or "
                               "their read token (r)")
        reader = r
    try:
        receipt = build_receipt(site.key, event_id, visitor_token=reader)
    except ReceiptPending:
        raise Conflict(f"event {event_id} is not in the log yet (pending); try again "
                       "shortly", status=409)
    attach_notice(receipt, site.id)  # what the visitor was shown (consent.notices)
    # A link (the widget's) downloads it as a file; API clients read the JSON as before.
    name = f"consent-proof-{site.key}-{receipt['event']['event_id']}.json"
    return receipt, 200, {"Content-Disposition": f'attachment; filename="{name}"',
                          "Cache-Control": "private, no-store"}


@blp.route("/sites/<site_key>/notices/<digest>", methods=["GET"])
@blp.response(200, content_type="application/json")
def get_notice_document(site_key: str, digest: str):
    """What the visitors of a decision's page were shown (consent.notices): the widget's
    configuration in their language (the banner's and the dialog's words, the categories
    with their services and cookies, the policy version and its SHA-256, the lifetimes),
    or the preference page's words (`"surface": "preferences"`), as the canonical JSON
    whose SHA-256 is DIGEST, the `meta.notice` of the event.

    Public, as the banner is; never changes (cached for a year). 404 for a digest this
    site never recorded.
    """
    site = site_snapshot(site_key)
    text = get_notice(site.id, digest)
    if text is None:
        raise NotFound("notice", digest[:64])
    response = make_response(text)
    response.mimetype = "application/json"
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@bp.get("/.well-known/consent-signing-keys")
def well_known_keys():
    """Every public key of this server, current first (text/plain, one per line)."""
    import base64

    lines = [public_key_text() + " current"]
    lines += ["ed25519:" + base64.b64encode(k).decode() + " previous"
              for k in previous_public_keys()]
    response = make_response("\n".join(lines) + "\n")
    response.mimetype = "text/plain"
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
