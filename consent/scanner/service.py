"""Scans as a service: queue, claim, run, store findings, schedules, and Apply.

The admin's "Scan" button and schedules queue a scan; `flask consent scan-worker` claims
queued scans and runs them, as `flask consent deliver` does for webhooks: a claim is a
lease (a conditional UPDATE; `FOR UPDATE SKIP LOCKED` on PostgreSQL), renewed with each
progress report, and a worker that died lets it run out so that another worker starts
the scan again (three tries). `flask consent scan` runs one scan in its own process.
"""
from __future__ import annotations

import logging
import os
import re
import socket
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable

import sqlalchemy as sa
from flask import current_app

from ..database import run_write, utcnow
from ..errors import Conflict, Invalid
from ..extensions import db
from ..site_history import record_change
from ..sites import CATEGORY_KEY_RE, Category, Site, get_site, invalidate_site_cache
from . import ocd
from .crawler import CrawlResult, CrawlTarget, ScanError, origin_of, run_crawl
from .models import Scan, ScanFinding, ScanSchedule
from .report import classify, consent_names

log = logging.getLogger(__name__)

# Defaults; the app config wins over the environment, which wins over these.
SETTINGS: dict[str, float] = {
    "CONSENT_SCAN_MAX_PAGES": 50,        # the most pages one scan may visit
    "CONSENT_SCAN_MAX_SECONDS": 300.0,   # the longest one scan may run
    "CONSENT_SCAN_PAGE_TIMEOUT": 20.0,   # seconds for one page to load
    "CONSENT_SCAN_SETTLE_SECONDS": 3.0,  # longest wait for a page's network to go quiet
    "CONSENT_SCAN_POLL_SECONDS": 5.0,    # an idle `scan-worker --forever` looks this often
    "CONSENT_SCAN_KEEP": 30,             # finished scans kept per site (older: deleted)
}
MAX_ATTEMPTS = 3
DEFAULT_PAGES = 10


def setting(name: str) -> float:
    """A scanner setting from the app config, else the environment, else the default."""
    value = current_app.config.get(name)
    if value in (None, ""):
        value = os.environ.get(name)
    if value in (None, ""):
        return SETTINGS[name]
    try:
        return float(value)
    except ValueError:
        raise ScanError(f"{name}={value!r} is not a number") from None


def chromium_setting() -> str | None:
    """CONSENT_SCAN_CHROMIUM: the browser to run (default: Debian's chromium on PATH)."""
    return current_app.config.get("CONSENT_SCAN_CHROMIUM") or \
        os.environ.get("CONSENT_SCAN_CHROMIUM") or None


def ocd_file() -> Path:
    """Where `ocd-refresh` installs the Open Cookie Database (CONSENT_OCD_FILE)."""
    configured = current_app.config.get("CONSENT_OCD_FILE") or \
        os.environ.get("CONSENT_OCD_FILE")
    return Path(configured) if configured else \
        Path(current_app.instance_path) / "open-cookie-database.csv"


def cookie_database() -> ocd.Database:
    """The Open Cookie Database in use."""
    return ocd.load(ocd_file())


def allows_loopback() -> bool:
    """Loopback test sites may be scanned only in development and testing."""
    return current_app.config.get("ENV_NAME") in ("development", "testing")


def worker_name() -> str:
    """How this process names itself in leases."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}"


# ---------------------------------------------------------------- what may be scanned


def scan_origins(site: Site) -> list[str]:
    """The origins a scan of SITE may visit (its allowed origins)."""
    origins = [o for o in (site.allowed_origins or []) if o != "*"]
    if "*" in (site.allowed_origins or []) and not origins:
        raise Invalid("the site allows any origin ('*'): list its own origins in the "
                      "settings before scanning, so the scan knows which site is yours",
                      field="urls")
    if not origins:
        raise Invalid("the site has no allowed origins yet: add them in the settings "
                      "before scanning", field="urls")
    return origins


def check_urls(site: Site, urls: list[str]) -> list[str]:
    """URLS as a scan will start from them: each on one of the site's origins."""
    origins = scan_origins(site)
    allowed = {origin_of(o) for o in origins}
    urls = [u.strip() for u in urls if u and u.strip()]
    if not urls:
        return [o.rstrip("/") + "/" for o in origins]
    if len(urls) > 20:
        raise Invalid("give at most 20 start URLs", field="urls")
    out = []
    for url in urls:
        if len(url) > 2000:
            raise Invalid("a URL is longer than 2000 characters", field="urls")
        try:
            parts = re.match(r"^(https?)://[^/?#]+", url)
            origin = origin_of(url) if parts else None
        except ValueError:
            origin = None
        if origin is None:
            raise Invalid(f"{url!r} is not an http(s) URL", field="urls")
        if "@" in url.split("/", 3)[2]:
            raise Invalid(f"{url!r} carries credentials; give the page's plain URL",
                          field="urls")
        if origin not in allowed:
            raise Invalid(f"{url!r} is not on the site's origins ({', '.join(sorted(allowed))}):"
                          " scans visit only the site's own pages", field="urls")
        out.append(url)
    return out


