"""The HTML admin: sign-in, dashboard, policy versions, site configuration, requests,
exports, tokens and users. Every view is guarded by `admin_required(scope)`."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from urllib.parse import urlsplit

import marshmallow as ma
from flask import (Blueprint, Response, abort, current_app, flash, redirect, render_template,
                   request, stream_with_context, url_for)
from marshmallow import validate

from .. import admin_auth as auth
from ..admin_auth import admin_required, current_principal, public_admin
from ..audit import (ExportFilters, iter_export_bytes, key_id, parse_when, public_key_pem,
                     public_key_raw, public_key_text)
from ..csrf import protect
from ..dashboard import charts, dashboard_data, search_events
from ..database import run_write
from ..errors import DomainError, Invalid, Unauthorized
from ..ledger import ACTIONS
from ..policies import list_policies
from ..scanner.service import latest_news
from ..requests import (KINDS, VIA, access_link, access_report, carry_out,
                        request_receipt,
                        complete_request, consent_receipt, get_request, link_works,
                        missing_controller_details,
                        list_requests,
                        open_request, open_request_summary, request_subject,
                        subject_label)
from ..site_admin import (add_category, add_site, issue_api_key, list_api_keys, list_sites,
                          publish_site_policy, revoke_api_key, set_widget_texts, site_values,
                          update_category, update_site_section, widget_texts)
from ..consent_mode import describe as describe_consent_mode
from ..consent_mode import parse_region_lines, set_consent_mode
from ..regions import describe as describe_region_rules
from ..regions import parse_rule_lines, set_region_rules, subdivision_warning
from ..readiness import embed_snippet
from ..site_history import list_changes
from ..sites import CATEGORY_KEY_MAX, ESSENTIAL, MAX_CATEGORIES, get_site, site_snapshot
from ..validation import Exact, HttpUrl, Lines, StrictSchema
from .admin_forms import (GENERAL, errors_of, errors_on, parse_service_rows,
                          service_rows)

bp = protect(Blueprint("admin", __name__, url_prefix="/admin"))
bp.before_app_request(auth.guard_unmarked_admin_views)


@bp.after_request
def _no_store(response):
    # Admin pages show personal data and secrets: keep them out of shared caches.
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


@bp.app_context_processor
def _admin_globals():
    return {"admin_principal": current_principal}


# ---------------------------------------------------------------- form schemas


class FormBool(ma.fields.Boolean):
    """An HTML checkbox: present ("on") is true, absent is false."""

    def __init__(self, **kwargs):
        super().__init__(load_default=False, **kwargs)


class FormSchema(StrictSchema):
    """Form fields; the CSRF token is checked elsewhere and ignored here."""

    csrf_token = ma.fields.String(load_only=True)


def form_values(lists: tuple[str, ...] = ()) -> dict:
    """request.form as a dict; LISTS: fields of several checkboxes, their values joined by
    spaces."""
    form = request.form.to_dict()
    for name in lists:
        form[name] = " ".join(request.form.getlist(name))
    return form


def parse_form(schema: ma.Schema, lists: tuple[str, ...] = ()) -> dict:
    """Load request.form with SCHEMA (422 page on bad input); LISTS as form_values."""
    data = schema.load(form_values(lists))
    data.pop("csrf_token", None)
    return data


class SignInForm(FormSchema):
    email = ma.fields.String(required=True, validate=validate.Length(1, 254))
    password = ma.fields.String(required=True, validate=validate.Length(1, 1000))
    next = ma.fields.String(load_default="")


class NewSiteForm(FormSchema):
    key = ma.fields.String(required=True, validate=Exact(r"^[A-Za-z0-9_-]{3,64}$"))
    name = ma.fields.String(required=True, validate=validate.Length(1, 200))
    allowed_origins = Lines(load_default=list)


class GeneralForm(FormSchema):
    name = ma.fields.String(required=True, validate=validate.Length(1, 200))
    allowed_origins = Lines(load_default=list)
    locales = Lines(required=True)
    default_locale = ma.fields.String(required=True, validate=validate.Length(2, 16))


class ConsentForm(FormSchema):
    accept_lifetime_days = ma.fields.Integer(required=True, validate=validate.Range(1, 3650))
    reject_lifetime_days = ma.fields.Integer(required=True, validate=validate.Range(1, 3650))
    deadline_kind = ma.fields.String(required=True,
                                     validate=validate.OneOf(("days", "business_days")))
    deadline_value = ma.fields.Integer(required=True, validate=validate.Range(1, 365))
    retention_days = ma.fields.Integer(allow_none=True, validate=validate.Range(30, 36500))
    opt_out_kind = ma.fields.String(load_default="business_days",
                                    validate=validate.OneOf(("days", "business_days")))
    opt_out_value = ma.fields.Integer(load_default=None, allow_none=True,
                                      validate=validate.Range(1, 365))

    @ma.pre_load
    def _blank_retention(self, data, **kwargs):
        for name in ("retention_days", "opt_out_value"):
            if data.get(name) == "":
                data = dict(data, **{name: None})
        return data


class ControllerForm(FormSchema):
    # The data controller named in consent receipts (Kantara CR v1.1 needs them all).
    controller_name = ma.fields.String(validate=validate.Length(max=200))
    controller_contact = ma.fields.String(validate=validate.Length(max=200))
    controller_email = ma.fields.String(validate=validate.Length(max=254))
    controller_phone = ma.fields.String(validate=validate.Length(max=40))
    controller_street = ma.fields.String(validate=validate.Length(max=200))
    controller_postal_code = ma.fields.String(validate=validate.Length(max=20))
    controller_locality = ma.fields.String(validate=validate.Length(max=100))
    controller_region = ma.fields.String(validate=validate.Length(max=100))
    controller_country = ma.fields.String(validate=validate.Length(max=2))
    controller_url = HttpUrl(validate=validate.Length(max=500))
    controller_jurisdiction = ma.fields.String(validate=validate.Length(max=20))

    @ma.pre_load
    def _blanks(self, data, **kwargs):
        return {k: v for k, v in data.items() if not (k == "controller_url" and v == "")}


class MessagesForm(FormSchema):
    # (checked against the site and saved by site_admin.update_site_section)
    gpc_categories = ma.fields.String(load_default="", validate=validate.Length(max=2000))
    email_promotional = FormBool()
    sms_promotional = FormBool()
    push_promotional = FormBool()
    push_service = FormBool()
    unsubscribe_scope = ma.fields.String(load_default="channel",
                                         validate=validate.Length(max=40))
    sms_stop = Lines(load_default=list)
    sms_start = Lines(load_default=list)
    sms_opt_in = FormBool()

    @ma.post_load
    def _settings(self, data, **kwargs):
        return {"gpc_categories": data["gpc_categories"].replace(",", " ").split(),
                "channel_defaults": {k.replace("_", ".", 1): data[k] for k in (
                    "email_promotional", "sms_promotional", "push_promotional",
                    "push_service")},
                "unsubscribe_scope": data["unsubscribe_scope"],
                "sms_keywords": {"stop": data["sms_stop"], "start": data["sms_start"],
                                 "opt_in": data["sms_opt_in"]},
                **({"csrf_token": data["csrf_token"]} if "csrf_token" in data else {})}


class CookieForm(FormSchema):
    # (checked against the site's origins and this server by site_admin.check_cookie)
    cookie_name = ma.fields.String(load_default="consent", validate=validate.Length(max=64))
    cookie_domain = ma.fields.String(load_default="", validate=validate.Length(max=253))
    cookie_same_site = ma.fields.String(load_default="Lax", validate=validate.Length(max=10))
    cookie_server_set = FormBool()
    public_base_url = HttpUrl(load_default="", validate=validate.Length(max=500))
    # (unsubscribe links must work for 30 days after a message: CAN-SPAM; at most 10 years)
    unsubscribe_link_days = ma.fields.Integer(load_default=365, validate=validate.Range(30, 3650))
    login_session_minutes = ma.fields.Integer(load_default=60, validate=validate.Range(1, 1440))

    @ma.pre_load
    def _blanks(self, data, **kwargs):
        return {k: v for k, v in data.items() if not (k in (
            "public_base_url", "unsubscribe_link_days", "login_session_minutes") and v == "")}

    @ma.validates("public_base_url")
    def _https_in_production(self, value, **kwargs):
        if value and current_app.config.get("ENV_NAME") == "production" \
                and not value.startswith("https://"):
            raise ma.ValidationError("links in e-mails must be https in production")
        if value and ("?" in value or "#" in value):
            raise ma.ValidationError("a base address has no query or fragment")


class MinorsForm(FormSchema):
    # (checked by minors.parse_age_rule through site_admin.update_site_section)
    age_rule_on = FormBool()
    adult_age = ma.fields.Integer(load_default=18, validate=validate.Range(1, 25))
    from_age = ma.fields.Integer(load_default=None, allow_none=True,
                                 validate=validate.Range(1, 24))
    guardian = ma.fields.String(load_default="guardian", validate=validate.Length(max=20))
    ask = ma.fields.String(load_default="when_flagged", validate=validate.Length(max=20))
    guardian_verification = ma.fields.String(load_default="link",
                                             validate=validate.Length(max=20))
    categories = ma.fields.String(load_default="", validate=validate.Length(max=2000))
    channels = ma.fields.String(load_default="", validate=validate.Length(max=200))
    quote = ma.fields.String(load_default="", validate=validate.Length(max=2000))

    @ma.pre_load
    def _blank_from_age(self, data, **kwargs):
        if data.get("from_age") == "":
            data = dict(data, from_age=None)
        return data

    @ma.post_load
    def _rule(self, data, **kwargs):
        if not data["age_rule_on"]:
            return {"age_rule": None}
        rule = {"adult_age": data["adult_age"], "guardian": data["guardian"],
                "ask": data["ask"], "guardian_verification": data["guardian_verification"],
                "categories": data["categories"].split(), "channels": data["channels"].split()}
        if data["from_age"] is not None:
            rule["from_age"] = data["from_age"]
        if data["quote"].strip():
            rule["quote"] = data["quote"].strip()
        return {"age_rule": rule}


class NewCategoryForm(FormSchema):
    # (length and form are checked by site_admin.add_category, with the cookie's reason)
    key = ma.fields.String(required=True, validate=validate.Length(1, 200))
    title = ma.fields.String(required=True, validate=validate.Length(1, 200))


class ConsentModeForm(FormSchema):
    data_layer = ma.fields.String(load_default="dataLayer", validate=validate.Length(max=64))
    ads_data_redaction = FormBool()
    url_passthrough = FormBool()
    regions = ma.fields.String(load_default="", validate=validate.Length(max=4000))


class RegionRulesForm(FormSchema):
    rules = ma.fields.String(load_default="", validate=validate.Length(max=8000))
    default = ma.fields.String(load_default="opt-in", validate=validate.Length(max=20))
    sensitive = ma.fields.String(load_default="", validate=validate.Length(max=2000))
    gpp_usca = FormBool()


class ApiKeyForm(FormSchema):
    name = ma.fields.String(load_default="default", validate=validate.Length(max=100))


class PolicyForm(FormSchema):
    label = ma.fields.String(required=True, validate=validate.Length(1, 40))
    text = ma.fields.String(load_default="", validate=validate.Length(max=500_000))
    url = HttpUrl(load_default="", validate=validate.Length(max=500))
    material = FormBool()
    summary = ma.fields.String(load_default="", validate=validate.Length(max=2000))
    effective_at = ma.fields.String(load_default="")

    @ma.pre_load
    def _blank_url(self, data, **kwargs):
        if data.get("url") == "":
            data = {k: v for k, v in data.items() if k != "url"}
        return data


class RequestForm(FormSchema):
    kind = ma.fields.String(required=True, validate=validate.OneOf(KINDS))
    subject = ma.fields.String(load_default="", validate=validate.Length(max=64))
    user_id = ma.fields.String(load_default="", validate=validate.Length(max=200))
    address = ma.fields.String(load_default="", validate=validate.Length(max=254))
    channel = ma.fields.String(load_default="email", validate=validate.OneOf(("email", "sms")))
    # <input type="datetime-local"> in UTC; empty: now
    received_at = ma.fields.String(load_default="", validate=validate.Length(max=40))
    via = ma.fields.String(load_default="email", validate=validate.OneOf(VIA))
    note = ma.fields.String(load_default="", validate=validate.Length(max=500))


class CloseForm(FormSchema):
    note = ma.fields.String(load_default="", validate=validate.Length(max=500))


class RejectForm(FormSchema):
    # A rejection is answered with its reason: the person is told why.
    note = ma.fields.String(required=True, validate=validate.Length(
        1, 500, error="give the reason (1-500 characters)"))


class TokenForm(FormSchema):
    name = ma.fields.String(required=True, validate=validate.Length(1, 100))
    site = ma.fields.String(load_default="")
    days = ma.fields.Integer(allow_none=True, validate=validate.Range(1, 3650))

    @ma.pre_load
    def _blank_days(self, data, **kwargs):
        if data.get("days") == "":
            data = dict(data, days=None)
        return data


class PasswordForm(FormSchema):
    current = ma.fields.String(required=True, validate=validate.Length(1, 1000))
    password = ma.fields.String(required=True, validate=validate.Length(1, 1000))
    confirm = ma.fields.String(required=True, validate=validate.Length(1, 1000))


class UserForm(FormSchema):
    email = ma.fields.String(required=True, validate=validate.Length(3, 254))
    name = ma.fields.String(load_default="", validate=validate.Length(max=200))
    password = ma.fields.String(required=True, validate=validate.Length(1, 1000))


def _scopes_from_form() -> list[str]:
    return [s for s in request.form.getlist("scopes") if s]


class ExportQuery(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    since = ma.fields.String(load_default="")
    until = ma.fields.String(load_default="")
    subject = ma.fields.String(load_default="", validate=validate.Length(max=64))
    category = ma.fields.String(load_default="", validate=Exact(r"^[a-z0-9_]{0,40}$"))
    action = ma.fields.List(ma.fields.String(validate=validate.OneOf(ACTIONS)),
                            load_default=list)


def export_filters(site_key: str, args) -> ExportFilters:
    """Export filters from query arguments (shared with the token API)."""
    data = ExportQuery().load({**args.to_dict(), "action": args.getlist("action")})
    found = {}
    for name in ("since", "until"):
        try:
            found[name] = parse_when(data[name], end=name == "until")
        except ValueError as exc:
            raise Invalid(str(exc), field=name)
    since, until = found["since"], found["until"]
    for name, value in (("since", since), ("until", until)):
        try:
            if value is not None:
                value.astimezone(timezone.utc)
        except OverflowError:
            # (e.g. 0001-01-01T00:00:00+14:00 has no UTC time: checked here, before the
            # streamed export starts and could no longer answer with an error)
            raise Invalid("the date is out of range", field=name)
    return ExportFilters(site_key=site_snapshot(site_key).key, since=since, until=until,
                         subject=data["subject"] or None, category=data["category"] or None,
                         actions=tuple(data["action"]))


def export_response(filters: ExportFilters, fmt: str) -> Response:
    """A streamed download of an export (CSV or JSON Lines)."""
    if fmt not in ("csv", "jsonl"):
        abort(404)
    mimetype = "text/csv" if fmt == "csv" else "application/x-ndjson"
    stamp = (filters.until or filters.since or None)
    name = f"consent-{filters.site_key}{'-' + stamp.date().isoformat() if stamp else ''}.{fmt}"
    body = stream_with_context(iter_export_bytes(filters, fmt))
    return Response(body, mimetype=mimetype, headers={
        "Content-Disposition": f'attachment; filename="{name}"',
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


# ---------------------------------------------------------------- sign-in


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/admin") and not target.startswith("//") \
            and "\\" not in target:
        return target
    return url_for("admin.home")


@bp.get("/sign-in")
@public_admin
def sign_in():
    """The sign-in form."""
    return render_template("admin/sign_in.html", next=request.args.get("next", ""),
                           error=None)


@bp.post("/sign-in")
@public_admin
def sign_in_post():
    """Check e-mail and password and start a session."""
    try:
        data = parse_form(SignInForm())
    except ma.ValidationError:
        return render_template("admin/sign_in.html", next=request.form.get("next", ""),
                               email=request.form.get("email", ""),
                               error="Give your e-mail address and password."), 422
    try:
        user = auth.authenticate(data["email"], data["password"])
    except Unauthorized as exc:
        return render_template("admin/sign_in.html", next=data["next"], email=data["email"],
                               error=exc.detail), 401
    auth.sign_in(user)
    return redirect(_safe_next(data["next"]))


@bp.post("/sign-out")
@admin_required(None)
def sign_out():
    """End the session."""
    auth.sign_out()
    return redirect(url_for("admin.sign_in"))


@bp.get("/account/password")
@admin_required(None)
def password_page(*, values=None, errors=None, status=200):
    """The form to change one's own password."""
    return render_template("admin/password.html", done=request.args.get("done") == "1",
                           errors=errors or {}), status


