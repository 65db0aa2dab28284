"""Suppression records: opt-outs that outlive the erasure of the person who made them.

Erasing a person deletes every identifier that could single them out, including the
keyed hashes of their addresses. Without more, an address that had opted out of
promotional messages would be as good as new afterwards, and "may I send?" would answer
with the site's default (seed policies 000, 002, 003: allowed). Before the identifiers
go, each opt-out of the person is kept as a suppression record: the keyed hash of the
address (or of the site's user id) it applies to, the channel, and when the opt-out was
made. Nothing else about the person is kept: the record cannot be linked to the
erased subject, its events or its other addresses, and the database alone cannot tell
which address it stands for (the hash is keyed with the server's HMAC key).

A later explicit choice of the same address or user wins over the record, exactly like
any newer choice wins over an older one.
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from .database import UTCDateTime, parse_iso, utcnow
from .extensions import db

# What a record's ref is the keyed hash of: an address of one medium, or a user id.
REF_KINDS = ("email", "sms", "push", "user")


class SuppressionRecord(db.Model):
    """A kept opt-out: a keyed hash of an address or user id, a channel, a time."""

    __tablename__ = "suppression_records"
    __table_args__ = (sa.UniqueConstraint("site_id", "ref_kind", "ref", "channel"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    ref_kind: Mapped[str] = mapped_column(sa.String(8))
    ref: Mapped[str] = mapped_column(sa.String(64))
    channel: Mapped[str] = mapped_column(sa.String(32))
    # When the person opted out (the state's change time), not when they were erased.
    opted_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    kept_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)



def keep_opt_outs(site_id: int, channels: dict, changed: dict,
                  refs: list[tuple[str, str]]) -> list[str]:
    """Keep a record per opt-out in CHANNELS for every (kind, ref) in REFS (inside a write).

    Channels the person had opted into drop any older record of the same refs (their
    newer choice won). Returns the channel keys kept, sorted.
    """
    kept = []
    table = SuppressionRecord.__table__
    for key, value in sorted((channels or {}).items()):
        medium = key.split(".")[0]
        mine = [(kind, ref) for kind, ref in refs if kind in (medium, "user") and ref]
        if not mine:
            continue
        if value is not False:
            for kind, ref in mine:
                db.session.execute(sa.delete(table).where(
                    table.c.site_id == site_id, table.c.ref_kind == kind,
                    table.c.ref == ref, table.c.channel == key))
            continue
        since = parse_iso((changed or {}).get(f"channel:{key}"))
        for kind, ref in mine:
            existing = db.session.execute(db.select(SuppressionRecord).where(
                SuppressionRecord.site_id == site_id, SuppressionRecord.ref_kind == kind,
                SuppressionRecord.ref == ref, SuppressionRecord.channel == key)
            ).scalar_one_or_none()
            if existing is None:
                db.session.add(SuppressionRecord(site_id=site_id, ref_kind=kind, ref=ref,
                                                 channel=key, opted_out_at=since))
            elif since is not None:
                existing.opted_out_at = since
        kept.append(key)
    db.session.flush()
    return kept


def suppressed_channels(site_id: int, refs: list[tuple[str, str]]) -> dict[str, datetime | None]:
    """{channel: opted_out_at} of the records kept for any of REFS."""
    refs = [(kind, ref) for kind, ref in refs if ref]
    if not refs:
        return {}
    rows = db.session.execute(db.select(SuppressionRecord).where(
        SuppressionRecord.site_id == site_id,
        sa.or_(*[sa.and_(SuppressionRecord.ref_kind == kind, SuppressionRecord.ref == ref)
                 for kind, ref in refs]))).scalars()
    out: dict[str, datetime | None] = {}
    for row in rows:
        out.setdefault(row.channel, row.opted_out_at)
    return out


def records_for(site_id: int, medium: str, channel: str) -> list[SuppressionRecord]:
    """The kept records of one address medium and channel (for the suppression list)."""
    return list(db.session.execute(db.select(SuppressionRecord).where(
        SuppressionRecord.site_id == site_id, SuppressionRecord.ref_kind == medium,
        SuppressionRecord.channel == channel).order_by(SuppressionRecord.id)).scalars())
