"""Site configuration from the admin: general settings, categories, texts, cookies, keys.

Every change bumps the site's `updated_at` (which changes the widget configuration's
revision) and clears the cached site snapshot, so the next widget load sees it.
"""
from __future__ import annotations

import re
from datetime import datetime
from types import SimpleNamespace

import marshmallow as ma
from marshmallow import validate
from sqlalchemy.exc import IntegrityError

from .database import run_write, utcnow
from .errors import Conflict, Invalid
from .extensions import db
from .policies import PolicyVersion, get_policy, publish_policy
from .requests import validate_deadline_rule
from .site_history import record_change
from .sites import (ESSENTIAL, STANDARD_CATEGORIES, BadOrigin, Category, CategoryLimit,
                    Site, SiteApiKey, check_category_count, check_category_key,
                    create_api_key, create_site, get_site, gpc_categories,
                    invalidate_site_cache, normalise_origin)
from .validation import Exact, StrictSchema

LOCALE_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")


def _touch(site: Site) -> None:
    site.updated_at = utcnow()
    invalidate_site_cache(site.key)


def list_sites() -> list[Site]:
    """Every site, by key."""
    return list(db.session.execute(db.select(Site).order_by(Site.key)).scalars())


def check_origin(origin: str) -> str:
    """An origin in the one form sites store (sites.normalise_origin), or Invalid."""
    try:
        return normalise_origin(origin)
    except BadOrigin as exc:
        raise Invalid(str(exc), field="allowed_origins") from None


def add_site(key: str, name: str, origins: list[str]) -> Site:
    """Create a site with the standard categories."""
    checked = list(dict.fromkeys(check_origin(o) for o in origins if o.strip()))

    def write() -> Site:
        if db.session.execute(db.select(Site.id).where(Site.key == key)).first():
            raise Conflict(f"a site {key!r} already exists", field="key")
        try:
            return create_site(key, name, allowed_origins=checked,
                               categories=[{"key": k} for k in STANDARD_CATEGORIES])
        except ValueError as exc:
            raise Invalid(str(exc), field="key")

    return run_write(write)


# The settings page's sections and the fields each one saves (and nothing else).
SECTIONS = {
    "general": ("name", "allowed_origins", "locales", "default_locale"),
    "consent": ("accept_lifetime_days", "reject_lifetime_days", "deadline",
                "opt_out_deadline", "retention_days"),
    "controller": ("controller",),
    "messages": ("gpc_categories", "channel_defaults", "unsubscribe_scope", "sms_keywords"),
    "cookie": ("cookie", "public_base_url", "unsubscribe_link_days", "login_session_minutes"),
    "minors": ("age_rule",),
}
SECTION_TITLES = {"general": "General", "consent": "Consent lifetimes, requests and retention",
                  "controller": "Data controller", "messages": "Messages and GPC",
                  "cookie": "Cookie and links", "minors": "Minors"}
# A cookie name is an RFC 6265 token; a domain, a host name with at least one dot.
COOKIE_NAME_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
COOKIE_DOMAIN_RE = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+"
                              r"[a-z][a-z0-9-]{0,61}[a-z0-9]$")
SAME_SITE = ("Lax", "Strict", "None")


def _cookie(value) -> dict:
    """settings.cookie in one form for comparing (the defaults filled in)."""
    value = value if isinstance(value, dict) else {}
    return {"name": value.get("name") or "consent", "domain": value.get("domain") or "",
            "same_site": value.get("same_site") or "Lax",
            "server_set": value.get("server_set") is True}


def _domain_matches(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)


