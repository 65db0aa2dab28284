"""`flask consent scan`, `scan-worker` and `ocd-refresh`."""
from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

import click
import sqlalchemy as sa

from ..cli import consent_cli
from ..database import DatabaseUnavailable
from ..errors import DomainError
from ..sites import NotFound
from . import ocd
from .crawler import PHASE_LABELS, ScanError
from .service import (claim_scan, describe_every, ocd_file, parse_every, queue_due_schedules,
                      remove_schedule, run_claimed, set_schedule, setting, start_scan_here,
                      worker_name)


def _fail(exc: Exception):
    raise click.ClickException(getattr(exc, "detail", None) or str(exc))


@consent_cli.command("scan")
@click.argument("site_key")
@click.argument("urls", nargs=-1)
@click.option("--pages", type=int, help="Pages to visit at most (default 10).")
@click.option("--same-origin", is_flag=True,
              help="Follow links only on the first URL's origin (default: any of the "
                   "site's allowed origins).")
@click.option("--every", help="Also scan again at this interval (30m, 6h, 1d, 1w; needs "
                              "`flask consent scan-worker --forever`); `off` stops it.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
def scan_command(site_key, urls, pages, same_origin, every, as_json, quiet):
    """Scan a site's pages (default: its allowed origins) for cookies, storage and
    third-party requests before and after consent; store and print the findings."""
    from ..extensions import db
    from ..sites import get_site
    from .report import report

    if every == "off":
        try:
            removed = remove_schedule(site_key, "cli")
        except (DomainError, NotFound) as exc:
            _fail(exc)
        click.echo("scheduled scans stopped" if removed else "the site had no scheduled scan")
        return
    try:
        if every:
            seconds = parse_every(every)
            set_schedule(site_key, list(urls), pages=pages, same_origin=same_origin,
                         every_seconds=seconds, actor="cli")
            click.echo(f"scanning {site_key} every {describe_every(seconds)} (next run by "
                       "`flask consent scan-worker`); scanning now", err=True)
        scan_id, token = start_scan_here(site_key, list(urls), pages=pages,
                                         same_origin=same_origin, actor="cli",
                                         worker=worker_name())
    except (DomainError, NotFound, ScanError) as exc:
        _fail(exc)
    echo = None if quiet or as_json else (lambda line: click.echo(line, err=True))
    scan = run_claimed(scan_id, token, echo)
    site = get_site(site_key)
    body = report(scan, site)
    db.session.commit()
    if as_json:
        click.echo(json.dumps(body, indent=2, ensure_ascii=False))
    else:
        _print_report(body)
    if scan.status != "done":
        sys.exit(1)


def _print_report(body: dict) -> None:
    scan = body["scan"]
    if scan["status"] != "done":
        click.echo(f"scan #{scan['id']} failed: {scan['error']}", err=True)
        return
    counts = body["counts"]
    click.echo(f"scan #{scan['id']} of {scan['site']}: {len(body['pages'])} page(s), "
               f"{counts['findings']} finding(s), {counts['violations']} violation(s), "
               f"{counts['unknown']} unknown, {counts['proposed']} with a proposal")
    for page in body["pages"]:
        state = page["error"] or f"HTTP {page['status']}"
        click.echo(f"  page {page['url']}: {state}"
                   + "".join(f"; {n}" for n in page.get("notes") or []))
    if body["stopped"]:
        click.echo(f"  stopped early: {body['stopped']}")
    for r in body["refused"]:
        click.echo(f"  refused {r['host']}:{r['port']}: {r['reason']}")
    for v in body["violations"]:
        click.echo(f"VIOLATION {v['kind']} {v['name']} ({v['domain']}): "
                   f"{v['violation_reason']}")
    for f in body["findings"]:
        if f["violation"]:
            continue
        seen = ", ".join(PHASE_LABELS[p] for p in f["seen"])
        category = f["category"] or "?"
        click.echo(f"  {f['status']:<15} {f['kind']:<15} {f['name']} ({f['domain']}) "
                   f"-> {category}; seen {seen}")
    for n in body["never_seen"]:
        click.echo(f"  never seen: {n['kind']} {n['entry']} of {n['service']} ({n['category']})")
    for n in body["new_trackers"]:
        click.echo(f"NEW since the last scan: {n['kind']} {n['name']} on {n['page']}")


@consent_cli.command("scan-worker")
@click.option("--forever", is_flag=True,
              help="Keep running: run queued and scheduled scans as they come (stop with "
                   "SIGTERM; a scan in progress is finished first).")
@click.option("--poll", "poll_seconds", type=click.FloatRange(0.1, 3600),
              help="Seconds between looks when idle [CONSENT_SCAN_POLL_SECONDS].")
@click.option("-v", "--verbose", is_flag=True, help="Print progress.")
def scan_worker_command(forever, poll_seconds, verbose):
    """Run queued scans (the admin's "Scan" button, schedules); one-shot by default."""
    stop = threading.Event()
    poll = poll_seconds or setting("CONSENT_SCAN_POLL_SECONDS")
    name = worker_name()
    if forever:
        def _stop(signum, _frame):
            stop.set()
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        click.echo(f"scan worker {name} started", err=True)
    ran = 0
    try:
        while not stop.is_set():
            queue_due_schedules()
            claimed = claim_scan(name)
            if claimed is None:
                if not forever:
                    break
                stop.wait(poll)
                continue
            scan = run_claimed(*claimed, echo=click.echo if verbose else None)
            ran += 1
            click.echo(f"scan #{scan.id}: {scan.status}"
                       + (f" ({scan.error})" if scan.error else ""))
    except (DatabaseUnavailable, sa.exc.OperationalError) as exc:
        raise click.ClickException(f"database unavailable: {exc}")
    click.echo(f"scan worker: {ran} scan(s) run")


@consent_cli.command("ocd-refresh")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def ocd_refresh_command(file: Path):
    """Replace the Open Cookie Database in use with FILE (its CSV, same columns)."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise click.ClickException(f"cannot read {file}: {exc.strerror or exc}")
    try:
        database = ocd.refresh(ocd_file(), data, file.name)
    except ValueError as exc:
        raise click.ClickException(f"{file} was not installed: {exc}")
    click.echo(f"Open Cookie Database: {len(database)} entries (sha256 "
               f"{database.sha256[:16]}…) installed at {ocd_file()}; scans use it from now on")
