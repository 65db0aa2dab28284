"""Server-to-server endpoints, authenticated by the site's API key."""
from __future__ import annotations

import marshmallow as ma
from flask_smorest import Blueprint
from marshmallow import validate

from ..database import iso, run_write
from ..decisions import ConsentViewSchema, state_view
from ..validation import StrictBoolean, StrictSchema
from ..errors import Invalid
from ..ledger import append_event, history, read_state
from ..notices import keep_told
from ..policies import policy_state
from ..sites import ESSENTIAL, NotFound, site_snapshot
from ..subjects import find_subject, find_subject_by_user
from .auth import require_site_key
from .common import request_context, shown_field

blp = Blueprint("server_api", __name__, url_prefix="/api/v1",
                description="Server-to-server endpoints (site API key as bearer token).")

SECURITY = [{"siteApiKey": []}]


class EventSchema(ma.Schema):
    """One ledger event as shown to the site's backend and auditors."""

    event_id = ma.fields.String()
    recorded_at = ma.fields.Function(lambda e: iso(e.recorded_at))
    action = ma.fields.String()
    source = ma.fields.String()
    categories = ma.fields.Dict(allow_none=True)
    channels = ma.fields.Dict(allow_none=True)
    policy_version = ma.fields.String(allow_none=True)
    locale = ma.fields.String(allow_none=True)
    meta = ma.fields.Dict(allow_none=True)
    seq = ma.fields.Integer()
    stream = ma.fields.Integer()
    hash = ma.fields.String()
    prev_hash = ma.fields.String()


class UpcomingPolicySchema(ma.Schema):
    version = ma.fields.String()
    effective_at = ma.fields.String()
    material = ma.fields.Boolean()


class PolicyStateSchema(ma.Schema):
    """Whether the consent predates the material policy version in force."""

    consented_under = ma.fields.String(allow_none=True, metadata={
        "description": "Policy version the consent was given under"})
    in_force = ma.fields.String(allow_none=True)
    material_version = ma.fields.String(allow_none=True, metadata={
        "description": "The latest material version in force"})
    material_effective_at = ma.fields.String(allow_none=True)
    predates_material_version = ma.fields.Boolean(metadata={
        "description": "True: the consent was given before the material version in force "
                       "took effect, so it no longer covers processing under it"})
    upcoming = ma.fields.Nested(UpcomingPolicySchema, allow_none=True, metadata={
        "description": "A version published with a later effective date (advance notice)"})


class SubjectConsentSchema(ma.Schema):
    """A subject's current consent for the site's backend."""

    subject = ma.fields.String()
    consent = ma.fields.Nested(ConsentViewSchema, allow_none=True)
    channels = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Boolean())
    policy_state = ma.fields.Nested(PolicyStateSchema)
    guardian = ma.fields.Dict(allow_none=True, metadata={
        "description": "Sites with an age rule: {status: awaiting, request, categories, "
                       "channels, since, expires_at} while a minor's grants wait for a "
                       "guardian to confirm them; null otherwise"})


class HistorySchema(ma.Schema):
    subject = ma.fields.String()
    events = ma.fields.List(ma.fields.Nested(EventSchema))


class BackendEventSchema(StrictSchema):
    """A consent change the site's backend records (e.g. from its own account page)."""

    action = ma.fields.String(required=True, validate=validate.OneOf(
        ("custom", "withdraw", "grant", "accept_all", "reject_all")))
    categories = ma.fields.Dict(keys=ma.fields.String(validate=validate.Length(1, 40)),
                                values=StrictBoolean())
    policy_version = ma.fields.String(validate=validate.Length(1, 40))
    note = ma.fields.String(validate=validate.Length(max=500))
    shown = shown_field()


def _subject_or_404(site, subject_id: str):
    subject = find_subject(site.id, subject_id)
    if subject is None:
        raise NotFound("subject", subject_id[:64])
    return subject


def _consent_body(site, subject) -> dict:
    state = read_state(site.id, subject.pseudonym) or {}
    return {"subject": subject.public_id, "consent": state_view(site, state or None),
            "channels": state.get("channels", {}),
            "policy_state": policy_state(site, state.get("decided_at"),
                                         state.get("policy_version")),
            "guardian": _guardian(site, subject)}


def _guardian(site, subject) -> dict | None:
    """`{"status": "awaiting", ...}` while a minor's grants wait for a guardian."""
    if "age_rule" not in site.settings:
        return None
    from ..guardians import guardian_state

    return guardian_state(site.id, subject.id)


@blp.route("/sites/<site_key>/subjects/<subject_id>", methods=["GET"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.response(200, SubjectConsentSchema)
def get_subject(site_key: str, subject_id: str):
    """Current consent of a subject by visitor id."""
    site = site_snapshot(site_key)
    return _consent_body(site, _subject_or_404(site, subject_id))


@blp.route("/sites/<site_key>/users/<user_id>", methods=["GET"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.response(200, SubjectConsentSchema)
def get_user(site_key: str, user_id: str):
    """Current consent of the site's own (logged-in) user."""
    site = site_snapshot(site_key)
    subject = find_subject_by_user(site.id, site.key, user_id)
    if subject is None:
        raise NotFound("user", user_id[:64])
    return _consent_body(site, subject)


@blp.route("/sites/<site_key>/subjects/<subject_id>/history", methods=["GET"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.response(200, HistorySchema)
def get_history(site_key: str, subject_id: str):
    """Every event of a subject, oldest first, with hash links."""
    site = site_snapshot(site_key)
    subject = _subject_or_404(site, subject_id)
    return {"subject": subject.public_id, "events": history(site.id, subject.pseudonym)}


@blp.route("/sites/<site_key>/subjects/<subject_id>/events", methods=["POST"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.arguments(BackendEventSchema)
@blp.response(201, SubjectConsentSchema)
def post_event(data: dict, site_key: str, subject_id: str):
    """Record a consent change made through the site's own backend (source `api`)."""
    site = site_snapshot(site_key)
    cats = data.get("categories") or {}
    for key, value in cats.items():
        if key not in site.category_keys:
            raise Invalid(f"unknown category {key!r} for site {site.key!r}",
                          field=f"categories.{key}")
        if key == ESSENTIAL and not value:
            raise Invalid("essential cookies cannot be refused", field="categories.essential")
    if data["action"] == "accept_all":
        cats = {k: True for k in site.category_keys}
    elif data["action"] == "reject_all":
        cats = {k: k == ESSENTIAL for k in site.category_keys}
    elif not cats:
        raise Invalid("name the categories this change is about", field="categories")
    ctx = request_context()

    def write():
        subject = _subject_or_404(site, subject_id)
        meta = {"note": data["note"]} if data.get("note") else {}
        if data.get("shown"):
            meta["notice"] = keep_told(site.id, data["shown"])
        append_event(site, subject, action=data["action"], source="api", categories=cats,
                     policy_version=data.get("policy_version") or site.policy_label,
                     details=ctx.details(None), meta=meta or None)
        return _consent_body(site, subject)

    return run_write(write), 201