@bp.post("/account/password")
@admin_required(None)
@errors_on(password_page)
def password_post():
    """Change one's own password; every other session of the account ends."""
    data = parse_form(PasswordForm())
    user = auth.change_own_password(current_principal().id, data["current"],
                                    data["password"], data["confirm"])
    auth.sign_in(user)  # this browser goes on under the new session generation
    return redirect(url_for("admin.password_page", done=1))


# ---------------------------------------------------------------- sites and dashboard


@bp.get("/")
@admin_required("audit:read")
def home():
    """The first site's dashboard, or the list of sites."""
    sites = list_sites()
    if len(sites) == 1:
        return redirect(url_for("admin.dashboard", site_key=sites[0].key))
    return redirect(url_for("admin.sites"))


@bp.get("/sites")
@admin_required("audit:read")
def sites(*, values=None, errors=None, status=200):
    """Every site, with a form to add one."""
    return render_template("admin/sites.html", sites=list_sites(), values=values or {},
                           errors=errors or {}), status


@bp.post("/sites")
@admin_required("sites:write")
def create_site_post():
    """Create a site with the standard categories."""
    try:
        data = parse_form(NewSiteForm())
        site = add_site(data["key"], data["name"], data["allowed_origins"])
    except (ma.ValidationError, DomainError) as exc:
        return sites(values=request.form.to_dict(), errors=errors_of(exc),
                     status=exc.status if isinstance(exc, DomainError) else 422)
    flash(f"Site {site.key} created. Next: put the widget on its pages (the snippet "
          "below), scan it for cookies (Scan for cookies) or add each category's services, "
          "and publish a policy.", "success")
    return redirect(url_for("admin.settings", site_key=site.key))


