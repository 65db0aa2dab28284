"""Token-authenticated automation for auditors and DPOs (`blp`), and the pages a person
opens from a signed access link (`bp`)."""
from __future__ import annotations

import json

import marshmallow as ma
from flask import Blueprint as FlaskBlueprint
from flask import Response, render_template, request
from flask_smorest import Blueprint
from marshmallow import validate

from ..apidoc import problems
from ..admin_auth import current_principal, token_required
from ..audit import key_id, public_key_pem, public_key_raw, public_key_text
from ..database import iso
from ..errors import Invalid
from ..ledger import ACTIONS
from ..policies import list_policies
from ..requests import (KINDS, VIA, access_link, carry_out, request_receipt, access_report,
                        complete_request, consent_receipt, deliver_access, get_request,
                        list_requests, open_request, request_subject)
from ..site_admin import publish_site_policy
from ..sites import site_snapshot
from .common import token_page
from ..validation import HttpUrl, StrictBoolean, StrictSchema
from .admin import export_filters, export_response

blp = Blueprint("audit_api", __name__, url_prefix="/api/v1/audit",
                description="Audit and administration for automation "
                            "(admin API token as bearer token, with scopes).")
SECURITY = [{"adminToken": []}]


@blp.record_once
def _security_scheme(state):
    from ..extensions import api

    try:
        api.spec.components.security_scheme(
            "adminToken", {"type": "http", "scheme": "bearer",
                           "description": "Admin API token (`flask consent create-token`)"})
    except Exception:  # noqa: BLE001 - already registered for this app
        pass


class ExportArgs(ma.Schema):
    """Filters of an export download."""

    class Meta:
        unknown = ma.EXCLUDE

    format = ma.fields.String(load_default="csv", validate=validate.OneOf(("csv", "jsonl")))
    since = ma.fields.String(metadata={"description": "YYYY-MM-DD or ISO date-time (UTC)"})
    until = ma.fields.String(metadata={"description": "Date (inclusive) or ISO date-time"})
    subject = ma.fields.String(metadata={"description": "Visitor id or ledger pseudonym"})
    category = ma.fields.String()
    action = ma.fields.List(ma.fields.String(validate=validate.OneOf(ACTIONS)))
    # A query string has no JSON booleans: true/false (or 1/0) are accepted here.
    deliveries = ma.fields.Boolean(load_default=True, metadata={
        "description": "Append the webhook delivery log after the events (default true)"})
    log = ma.fields.Boolean(load_default=True, metadata={
        "description": "Append each site's verifiable log up to the checkpoint the export "
                       "was cut at, for verify-export --since-checkpoint (unfiltered "
                       "exports; default true)"})


class SigningKeySchema(ma.Schema):
    public_key = ma.fields.String()
    key_id = ma.fields.String()
    pem = ma.fields.String()


class RequestSchema(ma.Schema):
    """An access or erasure request."""

    id = ma.fields.Integer()
    kind = ma.fields.String()
    status = ma.fields.String()
    received_at = ma.fields.Function(lambda r: iso(r.received_at))
    due_at = ma.fields.Function(lambda r: iso(r.due_at))
    deadline_rule = ma.fields.String()
    overdue = ma.fields.Function(lambda r: r.overdue())
    completed_at = ma.fields.Function(lambda r: iso(r.completed_at))
    recorded_at = ma.fields.Function(lambda r: iso(r.recorded_at) if r.recorded_at else None)
    received_via = ma.fields.String(allow_none=True)
    known = ma.fields.Function(lambda r: r.subject_id is not None, metadata={
        "description": "false while the person is not known here (matched later, or "
                       "answered no data)"})
    note = ma.fields.String(allow_none=True)
    result = ma.fields.Dict(allow_none=True)


class CreatedRequestSchema(RequestSchema):
    access_link = ma.fields.String(allow_none=True)


class NewRequestSchema(StrictSchema):
    """A request received by the site: from its account page, or by e-mail, phone or
    letter (recorded by staff with the time it was received)."""

    kind = ma.fields.String(required=True, validate=validate.OneOf(KINDS))
    subject = ma.fields.String(validate=validate.Length(1, 64),
                               metadata={"description": "Visitor id"})
    user_id = ma.fields.String(validate=validate.Length(1, 200),
                               metadata={"description": "The site's own user id"})
    address = ma.fields.String(validate=validate.Length(1, 254), metadata={
        "description": "E-mail address or phone number the request came from (stored only "
                       "as a keyed hash); a person never seen here is accepted"})
    channel = ma.fields.String(validate=validate.OneOf(("email", "sms", "push")),
                               metadata={"description": "What ADDRESS is"})
    channels = ma.fields.List(ma.fields.String(validate=validate.Length(1, 40)),
                              validate=validate.Length(max=4), metadata={
        "description": "opt-out: the channels (default: every promotional channel)"})
    received_at = ma.fields.AwareDateTime(default_timezone=None, metadata={
        "description": "When the site received it (deadlines run from receipt); "
                       "default now, never in the future"})
    via = ma.fields.String(validate=validate.OneOf(VIA))
    note = ma.fields.String(validate=validate.Length(max=500))

    @ma.validates_schema
    def _one_target(self, data, **kwargs):
        if sum(bool(data.get(k)) for k in ("subject", "user_id", "address")) != 1:
            raise ma.ValidationError("give one of subject, user_id or address", "subject")


