"""Ready-made site profiles: the five seed privacy policies, carried out.

A profile is one data module (see base.Profile): the site's name, categories with their
services and cookies, texts, channel defaults, request deadline, age rule, GPC note, the
policy version (a faithful summary quoting the policy) and the list of promises, each
naming the end-to-end test that proves it (tests/e2e/test_profile_<name>.py).

`load_profile` creates a site from a profile (also `flask consent load-profile NAME` and
the admin's Profiles page). Loading is idempotent: loading the same profile onto the same
site key again changes nothing; a key taken by any other site is refused.

Importing this package also registers the tables, ledger listeners and CLI commands of
the modules profiles rely on: consent.minors (age rules), consent.linked_accounts and
.deadlines (opt-out deadlines).
"""
from __future__ import annotations

from dataclasses import dataclass

import click

from .. import linked_accounts, minors  # noqa: F401  (tables, listeners)
from ..cli import consent_cli
from ..database import run_write
from ..errors import Conflict, DomainError, Invalid
from ..extensions import db
from ..sites import STANDARD_CATEGORIES, NotFound, Site, default_category_texts
from . import care_platform, communications, device_network, scheduling, services_platform
from . import deadlines  # noqa: F401  (ledger listener: opt-out deadlines)
from .base import Profile, Promise

PROFILES: dict[str, Profile] = {p.name: p for p in (
    services_platform.PROFILE, device_network.PROFILE, communications.PROFILE,
    scheduling.PROFILE, care_platform.PROFILE)}

__all__ = ["PROFILES", "Profile", "Promise", "LoadResult", "get_profile", "list_profiles",
           "load_profile", "profile_of_site"]


def list_profiles() -> list[Profile]:
    """Every profile, in seed order."""
    return sorted(PROFILES.values(), key=lambda p: p.seed)


def get_profile(name: str) -> Profile:
    """A profile by name, or by its seed's number or file name ("001"); NotFound otherwise."""
    if name in PROFILES:
        return PROFILES[name]
    for profile in PROFILES.values():
        if name and (profile.seed == name or profile.seed.split("_")[0] == name):
            return profile
    raise NotFound("profile", str(name)[:64])


def _category_specs(profile: Profile) -> list[dict]:
    """create_site specs; standard categories keep their built-in texts where the profile
    gives none."""
    defaults = default_category_texts()
    specs = []
    for spec in profile.categories:
        builtin = defaults.get(spec["key"], {}) if spec["key"] in STANDARD_CATEGORIES else {}
        titles = {loc: t["title"] for loc, t in builtin.items()}
        descriptions = {loc: t["description"] for loc, t in builtin.items()}
        titles.update(spec.get("titles") or {})
        descriptions.update(spec.get("descriptions") or {})
        specs.append({"key": spec["key"], "titles": titles or {"en": spec["key"].title()},
                      "descriptions": descriptions, "services": list(spec.get("services") or [])})
    return specs


@dataclass
class LoadResult:
    """What loading a profile did."""

    profile: Profile
    site_key: str
    created: bool
    api_key: str | None  # shown once, only when the site was created


def load_profile(name: str, *, site_key: str | None = None, origins: list[str] | tuple = (),
                 site_name: str | None = None) -> LoadResult:
    """Create a site configured by profile NAME (idempotent for the same profile and key)."""
    from ..policies import publish_policy
    from ..site_admin import check_origin
    from ..sites import (SITE_KEY_RE, CategoryLimit, check_category_count, check_category_key,
                         create_api_key, create_site)

    profile = get_profile(name)
    key = site_key or profile.site_key
    if not SITE_KEY_RE.fullmatch(key or ""):
        raise Invalid(f"site key {key!r} must be 3-64 letters, digits, '-' or '_'",
                      field="site_key")
    checked = [check_origin(o) for o in origins if o and o.strip()]
    minors.parse_age_rule(profile.age_rule)  # a broken profile fails before writing
    specs = _category_specs(profile)
    try:
        for spec in specs:
            check_category_key(spec["key"])
        check_category_count(len({s["key"] for s in specs} | {"essential"}), key)
    except CategoryLimit as exc:
        raise Invalid(f"profile {profile.name!r}: {exc}", field="profile") from None

    def write() -> LoadResult:
        existing = db.session.execute(db.select(Site).where(Site.key == key)
                                      ).scalar_one_or_none()
        if existing is not None:
            loaded = ((existing.settings or {}).get("profile") or {}).get("name")
            if loaded == profile.name:
                return LoadResult(profile, key, False, None)
            what = f"loaded from profile {loaded!r}" if loaded else "not from a profile"
            raise Conflict(f"a site {key!r} already exists ({what}); choose another key",
                           field="site_key")
        site = create_site(key, site_name or profile.site_name, allowed_origins=checked,
                           categories=specs, default_locale="en",
                           settings=profile.settings())
        # The seed policies are written in English: the site starts with that language.
        site.locales = ["en"]
        publish_policy(site.id, profile.policy_label, text=profile.policy_text,
                       material=True, summary=profile.policy_summary,
                       effective_at=profile.effective_at)
        return LoadResult(profile, key, True, create_api_key(site, f"profile {profile.name}"))

    result = run_write(write)
    minors.forget_cached_rules()
    return result


def profile_of_site(site_key: str) -> tuple[Site, Profile | None]:
    """A site and the profile it was loaded from (None when it was not)."""
    from ..sites import get_site

    site = get_site(site_key)
    name = ((site.settings or {}).get("profile") or {}).get("name")
    return site, PROFILES.get(name) if name else None


# ---------------------------------------------------------------- CLI


@consent_cli.command("list-profiles")
def list_profiles_command():
    """List the ready-made site profiles (one per seed policy)."""
    for profile in list_profiles():
        click.echo(f"{profile.name:18} {profile.seed[:3]}  {profile.site_name}: "
                   f"{len(profile.promises)} promises")


@consent_cli.command("load-profile")
@click.argument("name")
@click.option("--site-key", help="Key of the site to create (default: the profile's).")
@click.option("--origin", "origins", multiple=True,
              help="Allowed origin of the site's pages (repeatable), e.g. https://shop.example")
@click.option("--site-name", help="Display name (default: the policy's company name).")
def load_profile_command(name, site_key, origins, site_name):
    """Create a site from a ready-made profile (NAME, or the seed number such as 001)."""
    try:
        result = load_profile(name, site_key=site_key, origins=list(origins),
                              site_name=site_name)
    except NotFound:
        raise click.ClickException(
            f"unknown profile {name!r}; known: {', '.join(p.name for p in list_profiles())}")
    except DomainError as exc:
        raise click.ClickException(exc.detail)
    profile = result.profile
    if not result.created:
        click.echo(f"site {result.site_key!r} already has profile {profile.name!r}; "
                   "nothing changed")
        return
    click.echo(f"loaded profile {profile.name!r} (seed {profile.seed}) as site "
               f"{result.site_key!r}: {profile.site_name}")
    click.echo(f"API key (shown once): {result.api_key}")
    click.echo(f"{len(profile.promises)} promises; summary at "
               f"/admin/sites/{result.site_key}/profile")
    if not origins:
        click.echo("note: no allowed origin yet; add the site's origin with --origin or in "
                   "the admin settings, or the widget cannot record choices", err=True)
