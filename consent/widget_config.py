"""The configuration document the widget loads: categories, texts, policy, lifetimes."""
from __future__ import annotations

from flask import url_for

from .database import iso
from .decisions import gpc_categories
from .extensions import db
from .i18n import catalog, pick_locale
from .policies import PolicyVersion
from .sites import Category, site_snapshot


def _localised(texts: dict, locale: str, fallback: str) -> str:
    return texts.get(locale) or texts.get(fallback) or texts.get("en") or next(iter(texts.values()), "")


def widget_config(site_key: str, requested_locale: str | None,
                  accept_language: str | None = None) -> dict:
    """Everything the widget needs to show the banner for one site in one language."""
    site = site_snapshot(site_key)
    locale = pick_locale(requested_locale, site.locales, site.default_locale, accept_language)
    categories = db.session.execute(
        db.select(Category).where(Category.site_id == site.id).order_by(Category.position)
    ).scalars().all()
    strings = dict(catalog("widget", locale))
    strings.update((site.settings.get("texts") or {}).get(locale, {}))
    policy = material = None
    if site.policy_label:
        policy = db.session.execute(db.select(PolicyVersion).where(
            PolicyVersion.site_id == site.id, PolicyVersion.label == site.policy_label)
        ).scalar_one_or_none()
    if site.policy_material_label:
        material = db.session.execute(db.select(PolicyVersion).where(
            PolicyVersion.site_id == site.id,
            PolicyVersion.label == site.policy_material_label)).scalar_one_or_none()
    cookie = site.settings.get("cookie") or {}
    return {
        "site": site.key,
        "revision": site.revision,
        "locale": locale,
        "strings": strings,
        "categories": [
            {"key": c.key, "locked": c.locked,
             "title": _localised(c.titles, locale, site.default_locale),
             "description": _localised(c.descriptions, locale, site.default_locale),
             "services": c.services}
            for c in categories
        ],
        "policy": {
            "version": policy.label if policy else None,
            "url": (policy.url or url_for("pages.policy_version", site_key=site.key,
                                          label=policy.label, _external=True))
            if policy else None,
            "materialVersion": material.label if material else None,
            "reconsentAfter": iso(material.effective_at) if material else None,
        },
        "lifetimes": {"acceptDays": site.accept_lifetime_days,
                      "rejectDays": site.reject_lifetime_days},
        "cookie": {"name": cookie.get("name", "consent"), "domain": cookie.get("domain"),
                   "sameSite": cookie.get("same_site", "Lax")},
        "gpc": {"categories": list(gpc_categories(site))},
        "endpoints": {
            "decisions": url_for("widget_api.post_decision", site_key=site.key,
                                 _external=True),
            "preferences": url_for("preferences.preferences_page", site=site.key, _external=True),
        },
    }