def check_cookie(data: dict, origins: list[str], server_host: str) -> dict:
    """The cookie settings of the admin form, checked against the site's origins and the
    consent server's host (SERVER_HOST): a Domain no page's host is in, or a server-set
    cookie from a host outside that domain, would be refused by every browser."""
    from urllib.parse import urlsplit

    out = _cookie(data)
    if not COOKIE_NAME_RE.fullmatch(out["name"]):
        raise Invalid("a cookie name is letters, digits and !#$%&'*+.^_`|~- (at most 64)",
                      field="cookie_name")
    domain = out["domain"].strip().lower().lstrip(".")
    out["domain"] = domain
    hosts = [urlsplit(o).hostname or "" for o in origins if o != "*"]
    if domain:
        if not COOKIE_DOMAIN_RE.fullmatch(domain):
            raise Invalid(f"{domain!r} is not a domain such as shop.example",
                          field="cookie_domain")
        outside = [h for h in hosts if not _domain_matches(h, domain)]
        if outside:
            raise Invalid(f"browsers refuse a cookie for {domain} on {outside[0]}: give a "
                          "domain every allowed origin's host is in", field="cookie_domain")
    if out["same_site"] not in SAME_SITE:
        raise Invalid("must be Lax, Strict or None", field="cookie_same_site")
    plain = [o for o in origins if o.startswith("http://")]
    if out["same_site"] == "None" and plain:
        raise Invalid(f"SameSite=None needs https (browsers drop it without Secure), and "
                      f"{plain[0]} is http", field="cookie_same_site")
    if out["server_set"]:
        server = server_host.lower()
        if domain and not _domain_matches(server, domain):
            raise Invalid(f"this consent server ({server_host}) is not under {domain}: "
                          "browsers refuse the cookie it sets (docs/widget.md, Same-site "
                          "deployment)", field="cookie_server_set")
        elsewhere = [h for h in hosts if h != server] if not domain else []
        if elsewhere:
            raise Invalid(f"without a domain the cookie this server ({server_host}) sets is "
                          f"its own host's, which the pages of {elsewhere[0]} never see: give "
                          "the site's domain above", field="cookie_server_set")
    return out
UNSUBSCRIBE_SCOPES = ("channel", "all_promotional")


def _keywords(value) -> dict:
    """sms_keywords in one form for comparing: {stop: [...], start: [...], opt_in: bool}."""
    value = value if isinstance(value, dict) else {}
    return {"stop": list(value.get("stop") or []), "start": list(value.get("start") or []),
            "opt_in": value.get("opt_in") is True}


# Fields kept in the site's own columns; the others are in its settings (JSON).
_COLUMNS = ("name", "allowed_origins", "locales", "default_locale", "accept_lifetime_days",
            "reject_lifetime_days")
# Settings whose default the readers apply when they are absent.
_SETTING_DEFAULTS = {"unsubscribe_scope": "channel", "unsubscribe_link_days": 365,
                     "login_session_minutes": 60}


def site_values(site: Site) -> dict:
    from .channels import channel_defaults  # (channels imports sites, not site_admin)

    settings = site.settings or {}
    # (what gpc_categories and channel_defaults read of a snapshot: the settings, the keys)
    view = SimpleNamespace(settings=settings, category_keys=tuple(c.key for c in site.categories))
    return {"name": site.name, "allowed_origins": list(site.allowed_origins or []),
            "locales": list(site.locales or []), "default_locale": site.default_locale,
            "accept_lifetime_days": site.accept_lifetime_days,
            "reject_lifetime_days": site.reject_lifetime_days,
            "deadline": settings.get("request_deadline") or {"days": 30},
            "opt_out_deadline": settings.get("opt_out_deadline") or None,
            "retention_days": settings.get("retention_days"),
            "controller": settings.get("controller") or {},
            "gpc_categories": list(gpc_categories(view)),
            "channel_defaults": channel_defaults(view),
            "unsubscribe_scope": settings.get("unsubscribe_scope")
            or _SETTING_DEFAULTS["unsubscribe_scope"],
            "sms_keywords": _keywords(settings.get("sms_keywords")),
            "cookie": _cookie(settings.get("cookie")),
            "public_base_url": settings.get("public_base_url") or "",
            "age_rule": settings.get("age_rule") or None,
            **{f: settings.get(f) or _SETTING_DEFAULTS[f]
               for f in ("unsubscribe_link_days", "login_session_minutes")}}


FIELD_LABELS = {"name": "name", "allowed_origins": "allowed origins", "locales": "languages",
                "default_locale": "default language", "deadline": "request deadline",
                "opt_out_deadline": "opt-out deadline",
                "accept_lifetime_days": "days an acceptance stands",
                "reject_lifetime_days": "days a refusal stands",
                "retention_days": "event retention", "controller": "data controller",
                "gpc_categories": "categories GPC turns off",
                "channel_defaults": "message defaults", "unsubscribe_scope": "unsubscribe scope",
                "sms_keywords": "SMS reply words", "cookie": "consent cookie",
                "public_base_url": "address for links", "age_rule": "age rule",
                "unsubscribe_link_days": "unsubscribe link lifetime",
                "login_session_minutes": "sign-in link session"}


