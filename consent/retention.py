"""Retention: purge a site's old events and leave a signed checkpoint per stream.

The database refuses to delete ledger rows unless a purge permit for that site and time
exists in the same transaction (see consent.ledger.append_only_ddl). A purge takes, in
each stream, the longest run of events from the start that are all older than the cut-off
(so the remaining chain has no gap), deletes their personal details and the events, and
records a LedgerCheckpoint (seq and hash of the last removed event) signed with the
server's Ed25519 key. `verify_ledger` continues each chain from its latest checkpoint;
`verify_checkpoints` checks the signatures.

The current-state projection is left as it is: a purge removes history, not anybody's
current choice (an old unsubscribe stays in force).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import click
import sqlalchemy as sa

from .audit import checkpoint_message, parse_when, public_key_raw, sign, verify_signature
from .cli import consent_cli
from .database import iso, run_write, utcnow
from .errors import Conflict, Invalid
from .extensions import db
from .ledger import (ConsentEvent, EventDetails, LedgerCheckpoint, LedgerPurgePermit,
                     carry_forward_states)
from .sites import NotFound, Site, get_site


@dataclass
class PurgeResult:
    """What a purge removed (or, on a dry run, would remove)."""

    site_key: str
    before: datetime
    events_removed: int = 0
    details_removed: int = 0
    checkpoints: list[dict] = field(default_factory=list)
    states_resting_on_purged: int = 0
    states_carried_forward: int = 0
    dry_run: bool = False


def retention_cutoff(site: Site, now: datetime | None = None) -> datetime | None:
    """The cut-off from the site's `settings["retention_days"]`, if configured."""
    days = (site.settings or {}).get("retention_days")
    if not days:
        return None
    return (now or utcnow()) - timedelta(days=int(days))


def _plan(site: Site, before: datetime) -> list[tuple[int, int, int, str]]:
    """Per stream: (stream, last seq to remove, number of events, hash of that event)."""
    ev = ConsentEvent.__table__
    plans = []
    streams = db.session.execute(sa.select(ev.c.stream).where(ev.c.site_id == site.id)
                                 .distinct().order_by(ev.c.stream)).scalars().all()
    for stream in streams:
        in_stream = sa.and_(ev.c.site_id == site.id, ev.c.stream == stream)
        first_kept = db.session.execute(sa.select(sa.func.min(ev.c.seq)).where(
            in_stream, ev.c.recorded_at >= before)).scalar()
        cond = in_stream if first_kept is None else sa.and_(in_stream, ev.c.seq < first_kept)
        last = db.session.execute(sa.select(ev.c.seq, ev.c.hash).where(cond)
                                  .order_by(ev.c.seq.desc()).limit(1)).first()
        if last is None:
            continue
        count = db.session.execute(sa.select(sa.func.count()).where(cond)).scalar()
        plans.append((stream, int(last.seq), int(count), last.hash))
    return plans


def checkpoint_signature(site_key: str, cp: LedgerCheckpoint) -> str:
    """Sign a checkpoint's fields with the server key."""
    return sign(checkpoint_message(
        site=site_key, stream=cp.stream, seq=cp.seq, hash=cp.hash,
        purged_before=iso(cp.purged_before), events_removed=cp.events_removed,
        created_at=iso(cp.created_at)))