def check_pages(pages: int | None) -> int:
    """A page limit within the configured maximum."""
    cap = int(setting("CONSENT_SCAN_MAX_PAGES"))
    pages = DEFAULT_PAGES if pages is None else pages
    if not 1 <= pages <= cap:
        raise Invalid(f"scan between 1 and {cap} pages", field="pages")
    return pages


# ---------------------------------------------------------------- queueing and claiming


def _busy(site_id: int) -> Scan | None:
    return db.session.execute(db.select(Scan).where(
        Scan.site_id == site_id, Scan.status.in_(("queued", "running")))
        .order_by(Scan.id).limit(1)).scalar_one_or_none()


def _new_scan(site_key: str, urls: list[str], pages: int | None, same_origin: bool,
              actor: str, **state) -> Scan:
    """A scan of the site added to the session (inside a write); one per site at a time."""
    site = get_site(site_key)
    checked = check_urls(site, urls)
    busy = _busy(site.id)
    if busy is not None:
        raise Conflict(f"scan #{busy.id} of this site is {busy.status}; wait for it "
                       "to finish", field="urls")
    scan = Scan(site_id=site.id, urls=checked, max_pages=check_pages(pages),
                same_origin=same_origin, requested_by=actor, **state)
    db.session.add(scan)
    db.session.flush()
    return scan


def queue_scan(site_key: str, urls: list[str], *, pages: int | None = None,
               same_origin: bool = False, actor: str) -> Scan:
    """Queue a scan of the site for a worker; one scan per site at a time."""
    return run_write(lambda: _new_scan(site_key, urls, pages, same_origin, actor,
                                       status="queued"))


def _lease_seconds() -> float:
    return setting("CONSENT_SCAN_MAX_SECONDS") + 120


def start_scan_here(site_key: str, urls: list[str], *, pages: int | None, same_origin: bool,
                    actor: str, worker: str) -> tuple[int, str]:
    """A scan run by this process at once (the CLI): created already leased to it."""
    token = f"{worker}/{uuid.uuid4().hex[:12]}"

    def write() -> int:
        now = utcnow()
        scan = _new_scan(site_key, urls, pages, same_origin, actor, status="running",
                         started_at=now, attempts=1, lease_owner=token,
                         lease_until=now + timedelta(seconds=_lease_seconds()))
        return scan.id

    return run_write(write), token


def claim_scan(worker: str) -> tuple[int, str] | None:
    """Lease the oldest queued scan (or one whose worker died) to WORKER: (id, token)."""
    token = f"{worker}/{uuid.uuid4().hex[:12]}"

    def write():
        t = Scan.__table__
        now = utcnow()
        claimable = sa.or_(t.c.status == "queued",
                           sa.and_(t.c.status == "running", t.c.lease_until < now))
        query = sa.select(t.c.id, t.c.status, t.c.attempts).where(claimable) \
            .order_by(t.c.requested_at, t.c.id).limit(5)
        if db.session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        for row in db.session.execute(query).all():
            if row.status == "running" and row.attempts >= MAX_ATTEMPTS:
                db.session.execute(sa.update(t).where(t.c.id == row.id, claimable).values(
                    status="failed", finished_at=now, lease_owner=None, lease_until=None,
                    error=f"the scan worker stopped {row.attempts} times during this scan; "
                          "gave up"))
                continue
            claimed = db.session.execute(sa.update(t).where(t.c.id == row.id, claimable).values(
                status="running", lease_owner=token, attempts=t.c.attempts + 1,
                lease_until=now + timedelta(seconds=_lease_seconds()), started_at=now,
                progress={"phase": "starting"}))
            if claimed.rowcount == 1:
                return row.id, token
        return None

    return run_write(write)