@bp.get("/sites/<site_key>/")
@admin_required("audit:read")
def dashboard(site_key: str):
    """Charts of the last 30 days, open requests, event search."""
    from ..ledger.log import log_health

    data = dashboard_data(site_key)
    log = log_health()
    behind = next((s for s in log["sites"] if s["site"] == data["site"].key), None) \
        if log["status"] == "behind" else None
    return render_template("admin/dashboard.html", site=data["site"], data=data,
                           charts=charts(data), log_behind=behind, log=log,
                           requests=open_request_summary(data["site"].id),
                           scan_news=latest_news(data["site"].id),
                           subject_label=subject_label, now=_now(),
                           gap_link=lambda gap: _gap_link(site_key, gap))


def _gap_link(site_key: str, gap) -> tuple[str, str] | None:
    """(URL, label) of the admin page where a readiness gap (consent.readiness.Gap) is
    fixed."""
    if gap.page == "policies":
        return url_for("admin.policies", site_key=site_key), "Policies"
    if gap.page == "general":
        return (url_for("admin.settings_section", site_key=site_key, section="general"),
                "General settings")
    if gap.page and gap.page.startswith("category:"):
        key = gap.page.partition(":")[2]
        return url_for("admin.category_page", site_key=site_key, key=key), f"Category {key}"
    return None


def _now():
    from ..database import utcnow

    return utcnow()


@bp.get("/sites/<site_key>/events")
@admin_required("audit:read")
def events(site_key: str):
    """Every event of one subject (by visitor id, pseudonym or the site's user id)."""
    query = request.args.get("subject", "")
    subject, rows = search_events(site_key, query)
    return render_template("admin/events.html", site=site_snapshot(site_key), query=query,
                           subject=subject, events=rows)