def purge_events(site_key: str, before: datetime, *, dry_run: bool = False,
                 actor: str | None = None) -> PurgeResult:
    """Remove the site's events older than BEFORE, leaving signed checkpoints (ACTOR: who,
    for the site's change history)."""
    if before > utcnow():
        raise Invalid("the cut-off lies in the future", field="before")

    def write() -> PurgeResult:
        site = get_site(site_key)
        result = PurgeResult(site.key, before, dry_run=dry_run)
        plans = _plan(site, before)
        ev = ConsentEvent.__table__
        states = db.session.execute(sa.text(
            "SELECT COUNT(*) FROM consent_states s JOIN consent_events e "
            "ON e.event_id = s.last_event_id WHERE s.site_id = :site AND e.recorded_at < :b"
        ).bindparams(sa.bindparam("b", type_=ev.c.recorded_at.type)),
            {"site": site.id, "b": before}).scalar()
        result.states_resting_on_purged = int(states or 0)
        if dry_run or not plans:
            result.events_removed = sum(p[2] for p in plans)
            return result
        # Everything about to go gets its log index first, and a signed checkpoint covers
        # it: the purged prefix stays provable (its leaf hashes stay in the log; receipts
        # and witnesses holding older checkpoints still check).
        from .ledger.log import integrate_site

        while True:
            integration = integrate_site(site.id, site.key, force_checkpoint=True)
            if integration.blocked:
                # A log that cannot be signed cannot keep the purged prefix provable.
                raise Conflict("; ".join(integration.refused or []) + ": nothing purged")
            if not integration.added:
                break
        # Re-state what the doomed events established, so the projection can still be
        # rebuilt from the ledger alone after they are gone.
        result.states_carried_forward = carry_forward_states(site, before)
        permit = LedgerPurgePermit(site_id=site.id, before=before)
        db.session.add(permit)
        db.session.flush()
        now = utcnow()
        for stream, last_seq, count, last_hash in plans:
            doomed = sa.and_(ev.c.site_id == site.id, ev.c.stream == stream,
                             ev.c.seq <= last_seq)
            det = EventDetails.__table__
            result.details_removed += db.session.execute(sa.delete(det).where(
                det.c.event_id.in_(sa.select(ev.c.event_id).where(doomed)))).rowcount or 0
            removed = db.session.execute(sa.delete(ev).where(doomed)).rowcount or 0
            if removed != count:
                raise RuntimeError(f"stream {stream}: planned {count}, removed {removed}")
            cp = LedgerCheckpoint(site_id=site.id, stream=stream, seq=last_seq,
                                  hash=last_hash, purged_before=before,
                                  events_removed=removed, created_at=now, signature="")
            cp.signature = checkpoint_signature(site.key, cp)
            db.session.add(cp)
            result.events_removed += removed
            result.checkpoints.append({"stream": stream, "seq": last_seq, "hash": last_hash,
                                       "events_removed": removed})
        # The permit must not outlive this transaction, or later deletes would pass.
        db.session.delete(permit)
        if actor:
            from .site_history import record_change

            record_change(site.id, actor, "purge",
                          f"events recorded before {iso(before)} purged: "
                          f"{result.events_removed} events, {len(result.checkpoints)} "
                          "signed checkpoints", {"checkpoints": result.checkpoints})
        db.session.flush()
        return result

    return run_write(write)


@dataclass
class CheckpointCheck:
    """One checkpoint and whether its signature holds."""

    site_key: str
    stream: int
    seq: int
    ok: bool


def verify_checkpoints(site_key: str | None = None) -> list[CheckpointCheck]:
    """Check every retention checkpoint's signature against the server's key."""
    raw = public_key_raw()
    query = db.select(LedgerCheckpoint, Site.key).join(Site, Site.id == LedgerCheckpoint.site_id)
    if site_key:
        query = query.where(Site.key == site_key)
    out = []
    for cp, key in db.session.execute(query.order_by(LedgerCheckpoint.id)).all():
        message = checkpoint_message(
            site=key, stream=cp.stream, seq=cp.seq, hash=cp.hash,
            purged_before=iso(cp.purged_before), events_removed=cp.events_removed,
            created_at=iso(cp.created_at))
        out.append(CheckpointCheck(key, cp.stream, cp.seq,
                                   verify_signature(raw, message, cp.signature)))
    return out


@consent_cli.command("purge")
@click.option("--site", "site_key", required=True, help="The site whose events to purge.")
@click.option("--before", help="Remove events recorded before this date (YYYY-MM-DD or ISO, "
              "UTC). Default: settings.retention_days of the site.")
@click.option("--dry-run", is_flag=True, help="Only count what would be removed.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge_command(site_key, before, dry_run, yes):
    """Remove a site's old events, leaving a signed checkpoint so the ledger still verifies."""
    try:
        site = get_site(site_key)
        cutoff = parse_when(before) if before else retention_cutoff(site)
        if cutoff is None:
            raise click.ClickException("give --before, or set retention_days for the site")
        if not dry_run and not yes:
            click.confirm(f"Remove events of site {site_key!r} recorded before "
                          f"{iso(cutoff)}? This cannot be undone", abort=True)
        result = purge_events(site_key, cutoff, dry_run=dry_run)
    except (ValueError, NotFound) as exc:
        raise click.ClickException(str(exc))
    except (Invalid, Conflict) as exc:
        raise click.ClickException(exc.detail)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {result.events_removed} events of site {site_key!r} recorded before "
               f"{iso(cutoff)}; {len(result.checkpoints)} signed checkpoints written")
    if result.states_resting_on_purged:
        click.echo(f"note: {result.states_resting_on_purged} subjects' current consent rests "
                   "on purged events; it stays in force (the projection is kept)")


@consent_cli.command("verify-checkpoints")
@click.option("--site", "site_key", help="Only this site.")
def verify_checkpoints_command(site_key):
    """Check the signatures of retention checkpoints; exit 1 if any is bad."""
    if site_key:
        get_site(site_key)  # an unknown site is a mistake, not "0 checkpoints verify"
    checks = verify_checkpoints(site_key)
    bad = [c for c in checks if not c.ok]
    for c in bad:
        click.echo(f"BAD: checkpoint of site {c.site_key} stream {c.stream} at seq {c.seq}: "
                   "signature does not verify", err=True)
    if not bad:
        click.echo(f"OK: {len(checks)} checkpoints carry valid signatures")
    raise SystemExit(1 if bad else 0)
