"""Scans recorded directly, for pages that show a finished scan without running one."""
from __future__ import annotations


def seed_finished_scan(site_key: str) -> int:
    """A finished scan with a proposed cookie and a pre-consent violation; its id."""
    from consent.database import run_write, utcnow
    from consent.extensions import db
    from consent.scanner.models import Scan, ScanFinding
    from consent.sites import get_site

    def write() -> int:
        scan = Scan(site_id=get_site(site_key).id, status="done", urls=["https://shop.example/"],
                    requested_by="test", finished_at=utcnow(),
                    summary={"pages": [{"url": "https://shop.example/", "status": 200,
                                        "error": None, "notes": [], "widget": True}]})
        scan.findings.append(ScanFinding(
            kind="cookie", name="_ga", domain="shop.example", path="/", party="first",
            phases={"after_accept": {"page": "https://shop.example/",
                                     "set_by": "script https://shop.example/a-rather-long-path/analytics-loader.js"}},
            attributes={"lifetime_seconds": 63072000, "same_site": "Lax"},
            proposal={"category": "analytics", "platform": "Google Analytics",
                      "provider": "Google", "purpose": "ID used to identify users"}))
        scan.findings.append(ScanFinding(
            kind="request", name="pixel.tracker.example", domain="pixel.tracker.example",
            party="third", phases={"before": {"page": "https://shop.example/",
                                              "set_by": "request https://pixel.tracker.example/p.gif (image)"}},
            attributes={"types": ["image"]}))
        db.session.add(scan)
        db.session.flush()
        return scan.id

    return run_write(write)
