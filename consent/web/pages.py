"""Public HTML pages: archived policy versions and the preference center."""
from __future__ import annotations

from flask import Blueprint, abort, render_template

import difflib

from ..policies import get_policy, list_policies, previous_version
from ..sites import site_snapshot

bp = Blueprint("pages", __name__)


@bp.get("/sites/<site_key>/policies/")
def policy_index(site_key: str):
    """Every version of a site's policy, newest first, each at a stable URL."""
    site = site_snapshot(site_key)
    return render_template("policy_index.html", site=site, versions=list_policies(site.id))


@bp.get("/sites/<site_key>/policies/<label>")
def policy_version(site_key: str, label: str):
    """One policy version exactly as published (archived versions stay readable)."""
    site = site_snapshot(site_key)
    version = get_policy(site.id, label)
    if version is None:
        abort(404, f"site {site_key!r} has no policy version {label!r}")
    return render_template("policy_version.html", site=site, version=version,
                           current=(label == site.policy_label))


@bp.get("/sites/<site_key>/policies/<label>/diff")
def policy_diff(site_key: str, label: str):
    """What a version changed against the one published before it (archived, public)."""
    site = site_snapshot(site_key)
    version = get_policy(site.id, label)
    if version is None:
        abort(404, f"site {site_key!r} has no policy version {label!r}")
    before = previous_version(site.id, version)
    old = (before.text or before.url or "") if before else ""
    new = version.text or version.url or ""
    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(),
                                      f"version {before.label}" if before else "(none)",
                                      f"version {version.label}", lineterm="", n=2))
    return render_template("policy_diff.html", site=site, version=version, before=before,
                           lines=lines)


@bp.get("/favicon.ico")
def favicon():
    """No icon: answer 204 so browsers stop asking (and log no 404)."""
    return "", 204, {"Cache-Control": "public, max-age=86400"}
