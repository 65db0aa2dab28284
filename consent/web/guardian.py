"""Guardian consent by a signed link: the guardian's page, and the site's backend API that
hands out the link (consent.guardians). The product sends no mail: the site delivers it.
"""
from __future__ import annotations

import marshmallow as ma
from flask import Blueprint as FlaskBlueprint
from flask import make_response, render_template, request
from flask_smorest import Blueprint
from marshmallow import validate

from ..csrf import exempt, protect
from ..database import iso
from ..guardian_page import page_notice, page_site
from ..guardians import STATUSES, answer, get_request, list_requests, read_token
from ..i18n import SUPPORTED, pick_locale
from ..notices import REVISION_RE, keep_shown
from ..validation import Exact, StrictSchema
from .auth import require_site_key
from .common import request_context, token_page

blp = Blueprint("guardian_api", __name__, url_prefix="/api/v1",
                description="Guardian requests (sites with an age rule): the confirmation "
                            "link and address to deliver to a minor's guardian.")
SECURITY = [{"siteApiKey": []}]


class GuardianRequestSchema(ma.Schema):
    """A minor's withheld grants waiting for a guardian (link and address while awaiting)."""

    id = ma.fields.Integer()
    subject = ma.fields.String(allow_none=True)
    status = ma.fields.String(metadata={"description": " | ".join(STATUSES)})
    categories = ma.fields.List(ma.fields.String())
    channels = ma.fields.List(ma.fields.String())
    created_at = ma.fields.Function(lambda v: iso(v.created_at))
    expires_at = ma.fields.Function(lambda v: iso(v.expires_at))
    decided_at = ma.fields.Function(lambda v: iso(v.decided_at) if v.decided_at else None)
    event_id = ma.fields.String()
    decision_event_id = ma.fields.String(allow_none=True)
    address = ma.fields.String(allow_none=True, metadata={
        "description": "The guardian's e-mail address the person gave, if any (deleted "
                       "once the guardian answers)"})
    url = ma.fields.String(allow_none=True, metadata={
        "description": "The signed confirmation link to deliver (while awaiting)"})


class RequestQuery(StrictSchema):
    status = ma.fields.String(validate=validate.OneOf(STATUSES))


@blp.route("/sites/<site_key>/guardian-requests", methods=["GET"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.arguments(RequestQuery, location="query")
@blp.response(200, GuardianRequestSchema(many=True))
def get_guardian_requests(query: dict, site_key: str):
    """The site's guardian requests, newest first (`?status=awaiting` for those to send).
    Addresses of requests that can no longer be answered are deleted meanwhile."""
    return list_requests(site_key, query.get("status"))


@blp.route("/sites/<site_key>/guardian-requests/<int:request_id>", methods=["GET"])
@require_site_key
@blp.doc(security=SECURITY)
@blp.response(200, GuardianRequestSchema)
def get_guardian_request(site_key: str, request_id: int):
    """One request: while awaiting, its confirmation link and the guardian's address."""
    return get_request(site_key, request_id)


# ---------------------------------------------------------------- the guardian's page

bp = protect(FlaskBlueprint("guardian", __name__))


@bp.after_request
def _private(response):
    # Every answer at a link's URL, a refusal or an invalid form too: the URL carries it.
    return token_page(response)


def _locale(site, requested: str | None) -> str:
    available = [loc for loc in site.locales if loc in SUPPORTED] or ["en"]
    return pick_locale(requested, available, site.default_locale,
                       request.headers.get("Accept-Language"))


def _page(site, words: dict, keys: tuple[list, list], locale: str, done: str | None,
          status: int = 200):
    # (a key the site no longer has is named by its key)
    asked = [words["categories"].get(k) or {"title": k} for k in keys[0]] + \
        [words["channels"].get(k) or {"title": k} for k in keys[1]]
    html = render_template("guardian.html", site=site, words=words["texts"], asked=asked,
                           lang=locale, done=done, revision=site.revision,
                           changed=status == 409,
                           # (the answer's page keeps the language this one chose)
                           action=f"{request.path}?lang={locale}")
    return token_page(make_response(html, status))


@bp.get("/guardian/<site_key>/<token>")
def confirm_page(site_key: str, token: str):
    """What the minor asked for, and the guardian's two answers; nothing changes on GET."""
    view = read_token(site_key, token)
    locale = _locale(view.site, request.args.get("lang"))
    site, words = page_site(site_key, locale)
    # (kept now, so that the answer finds what this page said whichever process takes it)
    keep_shown(site, locale, None, "guardian")
    return _page(site, words, (view.categories, view.channels), locale, None)


class AnswerForm(StrictSchema):
    """The guardian's answer, and the page it was given on."""

    decision = ma.fields.String(required=True, validate=validate.OneOf(("agree", "refuse")))
    revision = ma.fields.String(validate=Exact(REVISION_RE))
    lang = ma.fields.String(validate=validate.Length(max=16))


@exempt
@bp.post("/guardian/<site_key>/<token>")
def confirm(site_key: str, token: str):
    """The guardian's answer: `decision=agree` records their consent (409, nothing
    recorded, the page shown again when the form does not name a page whose words are
    kept), `refuse` does not."""
    data = AnswerForm().load(request.form.to_dict())
    view = read_token(site_key, token)
    locale = _locale(view.site, request.args.get("lang") or data.get("lang"))
    shown = (page_notice(view.site, locale, data.get("revision"), data.get("lang"))
             if data["decision"] == "agree" else None)
    if data["decision"] == "agree" and (shown is None or shown.digest is None):
        # Which words this agreement was given on cannot be told (a form without the
        # page's revision, or one whose words no kept notice holds): nothing is recorded,
        # and the guardian is shown the page as it is now, to answer again.
        site, words = page_site(site_key, locale)
        keep_shown(site, locale, None, "guardian")
        return _page(site, words, (view.categories, view.channels), locale, None, 409)
    _answered, event = answer(view, data["decision"] == "agree", request_context(),
                              notice=shown.digest if shown else None,
                              policy=shown.policy if shown else None)
    # What the answer turned on (a key the person decided again meanwhile stays as they
    # chose); a refusal names what it refused.
    keys = ([k for k in view.categories if k in (event.categories or {})],
            [k for k in view.channels if k in (event.channels or {})]) if event else \
        (view.categories, view.channels)
    site, words = page_site(site_key, locale)
    return _page(site, words, keys, locale, data["decision"])
