"""Site configuration from the admin: general settings, categories, texts, cookies, keys.

Every change bumps the site's `updated_at` (which changes the widget configuration's
revision) and clears the cached site snapshot, so the next widget load sees it.
"""
from __future__ import annotations

import re
from datetime import datetime

import marshmallow as ma
from marshmallow import validate
from sqlalchemy.exc import IntegrityError

from .database import run_write, utcnow
from .errors import Conflict, Invalid
from .extensions import db
from .policies import PolicyVersion, get_policy, publish_policy
from .requests import validate_deadline_rule
from .sites import (STANDARD_CATEGORIES, BadOrigin, Category, CategoryLimit, Site, SiteApiKey,
                    check_category_count, check_category_key, create_api_key, create_site,
                    get_site, invalidate_site_cache, normalise_origin)
from .validation import StrictSchema

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


def update_site(site_key: str, data: dict) -> Site:
    """Change general settings: name, origins, lifetimes, locales, deadlines, retention."""
    origins = list(dict.fromkeys(check_origin(o) for o in data.get("allowed_origins", [])
                                 if o.strip()))
    locales = [loc.strip() for loc in data.get("locales", []) if loc.strip()]
    for loc in locales:
        if not LOCALE_RE.match(loc):
            raise Invalid(f"{loc!r} is not a language tag", field="locales")
    if not locales:
        raise Invalid("give at least one language", field="locales")
    if data["default_locale"] not in locales:
        raise Invalid("the default language must be one of the languages",
                      field="default_locale")
    rule = {"business_days" if data["deadline_kind"] == "business_days" else "days":
            data["deadline_value"]}
    rule = validate_deadline_rule(rule)
    from .requests import check_controller  # (requests imports sites, not site_admin)

    check_controller(data.get("controller") or {})  # bad input refused before writing

    def write() -> Site:
        site = get_site(site_key)
        site.name = data["name"]
        site.allowed_origins = origins
        site.accept_lifetime_days = data["accept_lifetime_days"]
        site.reject_lifetime_days = data["reject_lifetime_days"]
        site.locales = locales
        site.default_locale = data["default_locale"]
        settings = dict(site.settings or {})
        settings["request_deadline"] = rule
        if data.get("retention_days"):
            settings["retention_days"] = data["retention_days"]
        else:
            settings.pop("retention_days", None)
        controller = check_controller(data.get("controller") or {})
        if controller:
            settings["controller"] = controller
        else:
            settings.pop("controller", None)
        site.settings = settings
        _touch(site)
        return site

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


class CookieSchema(StrictSchema):
    """One cookie (by exact name or by pattern) a service sets."""

    name = ma.fields.String(validate=validate.Length(1, 200))
    pattern = ma.fields.String(validate=validate.Length(1, 200))
    domain = ma.fields.String(validate=validate.Length(1, 253))
    path = ma.fields.String(validate=validate.Length(1, 200))
    duration = ma.fields.String(validate=validate.Length(1, 100))

    @ma.validates_schema
    def _name_or_pattern(self, data, **kwargs):
        if not data.get("name") and not data.get("pattern"):
            raise ma.ValidationError("give the cookie's name or a pattern", "name")
        if data.get("pattern"):
            try:
                re.compile(data["pattern"])
            except re.error as exc:
                raise ma.ValidationError(f"not a regular expression: {exc}", "pattern")


class ServiceSchema(StrictSchema):
    """A service (tool, vendor) of a category and the cookies it sets."""

    name = ma.fields.String(required=True, validate=validate.Length(1, 200))
    provider = ma.fields.String(validate=validate.Length(1, 200))
    purpose = ma.fields.String(validate=validate.Length(1, 1000))
    privacy_url = ma.fields.Url(schemes={"http", "https"})
    cookies = ma.fields.List(ma.fields.Nested(CookieSchema), load_default=list)


def update_category(site_key: str, key: str, *, titles: dict[str, str],
                    descriptions: dict[str, str], services: list) -> Category:
    """Replace a category's texts per language and its services and cookies."""
    checked = ServiceSchema(many=True).load(services)
    titles = {loc: t.strip() for loc, t in titles.items() if t and t.strip()}
    descriptions = {loc: t.strip() for loc, t in descriptions.items() if t and t.strip()}
    if not titles:
        raise Invalid("the category needs a title in at least one language", field="titles")
    for text in list(titles.values()) + list(descriptions.values()):
        if len(text) > 2000:
            raise Invalid("texts are at most 2000 characters", field="descriptions")

    def write() -> Category:
        site = get_site(site_key)
        cat = next((c for c in site.categories if c.key == key), None)
        if cat is None:
            raise Invalid(f"site {site_key!r} has no category {key!r}", field="key")
        cat.titles, cat.descriptions, cat.services = titles, descriptions, checked
        _touch(site)
        return cat

    return run_write(write)


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

