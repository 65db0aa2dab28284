"""The webhook delivery log in the audit export: who was told, when, and that nobody edited it."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from consent.audit import (DELIVERY_COLUMNS, DELIVERY_HEADER, LOG_HEADER, ExportFilters,
                           canonical, public_key_text, sign, verify_export_file, write_export)
from consent.extensions import db
from consent.ledger import ConsentEvent
from tests.support.admin import make_token
from tests.support.api import bearer, decide
from tests.support.outbox import Receiver, add_endpoint, drain


@pytest.fixture
def told(client, site, other_site, fast, receiver):
    """A CRM that acknowledges, an ad platform that always fails (dead letters), and a
    third endpoint on another site; a few visitors' choices, all delivered or given up."""
    failing = Receiver(lambda n: (503, 0))
    try:
        crm, _ = add_endpoint(site["key"], url=receiver.url, name="CRM",
                              categories=["analytics"])
        ads, _ = add_endpoint(site["key"], url=failing.url, name="Ads",
                              categories=["advertising"])
        add_endpoint(other_site["key"], url=receiver.url, name="Elsewhere", categories=["*"])
        first = decide(client, site["key"], "accept_all")["subject"]
        second = decide(client, site["key"], "accept_all")["subject"]
        decide(client, site["key"], "custom", subject=first, categories={"analytics": False})
        decide(client, other_site["key"], "accept_all")
        drain()
    finally:
        failing.stop()
    return {"crm": crm, "ads": ads, "visitors": [first, second], "receiver": receiver.url,
            "failing": failing.url}


def export(tmp_path, fmt="csv", name=None, **filters) -> Path:
    path = tmp_path / (name or f"export.{fmt}")
    with open(path, "w", encoding="utf-8", newline="") as fh:
        write_export(fh, ExportFilters(**filters), fmt)
    return path