# ---------------------------------------------------------------- policies


@bp.get("/sites/<site_key>/policies")
@admin_required("audit:read")
def policies(site_key: str, *, values=None, errors=None, status=200):
    """Published versions and the form to publish a new one."""
    site = site_snapshot(site_key)
    return render_template("admin/policies.html", site=site, versions=list_policies(site.id),
                           values=values or {}, errors=errors or {}), status


@bp.post("/sites/<site_key>/policies")
@admin_required("policies:write")
def publish_policy_post(site_key: str):
    """Publish a version (material: every visitor is asked again)."""
    try:
        data = parse_form(PolicyForm())
        try:
            effective = parse_when(data["effective_at"]) if data["effective_at"] else None
        except ValueError as exc:
            raise Invalid(str(exc), field="effective_at")
        if effective is not None and effective < _now() and effective.date() == _now().date():
            effective = None  # the form gives a day: today means from now

        publish_site_policy(site_key, label=data["label"], text=data["text"], url=data["url"],
                            material=data["material"], summary=data["summary"],
                            effective_at=effective)
    except (ma.ValidationError, DomainError) as exc:
        return policies(site_key, values=request.form.to_dict(), errors=errors_of(exc),
                        status=exc.status if isinstance(exc, DomainError) else 422)
    flash(f"Version {data['label']} published"
          + (": every visitor's widget asks again." if data["material"] else "."), "success")
    return redirect(url_for("admin.policies", site_key=site_key))


# ---------------------------------------------------------------- site configuration


SETTINGS_SECTIONS = (("general", "General"), ("consent", "Lifetimes and requests"),
                     ("controller", "Data controller"), ("messages", "Messages and GPC"),
                     ("cookie", "Cookie and links"), ("minors", "Minors"),
                     ("consent-mode", "Google Consent Mode"),
                     ("regions", "Rules by region"), ("texts", "Widget texts"),
                     ("categories", "Categories"),
                     ("api-keys", "API keys"), ("sms", "SMS gateways"),
                     ("history", "Change history"))
SECTION_FORMS = {"general": lambda: GeneralForm(), "consent": lambda: ConsentForm(),
                 "controller": lambda: ControllerForm(), "messages": lambda: MessagesForm(),
                 "cookie": lambda: CookieForm(), "minors": lambda: MinorsForm()}


def _section_values(site) -> dict:
    """The settings forms' values as stored (what the fields show on a GET)."""
    settings = site.settings or {}
    rule = settings.get("request_deadline") or {"days": 30}
    controller = settings.get("controller") or {}
    address = controller.get("address") if isinstance(controller.get("address"), dict) \
        else {"streetAddress": controller.get("address") or ""}
    return {"name": site.name, "allowed_origins": "\n".join(site.allowed_origins or []),
            "locales": "\n".join(site.locales or []), "default_locale": site.default_locale,
            "accept_lifetime_days": site.accept_lifetime_days,
            "reject_lifetime_days": site.reject_lifetime_days,
            "deadline_kind": "business_days" if "business_days" in rule else "days",
            "deadline_value": rule.get("days") or rule.get("business_days"),
            "retention_days": settings.get("retention_days") or "",
            "opt_out_kind": "days" if "days" in (settings.get("opt_out_deadline") or {})
            else "business_days",
            "opt_out_value": next(iter((settings.get("opt_out_deadline") or {}).values()), ""),
            **{f"controller_{k}": controller.get(k, "")
               for k in ("name", "contact", "email", "url", "jurisdiction")},
            "controller_phone": (controller.get("phone") or "").replace("tel:", ""),
            **{f"controller_{form}": address.get(key, "")
               for form, key in ADDRESS_FORM.items()},
            **_messages_values(site), **_cookie_values(site), **_minors_values(site)}


def _minors_values(site) -> dict:
    rule = site_values(site)["age_rule"] or {}
    return {"age_rule_on": bool(rule), "adult_age": rule.get("adult_age", 18),
            "from_age": rule.get("from_age") or "", "guardian": rule.get("guardian", "guardian"),
            "ask": rule.get("ask", "when_flagged"),
            "guardian_verification": rule.get("guardian_verification", "link"),
            "categories": " ".join(rule.get("categories", ["advertising"])),
            "channels": " ".join(rule.get("channels", ["email.promotional", "sms.promotional",
                                                       "push.promotional"])),
            "quote": rule.get("quote", "")}


def _cookie_values(site) -> dict:
    stored = site_values(site)
    cookie = stored["cookie"]
    return {"cookie_name": cookie["name"], "cookie_domain": cookie["domain"],
            "cookie_same_site": cookie["same_site"], "cookie_server_set": cookie["server_set"],
            "public_base_url": stored["public_base_url"],
            "unsubscribe_link_days": stored["unsubscribe_link_days"],
            "login_session_minutes": stored["login_session_minutes"]}


# What each widget string is (consent/locales/widget.en.json), for the Widget texts page.
TEXT_LABELS = {
    "title": "Banner title", "text": "Banner text", "policy": "Link to the policy",
    "acceptAll": "Accept all button", "rejectAll": "Reject all button",
    "customise": "Customise button", "prefsTitle": "Dialog title", "prefsText": "Dialog text",
    "save": "Save button", "close": "Close button", "alwaysOn": "Always-on label",
    "services": "Services heading", "cookies": "Cookies label",
    "gpcTitle": "GPC note title", "gpc": "GPC note", "ok": "OK button",
    "more": "Link to the preference center", "nt": "Policy change notice",
    "ntTitle": "Policy change notice title", "ntLink": "Policy change link",
    "proof": "Proof download link"}
CHANNEL_LABELS = (("email.promotional", "Offers by e-mail"), ("sms.promotional", "Offers by SMS"),
                  ("push.promotional", "Offers by push notification"),
                  ("push.service", "Service news by push notification"))


def _messages_values(site) -> dict:
    stored = site_values(site)
    words = stored["sms_keywords"]
    return {"gpc_categories": " ".join(stored["gpc_categories"]),
            **{k.replace(".", "_"): on for k, on in stored["channel_defaults"].items()},
            "unsubscribe_scope": stored["unsubscribe_scope"],
            "sms_stop": "\n".join(words["stop"]), "sms_start": "\n".join(words["start"]),
            "sms_opt_in": words["opt_in"]}


