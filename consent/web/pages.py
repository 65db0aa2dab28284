"""Public HTML pages: archived policy versions and the preference center."""
from __future__ import annotations

from flask import Blueprint, abort, render_template

from ..policies import get_policy, list_policies
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


@bp.get("/favicon.ico")
def favicon():
    """No icon: answer 204 so browsers stop asking (and log no 404)."""
    return "", 204, {"Cache-Control": "public, max-age=86400"}