def _report_progress(scan_id: int, token: str, info: dict) -> bool:
    """Store progress and renew the lease; False when another worker holds the scan."""
    t = Scan.__table__

    def write() -> bool:
        done = db.session.execute(sa.update(t).where(
            t.c.id == scan_id, t.c.lease_owner == token, t.c.status == "running").values(
            progress=info, lease_until=utcnow() + timedelta(seconds=_lease_seconds())))
        return done.rowcount == 1

    try:
        return run_write(write)
    except Exception:  # noqa: BLE001 - progress is best effort; the result is fenced
        log.warning("scan %s: progress not recorded", scan_id, exc_info=True)
        db.session.rollback()
        return True


def run_claimed(scan_id: int, token: str,
                echo: Callable[[str], None] | None = None) -> Scan:
    """Run a scan this process holds the lease of, and store what it found."""
    scan = db.session.get(Scan, scan_id)
    site = db.session.get(Site, scan.site_id)
    public_url = (current_app.config.get("CONSENT_PUBLIC_URL") or "").strip()
    try:
        target = CrawlTarget(
            start_urls=list(scan.urls), allowed_origins=scan_origins(site),
            max_pages=scan.max_pages, same_origin=scan.same_origin,
            max_seconds=setting("CONSENT_SCAN_MAX_SECONDS"),
            page_timeout=setting("CONSENT_SCAN_PAGE_TIMEOUT"),
            settle_seconds=setting("CONSENT_SCAN_SETTLE_SECONDS"),
            allow_loopback=allows_loopback(),
            consent_origins=[origin_of(public_url)] if public_url else [],
            chromium=chromium_setting())
        database = cookie_database()
    except (ScanError, Invalid, ValueError, OSError) as exc:
        return _fail(scan_id, token, getattr(exc, "detail", None) or str(exc))
    db.session.commit()  # no transaction held open while the browser runs

    def progress(info: dict) -> None:
        if echo:
            echo(f"scan #{scan_id}: {info.get('phase')} {info.get('done', 0)}/"
                 f"{info.get('total', '?')} {info.get('page', '')}".rstrip())
        _report_progress(scan_id, token, info)

    try:
        result = run_crawl(target, progress)
    except ScanError as exc:
        return _fail(scan_id, token, str(exc))
    except Exception as exc:  # noqa: BLE001 - a browser crash must not kill the worker
        log.exception("scan %s failed", scan_id)
        return _fail(scan_id, token, f"the scan stopped unexpectedly: "
                                     f"{str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}")
    return _finish(scan_id, token, result, database)


def _fail(scan_id: int, token: str, message: str) -> Scan:
    t = Scan.__table__

    def write():
        db.session.execute(sa.update(t).where(t.c.id == scan_id, t.c.lease_owner == token)
                           .values(status="failed", error=message[:1000], finished_at=utcnow(),
                                   lease_until=None))
    run_write(write)
    db.session.expire_all()
    return db.session.get(Scan, scan_id)


def _proposal(database: ocd.Database, kind: str, name: str, domain: str) -> dict | None:
    if kind == "request":
        return database.match_host(name)
    return database.match_name(name, domain)


def _finish(scan_id: int, token: str, result: CrawlResult, database: ocd.Database) -> Scan:
    """Store the findings and close the scan (only if this process still holds it)."""
    def write():
        scan = db.session.get(Scan, scan_id)
        if scan is None or scan.lease_owner != token or scan.status != "running":
            log.warning("scan %s: lease lost, result dropped", scan_id)
            return
        site = db.session.get(Site, scan.site_id)
        for item in result.items:
            db.session.add(ScanFinding(
                scan_id=scan_id, kind=item.kind, name=item.name[:255],
                domain=item.domain[:255], path=(item.path or "")[:255], party=item.party,
                phases={p: {"page": s.page, "set_by": s.set_by}
                        for p, s in item.phases.items()},
                attributes=item.attributes,
                proposal=_proposal(database, item.kind, item.name, item.domain)))
        requested = {i.name for i in result.items if i.kind == "request"}
        scan.summary = {
            "pages": [{"url": p.url.split("?")[0].split("#")[0], "status": p.status,
                       "error": p.error, "notes": p.notes, "widget": p.widget}
                      for p in result.pages],
            # Only what the pages asked for: the browser's own housekeeping is not the site's.
            "refused": [r for r in result.refused if r["host"] in requested],
            "consent_origins": result.consent_origins,
            "stopped": result.stopped,
            "seconds": round(result.seconds, 1),
            "ocd": {"source": database.source, "sha256": database.sha256,
                    "entries": len(database)},
        }
        scan.status, scan.finished_at, scan.lease_until = "done", utcnow(), None
        scan.progress = {"phase": "done"}
        db.session.flush()
        scan.new_items = _new_trackers(site, scan)
        _prune(site.id)

    run_write(write)
    db.session.expire_all()
    return db.session.get(Scan, scan_id)