def _settings_page(site_key: str, section: str, *, values=None, errors=None, status=200,
                   category=None, rows=None):
    site = get_site(site_key)
    context = {"site": site, "section": section, "sections": SETTINGS_SECTIONS,
               "errors": errors or {}, "max_categories": MAX_CATEGORIES,
               "key_max": CATEGORY_KEY_MAX}
    if section in SECTION_FORMS:
        context["values"] = values if values is not None else _section_values(site)
        base = (current_app.config.get("CONSENT_PUBLIC_URL") or request.url_root).rstrip("/")
        context["embed"] = embed_snippet(site.key, base)
        context["optional_categories"] = [
            (c.key, c.titles.get(site.default_locale) or c.key)
            for c in site.categories if c.key != ESSENTIAL]
        context["channel_labels"] = CHANNEL_LABELS
        context["missing_controller"] = missing_controller_details(
            (site.settings or {}).get("controller"))
    elif section == "categories":
        context["new_values"] = values or {}
    elif section == "category":
        context["category"] = category
        context["values"] = values if values is not None else {
            **{f"title_{loc}": (category.titles or {}).get(loc, "") for loc in site.locales},
            **{f"description_{loc}": (category.descriptions or {}).get(loc, "")
               for loc in site.locales}}
        context["rows"] = rows if rows is not None else service_rows(category.services)
    elif section == "consent-mode":
        context["consent_mode"] = describe_consent_mode(site)
        if values is not None:  # a refused save: what was typed
            context["consent_mode"] = {
                **values, "ads_data_redaction": bool(values.get("ads_data_redaction")),
                "url_passthrough": bool(values.get("url_passthrough"))}
    elif section == "regions":
        context["regions"] = describe_region_rules(site.settings or {})
        context["region_warning"] = subdivision_warning(
            site.settings or {}, current_app.config.get("CONSENT_REGION_HEADERS", ""))
        if values is not None:  # a refused save: what was typed
            context["regions"] = {
                "rules": values.get("rules", ""), "default": values.get("default", ""),
                "sensitive": values.get("sensitive", ""),
                "gpp_states": ["usca"] if values.get("gpp_usca") else []}
    elif section == "texts":
        locale = request.args.get("locale") or (values or {}).get("locale")
        locale = locale if locale in (site.locales or []) else site.default_locale
        context["locale"] = locale
        context["texts"] = widget_texts(site, locale)
        context["labels"] = TEXT_LABELS
        context["values"] = values if values is not None else {
            f"t_{key}": own for key, _text, own in context["texts"]}
    elif section == "api-keys":
        context["api_keys"] = list_api_keys(site_key)
        context["values"] = values if values is not None else {"name": "backend"}
    elif section == "sms":
        from ..sms_gateways import list_gateways

        context["gateways"] = list_gateways(site_key)
        context["values"] = values if values is not None else {"provider": "twilio"}
    elif section == "history":
        context["changes"] = list_changes(site.id)
    return render_template("admin/settings.html", **context), status


@bp.get("/sites/<site_key>/settings")
@admin_required("audit:read")
def settings(site_key: str):
    """The settings' first section (general); the others are one link away."""
    return _settings_page(site_key, "general")


@bp.get("/sites/<site_key>/settings/<any(general,consent,controller,messages,cookie,minors,"
        "\"consent-mode\","
        "regions,texts,categories,\"api-keys\",sms,history):section>")
@admin_required("audit:read")
def settings_section(site_key: str, section: str):
    """One section of the settings, on a page of its own."""
    return _settings_page(site_key, section)


@bp.post("/sites/<site_key>/settings/<any(general,consent,controller,messages,cookie,"
         "minors):section>")
@admin_required("sites:write")
def settings_post(site_key: str, section: str):
    """Save one section of the settings (only the fields it shows)."""
    lists = {"messages": ("gpc_categories",),
             "minors": ("categories", "channels")}.get(section, ())
    try:
        data = parse_form(SECTION_FORMS[section](), lists)
        if section == "controller":
            data = {"controller": controller_from_form(data)}
        elif section == "general":
            data["server_host"] = _server_host()  # (new origins must suit the cookie)
        elif section == "cookie":
            data = {"cookie": {"name": data["cookie_name"].strip(),
                               "domain": data["cookie_domain"],
                               "same_site": data["cookie_same_site"],
                               "server_set": data["cookie_server_set"]},
                    "public_base_url": data.get("public_base_url", ""),
                    "unsubscribe_link_days": data["unsubscribe_link_days"],
                    "login_session_minutes": data["login_session_minutes"],
                    "server_host": _server_host()}
        changed = update_site_section(site_key, section, data, current_principal().actor)
    except (ma.ValidationError, DomainError) as exc:
        return _settings_page(site_key, section, values=form_values(lists),
                              errors=errors_of(exc), status=422)
    flash(f"Saved: {', '.join(changed)}." if changed else "Nothing changed.",
          "success" if changed else "info")
    return redirect(url_for("admin.settings_section", site_key=site_key, section=section))


def _server_host() -> str:
    """This consent server's host as browsers see it: CONSENT_PUBLIC_URL's, else the
    request's."""
    public = current_app.config.get("CONSENT_PUBLIC_URL") or ""
    return urlsplit(public).hostname or urlsplit("//" + request.host).hostname or ""


ADDRESS_FORM = {"street": "streetAddress", "postal_code": "postalCode",
                "locality": "addressLocality", "region": "addressRegion",
                "country": "addressCountry"}


def controller_from_form(data: dict) -> dict:
    """The controller_* form fields as the settings' controller dict (address nested)."""
    fields = {k.removeprefix("controller_"): v for k, v in data.items()
              if k.startswith("controller_")}
    address = {ADDRESS_FORM[k]: fields.pop(k) for k in list(fields) if k in ADDRESS_FORM}
    return {**fields, "address": address}


CONSENT_MODE_LABELS = {"data_layer": "dataLayer name", "regions": "region defaults"}


def _consent_mode_page(site_key: str, *, values=None, errors=None, status=200):
    return _settings_page(site_key, "consent-mode", values=values, errors=errors,
                          status=status)


@bp.post("/sites/<site_key>/consent-mode")
@admin_required("sites:write")
@errors_on(_consent_mode_page)
def consent_mode_post(site_key: str):
    """Save the site's Google Consent Mode options."""
    data = parse_form(ConsentModeForm())
    data["regions"] = parse_region_lines(data["regions"])
    before = describe_consent_mode(get_site(site_key))
    set_consent_mode(site_key, {**data, "data_layer": data["data_layer"] or "dataLayer"})
    after = describe_consent_mode(get_site(site_key))
    changed = [CONSENT_MODE_LABELS.get(k, k) for k in after if after[k] != before.get(k)]
    flash(f"Saved Google Consent Mode: {', '.join(changed)}." if changed
          else "Nothing changed.", "success" if changed else "info")
    return redirect(url_for("admin.settings_section", site_key=site_key,
                            section="consent-mode"))


def _regions_page(site_key: str, *, values=None, errors=None, status=200):
    return _settings_page(site_key, "regions", values=values, errors=errors, status=status)


