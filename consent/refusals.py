"""Decisions the server refused, counted per site, reason and hour for the dashboard.

A refused decision is a choice the audit trail does not hold; the operator must learn of
it from the product ("12 decisions refused from origin http://x in the last 24 h"), not
from a missing record. Counting happens only on the refusal path, never on an accepted
write, and the table stays small: one row per site, hour, reason and detail (an origin),
at most MAX_DETAILS details per site, reason and hour (the rest are counted together),
and rows older than KEEP_DAYS are pruned as new hours begin.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from marshmallow import ValidationError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.exceptions import HTTPException

from .database import UTCDateTime, run_write, utcnow
from .errors import DomainError, Forbidden
from .extensions import db
from .sites import NotFound, site_snapshot
from .subjects import VisitorKeyRefused

log = logging.getLogger(__name__)
KEEP_DAYS = 30
MAX_DETAILS = 20
OTHER = "(other origins)"
REASONS = ("origin", "visitor_key", "invalid", "forbidden")


class OriginRefused(Forbidden):
    """A browser decision from a page whose origin the site does not allow."""

    title = "Origin not allowed"
    type = "tag:consent-manager,2026:origin"

    def __init__(self, origin: str, site_key: str):
        super().__init__(f"origin {origin} is not allowed for site {site_key!r}: add it to "
                         "the site's allowed origins (admin settings), nothing was recorded")
        self.origin = origin


class DecisionRefusal(db.Model):
    """How many decisions of a site were refused in one hour, for one reason."""

    __tablename__ = "decision_refusals"

    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"), primary_key=True)
    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    reason: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    # The refused origin (reason "origin"); empty otherwise.
    detail: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    count: Mapped[int] = mapped_column(default=0)


def reason_of(exc: Exception) -> tuple[str, str] | None:
    """(reason, detail) of a refusal, or None when EXC is not the caller's fault (or names
    no site a refusal could be counted for)."""
    if isinstance(exc, OriginRefused):
        return "origin", exc.origin[:200]
    if isinstance(exc, VisitorKeyRefused):
        return "visitor_key", ""
    if isinstance(exc, NotFound):
        return None
    if isinstance(exc, ValidationError):
        return "invalid", ""
    if isinstance(exc, DomainError):
        return ("forbidden" if exc.status in (401, 403) else "invalid"), ""
    if isinstance(exc, HTTPException) and exc.code and 400 <= exc.code < 500:
        return "invalid", ""
    return None


def _insert(table, values: dict, counter):
    dialect = db.session.get_bind().dialect.name
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table).values(**values)
    return ins.on_conflict_do_update(index_elements=list(table.primary_key.columns.keys()),
                                     set_={"count": counter(ins.excluded.count)})


def note_refusal(site_key: str, exc: Exception) -> None:
    """Count a refused decision of SITE_KEY (never raises: the refusal is answered anyway)."""
    what = reason_of(exc)
    if what is None:
        return
    reason, detail = what
    try:
        site = site_snapshot(site_key)
    except NotFound:
        return
    hour = utcnow().replace(minute=0, second=0, microsecond=0)
    table = DecisionRefusal.__table__

    def write():
        rows = db.session.execute(sa.select(table.c.detail).where(
            table.c.site_id == site.id, table.c.hour == hour, table.c.reason == reason)
        ).scalars().all()
        nonlocal detail
        if detail not in rows and len(rows) >= MAX_DETAILS:
            detail = OTHER
        if not rows:  # a new hour for this site: forget the oldest
            db.session.execute(sa.delete(table).where(
                table.c.site_id == site.id, table.c.hour < hour - timedelta(days=KEEP_DAYS)))
        db.session.execute(_insert(table, {"site_id": site.id, "hour": hour, "reason": reason,
                                           "detail": detail, "count": 1},
                                   lambda _: table.c.count + 1))

    try:
        run_write(write)
    except Exception:  # noqa: BLE001 - counting must never turn a 4xx into a 500
        db.session.rollback()
        log.warning("could not count a refused decision of site %r", site_key, exc_info=True)


@dataclass
class RefusalSummary:
    """Refusals of one reason (and origin) over a period, for the dashboard."""

    reason: str
    detail: str
    count: int
    last: datetime

    @property
    def sentence(self) -> str:
        """What the dashboard says, e.g. '12 decisions refused from origin http://x'."""
        n = f"{self.count} decision{'s' if self.count != 1 else ''} refused"
        if self.reason == "origin":
            return (f"{n} from origin {self.detail}" if self.detail != OTHER
                    else f"{n} from other origins")
        return {"visitor_key": f"{n}: a visitor id without the key of its browser",
                "invalid": f"{n} as invalid input",
                "forbidden": f"{n} as not allowed (e.g. a minor's grant without a guardian)"
                }.get(self.reason, f"{n} ({self.reason})")


def recent_refusals(site_id: int, hours: int = 24,
                    now: datetime | None = None) -> list[RefusalSummary]:
    """Refused decisions of the last HOURS hours, most frequent first."""
    now = now or utcnow()
    since = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    table = DecisionRefusal.__table__
    rows = db.session.execute(
        sa.select(table.c.reason, table.c.detail, sa.func.sum(table.c.count),
                  sa.func.max(table.c.hour))
        .where(table.c.site_id == site_id, table.c.hour >= since)
        .group_by(table.c.reason, table.c.detail)).all()
    out = [RefusalSummary(r[0], r[1], int(r[2]), r[3]) for r in rows]
    return sorted(out, key=lambda s: (-s.count, s.reason, s.detail))
