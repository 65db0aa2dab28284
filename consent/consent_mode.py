"""Google Consent Mode options of a site: what the widget pushes besides its defaults.

Stored in `Site.settings["consent_mode"]`, only what differs from Google's defaults:

    {"data_layer": "gtmLayer", "ads_data_redaction": true, "url_passthrough": true,
     "regions": [{"region": ["US-CA", "US-VA"], "granted": ["analytics"]}]}

The widget gets them in its configuration as `consentMode` (absent when nothing is set,
so a first visit downloads nothing more) and pushes, while it runs and before any tag,
to the configured dataLayer: the all-denied default, one `default` per region entry (what
is granted there before a choice, `region` listing ISO 3166-2 codes), then
`set ads_data_redaction` and `set url_passthrough`. docs/widget.md has a Google Tag
Manager example.
"""
from __future__ import annotations

import re

import marshmallow as ma
from marshmallow import validate

from .database import run_write, utcnow
from .errors import Invalid
from .sites import SiteSnapshot, get_site, invalidate_site_cache
from .validation import Exact, StrictBoolean, StrictSchema

# Consent Mode's storage types for each standard category (the DESIGN's mapping).
MODES = {"functional": ("functionality_storage", "personalization_storage"),
         "analytics": ("analytics_storage",),
         "advertising": ("ad_storage", "ad_user_data", "ad_personalization")}
# A global variable name the page's tag manager reads (gtag's `dataLayer` by default).
DATA_LAYER_RE = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]{0,63}$")
# ISO 3166-1 alpha-2, optionally with an ISO 3166-2 subdivision, as Google expects them.
REGION_RE = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")
MAX_REGION_RULES = 20


class RegionDefaultSchema(StrictSchema):
    """Categories granted by default, before any choice, to visitors in some regions."""

    region = ma.fields.List(ma.fields.String(validate=Exact(
        REGION_RE, error="{input!r} is not a region code such as US or US-CA")),
        required=True, validate=validate.Length(1, 50))
    granted = ma.fields.List(ma.fields.String(validate=validate.OneOf(
        tuple(MODES), error="{input!r} has no Consent Mode type (functional, analytics or "
        "advertising)")), load_default=list, validate=validate.Length(max=len(MODES)))


class ConsentModeSchema(StrictSchema):
    """A site's Consent Mode options."""

    data_layer = ma.fields.String(load_default="dataLayer", validate=Exact(
        DATA_LAYER_RE, error="the dataLayer name must be a JavaScript identifier, e.g. "
        "dataLayer"))
    ads_data_redaction = StrictBoolean(load_default=False)
    url_passthrough = StrictBoolean(load_default=False)
    regions = ma.fields.List(ma.fields.Nested(RegionDefaultSchema), load_default=list,
                             validate=validate.Length(max=MAX_REGION_RULES))


def parse_region_lines(text: str) -> list[dict]:
    """Region defaults written one per line, `US-CA US-VA: analytics advertising`."""
    rules = []
    for number, line in enumerate((text or "").splitlines(), 1):
        if not line.strip():
            continue
        regions, sep, granted = line.partition(":")
        if not sep:
            raise Invalid(f"line {number}: write 'REGION [REGION...]: CATEGORY [CATEGORY...]',"
                          " e.g. 'US-CA: analytics'", field="regions")
        rules.append({"region": regions.replace(",", " ").upper().split(),
                      "granted": granted.replace(",", " ").lower().split()})
    return rules


def set_consent_mode(site_key: str, data: dict) -> dict:
    """Validate and store a site's Consent Mode options; returns what is stored."""
    options = ConsentModeSchema().load(data)
    stored = {k: v for k, v in options.items() if v and v != "dataLayer"}

    def write() -> dict:
        site = get_site(site_key)
        for rule in stored.get("regions", ()):
            missing = [k for k in rule["granted"] if k not in {c.key for c in site.categories}]
            if missing:
                raise Invalid(f"site {site_key!r} has no category {missing[0]!r}",
                              field="regions")
        settings = dict(site.settings or {})
        if stored:
            settings["consent_mode"] = stored
        else:
            settings.pop("consent_mode", None)
        site.settings = settings
        site.updated_at = utcnow()  # a new revision: cached configs and scripts change
        invalidate_site_cache(site.key)
        return stored

    return run_write(write)


def widget_consent_mode(site: SiteSnapshot) -> dict | None:
    """The widget's `consentMode`, or None when the site set nothing: the dataLayer's name
    (when not `dataLayer`) and the gtag commands to push after the all-denied default,
    whole (the widget pushes them as they are: its own code stays small)."""
    options = site.settings.get("consent_mode") or {}
    out: dict = {}
    if options.get("data_layer") and options["data_layer"] != "dataLayer":
        out["dataLayer"] = options["data_layer"]
    commands: list = []
    for rule in options.get("regions") or ():
        # Only what differs from the all-denied default: Consent Mode takes each type from
        # the most specific default that names it, so the rest stays denied there too.
        granted = {m: "granted" for key in rule.get("granted", ()) if key in site.category_keys
                   for m in MODES[key]}
        commands.append(["consent", "default", {**granted, "region": list(rule["region"])}])
    for name in ("ads_data_redaction", "url_passthrough"):
        if options.get(name):
            commands.append(["set", name, True])
    if commands:
        out["push"] = commands
    return out or None


def describe(site: SiteSnapshot) -> dict:
    """The options as the admin form shows them."""
    options = site.settings.get("consent_mode") or {}
    return {"data_layer": options.get("data_layer", "dataLayer"),
            "ads_data_redaction": bool(options.get("ads_data_redaction")),
            "url_passthrough": bool(options.get("url_passthrough")),
            "regions": "\n".join(f"{' '.join(r['region'])}: {' '.join(r.get('granted', []))}"
                                 for r in options.get("regions") or ())}