@bp.post("/sites/<site_key>/regions")
@admin_required("sites:write")
@errors_on(_regions_page)
def region_rules_post(site_key: str):
    """Save the site's rules by region (docs/regions.md)."""
    data = parse_form(RegionRulesForm())
    set_region_rules(site_key, {
        "rules": parse_rule_lines(data["rules"]), "default": data["default"],
        "sensitive": data["sensitive"].replace(",", " ").split(),
        "gpp_states": ["usca"] if data["gpp_usca"] else []})
    flash("Saved: rules by region.", "success")
    return redirect(url_for("admin.settings_section", site_key=site_key, section="regions"))


@bp.post("/sites/<site_key>/texts/<locale>")
@admin_required("sites:write")
def texts_post(site_key: str, locale: str):
    """Save the site's own widget strings in one language (empty: the built-in)."""
    form = request.form.to_dict()
    form.pop("csrf_token", None)
    try:
        extra = sorted(k for k in form if not k.startswith("t_"))
        if extra:
            raise Invalid(f"unknown field {extra[0]}", field=GENERAL)
        changed = set_widget_texts(site_key, locale, {k[2:]: v for k, v in form.items()},
                                   current_principal().actor)
    except DomainError as exc:
        return _settings_page(site_key, "texts", values={**form, "locale": locale},
                              errors=errors_of(exc), status=exc.status)
    flash(f"Saved ({locale}): {', '.join(changed)}." if changed else "Nothing changed.",
          "success" if changed else "info")
    return redirect(url_for("admin.settings_section", site_key=site_key, section="texts",
                            locale=locale))


@bp.post("/sites/<site_key>/categories")
@admin_required("sites:write")
def add_category_post(site_key: str):
    """Add a custom category."""
    try:
        data = parse_form(NewCategoryForm())
        add_category(site_key, data["key"], data["title"])
    except (ma.ValidationError, DomainError) as exc:
        return _settings_page(site_key, "categories", values=request.form.to_dict(),
                              errors=errors_of(exc), status=exc.status
                              if isinstance(exc, DomainError) else 422)
    flash(f"Category {data['key']} added: give it a description and its services.",
          "success")
    return redirect(url_for("admin.category_page", site_key=site_key, key=data["key"]))


def _category(site_key: str, key: str):
    category = next((c for c in get_site(site_key).categories if c.key == key), None)
    if category is None:
        abort(404)
    return category


@bp.get("/sites/<site_key>/settings/categories/<key>")
@admin_required("audit:read")
def category_page(site_key: str, key: str):
    """One category: its texts per language and its services as form rows."""
    return _settings_page(site_key, "category", category=_category(site_key, key))


@bp.post("/sites/<site_key>/categories/<key>")
@admin_required("sites:write")
def category_post(site_key: str, key: str):
    """Save a category's texts per language and its services and cookies."""
    category = _category(site_key, key)
    form = request.form
    unknown = [k for k in form if k != "csrf_token" and not k.startswith(
        ("title_", "description_", "svc-"))]
    services, rows, errors = parse_service_rows(form)
    if unknown:
        errors.setdefault(GENERAL, []).append(
            f"unknown field(s): {', '.join(sorted(unknown)[:5])[:200]}")
    titles = {k.removeprefix("title_"): v for k, v in form.items() if k.startswith("title_")}
    descriptions = {k.removeprefix("description_"): v for k, v in form.items()
                    if k.startswith("description_")}
    changed = []
    if not errors:
        try:
            changed = update_category(site_key, key, titles=titles, descriptions=descriptions,
                                      services=services, actor=current_principal().actor)
        except (ma.ValidationError, DomainError) as exc:
            errors = errors_of(exc)
            if "titles" in errors:
                locale = get_site(site_key).default_locale
                errors[f"title_{locale}"] = errors.pop("titles")
    if errors:
        return _settings_page(site_key, "category", category=category, errors=errors,
                              values=form.to_dict(), rows=rows, status=422)
    title = (category.titles or {}).get(get_site(site_key).default_locale) or key
    flash(f"Saved {title}: {', '.join(changed)}." if changed else "Nothing changed.",
          "success" if changed else "info")
    return redirect(url_for("admin.category_page", site_key=site_key, key=key))


def _api_keys_page(site_key: str, *, values=None, errors=None, status=200):
    return _settings_page(site_key, "api-keys", values=values, errors=errors, status=status)


@bp.post("/sites/<site_key>/api-keys")
@admin_required("sites:write")
@errors_on(_api_keys_page)
def api_key_post(site_key: str):
    """Issue a site API key and show it once."""
    data = parse_form(ApiKeyForm())
    secret = issue_api_key(site_key, data["name"])
    return render_template("admin/secret.html", title="New site API key", secret=secret,
                           back=url_for("admin.settings", site_key=site_key))


class ConfirmForm(FormSchema):
    """A destructive action's second step: the button of its confirmation page."""

    confirm = ma.fields.String(required=True, validate=validate.Equal(
        "yes", error="confirm on the confirmation page"))


def _confirm_page(title: str, text: str, action: str, button: str, back: str, status=200):
    return render_template("admin/confirm.html", title=title, text=text, action=action,
                           button=button, back=back), status


def _site_key_row(site_key: str, key_id: int):
    key = next((k for k in list_api_keys(site_key) if k.id == key_id), None)
    if key is None:
        abort(404)
    return key


@bp.get("/sites/<site_key>/api-keys/<int:key_id>/revoke")
@admin_required("sites:write")
def api_key_revoke_page(site_key: str, key_id: int):
    """Ask before revoking a site API key."""
    key = _site_key_row(site_key, key_id)
    return _confirm_page(
        f"Revoke the API key {key.name}?",
        f"The site's backend calls made with ck_{key.prefix}_… will be refused (401) at "
        "once. This cannot be undone: a new key would have to be issued and configured.",
        url_for("admin.api_key_revoke", site_key=site_key, key_id=key_id),
        "Revoke the key", url_for("admin.settings_section", site_key=site_key,
                                  section="api-keys"))


@bp.post("/sites/<site_key>/api-keys/<int:key_id>/revoke")
@admin_required("sites:write")
def api_key_revoke(site_key: str, key_id: int):
    """Revoke a site API key (after its confirmation page)."""
    key = _site_key_row(site_key, key_id)
    try:
        parse_form(ConfirmForm())
    except ma.ValidationError:
        return api_key_revoke_page(site_key, key_id)[0], 422
    revoke_api_key(site_key, key_id)
    flash(f"API key {key.name} (ck_{key.prefix}_…) revoked: calls with it are now refused.",
          "success")
    return redirect(url_for("admin.settings_section", site_key=site_key, section="api-keys"))


class SmsGatewayForm(FormSchema):
    # (checked by sms_gateways.register_gateway, as the API's registration is)
    provider = ma.fields.String(required=True, validate=validate.Length(1, 16))
    signing_secret = ma.fields.String(load_default="", validate=validate.Length(max=256))
    signature_method = ma.fields.String(load_default="", validate=validate.Length(max=16))


