"""Policy versions: published texts, material changes, archived versions."""
from __future__ import annotations

import hashlib
import re
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from .database import UTCDateTime, utcnow
from .extensions import db
from .sites import Site, invalidate_site_cache

LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")


class PolicyUrlError(ValueError):
    """A policy URL that is not an absolute http(s) URL."""

    field = "url"


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
    if not LABEL_RE.match(label or ""):
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
    return version


def current_policy(site_id: int) -> tuple[PolicyVersion | None, PolicyVersion | None]:
    """(latest published version, latest material version) of a site."""
    versions = db.session.execute(
        db.select(PolicyVersion).where(PolicyVersion.site_id == site_id)
        .order_by(PolicyVersion.published_at.desc(), PolicyVersion.id.desc())
    ).scalars().all()
    latest = versions[0] if versions else None
    material = next((v for v in versions if v.material), None)
    return latest, material


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
