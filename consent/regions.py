"""Where a visitor is, and which rules a site applies there (opt-in, opt-out, notice only).

The region comes, in this order, from a header a trusted CDN or proxy sets (only when the
operator configured CONSENT_REGION_HEADERS: a visitor can send any header), from the
offline IP-to-country data of the `iptocc` package (Regional Internet Registry
allocations, embedded in its wheel; country only), or else it is unknown and the site's
default rule applies. A region is an ISO 3166-1 country code, with the ISO 3166-2
subdivision when the header gives one (`US-CA`).

A site's rules live in `settings.regions`:

    {"rules": {"EEA": "opt-in", "GB": "opt-in", "CH": "opt-in", "US": "opt-out"},
     "default": "opt-in", "sensitive": ["location"], "gpp_states": ["usca"]}

A rule's key is a region (`US-CA`), a country (`US`) or a group (`EU`, `EEA`,
`US-PRIVACY-STATES`); the most specific key wins. Sites without `regions` behave as
before: opt-in everywhere.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import marshmallow as ma
from marshmallow import validate

from .database import run_write, utcnow
from .errors import Invalid
from .gpp import UsChoice, us_strings
from .i18n import catalog
from .sites import ESSENTIAL, SiteSnapshot, get_site, gpc_categories, invalidate_site_cache
from .validation import StrictSchema

JURISDICTIONS = ("opt-in", "opt-out", "notice-only")
DEFAULT_JURISDICTION = "opt-in"

EU = frozenset("AT BE BG HR CY CZ DK EE FI FR DE GR IE IT LV LT LU MT NL PL PT RO SK SI "
               "ES SE".split())
EEA = EU | {"IS", "LI", "NO"}
# States with a comprehensive consumer privacy law giving an opt-out of sale, sharing or
# targeted advertising (in force or enacted by 2026).
US_PRIVACY_STATES = frozenset("CA CO CT DE IA IN KY MD MN MT NE NH NJ OR RI TN TX UT VA"
                              .split())
GROUPS: dict[str, frozenset[str]] = {
    "EU": EU, "EEA": EEA,
    "US-PRIVACY-STATES": frozenset(f"US-{s}" for s in US_PRIVACY_STATES),
}
# GPP state sections this server encodes (consent.gpp), by the state they belong to.
STATE_SECTIONS = {"usca": "US-CA"}

# Trusted-header presets: (country header, subdivision header or None).
HEADER_PRESETS: dict[str, tuple[str, str | None]] = {
    # Cloudflare: CF-IPCountry always; the subdivision with "Add visitor location headers".
    "cloudflare": ("CF-IPCountry", "CF-Region-Code"),
    "cloudfront": ("CloudFront-Viewer-Country", "CloudFront-Viewer-Country-Region"),
    "vercel": ("X-Vercel-IP-Country", "X-Vercel-IP-Country-Region"),
    # Fastly sets no geo header itself: docs/regions.md has the VCL that sets these two.
    "fastly": ("Fastly-Geo-Country", "Fastly-Geo-Region"),
}

COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
SUBDIVISION_RE = re.compile(r"^[A-Z0-9]{1,3}$")
REGION_RE = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")
# Codes CDNs use for "no country": unknown, Tor, anonymous proxies, satellite.
_NO_COUNTRY = {"XX", "T1", "A1", "A2", "O1", "EU", "AP", "ZZ"}


def parse_header_setting(value: str) -> list[tuple[str, str | None]]:
    """CONSENT_REGION_HEADERS as (country header, subdivision header) pairs.

    A comma-separated list of preset names (cloudflare, cloudfront, vercel, fastly) or
    `Country-Header[:Subdivision-Header]`; empty means no header is trusted.
    """
    pairs: list[tuple[str, str | None]] = []
    for item in (p.strip() for p in (value or "").split(",")):
        if not item:
            continue
        if item.lower() in HEADER_PRESETS:
            pairs.append(HEADER_PRESETS[item.lower()])
            continue
        country, _, sub = item.partition(":")
        if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", country) or \
                sub and not re.fullmatch(r"[A-Za-z0-9-]{1,64}", sub):
            raise ValueError(f"CONSENT_REGION_HEADERS: {item!r} is neither a preset "
                             f"({', '.join(HEADER_PRESETS)}) nor Header[:Header]")
        pairs.append((country, sub or None))
    return pairs


@dataclass(frozen=True)
class Region:
    """A visitor's region and where it came from (header, ip, none)."""

    code: str | None
    source: str

    @property
    def country(self) -> str | None:
        """The ISO 3166-1 part of the code."""
        return self.code.split("-")[0] if self.code else None


def _from_headers(headers: Mapping[str, str], pairs) -> Region | None:
    for country_header, sub_header in pairs:
        country = (headers.get(country_header) or "").strip().upper()
        if not COUNTRY_RE.fullmatch(country) or country in _NO_COUNTRY:
            continue
        sub = (headers.get(sub_header) or "").strip().upper() if sub_header else ""
        # CloudFront and Vercel send the subdivision alone ("CA"); some proxies "US-CA".
        if sub.startswith(country + "-"):
            sub = sub[len(country) + 1:]
        return Region(f"{country}-{sub}" if SUBDIVISION_RE.fullmatch(sub) else country, "header")
    return None