def _sms_page(site_key: str, *, values=None, errors=None, status=200):
    return _settings_page(site_key, "sms", values=values, errors=errors, status=status)


@bp.post("/sites/<site_key>/sms-gateways")
@admin_required("sites:write")
@errors_on(_sms_page)
def sms_gateway_post(site_key: str):
    """Register (or re-register, with a new token) an SMS gateway; its inbound URL is
    shown once."""
    from .. import sms_gateways
    from .channels_api import _gateway_urls

    data = parse_form(SmsGatewayForm())
    reg = sms_gateways.register_gateway(
        site_key, data["provider"], signing_secret=data["signing_secret"] or None,
        signature_method=(data["signature_method"] or None)
        if data["provider"] == "vonage" else None)
    inbound, basic = _gateway_urls(site_key, reg.provider, reg.token)
    return render_template(
        "admin/secret.html", title=f"Inbound URL for {reg.provider}", secret=inbound,
        also=basic, also_label="The same with the token as the HTTP Basic password (for "
        "gateways that ask for a user and password)",
        back=url_for("admin.settings_section", site_key=site_key, section="sms"))


@bp.get("/sites/<site_key>/sms-gateways/<provider>/remove")
@admin_required("sites:write")
def sms_gateway_remove_page(site_key: str, provider: str):
    """Ask before removing an SMS gateway."""
    from ..sms_gateways import list_gateways

    if provider not in {g.provider for g in list_gateways(site_key)}:
        abort(404)
    return _confirm_page(
        f"Remove the {provider} gateway?",
        f"STOP replies that {provider} forwards will be refused at once, so people who "
        "text STOP would still get messages. Remove it only when the site no longer sends "
        "SMS through it, or register it again for a new URL.",
        url_for("admin.sms_gateway_remove", site_key=site_key, provider=provider),
        "Remove the gateway", url_for("admin.settings_section", site_key=site_key,
                                      section="sms"))


@bp.post("/sites/<site_key>/sms-gateways/<provider>/remove")
@admin_required("sites:write")
def sms_gateway_remove(site_key: str, provider: str):
    """Remove an SMS gateway (after its confirmation page)."""
    from ..sms_gateways import remove_gateway

    try:
        parse_form(ConfirmForm())
    except ma.ValidationError:
        return sms_gateway_remove_page(site_key, provider)[0], 422
    remove_gateway(site_key, provider)
    flash(f"The {provider} gateway was removed: its inbound URL is refused from now on.",
          "success")
    return redirect(url_for("admin.settings_section", site_key=site_key, section="sms"))


# ---------------------------------------------------------------- requests


@bp.get("/sites/<site_key>/requests")
@admin_required("audit:read")
def requests_page(site_key: str, *, values=None, errors=None, status=200):
    """Access and erasure requests with their deadlines."""
    site = site_snapshot(site_key)
    return render_template("admin/requests.html", site=site, requests=list_requests(site_key),
                           subject_label=subject_label, now=_now(), values=values or {},
                           errors=errors or {}), status


@bp.post("/sites/<site_key>/requests")
@admin_required("requests:write")
@errors_on(requests_page)
def request_post(site_key: str):
    """Record a request received by mail, phone or in person."""
    data = parse_form(RequestForm())
    received = None
    if data["received_at"]:
        try:
            received = datetime.fromisoformat(data["received_at"]).replace(tzinfo=timezone.utc)
        except ValueError:
            raise Invalid("received at: a date and time (UTC)", field="received_at")
    req = open_request(site_key, data["kind"], subject=data["subject"] or None,
                       user_id=data["user_id"] or None, address=data["address"] or None,
                       channel=data["channel"], received_at=received, via=data["via"],
                       requested_by=current_principal().actor, note=data["note"])
    flash(f"{req.kind.capitalize()} request #{req.id} recorded; due "
          f"{req.due_at.strftime('%Y-%m-%d')}.", "success")
    return redirect(url_for("admin.request_page", site_key=site_key, request_id=req.id))


@bp.get("/sites/<site_key>/requests/<int:request_id>")
@admin_required("audit:read")
def request_page(site_key: str, request_id: int, *, values=None, errors=None, status=200):
    """One request: its deadline, the signed link (access) or the erase button."""
    site = site_snapshot(site_key)
    req = get_request(site_key, request_id)
    subject = request_subject(req)
    report = access_report(site_key, subject) \
        if subject is not None and subject.erased_at is None else None
    link = access_link(req) if report and link_works(req) else None
    return render_template("admin/request.html", site=site, req=req, report=report,
                           link=link, subject_label=subject_label(req.subject_id), now=_now(),
                           values=values or {}, errors=errors or {},
                           closing=request.endpoint if errors else None), status


@bp.get("/sites/<site_key>/requests/<int:request_id>/<any(history,receipt):what>.json")
@admin_required("audit:read")
def request_json(site_key: str, request_id: int, what: str):
    """The subject's history (or consent receipt) as JSON."""
    req = get_request(site_key, request_id)
    subject = request_subject(req)
    if subject is None:
        raise Invalid("no data is held about this person (not known here)", field="request")
    if subject.erased_at is not None:
        raise Invalid("this subject has been erased", field="request")
    body = access_report(site_key, subject) if what == "history" else \
        consent_receipt(site_key, subject)
    return Response(json.dumps(body, indent=2, ensure_ascii=False),
                    mimetype="application/json")


@bp.post("/sites/<site_key>/requests/<int:request_id>/complete")
@admin_required("requests:write")
@errors_on(request_page)
def request_complete(site_key: str, request_id: int):
    """Mark an access request answered."""
    data = parse_form(CloseForm())
    complete_request(site_key, request_id, current_principal().actor, note=data["note"])
    flash(f"Request #{request_id} marked as answered; its link no longer works.", "success")
    return redirect(url_for("admin.request_page", site_key=site_key, request_id=request_id))


@bp.post("/sites/<site_key>/requests/<int:request_id>/reject")
@admin_required("requests:write")
@errors_on(request_page)
def request_reject(site_key: str, request_id: int):
    """Reject a request (e.g. identity not verified), with a note."""
    data = parse_form(RejectForm())
    complete_request(site_key, request_id, current_principal().actor, status="rejected",
                     note=data["note"])
    flash(f"Request #{request_id} rejected.", "success")
    return redirect(url_for("admin.request_page", site_key=site_key, request_id=request_id))


@bp.get("/sites/<site_key>/requests/<int:request_id>/erase")
@admin_required("requests:write")
def request_erase_page(site_key: str, request_id: int):
    """Ask before carrying out an erasure request."""
    req = get_request(site_key, request_id)
    return _confirm_page(
        f"Erase the data of {subject_label(req.subject_id)}?",
        "This deletes the visitor id, the link to the site's user, the personal details "
        "(address prefix, browser, page) of every event and the person's channel "
        "addresses, for every device of the same user. The ledger keeps the "
        "pseudonymous events and records the erasure. It cannot be undone.",
        url_for("admin.request_erase", site_key=site_key, request_id=request_id),
        "Erase this person's data",
        url_for("admin.request_page", site_key=site_key, request_id=request_id))


