"""The scan report: each finding judged against the site's configuration as it is now.

A finding is *declared* when a service of a category names it (cookie or storage key by
name or pattern, host by domain), *the consent manager's own* when it is this product's
cookie, storage keys or server, *proposed* when only the Open Cookie Database knows it,
and *unknown* otherwise. Its category is the declared one, else the proposal's.

A *violation* is a finding seen before any choice or after "Reject all" whose category is
not the site's always-on (essential) one: unknown things count, as nobody has said they
are essential. The report names the page and what set it (a response or a script).
"""
from __future__ import annotations

import io
import re
from typing import Callable, Iterator

from ..csvcells import writer as csv_writer
from ..database import iso
from .crawler import PHASE_LABELS, PHASES
from .models import Scan, ScanFinding

KIND_LABELS = {"cookie": "cookie", "local_storage": "localStorage key",
               "session_storage": "sessionStorage key", "request": "third-party host"}
CSV_COLUMNS = ("kind", "name", "domain", "path", "party", "status", "category",
               "declared_service", "violation", "violation_reason", "before_choice_page",
               "after_reject_page", "after_accept_page", "set_by", "lifetime_seconds",
               "http_only", "secure", "same_site", "request_types", "ocd_category",
               "ocd_platform", "ocd_provider", "ocd_purpose", "ocd_retention")


def _domain_fits(entry_domain: str | None, domain: str) -> bool:
    if not entry_domain:
        return True
    entry_domain = entry_domain.lower().lstrip(".")
    domain = domain.lower().lstrip(".")
    return domain == entry_domain or domain.endswith("." + entry_domain)


def _name_fits(entry: dict, name: str) -> bool:
    if entry.get("name"):
        return entry["name"] == name
    pattern = entry.get("pattern")
    if pattern:
        try:
            return re.search(pattern, name) is not None
        except re.error:
            return False
    return False


def entry_matches(field: str, entry, finding: ScanFinding) -> bool:
    """Whether a service's cookie/storage/host ENTRY covers FINDING."""
    if field == "hosts":
        host = entry.get("host") if isinstance(entry, dict) else entry
        host = (host or "").lower().lstrip(".")
        return finding.kind == "request" and bool(host) and (
            finding.name == host or finding.name.endswith("." + host))
    if not isinstance(entry, dict) or finding.kind == "request":
        return False
    if field == "cookies" and finding.kind == "cookie" or \
            field in ("storage", "cookies") and finding.kind != "cookie":
        if field == "storage" and entry.get("area"):
            wanted = "session_storage" if entry["area"] == "session" else "local_storage"
            if finding.kind != wanted:
                return False
        return _name_fits(entry, finding.name) and (
            finding.kind != "cookie" or _domain_fits(entry.get("domain"), finding.domain))
    return False


def declared_as(site, finding: ScanFinding) -> tuple[str, str] | None:
    """(category key, service name) of the service that declares FINDING, or None."""
    for category in site.categories:
        for service in category.services or ():
            for field in ("cookies", "storage", "hosts"):
                if any(entry_matches(field, e, finding) for e in service.get(field) or ()):
                    return category.key, service.get("name", "")
    return None


def consent_names(site, consent_origins: list[str]) -> Callable[[ScanFinding], bool]:
    """A test for the consent manager's own cookie, storage keys and server."""
    cookie = ((site.settings or {}).get("cookie") or {}).get("name") or "consent"
    hosts = {re.sub(r"^https?://|:\d+$", "", o).strip("[]") for o in consent_origins}

    def own(finding: ScanFinding) -> bool:
        if finding.kind == "cookie":
            return finding.name == cookie and finding.party == "first"
        if finding.kind == "request":
            return finding.name in hosts
        return finding.name.startswith("consent:")

    return own


def _essential_keys(site) -> set[str]:
    return {c.key for c in site.categories if c.locked}


def _violation(finding: ScanFinding, where: str) -> str:
    parts = []
    for phase in ("before", "after_reject"):
        seen = finding.phases.get(phase)
        if not seen:
            continue
        if finding.kind == "request":
            text = f"contacted {PHASE_LABELS[phase]} from {seen.get('page')}"
            if seen.get("set_by"):
                text += f" ({seen['set_by']})"
        else:
            text = f"present {PHASE_LABELS[phase]} on {seen.get('page')}"
            if seen.get("set_by"):
                text += f", set by {seen['set_by']}"
        parts.append(text)
    return f"{'; '.join(parts)} ({where})"


