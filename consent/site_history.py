"""A site's change history: who changed its configuration, when, and what changed.

Configuration (categories, services, texts, settings) is not consent: it is edited in
place, so each change leaves one row here, written in the same transaction as the change.
The admin shows the history on the site's settings; a scan's "Apply" is recorded here too.
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from .database import UTCDateTime, utcnow
from .extensions import db

MAX_SUMMARY = 1000


class SiteChange(db.Model):
    """One change of a site's configuration."""

    __tablename__ = "site_changes"
    __table_args__ = (sa.Index("ix_site_changes_site_at", "site_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Who: "user:3", "token:7", "cli", "scan-worker" (no personal data).
    actor: Mapped[str] = mapped_column(sa.String(120))
    # What part: "settings", "category:analytics", "scan-apply", ...
    kind: Mapped[str] = mapped_column(sa.String(60))
    summary: Mapped[str] = mapped_column(sa.String(MAX_SUMMARY))
    details: Mapped[dict] = mapped_column(sa.JSON, default=dict)


def record_change(site_id: int, actor: str, kind: str, summary: str,
                  details: dict | None = None) -> SiteChange:
    """Add a change to the history (inside the write transaction that made it)."""
    row = SiteChange(site_id=site_id, actor=(actor or "unknown")[:120], kind=kind[:60],
                     summary=summary[:MAX_SUMMARY], details=details or {})
    db.session.add(row)
    return row


def list_changes(site_id: int, limit: int = 50) -> list[SiteChange]:
    """The site's latest changes, newest first."""
    return list(db.session.execute(
        db.select(SiteChange).where(SiteChange.site_id == site_id)
        .order_by(SiteChange.at.desc(), SiteChange.id.desc()).limit(limit)).scalars())