def tracker_key(finding: ScanFinding) -> str:
    """How trackers are compared between scans: a cookie or key by name, a host."""
    return f"{finding.kind}:{finding.name}"


def _new_trackers(site: Site, scan: Scan) -> list[dict]:
    """Trackers of SCAN that no earlier finished scan of the site saw (none for a first
    scan: it is the baseline)."""
    earlier = db.session.execute(db.select(Scan.id).where(
        Scan.site_id == site.id, Scan.status == "done", Scan.id != scan.id)).scalars().all()
    if not earlier:
        return []
    seen = set(db.session.execute(
        db.select(ScanFinding.kind, ScanFinding.name).where(
            ScanFinding.scan_id.in_(earlier))).all())
    own = consent_names(site, scan.summary.get("consent_origins") or [])
    out = []
    for f in scan.findings:
        if (f.kind, f.name) in seen or own(f):
            continue
        first = next(iter(f.phases.values()), {})
        out.append({"kind": f.kind, "name": f.name, "domain": f.domain,
                    "page": first.get("page")})
    return out[:50]


def _prune(site_id: int) -> None:
    keep = int(setting("CONSENT_SCAN_KEEP"))
    old = db.session.execute(db.select(Scan.id).where(
        Scan.site_id == site_id, Scan.status.in_(("done", "failed")))
        .order_by(Scan.id.desc()).offset(keep)).scalars().all()
    if old:
        db.session.execute(sa.delete(ScanFinding.__table__).where(
            ScanFinding.scan_id.in_(old)))
        db.session.execute(sa.delete(Scan.__table__).where(Scan.id.in_(old)))


# ---------------------------------------------------------------- reading


def get_scan(site_key: str, scan_id: int) -> Scan:
    """One scan of the site (404 for another site's)."""
    from ..sites import NotFound

    site = get_site(site_key)
    scan = db.session.get(Scan, scan_id)
    if scan is None or scan.site_id != site.id:
        raise NotFound("scan", str(scan_id))
    return scan


def list_scans(site_key: str, limit: int = 30) -> list[Scan]:
    """The site's scans, newest first."""
    site = get_site(site_key)
    return list(db.session.execute(db.select(Scan).where(Scan.site_id == site.id)
                                   .order_by(Scan.id.desc()).limit(limit)).scalars())


def latest_news(site_id: int) -> Scan | None:
    """The site's latest finished scan if it saw new trackers (for the dashboard)."""
    scan = db.session.execute(db.select(Scan).where(
        Scan.site_id == site_id, Scan.status == "done").order_by(Scan.id.desc())
        .limit(1)).scalar_one_or_none()
    return scan if scan is not None and scan.new_items else None


# ---------------------------------------------------------------- schedules

_EVERY = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
_UNIT = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_every(text: str) -> int:
    """Seconds of an interval like 30m, 6h, 1d, 2w (at least 15 minutes)."""
    match = _EVERY.match(text or "")
    if not match:
        raise Invalid(f"{text!r} is not an interval such as 6h, 1d or 1w", field="every")
    seconds = int(match.group(1)) * _UNIT[match.group(2)]
    if not 900 <= seconds <= 366 * 86400:
        raise Invalid("scan at most every 15 minutes and at least once a year",
                      field="every")
    return seconds