@bp.post("/sites/<site_key>/requests/<int:request_id>/erase")
@admin_required("requests:write")
def request_erase(site_key: str, request_id: int):
    """Carry out an erasure request (after its confirmation page)."""
    try:
        parse_form(ConfirmForm())
    except ma.ValidationError:
        return request_erase_page(site_key, request_id)[0], 422
    req = carry_out(site_key, request_id, current_principal().actor)
    result = req.result or {}
    if req.kind == "opt-out-sale":
        flash("Opted out of sale and sharing; the request is completed.", "success")
    else:
        flash(f"Erased: {result.get('erased_subjects', 0)} visitor id(s), the personal "
              f"details of {result.get('details_removed', 0)} event(s) removed; the request "
              "is completed.", "success")
    return redirect(url_for("admin.request_page", site_key=site_key, request_id=request_id))


@bp.get("/sites/<site_key>/requests/<int:request_id>/request-receipt.json")
@admin_required("audit:read")
def request_receipt_json(site_key: str, request_id: int):
    """The signed receipt of a request (what, received, due, status, result)."""
    return Response(json.dumps(request_receipt(site_key, request_id), indent=2,
                               ensure_ascii=False), mimetype="application/json")


# ---------------------------------------------------------------- export


@bp.get("/sites/<site_key>/export")
@admin_required("audit:export")
def export_page(site_key: str, *, values=None, errors=None, status=200):
    """The export form and the public key that verifies exports."""
    site = site_snapshot(site_key)
    return render_template("admin/export.html", site=site, actions=ACTIONS,
                           values=values or {}, errors=errors or {},
                           public_key=public_key_text(), key_id=key_id(public_key_raw())
                           ), status


@bp.get("/sites/<site_key>/export.<fmt>")
@admin_required("audit:export")
def export_download(site_key: str, fmt: str):
    """Download the export (streamed); bad filters show the form again, kept."""
    try:
        filters = export_filters(site_key, request.args)
    except (ma.ValidationError, DomainError) as exc:
        values = {**request.args.to_dict(), "action": request.args.getlist("action")}
        return export_page(site_key, values=values, errors=errors_of(exc), status=422)
    return export_response(filters, fmt)


@bp.get("/signing-key.pem")
@admin_required("audit:read")
def signing_key_pem():
    """The public key that verifies manifests and checkpoints, as PEM."""
    return Response(public_key_pem(), mimetype="application/x-pem-file")


# ---------------------------------------------------------------- tokens and users


@bp.get("/tokens")
@admin_required("admin")
def tokens(*, values=None, errors=None, status=200):
    """API tokens for automation."""
    return render_template("admin/tokens.html", tokens=auth.list_tokens(), scopes=auth.SCOPES,
                           sites=list_sites(), values=values or {}, errors=errors or {},
                           site_options=[("", "all sites")] + [(s.key, s.key)
                                                               for s in list_sites()]
                           ), status


@bp.post("/tokens")
@admin_required("admin")
@errors_on(tokens, lists=("scopes",))
def token_post():
    """Issue a token and show it once."""
    data = parse_form_with_scopes(TokenForm())
    from datetime import timedelta

    from ..database import utcnow

    if data["site"] and data["site"] not in {s.key for s in list_sites()}:
        raise Invalid(f"no site {data['site'][:64]!r}", field="site")

    def write():
        site_id = get_site(data["site"]).id if data["site"] else None
        expires = utcnow() + timedelta(days=data["days"]) if data.get("days") else None
        return auth.create_token(data["name"], _scopes_from_form(), site_id=site_id,
                                 created_by=current_principal().id, expires_at=expires)

    secret = run_write(write)
    return render_template("admin/secret.html", title="New API token", secret=secret,
                           back=url_for("admin.tokens"))


def _token_row(token_id: int):
    row = next((t for t in auth.list_tokens() if t.id == token_id), None)
    if row is None:
        abort(404)
    return row


@bp.get("/tokens/<int:token_id>/revoke")
@admin_required("admin")
def token_revoke_page(token_id: int):
    """Ask before revoking an admin API token."""
    row = _token_row(token_id)
    return _confirm_page(
        f"Revoke the API token {row.name}?",
        "Scripts and tools using this token are refused (401) at once. This cannot be "
        "undone: a new token would have to be issued and configured.",
        url_for("admin.token_revoke", token_id=token_id), "Revoke the token",
        url_for("admin.tokens"))


@bp.post("/tokens/<int:token_id>/revoke")
@admin_required("admin")
def token_revoke(token_id: int):
    """Revoke a token (after its confirmation page)."""
    row = _token_row(token_id)
    try:
        parse_form(ConfirmForm())
    except ma.ValidationError:
        return token_revoke_page(token_id)[0], 422
    auth.revoke_token(token_id)
    flash(f"API token {row.name} revoked: calls with it are now refused.", "success")
    return redirect(url_for("admin.tokens"))


@bp.get("/users")
@admin_required("admin")
def users(*, values=None, errors=None, status=200):
    """Admin users."""
    return render_template("admin/users.html", users=auth.list_admins(), scopes=auth.SCOPES,
                           values=values or {}, errors=errors or {}), status


@bp.post("/users")
@admin_required("admin")
@errors_on(users, lists=("scopes",))
def user_post():
    """Create an admin user."""
    data = parse_form_with_scopes(UserForm())
    run_write(lambda: auth.create_admin(data["email"], data["password"],
                                        name=data["name"] or None,
                                        scopes=_scopes_from_form()))
    flash(f"Admin {data['email']} added.", "success")
    return redirect(url_for("admin.users"))


@bp.post("/users/<int:user_id>/<any(disable,enable):what>")
@admin_required("admin")
def user_toggle(user_id: int, what: str):
    """Disable or re-enable an admin user."""
    parse_form(FormSchema())
    if what == "disable" and user_id == current_principal().id:
        return users(errors={GENERAL: ["You cannot disable your own account."]},
                     status=422)
    auth.set_admin_disabled(user_id, what == "disable")
    flash(f"Admin account #{user_id} {what}d"
          + (": its sessions and sign-ins are refused." if what == "disable" else "."),
          "success")
    return redirect(url_for("admin.users"))


def parse_form_with_scopes(schema: ma.Schema) -> dict:
    """Like parse_form, for forms that also carry scope checkboxes."""
    form = {k: v for k, v in request.form.to_dict().items() if k != "scopes"}
    data = schema.load(form)
    data.pop("csrf_token", None)
    return data
