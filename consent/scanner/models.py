"""What scans store: the scan (its request, progress and outcome), its findings, and
schedules. Findings are names and metadata only: never a cookie or storage value, a
query string or a page's content."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..database import UTCDateTime, utcnow
from ..extensions import db

STATUSES = ("queued", "running", "done", "failed")
KINDS = ("cookie", "local_storage", "session_storage", "request")
MAX_ERROR = 1000


class ScanSchedule(db.Model):
    """A site's repeated scan: which URLs, how often, when next."""

    __tablename__ = "scan_schedules"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"), unique=True)
    urls: Mapped[list] = mapped_column(sa.JSON, default=list)
    max_pages: Mapped[int] = mapped_column(default=10)
    same_origin: Mapped[bool] = mapped_column(default=False)
    every_seconds: Mapped[int] = mapped_column()
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(sa.String(120))


class Scan(db.Model):
    """One scan of a site: queued by the admin, the CLI or a schedule, run by a worker."""

    __tablename__ = "scans"
    __table_args__ = (sa.Index("ix_scans_site_requested", "site_id", "requested_at"),
                      sa.Index("ix_scans_status", "status", "requested_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    status: Mapped[str] = mapped_column(sa.String(16), default="queued")
    urls: Mapped[list] = mapped_column(sa.JSON, default=list)
    max_pages: Mapped[int] = mapped_column(default=10)
    same_origin: Mapped[bool] = mapped_column(default=False)
    schedule_id: Mapped[int | None] = mapped_column(sa.ForeignKey("scan_schedules.id",
                                                                  ondelete="SET NULL"))
    requested_by: Mapped[str] = mapped_column(sa.String(120))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # {"phase", "done", "total", "page"}: what the worker is doing now
    progress: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    attempts: Mapped[int] = mapped_column(default=0)
    # A running scan is leased to one worker; a worker that died lets the lease run out.
    lease_owner: Mapped[str | None] = mapped_column(sa.String(120))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(sa.String(MAX_ERROR))
    # pages (url, status, error, notes), refused addresses, consent origins, limits hit,
    # the Open Cookie Database used, counts
    summary: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    # Trackers (cookie names and third-party hosts) no earlier finished scan had seen
    new_items: Mapped[list] = mapped_column(sa.JSON, default=list)

    findings: Mapped[list["ScanFinding"]] = relationship(
        back_populates="scan", order_by="ScanFinding.id", cascade="all, delete-orphan")

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed")


class ScanFinding(db.Model):
    """A cookie, storage key or third-party host a scan saw, and where."""

    __tablename__ = "scan_findings"

    id: Mapped[int] = mapped_column(primary_key=True)
    scan_id: Mapped[int] = mapped_column(sa.ForeignKey("scans.id", ondelete="CASCADE"),
                                         index=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    name: Mapped[str] = mapped_column(sa.String(255))
    domain: Mapped[str] = mapped_column(sa.String(255))
    path: Mapped[str] = mapped_column(sa.String(255), default="")
    party: Mapped[str] = mapped_column(sa.String(5))
    # {phase: {"page": url, "set_by": "script https://…/a.js" | "response of …"}}
    phases: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    # cookies: lifetime_seconds, http_only, secure, same_site, host_only;
    # requests: types, example (URL without query)
    attributes: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    # The Open Cookie Database's proposal (category, platform, provider, purpose, ...)
    proposal: Mapped[dict | None] = mapped_column(sa.JSON)

    scan: Mapped[Scan] = relationship(back_populates="findings")