def update_site_section(site_key: str, section: str, data: dict, actor: str) -> list[str]:
    """Save one section of the settings (only its fields); returns what changed, which
    the site's change history records."""
    fields = SECTIONS[section]
    new: dict = {}
    if section == "general":
        new["name"] = data["name"].strip()
        new["allowed_origins"] = list(dict.fromkeys(
            check_origin(o) for o in data.get("allowed_origins", []) if o.strip()))
        locales = [loc.strip() for loc in data.get("locales", []) if loc.strip()]
        for loc in locales:
            if not LOCALE_RE.fullmatch(loc):
                raise Invalid(f"{loc!r} is not a language tag", field="locales")
        if not locales:
            raise Invalid("give at least one language", field="locales")
        if data["default_locale"] not in locales:
            raise Invalid("the default language must be one of the languages",
                          field="default_locale")
        new["locales"], new["default_locale"] = locales, data["default_locale"]
    elif section == "consent":
        new["accept_lifetime_days"] = data["accept_lifetime_days"]
        new["reject_lifetime_days"] = data["reject_lifetime_days"]
        kind = "business_days" if data["deadline_kind"] == "business_days" else "days"
        try:
            new["deadline"] = validate_deadline_rule({kind: data["deadline_value"]})
        except Invalid as exc:
            raise Invalid(exc.detail, field="deadline_value") from None
        new["retention_days"] = data.get("retention_days") or None
        new["opt_out_deadline"] = None
        if data.get("opt_out_value"):
            kind = "business_days" if data.get("opt_out_kind") == "business_days" else "days"
            try:
                new["opt_out_deadline"] = validate_deadline_rule({kind: data["opt_out_value"]})
            except Invalid as exc:
                raise Invalid(exc.detail, field="opt_out_value") from None
    elif section == "messages":
        from .channels import CHANNELS
        from .sms import check_keyword_settings

        new["gpc_categories"] = list(dict.fromkeys(data["gpc_categories"]))
        if not new["gpc_categories"]:
            raise Invalid("name at least one category (advertising, as a rule): GPC is a "
                          "request to opt out of sale and sharing", field="gpc_categories")
        new["channel_defaults"] = {key: bool(data["channel_defaults"].get(key))
                                   for key in CHANNELS}
        if data["unsubscribe_scope"] not in UNSUBSCRIBE_SCOPES:
            raise Invalid("must be channel or all_promotional", field="unsubscribe_scope")
        new["unsubscribe_scope"] = data["unsubscribe_scope"]
        try:
            new["sms_keywords"] = _keywords(check_keyword_settings(data["sms_keywords"]))
        except Invalid as exc:
            raise Invalid(exc.detail, field=exc.field.replace("sms_keywords.", "sms_")) \
                from None
    elif section == "minors":
        from .minors import parse_age_rule

        rule = data.get("age_rule")
        if rule:
            try:
                parse_age_rule(rule)
            except Invalid as exc:
                raise Invalid(exc.detail, field=(exc.field or "").replace("age_rule.", "")
                              or "adult_age") from None
        new["age_rule"] = rule or None
    elif section == "cookie":
        new["cookie"] = data["cookie"]  # checked against the origins in write()
        new["public_base_url"] = (data.get("public_base_url") or "").strip().rstrip("/")
        for f in ("unsubscribe_link_days", "login_session_minutes"):
            new[f] = data.get(f) or _SETTING_DEFAULTS[f]
    else:
        from .requests import check_controller  # (requests imports sites, not site_admin)

        new["controller"] = check_controller(data.get("controller") or {})

    def write() -> list[str]:
        site = get_site(site_key)
        for key in new.get("gpc_categories", ()):
            if key == ESSENTIAL or key not in {c.key for c in site.categories}:
                raise Invalid(f"{key!r} is not one of the site's optional categories",
                              field="gpc_categories")
        for key in (new.get("age_rule") or {}).get("categories", ()):
            if key not in {c.key for c in site.categories}:
                raise Invalid(f"the site has no category {key!r}", field="categories")
        if section == "cookie":
            new["cookie"] = check_cookie(new["cookie"], list(site.allowed_origins or []),
                                         data.get("server_host") or "")
        elif section == "general" and (site.settings or {}).get("cookie") \
                and new["allowed_origins"] != list(site.allowed_origins or []):
            # The cookie set under "Cookie and links" must still suit every page: a new
            # origin outside its Domain (or a plain-http one with SameSite=None) would
            # have browsers refuse the widget's cookie there, so the banner came back on
            # every page view.
            try:
                check_cookie(site.settings["cookie"], new["allowed_origins"],
                             data.get("server_host") or "")
            except Invalid as exc:
                raise Invalid(f"{exc.detail} (the cookie is set under Cookie and links: "
                              "change it there first)", field="allowed_origins") from None
        old = site_values(site)
        for f in ("deadline", "opt_out_deadline"):
            # (holidays, set by the API or a profile, have no field here: they stay)
            if new.get(f) and "business_days" in new[f] and (old[f] or {}).get("holidays"):
                new[f] = {**new[f], "holidays": old[f]["holidays"]}
        changed = [f for f in fields if old[f] != new[f]]
        if not changed:
            return []
        settings = dict(site.settings or {})
        for f in changed:
            value = new[f]
            if f in _COLUMNS:
                setattr(site, f, value)
                continue
            if f == "sms_keywords":
                value = {k: v for k, v in value.items() if v}
            elif f == "cookie":
                # only what differs from the defaults (every first visit downloads it)
                value = {k: v for k, v in value.items() if v != _cookie({})[k]}
            key = "request_deadline" if f == "deadline" else f
            # A setting left empty or at its default is not stored: the readers' default
            # applies (and the site's JSON stays short).
            if value in (None, "", {}, []) or value == _SETTING_DEFAULTS.get(f):
                settings.pop(key, None)
            else:
                settings[key] = value
        site.settings = settings
        labels = [FIELD_LABELS[f] for f in changed]
        record_change(site.id, actor, f"settings:{section}", "changed " + ", ".join(labels),
                      {"fields": changed})
        _touch(site)
        return labels

    return run_write(write)


