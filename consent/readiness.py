"""Whether a site is ready for visitors, and what is missing until it is.

Shown by `flask consent create-site` (next steps), `flask consent check-site KEY` (exit
status 1 until ready) and the admin dashboard. Each gap is one that makes the site do
something other than what the ledger will say: no allowed origin (every decision is
refused), no policy version (the banner links no policy, events name none), a category
without services or cookies (withdrawing it cannot delete anything).
"""
from __future__ import annotations

from dataclasses import dataclass

from .policies import list_policies
from .sites import ESSENTIAL, BadOrigin, get_site, normalise_origin


@dataclass
class Gap:
    """One thing a site lacks, how to fix it, and the admin page where (PAGE: "general",
    "policies" or "category:KEY"; the dashboard links it)."""

    what: str
    fix: str
    page: str | None = None


def site_gaps(site_key: str) -> list[Gap]:
    """What SITE_KEY still lacks (an empty list: ready)."""
    site = get_site(site_key)
    gaps = []
    origins = site.allowed_origins or []
    if not origins:
        gaps.append(Gap("no allowed origin: every decision from a page is refused",
                        "add the site's origin (scheme://host[:port]) in the admin settings "
                        "or with `flask consent seed-demo --origin` for the demo", "general"))
    for origin in origins:
        try:
            normalise_origin(origin)
        except BadOrigin as exc:
            gaps.append(Gap(f"allowed origin {origin!r} can never match a page: {exc}",
                            "replace it in the admin settings", "general"))
    if not list_policies(site.id):
        gaps.append(Gap("no policy version: the banner links no policy and events name none",
                        f"flask consent publish-policy {site.key} LABEL --url https://... "
                        "(or --text-file), or publish a version on the admin's Policies page",
                        "policies"))
    for category in site.categories:
        if category.key == ESSENTIAL:
            continue
        services = category.services or []
        if not services:
            gaps.append(Gap(f"category {category.key!r} lists no services: visitors cannot "
                            "see what it covers, and withdrawing it deletes no cookie",
                            f"scan the site (flask consent scan {site.key}, or Scans in the "
                            "admin) and Apply what it finds, or add its services and their "
                            "cookies in the admin settings", f"category:{category.key}"))
        elif not any(s.get("cookies") or s.get("storage") for s in services):
            # (a service of storage keys only, Hotjar's say, is deleted by its keys)
            gaps.append(Gap(f"category {category.key!r} names no cookies or storage keys: "
                            "withdrawing it deletes none", "list each service's cookies in "
                            "the admin settings", f"category:{category.key}"))
    return gaps


def embed_snippet(site_key: str, host: str = "https://CONSENT_HOST") -> str:
    """The widget's embed code for a site (docs/widget.md)."""
    return (f'<script src="{host}/consent.js?site={site_key}"></script>\n'
            '<script type="text/plain" data-category="analytics" '
            'data-src="https://example.com/analytics.js"></script>\n'
            '<button type="button" data-consent-open>Cookie settings</button>')