def classify(scan: Scan, site) -> list[dict]:
    """Every finding of SCAN with its status, category and violation (see module doc)."""
    own = consent_names(site, (scan.summary or {}).get("consent_origins") or [])
    essential = _essential_keys(site)
    titles = {c.key: c for c in site.categories}
    rows = []
    for f in scan.findings:
        declared = declared_as(site, f)
        manager = own(f)
        proposal = f.proposal or {}
        if declared:
            category, status = declared[0], "declared"
        elif manager:
            category, status = next(iter(essential), "essential"), "consent manager"
        elif proposal.get("category"):
            category, status = proposal["category"], "proposed"
        else:
            category, status = None, "unknown"
        early = any(p in f.phases for p in ("before", "after_reject"))
        violation = early and category not in essential
        reason = None
        if violation:
            where = {"declared": f"declared in {category}",
                     "proposed": f"the Open Cookie Database says {proposal.get('ocd_category')}",
                     "unknown": "not known to be essential"}.get(status, status)
            reason = _violation(f, where)
        rows.append({"finding": f, "status": status, "category": category,
                     "category_known": category in titles,
                     "declared": declared, "manager": manager, "violation": violation,
                     "reason": reason})
    order = {"cookie": 0, "local_storage": 1, "session_storage": 2, "request": 3}
    rows.sort(key=lambda r: (not r["violation"], order.get(r["finding"].kind, 9),
                             r["finding"].name))
    return rows


def never_seen(scan: Scan, site) -> list[dict]:
    """Declared cookies, storage keys and hosts no finding matched."""
    findings = list(scan.findings)
    out = []
    for category in site.categories:
        for service in category.services or ():
            for field in ("cookies", "storage", "hosts"):
                for entry in service.get(field) or ():
                    if any(entry_matches(field, entry, f) for f in findings):
                        continue
                    label = entry if isinstance(entry, str) else (
                        entry.get("host") or entry.get("name") or entry.get("pattern"))
                    out.append({"category": category.key, "service": service.get("name"),
                                "kind": {"cookies": "cookie", "storage": "storage key",
                                         "hosts": "host"}[field], "entry": label})
    return out


def finding_dict(row: dict) -> dict:
    """One classified finding as JSON."""
    f = row["finding"]
    return {"id": f.id, "kind": f.kind, "name": f.name, "domain": f.domain, "path": f.path,
            "party": f.party, "status": row["status"], "category": row["category"],
            "declared_service": row["declared"][1] if row["declared"] else None,
            "violation": row["violation"], "violation_reason": row["reason"],
            "seen": {p: f.phases[p] for p in PHASES if p in f.phases},
            "attributes": f.attributes, "proposal": f.proposal}


def report(scan: Scan, site) -> dict:
    """The whole report as JSON."""
    rows = classify(scan, site) if scan.status == "done" else []
    summary = scan.summary or {}
    return {
        "scan": {"id": scan.id, "site": site.key, "status": scan.status, "urls": scan.urls,
                 "max_pages": scan.max_pages, "same_origin": scan.same_origin,
                 "requested_by": scan.requested_by, "requested_at": iso(scan.requested_at),
                 "started_at": iso(scan.started_at), "finished_at": iso(scan.finished_at),
                 "progress": scan.progress, "error": scan.error},
        "pages": summary.get("pages", []),
        "refused": summary.get("refused", []),
        "stopped": summary.get("stopped"),
        "open_cookie_database": summary.get("ocd"),
        "counts": {"findings": len(rows),
                   "violations": sum(r["violation"] for r in rows),
                   "unknown": sum(r["status"] == "unknown" for r in rows),
                   "proposed": sum(r["status"] == "proposed" for r in rows)},
        "violations": [finding_dict(r) for r in rows if r["violation"]],
        "unknown": [finding_dict(r) for r in rows if r["status"] == "unknown"],
        "never_seen": never_seen(scan, site) if scan.status == "done" else [],
        "new_trackers": scan.new_items or [],
        "findings": [finding_dict(r) for r in rows],
    }


def csv_lines(scan: Scan, site) -> Iterator[str]:
    """The findings as CSV (cells that would run in a spreadsheet are escaped)."""
    buf = io.StringIO()
    out = csv_writer(buf)
    out.writerow(CSV_COLUMNS)
    for row in classify(scan, site) if scan.status == "done" else []:
        f, p = row["finding"], row["finding"].proposal or {}
        first = next((f.phases[ph] for ph in PHASES if ph in f.phases), {})
        out.writerow([
            f.kind, f.name, f.domain, f.path, f.party, row["status"], row["category"] or "",
            row["declared"][1] if row["declared"] else "", "yes" if row["violation"] else "no",
            row["reason"] or "", *[(f.phases.get(ph) or {}).get("page") or "" for ph in PHASES],
            first.get("set_by") or "", f.attributes.get("lifetime_seconds", ""),
            _flag(f.attributes.get("http_only")), _flag(f.attributes.get("secure")),
            f.attributes.get("same_site") or "", " ".join(f.attributes.get("types") or []),
            p.get("ocd_category", ""), p.get("platform", ""), p.get("provider", ""),
            p.get("purpose", ""), p.get("retention", "")])
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
    yield buf.getvalue()


def _flag(value) -> str:
    return "" if value is None else ("yes" if value else "no")