def add_category(site_key: str, key: str, title: str) -> Category:
    """Add a custom category (refused by default until the visitor opts in)."""
    try:
        check_category_key(key)
    except CategoryLimit as exc:
        raise Invalid(str(exc), field="key") from None

    def write() -> Category:
        site = get_site(site_key)
        if any(c.key == key for c in site.categories):
            raise Conflict(f"site {site_key!r} already has a category {key!r}", field="key")
        try:
            check_category_count(len(site.categories) + 1, site_key)
        except CategoryLimit as exc:
            raise Invalid(str(exc), field="key") from None
        cat = Category(site_id=site.id, key=key,
                       position=max([c.position for c in site.categories] + [0]) + 1,
                       locked=False, titles={site.default_locale: title}, descriptions={},
                       services=[])
        db.session.add(cat)
        _touch(site)
        db.session.flush()
        return cat

    return run_write(write)


def _name_or_pattern(data: dict, what: str) -> None:
    if not data.get("name") and not data.get("pattern"):
        raise ma.ValidationError(f"give the {what}'s name or a pattern", "name")
    if data.get("pattern"):
        try:
            re.compile(data["pattern"])
        except re.error as exc:
            raise ma.ValidationError(f"not a regular expression: {exc}", "pattern")


class CookieSchema(StrictSchema):
    """One cookie (by exact name or by pattern) a service sets."""

    name = ma.fields.String(validate=validate.Length(1, 200))
    pattern = ma.fields.String(validate=validate.Length(1, 200))
    domain = ma.fields.String(validate=validate.Length(1, 253))
    path = ma.fields.String(validate=validate.Length(1, 200))
    duration = ma.fields.String(validate=validate.Length(1, 100))

    @ma.validates_schema
    def _name_or_pattern(self, data, **kwargs):
        _name_or_pattern(data, "cookie")


