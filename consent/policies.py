"""Policy versions: published texts, material changes, archived versions."""
from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from .database import UTCDateTime, iso, utcnow
from .extensions import db
from .sites import VersionInfo, announced, in_force  # noqa: F401 (part of this API)
from .sites import Site, invalidate_site_cache

LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")


class PolicyUrlError(ValueError):
    """A policy URL that is not an absolute http(s) URL."""

    field = "url"


class PolicyDateError(ValueError):
    """An effective date before the version is published (for a site that had one)."""

    field = "effective_at"


# How far in the past an effective date may be and still mean "now" (a client's clock).
EFFECTIVE_SLACK = timedelta(minutes=1)


class PolicyVersion(db.Model):
    """One published version of a site's privacy/cookie policy. Never edited."""

    __tablename__ = "policy_versions"
    __table_args__ = (sa.UniqueConstraint("site_id", "label"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"), index=True)
    label: Mapped[str] = mapped_column(sa.String(40))
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the version governs processing; a material change may be announced before.
    effective_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    material: Mapped[bool] = mapped_column(default=False)
    text: Mapped[str | None] = mapped_column(sa.Text)
    url: Mapped[str | None] = mapped_column(sa.String(500))
    sha256: Mapped[str] = mapped_column(sa.String(64))
    summary: Mapped[str | None] = mapped_column(sa.Text)


def publish_policy(site_id: int, label: str, *, text: str | None = None, url: str | None = None,
                   material: bool = False, summary: str | None = None,
                   effective_at: datetime | None = None) -> PolicyVersion:
    """Publish a new policy version. Must run inside a write transaction."""
    if not LABEL_RE.fullmatch(label or ""):
        raise ValueError("label must be 1-40 letters, digits, '.', '_' or '-'")
    if not text and not url:
        raise ValueError("a policy version needs its text or a URL")
    if url is not None:
        from .validation import http_url_problem

        problem = http_url_problem(url)
        if problem:
            # Shown as a link on the banner and the archive page: only http(s) may pass.
            raise PolicyUrlError(f"policy URL: {problem}")
    now = utcnow()
    if effective_at is not None and effective_at < now and db.session.execute(
            db.select(PolicyVersion.id).where(PolicyVersion.site_id == site_id)
            .limit(1)).first() is not None:
        # A change governs from its publication on: dated earlier, it would silently
        # turn consents already given under the old text into stale ones (and the widget
        # would never have shown its notice). A site's first version may say since when
        # its policy applied.
        if effective_at < now - EFFECTIVE_SLACK:
            raise PolicyDateError(f"effective_at {iso(effective_at)} is in the past: a new "
                                  "version takes effect when it is published or later "
                                  "(leave it empty for now)")
        effective_at = now
    digest = hashlib.sha256((text or url or "").encode("utf-8")).hexdigest()
    version = PolicyVersion(site_id=site_id, label=label, text=text, url=url,
                            material=material, summary=summary, sha256=digest,
                            published_at=now, effective_at=effective_at or now)
    db.session.add(version)
    db.session.flush()
    site = db.session.get(Site, site_id)
    db.session.expire(site, ["policy_versions"])  # the snapshot reads the new version
    site.updated_at = now
    invalidate_site_cache(site.key)
    for listener in _publish_listeners:
        listener(site.key, version)  # e.g. consent.outbox: the policy.published webhook
    return version


_publish_listeners: list = []


def on_publish(fn):
    """Register FN(site_key, version) to run inside the transaction publishing a version."""
    if fn not in _publish_listeners:
        _publish_listeners.append(fn)
    return fn


def previous_version(site_id: int, version: PolicyVersion) -> PolicyVersion | None:
    """The version published just before VERSION (what its diff compares with), or None."""
    return db.session.execute(
        db.select(PolicyVersion).where(
            PolicyVersion.site_id == site_id,
            sa.or_(PolicyVersion.published_at < version.published_at,
                   sa.and_(PolicyVersion.published_at == version.published_at,
                           PolicyVersion.id < version.id)))
        .order_by(PolicyVersion.published_at.desc(), PolicyVersion.id.desc()).limit(1)
    ).scalar_one_or_none()


def policy_links(site_key: str, label: str) -> dict[str, str]:
    """Absolute URLs of a version's archived page and of its diff with the one before."""
    from urllib.parse import quote

    from flask import current_app, has_request_context, url_for

    if has_request_context():
        return {"url": url_for("pages.policy_version", site_key=site_key, label=label,
                               _external=True),
                "diff_url": url_for("pages.policy_diff", site_key=site_key, label=label,
                                    _external=True)}
    # CLI and background use: the public URL when configured, else a path.
    base = (current_app.config.get("CONSENT_PUBLIC_URL") or "").rstrip("/")
    path = f"{base}/sites/{quote(site_key)}/policies/{quote(label)}"
    return {"url": path, "diff_url": path + "/diff"}


def current_policy(site_id: int) -> tuple[PolicyVersion | None, PolicyVersion | None]:
    """(version in force now, latest material version published) of a site.

    A version published with a later effective date is announced, not in force: events
    recorded before that date carry the version in force then.
    """
    versions = db.session.execute(
        db.select(PolicyVersion).where(PolicyVersion.site_id == site_id)
        .order_by(PolicyVersion.published_at.desc(), PolicyVersion.id.desc())
    ).scalars().all()
    now = utcnow()
    effective = [v for v in versions if v.effective_at <= now]
    latest = max(effective, key=lambda v: (v.effective_at, v.published_at, v.id),
                 default=versions[-1] if versions else None)
    material = next((v for v in versions if v.material), None)
    return latest, material


def version_timeline(site_id: int) -> tuple[VersionInfo, ...]:
    """Every version of a site as VersionInfo, in publication order."""
    rows = db.session.execute(
        db.select(PolicyVersion.id, PolicyVersion.label, PolicyVersion.published_at,
                  PolicyVersion.effective_at, PolicyVersion.material)
        .where(PolicyVersion.site_id == site_id)
        .order_by(PolicyVersion.published_at, PolicyVersion.id)).all()
    return tuple(VersionInfo(*row) for row in rows)


def policy_state(site, consented_at: datetime | None, consented_under: str | None) -> dict:
    """Whether a consent given at CONSENTED_AT (under the version CONSENTED_UNDER)
    predates the material version in force.

    SITE is a SiteSnapshot. Answers on every server API (subjects, users, "may I send?")
    carry it, so a backend can tell a choice that no longer counts (seed policies 001,
    002) from a current one, and see a change announced for later.
    """
    now = utcnow()
    versions = site.policy_versions
    current = in_force(versions, now)
    material = in_force(versions, now, material=True)
    upcoming = announced(versions, now)
    # Given before the material version took effect, or recorded since under a version
    # older than it (the widget's queue sends a choice made offline under the old text).
    under = next((v for v in versions if v.label == consented_under), None) \
        if consented_under else None
    stale = material is not None and (
        (consented_at is not None and consented_at < material.effective_at)
        or (under is not None and under.effective_at < material.effective_at))
    return {
        "consented_under": consented_under,
        "in_force": current.label if current else None,
        "material_version": material.label if material else None,
        "material_effective_at": iso(material.effective_at) if material else None,
        "predates_material_version": stale,
        "upcoming": None if upcoming is None else {
            "version": upcoming.label, "effective_at": iso(upcoming.effective_at),
            "material": upcoming.material},
    }


def list_policies(site_id: int) -> list[PolicyVersion]:
    """Every version of a site's policy, newest first."""
    return list(db.session.execute(
        db.select(PolicyVersion).where(PolicyVersion.site_id == site_id)
        .order_by(PolicyVersion.published_at.desc(), PolicyVersion.id.desc())
    ).scalars())


def get_policy(site_id: int, label: str) -> PolicyVersion | None:
    """One version by label, or None."""
    return db.session.execute(
        db.select(PolicyVersion).where(PolicyVersion.site_id == site_id,
                                       PolicyVersion.label == label)
    ).scalar_one_or_none()
