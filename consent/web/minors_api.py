"""Age rules for the site's backend: who is a minor, and a guardian's verified consent."""
from __future__ import annotations

import marshmallow as ma
from flask_smorest import Blueprint
from marshmallow import validate

from ..decisions import ConsentViewSchema, state_view
from ..ledger import read_state
from ..minors import record_age, record_guardian_consent
from ..sites import site_snapshot
from ..validation import PersonFields, StrictBoolean
from .auth import require_site_key

blp = Blueprint("minors_api", __name__, url_prefix="/api/v1",
                description="Age rules (sites with settings.age_rule): record that a person "
                            "is a minor, and a guardian's consent (site API key).")
SECURITY = [{"siteApiKey": []}]


class AgeSchema(PersonFields):
    """Whether the person is a minor under the site's age rule."""

    minor = StrictBoolean(required=True)


class AgeResultSchema(ma.Schema):
    subject = ma.fields.String()
    minor = ma.fields.Boolean()
    event_id = ma.fields.String(allow_none=True, metadata={
        "description": "The withdrawal of what the minor had granted alone, if any"})
    withdrawn = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Boolean())


class GuardianConsentSchema(PersonFields):
    """What the minor's guardian consented to (verified by the site)."""

    categories = ma.fields.Dict(keys=ma.fields.String(validate=validate.Length(1, 40)),
                                values=StrictBoolean(), validate=validate.Length(max=50))
    channels = ma.fields.Dict(keys=ma.fields.String(validate=validate.Length(1, 40)),
                              values=StrictBoolean(), validate=validate.Length(max=10))


class GuardianResultSchema(ma.Schema):
    subject = ma.fields.String()
    event_id = ma.fields.String()
    consent = ma.fields.Nested(ConsentViewSchema, allow_none=True)
    channels = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Boolean())


@blp.route("/sites/<site_key>/age", methods=["POST"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.arguments(AgeSchema)
@blp.response(200, AgeResultSchema)
def post_age(data: dict, site_key: str):
    """Record whether a person is a minor; a new minor's unguarded grants are withdrawn."""
    result = record_age(site_key, minor=data["minor"], subject=data.get("subject"),
                        user_id=data.get("user_id"))
    return {"subject": result.subject.public_id, "minor": result.minor,
            "event_id": result.event.event_id if result.event else None,
            "withdrawn": result.withdrawn}


@blp.route("/sites/<site_key>/guardian-consents", methods=["POST"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.arguments(GuardianConsentSchema)
@blp.response(201, GuardianResultSchema)
def post_guardian_consent(data: dict, site_key: str):
    """Record a guardian's consent for a minor (one `guardian` event, meta guardian: true)."""
    person, event = record_guardian_consent(site_key, categories=data.get("categories"),
                                            channels=data.get("channels"),
                                            subject=data.get("subject"),
                                            user_id=data.get("user_id"))
    state = event.state or read_state(event.site_id, person.pseudonym)
    return {"subject": person.public_id, "event_id": event.event_id,
            "consent": state_view(site_snapshot(site_key), state),
            "channels": (state or {}).get("channels", {})}, 201