class StorageSchema(StrictSchema):
    """A localStorage or sessionStorage key (by exact name or by pattern) a service uses."""

    name = ma.fields.String(validate=validate.Length(1, 200))
    pattern = ma.fields.String(validate=validate.Length(1, 200))
    area = ma.fields.String(load_default="local", validate=validate.OneOf(("local", "session")))

    @ma.validates_schema
    def _name_or_pattern(self, data, **kwargs):
        _name_or_pattern(data, "key")


HOST_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
                     r"(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


class ServiceSchema(StrictSchema):
    """A service (tool, vendor) of a category, the cookies and storage keys it sets and
    the hosts it contacts (the scanner matches its findings against these)."""

    name = ma.fields.String(required=True, validate=validate.Length(1, 200))
    provider = ma.fields.String(validate=validate.Length(1, 200))
    purpose = ma.fields.String(validate=validate.Length(1, 1000))
    privacy_url = ma.fields.Url(schemes={"http", "https"})
    cookies = ma.fields.List(ma.fields.Nested(CookieSchema), load_default=list)
    storage = ma.fields.List(ma.fields.Nested(StorageSchema))
    hosts = ma.fields.List(ma.fields.String(validate=Exact(
        HOST_RE, error="not a host name such as stats.example.com")))


def update_category(site_key: str, key: str, *, titles: dict[str, str],
                    descriptions: dict[str, str], services: list,
                    actor: str = "admin") -> list[str]:
    """Replace a category's texts per language and its services and cookies; returns
    what changed (recorded in the site's change history)."""
    checked = ServiceSchema(many=True).load(services)
    titles = {loc: t.strip() for loc, t in titles.items() if t and t.strip()}
    descriptions = {loc: t.strip() for loc, t in descriptions.items() if t and t.strip()}
    if not titles:
        raise Invalid("the category needs a title in at least one language", field="titles")
    for text in list(titles.values()) + list(descriptions.values()):
        if len(text) > 2000:
            raise Invalid("texts are at most 2000 characters", field="descriptions")

    def write() -> list[str]:
        site = get_site(site_key)
        cat = next((c for c in site.categories if c.key == key), None)
        if cat is None:
            raise Invalid(f"site {site_key!r} has no category {key!r}", field="key")
        changed = _category_changes(cat, titles, descriptions, checked)
        if not changed:
            return []
        cat.titles, cat.descriptions, cat.services = titles, descriptions, checked
        record_change(site.id, actor, f"category:{key}", "; ".join(changed)[:1000],
                      {"changes": changed})
        _touch(site)
        return changed

    return run_write(write)


def _category_changes(cat: Category, titles: dict, descriptions: dict,
                      services: list) -> list[str]:
    """What saving would change, in words: texts per language, services by name."""
    out = []
    for loc in sorted(set(cat.titles or {}) | set(titles)):
        if (cat.titles or {}).get(loc) != titles.get(loc):
            out.append(f"title ({loc})")
    for loc in sorted(set(cat.descriptions or {}) | set(descriptions)):
        if (cat.descriptions or {}).get(loc) != descriptions.get(loc):
            out.append(f"description ({loc})")
    before = {s.get("name"): s for s in cat.services or ()}
    after = {s.get("name"): s for s in services}
    for name in after:
        if name not in before:
            out.append(f"service {name} added")
        elif before[name] != after[name]:
            out.append(f"service {name} changed")
    out += [f"service {name} removed" for name in before if name not in after]
    if not out and list(before) != list(after):
        out.append("services reordered")
    return out


def list_api_keys(site_key: str) -> list[SiteApiKey]:
    """A site's API keys (only prefixes are kept), newest first."""
    site = get_site(site_key)
    return list(db.session.execute(db.select(SiteApiKey).where(SiteApiKey.site_id == site.id)
                                   .order_by(SiteApiKey.id.desc())).scalars())


def issue_api_key(site_key: str, name: str) -> str:
    """A new API key for the site's backend; the secret is shown once."""
    name = (name or "").strip() or "default"
    if len(name) > 100:
        raise Invalid("key names are at most 100 characters", field="name")
    return run_write(lambda: create_api_key(get_site(site_key), name))