def delivery_rows(path: Path) -> list[dict]:
    """The delivery rows of an export file, as dicts (CSV cells are text)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in text.splitlines()[:-1]]
        return [r for r in rows if r.get("type") == "delivery"]
    lines = text.splitlines()
    start = lines.index(DELIVERY_HEADER)
    # The log section (exports carry it by default) follows the delivery rows.
    end = lines.index(LOG_HEADER) if LOG_HEADER in lines else len(lines) - 1
    return [dict(zip(DELIVERY_COLUMNS, cells))
            for cells in csv.reader(io.StringIO("\n".join(lines[start + 1:end])))]


def last_delivery_line(lines: list[str]) -> int:
    """The index of the last delivery row among LINES (CSV or JSON Lines)."""
    return max(i for i, x in enumerate(lines)
               if x.startswith("delivery,") or x.startswith('{"type":"delivery"'))


def event_ids_in(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8").splitlines()
    if path.suffix == ".jsonl":
        return {json.loads(x)["event_id"] for x in text[:-1] if '"prev_hash"' in x}
    end = next((i for i, x in enumerate(text) if x in (DELIVERY_HEADER, LOG_HEADER)),
               len(text) - 1)
    return {line.split(",")[0] for line in text[1:end]}


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_carries_the_delivery_log_and_verifies(tmp_path, site, told, fmt):
    path = export(tmp_path, fmt, site_key=site["key"])
    report = verify_export_file(str(path), public_key_text())
    assert report.ok, report.problems
    events = db.session.execute(db.select(db.func.count()).select_from(ConsentEvent)
                                .where(ConsentEvent.site_id == 1)).scalar()
    assert report.rows == events == 3
    # Each choice changes analytics and advertising: both endpoints are told each time.
    rows = delivery_rows(path)
    assert report.deliveries == len(rows) == 6
    shown = report.manifest["deliveries"]
    assert shown["included"] is True and shown["row_count"] == 6
    assert shown["scope"] == "time_range"
    assert report.manifest["format"] == "consent-export/2"

    crm = [r for r in rows if r["endpoint_name"] == "CRM"]
    ads = [r for r in rows if r["endpoint_name"] == "Ads"]
    assert len(crm) == 3 and len(ads) == 3
    for row in crm:  # who was told, and when they acknowledged
        assert row["state"] == "delivered" and str(row["attempts"]) == "1"
        assert row["endpoint_url"] == told["receiver"]
        assert row["acknowledged_at"].endswith("Z") and not row["dead_at"]
        assert str(row["last_status"]) == "200" and not row["last_error"]
        assert row["notification_id"] == f"evt_{row['event_id']}_{told['crm']}"
        assert row["notification_type"] == "consent.changed" and row["site"] == site["key"]
    for row in ads:  # told nobody: given up, with the reason
        assert row["state"] == "dead" and str(row["attempts"]) == "4"
        assert row["endpoint_url"] == told["failing"]
        assert row["dead_at"].endswith("Z") and not row["acknowledged_at"]
        assert row["last_error"].startswith("gave up after 4 attempts: HTTP 503")
    # Every delivery row names an event of the same file; no other site's endpoint.
    assert {r["event_id"] for r in rows} <= event_ids_in(path)
    assert "Elsewhere" not in path.read_text()
    # The deliveries come right after every event row, then the log section and the
    # manifest.
    lines = path.read_text().splitlines()
    first = (lines.index(DELIVERY_HEADER) if fmt == "csv"
             else next(i for i, x in enumerate(lines) if '"type":"delivery"' in x))
    assert first == 1 + report.rows if fmt == "csv" else first == report.rows
    last = last_delivery_line(lines)
    assert last == first + 6 if fmt == "csv" else last == first + 5
    log_start = lines[last + 1]
    assert log_start == LOG_HEADER if fmt == "csv" else log_start.startswith('{"type":"log"')
    assert report.manifest["log"]["included"] is True


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_editing_any_byte_of_a_delivery_row_is_caught_and_named(tmp_path, site, told, fmt):
    """Flip every byte of the dead letter's row in turn: each edit fails naming that row."""
    path = export(tmp_path, fmt, site_key=site["key"])
    original = path.read_bytes()
    lines = original.split(b"\n")
    rows = delivery_rows(path)
    number = next(i for i, r in enumerate(rows, start=1) if r["state"] == "dead")
    victim = rows[number - 1]["notification_id"].encode()
    target = next(i for i, x in enumerate(lines) if victim in x and b"dead" in x)
    start = sum(len(x) + 1 for x in lines[:target])
    for offset in range(len(lines[target])):
        data = bytearray(original)
        old = data[start + offset]
        data[start + offset] = ord("x") if old != ord("x") else ord("y")
        path.write_bytes(bytes(data))
        report = verify_export_file(str(path))
        assert not report.ok, f"edit at byte {offset} went unnoticed"
        problem = report.problems[0]
        assert (problem.kind, problem.row, problem.line) == ("delivery", number, target + 1), \
            (offset, str(problem))
        assert f"delivery row {number} (line {target + 1}" in str(problem)
    path.write_bytes(original)
    assert verify_export_file(str(path)).ok