class CloseRequestSchema(StrictSchema):
    status = ma.fields.String(load_default="completed",
                              validate=validate.OneOf(("completed", "rejected")))
    note = ma.fields.String(validate=validate.Length(max=500))


class RequestListArgs(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    status = ma.fields.String(validate=validate.OneOf(("open", "completed", "rejected")))


class PolicySchema(ma.Schema):
    label = ma.fields.String()
    published_at = ma.fields.Function(lambda v: iso(v.published_at))
    effective_at = ma.fields.Function(lambda v: iso(v.effective_at))
    material = ma.fields.Boolean()
    url = ma.fields.String(allow_none=True)
    sha256 = ma.fields.String()
    summary = ma.fields.String(allow_none=True)


class NewPolicySchema(StrictSchema):
    """A new policy version: its text or its URL."""

    label = ma.fields.String(required=True, validate=validate.Length(1, 40))
    text = ma.fields.String(validate=validate.Length(1, 500_000))
    url = HttpUrl(validate=validate.Length(max=500))
    material = StrictBoolean(load_default=False)
    summary = ma.fields.String(validate=validate.Length(max=2000))
    effective_at = ma.fields.AwareDateTime(default_timezone=None)

    @ma.validates_schema
    def _text_or_url(self, data, **kwargs):
        if not data.get("text") and not data.get("url"):
            raise ma.ValidationError("give the text or the URL", "text")


@blp.route("/signing-key", methods=["GET"])
@token_required("audit:read")
@blp.doc(security=SECURITY)
@blp.response(200, SigningKeySchema)
def get_signing_key():
    """The public key that verifies export manifests and retention checkpoints."""
    return {"public_key": public_key_text(), "key_id": key_id(public_key_raw()),
            "pem": public_key_pem()}


@blp.route("/sites/<site_key>/export", methods=["GET"])
@token_required("audit:export")
@blp.doc(security=SECURITY, responses={"200": {
    "description": "The export (CSV or JSON Lines), streamed; its last line is the "
                   "signed manifest",
    "content": {"text/csv": {}, "application/x-ndjson": {}}}})
@blp.arguments(ExportArgs, location="query", as_kwargs=True)
def get_export(site_key: str, format: str = "csv", deliveries: bool = True, log: bool = True,
               **_filters):
    """Download an export of the site's ledger, delivery log and verifiable log with a
    signed manifest."""
    filters = export_filters(site_key, request.args)
    filters.deliveries, filters.log = deliveries, log
    return export_response(filters, format)


@blp.route("/sites/<site_key>/requests", methods=["GET"])
@token_required("audit:read")
@blp.doc(security=SECURITY)
@blp.arguments(RequestListArgs, location="query", as_kwargs=True)
@blp.response(200, RequestSchema(many=True))
def get_requests(site_key: str, status: str | None = None):
    """The site's access and erasure requests, most urgent first."""
    return list_requests(site_key, status=status)


@blp.route("/sites/<site_key>/requests", methods=["POST"])
@token_required("requests:write")
@blp.doc(security=SECURITY)
@blp.arguments(NewRequestSchema)
@blp.response(201, CreatedRequestSchema)
def post_request(data: dict, site_key: str):
    """Record a request; an access request answers with the signed link for the person."""
    req = open_request(site_key, data["kind"], subject=data.get("subject"),
                       user_id=data.get("user_id"), address=data.get("address"),
                       channel=data.get("channel"), channels=data.get("channels"),
                       received_at=data.get("received_at"), via=data.get("via"),
                       requested_by=current_principal().actor, note=data.get("note"))
    # Not stored: the link is signed, so it can be minted again whenever needed.
    req.access_link = access_link(req) if req.kind == "access" and req.subject_id else None
    return req, 201


@blp.route("/sites/<site_key>/requests/<int:request_id>", methods=["GET"])
@token_required("audit:read")
@blp.doc(security=SECURITY)
@blp.response(200, RequestSchema)
def get_one_request(site_key: str, request_id: int):
    """One request."""
    return get_request(site_key, request_id)


@blp.route("/sites/<site_key>/requests/<int:request_id>/history", methods=["GET"])
@token_required("audit:read")
@blp.doc(security=SECURITY)
@blp.response(200)
def get_request_history(site_key: str, request_id: int):
    """The full consent history of the request's subject (the access answer)."""
    subject = request_subject(get_request(site_key, request_id))
    if subject is None:
        raise Invalid("no data is held about this person (not known here)",
                      field="request_id")
    if subject.erased_at is not None:
        raise Invalid("this subject has been erased", field="request_id")
    return access_report(site_key, subject)


@blp.route("/sites/<site_key>/requests/<int:request_id>/receipt", methods=["GET"])
@token_required("audit:read")
@blp.doc(security=SECURITY)
@blp.response(200)
@problems(409)
def get_request_receipt(site_key: str, request_id: int):
    """The subject's current consent as a Kantara Consent Receipt (v1.1)."""
    subject = request_subject(get_request(site_key, request_id))
    if subject is None:
        raise Invalid("no data is held about this person (not known here)",
                      field="request_id")
    if subject.erased_at is not None:
        raise Invalid("this subject has been erased", field="request_id")
    return consent_receipt(site_key, subject)


@blp.route("/sites/<site_key>/requests/<int:request_id>/close", methods=["POST"])
@token_required("requests:write")
@blp.doc(security=SECURITY)
@blp.arguments(CloseRequestSchema)
@blp.response(200, RequestSchema)
@problems(409)
def post_close_request(data: dict, site_key: str, request_id: int):
    """Mark a request answered or rejected."""
    return complete_request(site_key, request_id, current_principal().actor,
                            status=data["status"], note=data.get("note"))


@blp.route("/sites/<site_key>/requests/<int:request_id>/erase", methods=["POST"])
@token_required("requests:write")
@blp.doc(security=SECURITY)
@blp.response(200, RequestSchema)
@problems(409)
def post_erase(site_key: str, request_id: int):
    """Carry out an erasure request (crypto-shredding; the ledger still verifies)."""
    return carry_out(site_key, request_id, current_principal().actor)


@blp.route("/sites/<site_key>/requests/<int:request_id>/carry-out", methods=["POST"])
@token_required("requests:write")
@blp.doc(security=SECURITY)
@blp.response(200, RequestSchema)
@problems(409)
def post_carry_out(site_key: str, request_id: int):
    """Carry out a request whose answer is an action: erasure, account cancellation
    (both crypto-shredding) or an opt-out of sale/sharing (a withdrawal)."""
    return carry_out(site_key, request_id, current_principal().actor)


@blp.route("/sites/<site_key>/requests/<int:request_id>/request-receipt", methods=["GET"])
@token_required("audit:read")
@blp.doc(security=SECURITY)
@blp.response(200)
def get_request_receipt_signed(site_key: str, request_id: int):
    """The request's signed receipt (consent-request-receipt/1): what was asked, when it
    was received, its deadline, status and result; verify offline with the public key."""
    return request_receipt(site_key, request_id)


@blp.route("/sites/<site_key>/policies", methods=["GET"])
@token_required("audit:read")
@blp.doc(security=SECURITY)
@blp.response(200, PolicySchema(many=True))
def get_policies(site_key: str):
    """Every published policy version, newest first."""
    return list_policies(site_snapshot(site_key).id)


@blp.route("/sites/<site_key>/policies", methods=["POST"])
@token_required("policies:write")
@blp.doc(security=SECURITY)
@blp.arguments(NewPolicySchema)
@blp.response(201, PolicySchema)
@problems(409)
def post_policy(data: dict, site_key: str):
    """Publish a policy version (material: every visitor's widget asks again)."""
    return publish_site_policy(site_key, label=data["label"], text=data.get("text"),
                               url=data.get("url"), material=data["material"],
                               summary=data.get("summary"),
                               effective_at=data.get("effective_at")), 201


# ---------------------------------------------------------------- signed access links

bp = FlaskBlueprint("my_data", __name__, url_prefix="/my-data")


@bp.after_request
def _private(response):
    # (the URL carries the access token, as the other signed links' pages do)
    return token_page(response)


@bp.get("/<token>")
def access_page(token: str):
    """The person's consent history, readable, from a signed link."""
    _req, report = deliver_access(token)
    return render_template("admin/public_access.html", report=report, token=token)


@bp.get("/<token>/history.json")
def access_json(token: str):
    """The person's consent history as JSON."""
    _req, report = deliver_access(token)
    return Response(json.dumps(report, indent=2, ensure_ascii=False),
                    mimetype="application/json")


@bp.get("/<token>/receipt.json")
def access_receipt(token: str):
    """The person's current consent as a Kantara Consent Receipt (v1.1)."""
    req, _report = deliver_access(token)
    return Response(json.dumps(consent_receipt(site_snapshot(_report["site"]).key,
                                               request_subject(req)),
                               indent=2, ensure_ascii=False), mimetype="application/json")