def revoke_api_key(site_key: str, key_id: int) -> None:
    """Revoke one of the site's API keys at once."""
    def write():
        site = get_site(site_key)
        row = db.session.get(SiteApiKey, key_id)
        if row is None or row.site_id != site.id:
            raise Invalid("unknown API key", field="key")
        row.revoked_at = row.revoked_at or utcnow()
    run_write(write)


def publish_site_policy(site_key: str, *, label: str, text: str | None, url: str | None,
                        material: bool, summary: str | None,
                        effective_at: datetime | None = None) -> PolicyVersion:
    """Publish a policy version; a material one makes every visitor's widget ask again."""
    text = (text or "").strip() or None
    url = (url or "").strip() or None

    def write() -> PolicyVersion:
        site = get_site(site_key)
        if get_policy(site.id, label) is not None:
            raise Conflict(f"version {label!r} already exists; versions are never edited",
                           field="label")
        try:
            return publish_policy(site.id, label, text=text, url=url, material=material,
                                  summary=(summary or "").strip() or None,
                                  effective_at=effective_at)
        except ValueError as exc:
            raise Invalid(str(exc), field=getattr(exc, "field", None)
                          or ("label" if "label" in str(exc) else "text"))

    try:
        return run_write(write)
    except IntegrityError:
        raise Conflict(f"version {label!r} already exists", field="label")


def category_locales(site: Site) -> list[str]:
    """Languages a category's texts are edited in: the site's languages."""
    return list(site.locales or [site.default_locale])



# ---------------------------------------------------------------- the widget's words

TEXT_MAX = 2000
_PLACEHOLDER = re.compile(r"\{[a-z]+\}")


def widget_texts(site: Site, locale: str) -> list[tuple[str, str, str]]:
    """(key, built-in text, the site's own or "") of every widget string in LOCALE."""
    from .i18n import catalog

    own = ((site.settings or {}).get("texts") or {}).get(locale) or {}
    return [(key, text, own.get(key, "")) for key, text in catalog("widget", locale).items()]


def set_widget_texts(site_key: str, locale: str, texts: dict[str, str], actor: str) -> list[str]:
    """Save the site's own widget strings in LOCALE (an empty one: the built-in again);
    returns the keys that changed. Strings of other surfaces kept in settings.texts (the
    preference page's) stay as they are."""
    from .i18n import catalog

    if not LOCALE_RE.fullmatch(locale):
        raise Invalid(f"{locale[:40]!r} is not a language tag", field="_form")
    built_in = catalog("widget", locale)
    clean: dict[str, str] = {}
    for key, value in texts.items():
        if key not in built_in:
            raise Invalid(f"the widget has no string {key!r}", field="_form")
        value = (value or "").strip()
        if len(value) > TEXT_MAX:
            raise Invalid(f"at most {TEXT_MAX} characters", field=f"t_{key}")
        wanted = sorted(set(_PLACEHOLDER.findall(built_in[key])))
        if value and sorted(set(_PLACEHOLDER.findall(value))) != wanted:
            raise Invalid(("keep the placeholders " + " ".join(wanted) + ", each once: the "
                           "widget puts its values there") if wanted else
                          "this text takes no {…} placeholder", field=f"t_{key}")
        if value and value != built_in[key]:
            clean[key] = value

    def write() -> list[str]:
        site = get_site(site_key)
        if locale not in (site.locales or []):
            raise Invalid(f"{locale!r} is not one of the site's languages", field="_form")
        settings = dict(site.settings or {})
        all_texts = {k: dict(v) for k, v in (settings.get("texts") or {}).items()}
        own = all_texts.get(locale, {})
        others = {k: v for k, v in own.items() if k not in built_in}
        changed = sorted(k for k in set(own) | set(clean)
                         if k in built_in and own.get(k) != clean.get(k))
        if not changed:
            return []
        if others or clean:
            all_texts[locale] = {**others, **clean}
        else:
            all_texts.pop(locale, None)
        if all_texts:
            settings["texts"] = all_texts
        else:
            settings.pop("texts", None)
        site.settings = settings
        record_change(site.id, actor, "settings:texts",
                      f"widget texts ({locale}): " + ", ".join(changed),
                      {"locale": locale, "keys": changed})
        _touch(site)
        return changed

    return run_write(write)