def test_cli_verify_export_names_the_edited_delivery_row(tmp_path, runner, site, told):
    out = tmp_path / "cli.csv"
    r = runner.invoke(args=["consent", "export", "--site", site["key"], "-o", str(out)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(args=["consent", "verify-export", str(out), "--public-key",
                            public_key_text()])
    assert r.exit_code == 0 and "OK: 3 rows and 6 delivery rows verify" in r.output
    # Pretend the dead ad platform acknowledged: the row's hash no longer matches.
    lines = out.read_text().split("\n")
    at = next(i for i, x in enumerate(lines) if ",dead," in x)
    notification = lines[at].split(",")[2]
    lines[at] = lines[at].replace(",dead,", ",delivered,", 1)
    out.write_text("\n".join(lines))
    r = runner.invoke(args=["consent", "verify-export", str(out), "--json"])
    assert r.exit_code == 1
    problem, = json.loads(r.output)["problems"]
    assert problem["kind"] == "delivery" and problem["line"] == at + 1
    assert problem["notification_id"] == notification and "edited" in problem["reason"]
    r = runner.invoke(args=["consent", "verify-export", str(out)])
    assert r.exit_code == 1
    assert f"delivery row {at - 4} (line {at + 1}, notification {notification})" in r.output


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_removed_added_or_rehashed_delivery_rows_are_caught(tmp_path, site, told, fmt):
    path = export(tmp_path, fmt, site_key=site["key"])
    lines = path.read_text().splitlines()
    last = last_delivery_line(lines)
    # Hiding that somebody was told (or was not): the signed count differs.
    path.write_text("\n".join(lines[:last] + lines[last + 1:]) + "\n")
    report = verify_export_file(str(path))
    assert not report.ok and "deliveries row_count" in report.problems[0].reason
    # Repeating a row: counted too.
    path.write_text("\n".join(lines[:last + 1] + lines[last:]) + "\n")
    assert "deliveries row_count" in verify_export_file(str(path)).problems[0].reason
    # An editor who also recomputes the row's hash cannot match the signed digest.
    from consent.audit import _delivery_from_csv, _delivery_from_json, delivery_hash

    if fmt == "jsonl":
        row = _delivery_from_json(json.loads(lines[last]))
    else:
        row = _delivery_from_csv(next(csv.reader([lines[last]])))
    row["acknowledged_at"], row["state"] = "2020-01-01T00:00:00.000000Z", "delivered"
    row["hash"] = delivery_hash(row)
    if fmt == "jsonl":
        forged = json.dumps(row)
    else:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow([row[c] for c in DELIVERY_COLUMNS])
        forged = buf.getvalue()
    path.write_text("\n".join(lines[:last] + [forged] + lines[last + 1:]) + "\n")
    report = verify_export_file(str(path))
    assert not report.ok and "deliveries rows_sha256" in report.problems[0].reason
    # An event row moved after the delivery rows is not accepted as either.
    moved = lines[:1] + lines[2:last + 1] + lines[1:2] + lines[last + 1:]
    if fmt == "jsonl":
        moved = lines[1:last + 1] + lines[:1] + lines[last + 1:]
    path.write_text("\n".join(moved) + "\n")
    report = verify_export_file(str(path))
    assert not report.ok and report.problems[0].kind == "delivery", report.problems


def test_deliveries_can_be_left_out_and_cannot_be_slipped_in(tmp_path, runner, site, told):
    out = tmp_path / "events-only.csv"
    r = runner.invoke(args=["consent", "export", "--site", site["key"], "--no-deliveries",
                            "-o", str(out)])
    assert r.exit_code == 0, r.output
    report = verify_export_file(str(out), public_key_text())
    assert report.ok and report.rows == 3 and report.deliveries == 0
    assert report.manifest["deliveries"] == {"included": False}
    assert DELIVERY_HEADER not in out.read_text()
    # Delivery rows pasted into such an export (where they belong: after the events,
    # before the log section) are refused.
    full = export(tmp_path, "csv", name="full.csv", site_key=site["key"]).read_text()
    section = full[full.index(DELIVERY_HEADER):full.index(LOG_HEADER)]
    text = out.read_text()
    at = text.index(LOG_HEADER)
    out.write_text(text[:at] + section + text[at:])
    report = verify_export_file(str(out))
    assert not report.ok and "says the export has none" in report.problems[0].reason


def test_site_without_endpoints_exports_as_before(tmp_path, client, site):
    decide(client, site["key"], "accept_all")
    for fmt in ("csv", "jsonl"):
        path = export(tmp_path, fmt, site_key=site["key"])
        lines = path.read_text().splitlines()
        # header?, one event, the log section (header?, its one entry), manifest
        if fmt == "csv":
            assert len(lines) == 5 and lines[2] == LOG_HEADER
            assert lines[3].startswith("log,shop,0,")
        else:
            assert len(lines) == 3 and json.loads(lines[1])["type"] == "log"
        assert "delivery" not in "".join(lines[:-1])
        report = verify_export_file(str(path), public_key_text())
        assert report.ok and report.rows == 1 and report.deliveries == 0
        assert report.manifest["deliveries"]["row_count"] == 0


def test_filtered_export_carries_only_the_deliveries_of_its_events(tmp_path, site, told):
    first = told["visitors"][0]
    path = export(tmp_path, "jsonl", site_key=site["key"], subject=first)
    report = verify_export_file(str(path))
    assert report.ok and report.rows == 2
    rows = delivery_rows(path)
    # Both of its choices went to both endpoints.
    assert len(rows) == report.deliveries == 4
    assert {r["event_id"] for r in rows} == event_ids_in(path)
    assert report.manifest["deliveries"]["scope"] == "exported_events"
    path = export(tmp_path, "csv", name="custom.csv", site_key=site["key"],
                  actions=("custom",))
    rows = delivery_rows(path)
    assert [r["endpoint_name"] for r in rows] == ["CRM", "Ads"] and verify_export_file(str(path)).ok


def test_old_format_exports_without_delivery_rows_still_verify(tmp_path, site, told):
    """A consent-export/1 file (made before delivery rows existed) verifies as it did."""
    path = export(tmp_path, "jsonl", site_key=site["key"], deliveries=False)
    lines = path.read_text().splitlines()
    signed = json.loads(lines[-1])
    manifest = signed["manifest"]
    manifest["format"] = "consent-export/1"
    del manifest["deliveries"]
    signed["signature"]["value"] = sign(canonical(manifest).encode())
    path.write_text("\n".join(lines[:-1] + [canonical(signed)]) + "\n")
    report = verify_export_file(str(path), public_key_text())
    assert report.ok and report.rows == 3
    # ...and delivery rows cannot be slipped into one.
    full = export(tmp_path, "jsonl", name="full.jsonl", site_key=site["key"])
    extra = [x for x in full.read_text().splitlines() if '"type":"delivery"' in x]
    path.write_text("\n".join(lines[:-1] + extra + [canonical(signed)]) + "\n")
    assert not verify_export_file(str(path)).ok


def test_web_download_and_token_api_include_the_deliveries(tmp_path, app, site, told, admin):
    r = admin.get(f"/admin/sites/{site['key']}/export.csv")
    assert r.status_code == 200
    path = tmp_path / "web.csv"
    path.write_bytes(r.data)
    report = verify_export_file(str(path), public_key_text())
    assert report.ok and report.deliveries == 6

    token = make_token(["audit:export"])
    client = app.test_client()
    url = f"/api/v1/audit/sites/{site['key']}/export?format=jsonl"
    r = client.get(url, headers=bearer(token))
    path = tmp_path / "api.jsonl"
    path.write_bytes(r.data)
    report = verify_export_file(str(path), public_key_text())
    assert report.ok and report.deliveries == 6
    r = client.get(url + "&deliveries=false", headers=bearer(token))
    path.write_bytes(r.data)
    report = verify_export_file(str(path), public_key_text())
    assert report.ok and report.deliveries == 0 and report.rows == 3
    assert report.manifest["deliveries"] == {"included": False}
    r = client.get(url + "&deliveries=maybe", headers=bearer(token))
    assert r.status_code == 422 and r.mimetype == "application/problem+json"


def test_deliveries_of_purged_events_stay_in_the_export(tmp_path, client, site, told):
    """A retention purge removes old events, not the record of who was told about them."""
    from consent.database import utcnow
    from consent.retention import purge_events

    cutoff = utcnow()
    decide(client, site["key"], "reject_all", subject=told["visitors"][1])
    result = purge_events(site["key"], cutoff)
    assert result.events_removed == 3
    path = export(tmp_path, "csv", site_key=site["key"])
    report = verify_export_file(str(path), public_key_text())
    assert report.ok, report.problems
    rows = delivery_rows(path)
    purged = {r["event_id"] for r in rows} - event_ids_in(path)
    assert len(purged) == 3 and len(rows) == 6 + 2  # the reject_all told both, not yet sent
    assert {r["state"] for r in rows if r["event_id"] in purged} == {"delivered", "dead"}