def describe_every(seconds: int) -> str:
    """An interval in words (1 day, 6 hours, 2 weeks)."""
    for unit, size in (("week", 7 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


def set_schedule(site_key: str, urls: list[str], *, pages: int | None, same_origin: bool,
                 every_seconds: int, actor: str, first_run: datetime | None = None
                 ) -> ScanSchedule:
    """Scan the site every EVERY_SECONDS (replacing its schedule)."""
    def write() -> ScanSchedule:
        site = get_site(site_key)
        checked = check_urls(site, urls)
        schedule = db.session.execute(db.select(ScanSchedule).where(
            ScanSchedule.site_id == site.id)).scalar_one_or_none()
        if schedule is None:
            schedule = ScanSchedule(site_id=site.id)
            db.session.add(schedule)
        schedule.urls, schedule.max_pages = checked, check_pages(pages)
        schedule.same_origin, schedule.every_seconds = same_origin, every_seconds
        schedule.next_run_at = first_run or utcnow() + timedelta(seconds=every_seconds)
        schedule.created_by, schedule.created_at = actor, utcnow()
        record_change(site.id, actor, "scan-schedule",
                      f"scans every {describe_every(every_seconds)} "
                      f"({len(checked)} start URL(s), up to {schedule.max_pages} pages)")
        db.session.flush()
        return schedule

    return run_write(write)


def remove_schedule(site_key: str, actor: str) -> bool:
    """Stop the site's scheduled scans; False when it had none."""
    def write() -> bool:
        site = get_site(site_key)
        schedule = db.session.execute(db.select(ScanSchedule).where(
            ScanSchedule.site_id == site.id)).scalar_one_or_none()
        if schedule is None:
            return False
        db.session.delete(schedule)
        record_change(site.id, actor, "scan-schedule", "scheduled scans stopped")
        return True

    return run_write(write)


def get_schedule(site_id: int) -> ScanSchedule | None:
    """The site's schedule, if any."""
    return db.session.execute(db.select(ScanSchedule).where(
        ScanSchedule.site_id == site_id)).scalar_one_or_none()


def queue_due_schedules(now: datetime | None = None) -> int:
    """Queue a scan for every schedule that is due; returns how many were queued."""
    now = now or utcnow()

    def write() -> int:
        t = ScanSchedule.__table__
        due = db.session.execute(sa.select(t).where(t.c.next_run_at <= now)).all()
        queued = 0
        for row in due:
            # The conditional UPDATE decides which worker queues it.
            moved = db.session.execute(sa.update(t).where(
                t.c.id == row.id, t.c.next_run_at == row.next_run_at).values(
                next_run_at=now + timedelta(seconds=row.every_seconds)))
            if moved.rowcount != 1 or _busy(row.site_id) is not None:
                continue
            db.session.add(Scan(site_id=row.site_id, urls=row.urls, max_pages=row.max_pages,
                                same_origin=row.same_origin, schedule_id=row.id,
                                requested_by="schedule", status="queued"))
            queued += 1
        return queued

    return run_write(write)


# ---------------------------------------------------------------- Apply


def _service_for(findings: list[ScanFinding], proposal: dict | None, site: Site) -> dict:
    """The service a group of findings becomes (name, provider, purpose, privacy URL)."""
    if proposal:
        service = {"name": proposal.get("platform") or proposal.get("provider") or "Unnamed",
                   "provider": proposal.get("provider") or proposal.get("platform")}
        if proposal.get("purpose"):
            service["purpose"] = proposal["purpose"][:1000]
        url = proposal.get("privacy_url") or ""
        if re.fullmatch(r"https?://\S+", url) and len(url) <= 500:
            service["privacy_url"] = url
        return {k: v[:200] if k in ("name", "provider") else v for k, v in service.items() if v}
    first = findings[0]
    if first.party == "third":
        return {"name": first.domain[:200], "provider": first.domain[:200]}
    return {"name": f"{site.name} (found by scan)"[:200], "provider": site.name[:200]}


def lifetime_text(seconds: int | None) -> str:
    """A cookie's lifetime in words: session, 24 hours, 13 months, 2 years."""
    if seconds is None:
        return "session"
    days = round(seconds / 86400)
    if seconds < 3600:
        return f"{max(1, round(seconds / 60))} minutes"
    if days < 1:
        return f"{round(seconds / 3600)} hours"
    if days < 60:
        return f"{days} day{'s' if days != 1 else ''}"
    if days < 700:
        return f"{round(days / 30.4)} months"
    return f"{round(days / 365)} years"


def _entry(finding: ScanFinding) -> tuple[str, dict]:
    """(service field, entry) a finding adds: a cookie, a storage key or a host."""
    proposal = finding.proposal or {}
    if finding.kind == "request":
        return "hosts", {"host": finding.name}
    spec: dict = {}
    if proposal.get("matched_by") == "prefix" and proposal.get("name"):
        spec["pattern"] = "^" + re.escape(proposal["name"])
    else:
        spec["name"] = finding.name
    if finding.kind == "cookie":
        if finding.party == "third":
            spec["domain"] = finding.domain
        if finding.path and finding.path != "/":
            spec["path"] = finding.path
        spec["duration"] = lifetime_text(finding.attributes.get("lifetime_seconds"))
        return "cookies", spec
    spec["area"] = "session" if finding.kind == "session_storage" else "local"
    return "storage", spec


def _same(a: dict, b: dict) -> bool:
    keys = ("name", "pattern", "host", "domain", "area")
    return all(a.get(k) == b.get(k) for k in keys)


def apply_scan(site_key: str, scan_id: int, choices: dict[int, str], actor: str) -> dict:
    """Add findings to categories as services in one step: CHOICES maps finding ids to
    category keys. Recorded in the site's change history; returns what was added."""
    def write() -> dict:
        scan = get_scan(site_key, scan_id)
        if scan.status != "done":
            raise Invalid("only a finished scan can be applied", field="scan")
        site = db.session.get(Site, scan.site_id)
        categories = {c.key: c for c in site.categories}
        findings = {f.id: f for f in scan.findings}
        groups: dict[tuple[str, str], list[ScanFinding]] = {}
        for finding_id, key in choices.items():
            if not key:
                continue
            if finding_id not in findings:
                raise Invalid(f"scan #{scan_id} has no finding {finding_id}",
                              field=f"finding-{finding_id}")
            if key not in categories:
                raise Invalid(f"the site has no category {key!r}",
                              field=f"finding-{finding_id}")
            f = findings[finding_id]
            p = f.proposal or {}
            group = p.get("platform") or p.get("provider") or \
                (f.domain if f.party == "third" else "")
            groups.setdefault((key, group), []).append(f)
        added, services_added = [], []
        for (key, _group), members in sorted(groups.items()):
            category = categories[key]
            proposal = next((m.proposal for m in members if m.proposal), None)
            template = _service_for(members, proposal, site)
            services = [dict(s) for s in (category.services or [])]
            service = next((s for s in services if s.get("name") == template["name"]), None)
            if service is None:
                # (a service lists its cookies, none if it has only storage keys or hosts,
                # as a service typed on the categories page does)
                service = {**template, "cookies": []}
                services.append(service)
                services_added.append(f"{service['name']} to {key}")
            for member in members:
                field_name, entry = _entry(member)
                entries = list(service.get(field_name) or [])
                if field_name == "hosts":
                    if entry["host"] not in entries:
                        entries.append(entry["host"])
                        added.append(f"host {member.name} ({key})")
                elif not any(_same(e, entry) for e in entries):
                    entries.append(entry)
                    label = entry.get("name") or entry.get("pattern")
                    added.append(f"{'cookie' if field_name == 'cookies' else 'storage key'} "
                                 f"{label} ({key})")
                service[field_name] = entries
            category.services = services
        if not added:
            return {"added": [], "services": [], "summary": "nothing to add"}
        site.updated_at = utcnow()
        summary = (f"applied scan #{scan_id}: " + ", ".join(added[:20])
                   + (f" and {len(added) - 20} more" if len(added) > 20 else ""))
        if services_added:
            summary += "; new services: " + ", ".join(services_added[:10])
        record_change(site.id, actor, "scan-apply", summary,
                      {"scan": scan_id, "added": added, "services": services_added})
        invalidate_site_cache(site.key)
        return {"added": added, "services": services_added, "summary": summary}

    return run_write(write)


def default_choices(scan: Scan, site: Site) -> dict[int, str]:
    """What Apply adds unless told otherwise: every undeclared finding the Open Cookie
    Database gives a category the site has (the consent manager's own excluded)."""
    keys = {c.key for c in site.categories}
    out = {}
    for row in classify(scan, site):
        if row["declared"] or row["manager"]:
            continue
        proposed = (row["finding"].proposal or {}).get("category")
        if proposed in keys:
            out[row["finding"].id] = proposed
    return out


def valid_category_key(key: str) -> bool:
    """Whether KEY looks like a category key (the form sends them)."""
    return bool(CATEGORY_KEY_RE.fullmatch(key or ""))


__all__ = ["Category", "ScanError", "apply_scan", "claim_scan", "queue_scan", "run_claimed"]