_country_code = None


def _from_ip(ip: str | None) -> Region | None:
    global _country_code
    if not ip:
        return None
    if _country_code is None:
        # imported on first use: only deployments that use it pay (and once: a `from
        # package import` runs importlib's from-list handling on every call)
        from iptocc import country_code as _country_code

    try:
        country = _country_code(ip.strip())
    except (ValueError, TypeError):
        return None
    if country and COUNTRY_RE.fullmatch(country.upper()) and country.upper() not in _NO_COUNTRY:
        return Region(country.upper(), "ip")
    return None


def detect_region(headers: Mapping[str, str], ip: str | None, *,
                  trusted_headers: list[tuple[str, str | None]], use_ip: bool) -> Region:
    """The visitor's region: a trusted header, else the IP database, else unknown."""
    return (trusted_headers and _from_headers(headers, trusted_headers)) \
        or (use_ip and _from_ip(ip)) or Region(None, "none")


def jurisdiction(rules: dict | None, region: str | None) -> str:
    """The rule a site with RULES (`settings.regions`) applies in REGION."""
    if not rules:
        return DEFAULT_JURISDICTION
    table = rules.get("rules") or {}
    default = rules.get("default") or DEFAULT_JURISDICTION
    if not region:
        return default
    country = region.split("-")[0]
    # Most specific first: the region itself, a group of subdivisions (US-PRIVACY-STATES),
    # the country, a group of countries (EU, EEA); among groups, the first in the rules.
    if region in table:
        return table[region]
    for key, value in table.items():
        if key in GROUPS and region in GROUPS[key]:
            return value
    if country in table:
        return table[country]
    for key, value in table.items():
        if key in GROUPS and country in GROUPS[key]:
            return value
    return default


# ---------------------------------------------------------------- a site's rules


_ONE_OF = validate.OneOf(JURISDICTIONS, error="must be one of opt-in, opt-out, notice-only")


def _rule_key(value: str) -> None:
    if value not in GROUPS and not REGION_RE.fullmatch(value):
        raise ma.ValidationError(f"{value[:40]!r} is not a region (US-CA), a country (DE) "
                                 f"or a group ({', '.join(GROUPS)})")


class RegionRulesSchema(StrictSchema):
    """A site's rules by region (`settings.regions`)."""

    rules = ma.fields.Dict(keys=ma.fields.String(validate=_rule_key),
                           values=ma.fields.String(validate=_ONE_OF), load_default=dict,
                           validate=validate.Length(max=300))
    default = ma.fields.String(load_default=DEFAULT_JURISDICTION, validate=_ONE_OF)
    sensitive = ma.fields.List(ma.fields.String(validate=validate.Length(1, 32)),
                               load_default=list, validate=validate.Length(max=40), metadata={
        "description": "Categories that stay opt-in in opt-out regions (sensitive data)"})
    gpp_states = ma.fields.List(ma.fields.String(validate=validate.OneOf(
        tuple(STATE_SECTIONS), error="GPP state sections encoded here: usca")),
        load_default=list, metadata={"description": "State GPP sections sent besides usnat"})

    @ma.pre_load
    def _upper_keys(self, data, **kwargs):
        if isinstance(data, dict) and isinstance(data.get("rules"), dict):
            data = {**data, "rules": {str(k).strip().upper(): v
                                      for k, v in data["rules"].items()}}
        return data


def parse_rule_lines(text: str) -> dict[str, str]:
    """Rules written one per line, `EEA GB CH: opt-in` (admin form and CLI)."""
    rules: dict[str, str] = {}
    for number, line in enumerate((text or "").splitlines(), 1):
        if not line.strip():
            continue
        keys, sep, rule = line.partition(":")
        if not sep or not keys.split():
            raise Invalid(f"line {number}: write 'REGION [REGION...]: opt-in|opt-out|"
                          "notice-only', e.g. 'US: opt-out'", field="rules")
        rule = rule.strip().lower()
        if rule not in JURISDICTIONS:  # said here with its line: the schema cannot
            raise Invalid(f"line {number}: {rule or 'nothing'!r} after the colon is not "
                          "opt-in, opt-out or notice-only", field="rules")
        for key in keys.replace(",", " ").split():
            rules[key.upper()] = rule
    return rules


def set_region_rules(site_key: str, data: dict) -> dict:
    """Validate and store a site's rules by region; returns what is stored (empty: none)."""
    options = RegionRulesSchema().load(data)

    def write() -> dict:
        site = get_site(site_key)
        keys = {c.key for c in site.categories}
        for key in options["sensitive"]:
            if key not in keys:
                raise Invalid(f"site {site_key!r} has no category {key!r}", field="sensitive")
        settings = dict(site.settings or {})
        stored = options if options["rules"] or options["default"] != DEFAULT_JURISDICTION \
            else {}
        if stored:
            settings["regions"] = stored
        else:
            settings.pop("regions", None)
        site.settings = settings
        site.updated_at = utcnow()  # a new revision: cached configs and scripts change
        invalidate_site_cache(site.key)
        return stored

    return run_write(write)


def describe(settings: dict) -> dict:
    """A site's rules as the admin form shows them (one line per rule)."""
    regions = settings.get("regions") or {}
    by_rule: dict[str, list[str]] = {}
    for key, rule in (regions.get("rules") or {}).items():
        by_rule.setdefault(rule, []).append(key)
    return {"rules": "\n".join(f"{' '.join(keys)}: {rule}" for rule, keys in by_rule.items()),
            "default": regions.get("default", DEFAULT_JURISDICTION),
            "sensitive": " ".join(regions.get("sensitive") or ()),
            "gpp_states": list(regions.get("gpp_states") or ())}


def subdivision_warning(settings: dict, header_setting: str) -> str | None:
    """Why a site's rules by region cannot all apply on this server, or None: rules (or
    a GPP state section) for a state or province need its code, which only a trusted
    CDN header gives; the offline IP database knows countries only."""
    regions = settings.get("regions") or {}
    keys = sorted(k for k in (regions.get("rules") or {})
                  if "-" in k and (k in GROUPS or REGION_RE.fullmatch(k)))
    keys += [STATE_SECTIONS[s] for s in regions.get("gpp_states") or () if s in STATE_SECTIONS]
    try:
        pairs = parse_header_setting(header_setting)
    except ValueError:
        pairs = []
    if not keys or any(sub for _, sub in pairs):
        return None
    named = ", ".join(dict.fromkeys(keys))
    return (f"The rules for {named} need the visitor's state or province, which only a trusted CDN "
            "header gives, and CONSENT_REGION_HEADERS names no subdivision header on this "
            "server (the IP database knows countries only): visitors there get their "
            "country's rule or the default. Set CONSENT_REGION_HEADERS (docs/regions.md).")


# ---------------------------------------------------------------- what a region means


def applies(settings: dict, code: str | None) -> str:
    """The jurisdiction a site (its settings) applies to a visitor from CODE."""
    return jurisdiction(settings.get("regions"), code)


def default_on(site: SiteSnapshot) -> list[str]:
    """Categories on until the visitor opts out, in opt-out and notice-only regions:
    all but the sensitive ones (which stay opt-in) and essential (always on anyway)."""
    sensitive = set((site.settings.get("regions") or {}).get("sensitive") or ())
    return [k for k in site.category_keys if k != ESSENTIAL and k not in sensitive]


def us_signals(site: SiteSnapshot, code: str | None) -> dict | None:
    """The GPP and US Privacy strings for each state a US visitor in CODE can be in, or
    None where the site does not apply opt-out rules to CODE (or CODE is not in the US):
    `n` not opted out, `o` opted out (or a known minor: sale needs an opt-in), `g` opted
    out by Global Privacy Control."""
    if not code or code.split("-")[0] != "US" or applies(site.settings, code) != "opt-out":
        return None
    enabled = (site.settings.get("regions") or {}).get("gpp_states") or ()
    states = tuple(s for s in enabled if STATE_SECTIONS[s] == code)
    return {k: us_strings(choice, state_sections=states) for k, choice in
            (("n", UsChoice(False)), ("o", UsChoice(True)), ("g", UsChoice(True, gpc=True)))}


def event_region(site: SiteSnapshot, code: str | None, categories: dict[str, bool],
                 gpc: bool) -> dict:
    """What an event records about the region in force (hashed with it, in `meta`): the
    region, the rule applied there and, for US opt-out visitors, the GPP and US Privacy
    strings that the choice gives."""
    rule = applies(site.settings, code)
    out: dict = {"region": code, "rule": rule}
    signals = us_signals(site, code)
    if signals is not None:
        opted_out = gpc or any(categories.get(k) is False for k in gpc_categories(site))
        chosen = signals["g" if gpc else "o" if opted_out else "n"]
        out.update(gpp=chosen["gpp"], gpp_sid=chosen["sid"], usp=chosen["usp"])
    return out


# What the first layer shows before the rest of the region's widget arrives: the notice at
# collection and the "Your Privacy Choices" link (static/widget/consent.src.js).
FIRST_LAYER_STRINGS = ("link", "notice")


def widget_region(site: SiteSnapshot, code: str | None, locale: str, *,
                  details: bool = True) -> dict | None:
    """The widget config's `region` for a visitor from CODE, or None under opt-in rules
    (today's banner: nothing added, not a byte more for those visitors).

    Without DETAILS (the config a first visit downloads before the notice), only what the
    notice and the link need; the GPP / US Privacy strings and the opt-out view's texts
    come with the details, which the region part asks for once the notice is shown."""
    rule = applies(site.settings, code)
    if rule == "opt-in":
        return None
    strings = catalog("region", locale)
    out: dict = {"code": code, "mode": rule, "on": default_on(site),
                 "strings": strings if details else
                 {k: strings[k] for k in FIRST_LAYER_STRINGS}}
    signals = us_signals(site, code) if details else None
    if signals is not None:
        out["gpp"] = signals
    return out
