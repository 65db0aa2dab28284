"""Audit export: CSV and JSON Lines with hash links and a signed manifest, verified offline."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from consent.audit import (COLUMNS, LOG_HEADER, ExportFilters, public_key_text,
                           verify_export_file, write_export)
from consent.database import utcnow
from consent.extensions import db
from consent.ledger import ConsentEvent
from consent.sites import Site
from tests.support.admin import make_token, record_choice
from tests.support.api import bearer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def ledger(site, other_site):
    """A few subjects with several events each on two sites."""
    visitors = []
    for i in range(6):
        v = record_choice(site["key"], "accept_all", gpc=(i == 0))
        record_choice(site["key"], "custom", subject=v, categories={"analytics": i % 2 == 0})
        visitors.append(v)
    record_choice(site["key"], "reject_all", subject=visitors[1])
    record_choice(other_site["key"], "accept_all")
    return visitors


def export(tmp_path, fmt="csv", name=None, **filters) -> Path:
    path = tmp_path / (name or f"export.{fmt}")
    with open(path, "w", encoding="utf-8", newline="") as fh:
        write_export(fh, ExportFilters(**filters), fmt)
    return path


def rows_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_untouched_export_verifies(tmp_path, site, ledger, fmt):
    path = export(tmp_path, fmt, site_key=site["key"])
    report = verify_export_file(str(path), public_key_text())
    assert report.ok, report.problems
    count = db.session.execute(db.select(db.func.count()).select_from(ConsentEvent)
                               .where(ConsentEvent.site_id == 1)).scalar()
    assert report.rows == count == 13
    manifest = report.manifest
    assert manifest["row_count"] == 13
    assert manifest["filters"]["site"] == site["key"]
    assert manifest["first_hash"] and manifest["last_hash"]
    assert manifest["time_range"]["first_recorded_at"] <= manifest["time_range"]["last_recorded_at"]


def test_csv_rows_carry_every_hashed_field_and_the_links(tmp_path, site, ledger):
    lines = rows_of(export(tmp_path, site_key=site["key"]))
    assert lines[0] == ",".join(COLUMNS)
    assert lines[-1].startswith("#manifest,")
    # the first of this site's events (the other site's may sit in a lower stream)
    site_id = db.session.execute(db.select(Site.id).where(Site.key == site["key"])).scalar_one()
    event = db.session.execute(db.select(ConsentEvent).where(ConsentEvent.site_id == site_id)
                               .order_by(ConsentEvent.stream, ConsentEvent.seq)).scalars().first()
    assert event.hash in lines[1] and event.prev_hash in lines[1]
    assert event.event_id in lines[1]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_editing_one_byte_of_one_row_is_caught_and_named(tmp_path, site, ledger, fmt):
    """Flip every byte of one row in turn: each edit fails and names that row."""
    path = export(tmp_path, fmt, site_key=site["key"])
    original = path.read_bytes()
    lines = original.split(b"\n")
    target = 5 if fmt == "csv" else 4  # the fifth event row (line 6 in CSV)
    start = sum(len(x) + 1 for x in lines[:target])
    row_number = 5
    event_id = (lines[target].split(b",")[0] if fmt == "csv"
                else json.loads(lines[target])["event_id"].encode()).decode()
    id_at = lines[target].index(event_id.encode())
    for offset in range(len(lines[target])):
        data = bytearray(original)
        old = data[start + offset]
        data[start + offset] = ord("x") if old != ord("x") else ord("y")
        path.write_bytes(bytes(data))
        report = verify_export_file(str(path))
        assert not report.ok, f"edit at byte {offset} went unnoticed"
        problem = report.problems[0]
        assert problem.line == target + 1, (offset, str(problem))
        assert problem.row == row_number, (offset, str(problem))
        if problem.event_id and not id_at <= offset < id_at + 32:  # id itself not edited
            assert problem.event_id == event_id
    path.write_bytes(original)
    assert verify_export_file(str(path)).ok


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_copy_saved_with_crlf_line_endings_is_named_as_such(tmp_path, site, ledger, fmt):
    # An outside review: a copy whose line endings an editor changed was reported as "not
    # a consent export", which sends an auditor looking for the wrong thing.
    path = export(tmp_path, fmt, site_key=site["key"])
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    report = verify_export_file(str(path))
    assert not report.ok
    assert "line endings were changed (CRLF" in str(report.problems[0])


def test_cli_verify_export_names_the_bad_row(tmp_path, runner, site, ledger):
    out = tmp_path / "cli.csv"
    r = runner.invoke(args=["consent", "export", "--site", site["key"], "-o", str(out)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(args=["consent", "verify-export", str(out), "--public-key",
                            public_key_text()])
    assert r.exit_code == 0 and "OK: 13 rows verify" in r.output
    lines = out.read_text().split("\n")
    victim = lines[3]
    lines[3] = victim.replace(",shop,", ",shoq,", 1)
    assert lines[3] != victim
    out.write_text("\n".join(lines))
    r = runner.invoke(args=["consent", "verify-export", str(out)])
    assert r.exit_code == 1
    assert "row 3 (line 4" in r.output and victim.split(",")[0] in r.output
    assert "edited" in r.output


def test_verifier_needs_no_database_or_app(tmp_path, site, ledger):
    """`python -m consent.audit FILE` runs with no database configured at all."""
    path = export(tmp_path, site_key=site["key"])
    env = {"PATH": "/usr/bin:/bin", "CONSENT_DATABASE_URL": "postgresql://nowhere.invalid/x"}
    r = subprocess.run([sys.executable, "-m", "consent.audit", str(path), "--public-key",
                        public_key_text()], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "OK: 13 rows verify" in r.stdout
    data = path.read_text().replace(",custom,", ",accept_all,", 1)
    path.write_text(data)
    r = subprocess.run([sys.executable, "-m", "consent.audit", str(path)], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 1 and "BAD: row" in r.stderr


def test_removed_inserted_and_reordered_rows_are_caught(tmp_path, site, ledger):
    path = export(tmp_path, site_key=site["key"])
    lines = rows_of(path)
    end = lines.index(LOG_HEADER)  # the event rows end where the log section starts
    # Removing a row in the middle of a stream breaks the link of the next row.
    streams = [line.split(",")[2] for line in lines[1:end]]
    # three rows of one stream in a row (the visitor with three events always gives one,
    # wherever the random pseudonym puts its stream: the last stream of the file too)
    i = next(n for n in range(2, len(streams)) if streams[n - 2] == streams[n - 1] == streams[n])
    removed = lines[:i] + lines[i + 1:]  # drops row i (line i+1 of the file)
    path.write_text("\n".join(removed) + "\n")
    report = verify_export_file(str(path))
    assert not report.ok and report.problems[0].row == i
    assert "missing" in report.problems[0].reason
    # Swapping two rows is seen as a reordering.
    swapped = lines[:2] + [lines[3], lines[2]] + lines[4:]
    path.write_text("\n".join(swapped) + "\n")
    assert not verify_export_file(str(path)).ok
    # Dropping the last event row leaves its log entry without an event (and changes the
    # signed count).
    path.write_text("\n".join(lines[:end - 1] + lines[end:]) + "\n")
    report = verify_export_file(str(path))
    assert not report.ok and "has no event in the export" in report.problems[0].reason
    # Dropping the last row of the file (before the manifest: a log entry) is seen too.
    path.write_text("\n".join(lines[:-2] + lines[-1:]) + "\n")
    report = verify_export_file(str(path))
    assert not report.ok and "log rows differ from the signed manifest" in \
        report.problems[0].reason
    # A truncated file has no manifest.
    path.write_text("\n".join(lines[:-1]) + "\n")
    report = verify_export_file(str(path))
    assert not report.ok and "truncated" in report.problems[0].reason


def test_edited_or_resigned_manifest_is_caught(tmp_path, site, ledger):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from consent.audit import canonical, public_key_text as pk_text

    path = export(tmp_path, "jsonl", site_key=site["key"])
    lines = rows_of(path)
    signed = json.loads(lines[-1])
    signed["manifest"]["row_count"] = 12
    path.write_text("\n".join(lines[:-1] + [json.dumps(signed)]) + "\n")
    report = verify_export_file(str(path))
    assert not report.ok and "signature" in report.problems[0].reason
    # An attacker drops a row and re-signs the manifest with their own key: the embedded
    # key verifies, but a pinned key does not.
    mallory = Ed25519PrivateKey.generate()
    fake = dict(signed["manifest"])
    fake.update(row_count=13)
    signed = {"manifest": fake, "signature": {
        "alg": "Ed25519", "key_id": "x", "public_key": pk_text(mallory),
        "value": mallory.sign(canonical(fake).encode()).hex()}}
    path.write_text("\n".join(lines[:-1] + [json.dumps(signed)]) + "\n")
    report = verify_export_file(str(path), public_key_text())
    assert not report.ok and "re-signed" in report.problems[0].reason


def test_filters_by_time_subject_category_and_action(tmp_path, site, ledger):
    from datetime import timedelta

    subject = ledger[1]
    path = export(tmp_path, name="subject.csv", site_key=site["key"], subject=subject)
    report = verify_export_file(str(path))
    assert report.ok and report.rows == 3
    assert report.manifest["contiguous"] is False
    path = export(tmp_path, name="action.csv", site_key=site["key"], actions=("reject_all",))
    assert verify_export_file(str(path)).rows == 1
    path = export(tmp_path, name="cat.csv", site_key=site["key"], category="analytics")
    assert verify_export_file(str(path)).rows == 13
    path = export(tmp_path, name="none.csv", site_key=site["key"], category="location")
    report = verify_export_file(str(path))
    assert report.ok and report.rows == 0
    future = utcnow() + timedelta(days=1)
    path = export(tmp_path, name="future.csv", site_key=site["key"], since=future)
    assert verify_export_file(str(path)).rows == 0
    path = export(tmp_path, name="past.csv", site_key=site["key"], until=future)
    assert verify_export_file(str(path)).rows == 13
    path = export(tmp_path, name="all.jsonl", fmt="jsonl")
    assert verify_export_file(str(path)).rows == 14  # both sites


def test_web_download_streams_a_verifiable_export(tmp_path, app, site, ledger, admin):
    r = admin.get(f"/admin/sites/{site['key']}/export.csv?action=custom&action=reject_all")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert r.is_streamed
    assert "attachment" in r.headers["Content-Disposition"]
    path = tmp_path / "web.csv"
    path.write_bytes(r.data)
    report = verify_export_file(str(path), public_key_text())
    assert report.ok and report.rows == 7
    assert report.manifest["filters"]["actions"] == ["custom", "reject_all"]
    page = admin.get(f"/admin/sites/{site['key']}/export").data.decode()
    assert public_key_text() in page


def test_token_api_download_and_bad_filters(tmp_path, app, site, ledger):
    token = make_token(["audit:export"])
    client = app.test_client()
    r = client.get(f"/api/v1/audit/sites/{site['key']}/export?format=jsonl&since=2020-01-01",
                   headers=bearer(token))
    assert r.status_code == 200 and r.mimetype == "application/x-ndjson"
    path = tmp_path / "api.jsonl"
    path.write_bytes(r.data)
    assert verify_export_file(str(path)).rows == 13
    r = client.get(f"/api/v1/audit/sites/{site['key']}/export?since=yesterday",
                   headers=bearer(token))
    assert r.status_code == 422 and r.mimetype == "application/problem+json"
    r = client.get(f"/api/v1/audit/sites/{site['key']}/export?action=explode",
                   headers=bearer(token))
    assert r.status_code == 422
    r = client.get("/api/v1/audit/sites/nope/export", headers=bearer(token))
    assert r.status_code == 404


def test_signing_key_cli_and_api_agree(app, runner, site):
    r = runner.invoke(args=["consent", "signing-key"])
    assert r.exit_code == 0 and public_key_text() in r.output
    r = runner.invoke(args=["consent", "signing-key", "--pem"])
    assert "BEGIN PUBLIC KEY" in r.output
    body = app.test_client().get("/api/v1/audit/signing-key",
                                 headers=bearer(make_token(["audit:read"]))).get_json()
    assert body["public_key"] == public_key_text()


def test_configured_signing_key_is_used(tmp_path, database_url):
    from consent import create_app
    from consent.audit import public_key_raw

    seed = "11" * 32
    app = create_app({"ENV_NAME": "testing", "SQLALCHEMY_DATABASE_URI": database_url,
                      "CONSENT_SIGNING_KEY": seed})
    with app.app_context():
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives import serialization

        expected = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed)).public_key() \
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert public_key_raw() == expected
        db.engine.dispose()


def test_export_cli_writes_progress_and_refuses_bad_input(tmp_path, runner, site, ledger):
    out = tmp_path / "p.jsonl"
    r = runner.invoke(args=["consent", "export", "--site", site["key"], "--format", "jsonl",
                            "-o", str(out), "--progress"])
    assert r.exit_code == 0
    assert "exporting 13 events" in r.output
    assert verify_export_file(str(out)).ok
    r = runner.invoke(args=["consent", "export", "--since", "last week"])
    assert r.exit_code != 0 and "not a date" in r.output
    r = runner.invoke(args=["consent", "export", "--site", "nope"])
    assert r.exit_code != 0 and "unknown site" in r.output
    r = runner.invoke(args=["consent", "export", "--site", site["key"]])
    assert r.exit_code == 0 and r.output.startswith("event_id,site,")


def test_values_with_commas_quotes_and_newlines_round_trip(tmp_path, site):
    """Free-text columns are quoted exactly when needed, so such rows still verify."""
    from consent.database import run_write
    from consent.ledger import append_event
    from consent.sites import site_snapshot
    from consent.subjects import create_subject

    def write():
        snap = site_snapshot(site["key"])
        subject = create_subject(snap.id)
        append_event(snap, subject, action="custom", source="api",
                     categories={"analytics": True}, policy_version='v,"1"',
                     locale="en\nx", meta={"note": 'a "quoted", note\n'},
                     idempotency_key='key,"1"\r')
    run_write(write)
    for fmt in ("csv", "jsonl"):
        path = export(tmp_path, fmt, site_key=site["key"])
        report = verify_export_file(str(path))
        assert report.ok and report.rows == 1, report.problems


@pytest.mark.parametrize("value", ["=1+1", "'=x", "''@y", 'v,"1"', "a\rb", "-x,y", "\t@z",
                                   "it's", "plain", "'", "x\ny", "✓=x", "é"])
def test_cells_rendered_by_the_database_match_the_python_writer(tmp_path, app, site, value):
    """The export lets the database render CSV cells (SQLite in its SQL, PostgreSQL with
    COPY): every event line is what the Python CSV writer makes of the same values."""
    import io

    from consent import csvcells
    from consent.audit import ExportFilters, _iter_batches
    from consent.database import run_write
    from consent.ledger import append_event
    from consent.sites import site_snapshot
    from consent.subjects import create_subject

    def write():
        snap = site_snapshot(site["key"])
        append_event(snap, create_subject(snap.id), action="custom", source="api",
                     categories={"analytics": True}, policy_version=value, locale=value,
                     meta={"note": value}, idempotency_key=value)
        again = create_subject(snap.id)
        for _ in range(11):  # seq 10 and 11 after 9: ordered as numbers, not as text
            append_event(snap, again, action="reject_all", source="banner",
                         categories={"analytics": False})
    run_write(write)
    # bytes, not read_text: a lone CR in a cell must stay a CR
    text = export(tmp_path, site_key=site["key"], deliveries=False).read_bytes().decode()
    rendered = text.split("\n", 1)[1].split(LOG_HEADER + "\n", 1)[0]
    buf = io.StringIO()
    for _key, batch in _iter_batches(ExportFilters(site_key=site["key"])):
        csvcells.writer(buf).writerows(batch)
    if "\r" in value and "\n" not in value:
        # Python's writer (LF line ends) leaves a lone CR unquoted; the database quotes it
        # (safer for readers that end lines at CR), on both backends alike.
        assert rendered == buf.getvalue().replace(value, f'"{value}"'), rendered
    else:
        assert rendered == buf.getvalue()
    assert rendered.count("\n") >= 12
    report = verify_export_file(str(tmp_path / "export.csv"))
    assert report.ok and report.rows == 12, report.problems
    seqs = [(int(s), int(q)) for s, q in ((r["stream"], r["seq"]) for r in
                                          __import__("csv").DictReader(io.StringIO(
                                              ",".join(COLUMNS) + "\n" + rendered)))]
    assert seqs == sorted(seqs)


# ---------------------------------------------------------------- one format, two backends

GOLDEN = ROOT / "tests" / "data" / "export_golden.csv"
# Free text a client or an admin could send: quotes, commas, line breaks, a lone CR,
# formula starts (marked with an apostrophe), apostrophes already there, non-ASCII.
HOSTILE = ('v,"1"', "en\nx", "=cmd|' /C calc'!A0", "'=x", "a\rb", "-x,y", "\t@z", "it's",
           "café ✓", "'", "''@y", "+1")


def write_golden_ledger(site_key: str) -> int:
    """Insert 30 events with fixed ids, times and hostile cells (a valid chain in three
    streams, seq past 9) as raw rows, the same on every backend; returns the count."""
    from datetime import datetime, timedelta, timezone

    import sqlalchemy as sa

    from consent.database import iso, run_write
    from consent.ledger import GENESIS, LedgerHead, chain_hash, hashed_fields
    from consent.ledger.log import integrate

    site_id = db.session.execute(db.select(Site.id).where(Site.key == site_key)).scalar_one()
    start = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    heads: dict[int, tuple[int, str]] = {}
    rows = []
    for i in range(30):
        stream = (i * 7) % 3
        seq, prev = heads.get(stream, (0, GENESIS))
        seq += 1
        value = HOSTILE[i % len(HOSTILE)]
        # not in time order across streams; one time with no microseconds
        at = start + timedelta(seconds=(i * 37) % 30, microseconds=0 if i == 4 else i * 1013)
        categories = ({} if i % 5 == 0 else
                      {"analytics": i % 2 == 0, "essential": True} if i % 3 else
                      {"advertising": False, "note": value})
        event = dict(
            event_id=f"{i + 1:032x}", stream=stream, seq=seq, subject=f"{i % 4 + 10:032x}",
            action=("custom", "accept_all", "gpc")[i % 3], source=("api", "banner")[i % 2],
            categories=categories, channels={"email": i % 2 == 1} if i % 4 == 1 else None,
            policy_version=value if i % 2 else "2026-01", locale=value[:16] if i % 3 else "en",
            meta={"note": value, "n": i} if i % 2 == 0 else None,
            details_digest=f"{i:064x}" if i % 3 == 0 else None,
            idempotency_key=f"{value}#{i}" if i % 4 != 3 else None)
        fields = hashed_fields(site_key=site_key, recorded_at=iso(at), **event)
        event.update(site_id=site_id, recorded_at=at, prev_hash=prev,
                     hash=chain_hash(prev, fields))
        heads[stream] = (seq, event["hash"])
        rows.append(event)

    def write():
        db.session.execute(sa.insert(ConsentEvent), rows)
        db.session.execute(sa.insert(LedgerHead), [
            {"site_id": site_id, "stream": s, "seq": q, "hash": h}
            for s, (q, h) in heads.items()])
    run_write(write)
    integrate(site_key)
    return len(rows)


def split_export(data: bytes) -> tuple[bytes, dict]:
    """(everything before the manifest line, the manifest)."""
    body, _, last = data.rstrip(b"\n").rpartition(b"\n")
    assert last.startswith(b"#manifest,")
    return body + b"\n", json.loads(next(__import__("csv").reader([last.decode()]))[1])


def test_export_is_the_same_bytes_on_both_backends(tmp_path, site):
    """The same events export to the same bytes whichever database holds them (SQLite
    renders the cells in SQL, PostgreSQL prints them with COPY): event rows, log section
    and the manifest's summary equal a file made once (tests/data/export_golden.csv), and
    that file verifies."""
    count = write_golden_ledger(site["key"])
    path = export(tmp_path, site_key=site["key"], deliveries=False)
    report = verify_export_file(str(path), public_key_text())
    assert report.ok and report.rows == count and report.logs == {site["key"]: count}, \
        report.problems
    body, signed = split_export(path.read_bytes())
    golden_body, golden_signed = split_export(GOLDEN.read_bytes())
    assert body == golden_body
    summary = ("row_count", "first_hash", "last_hash", "rows_sha256", "time_range",
               "streams", "contiguous", "filters")
    assert {k: signed["manifest"][k] for k in summary} == \
        {k: golden_signed["manifest"][k] for k in summary}
    assert signed["manifest"]["log"]["sites"][site["key"]]["rows_sha256"] == \
        golden_signed["manifest"]["log"]["sites"][site["key"]]["rows_sha256"]
    # the hostile cells are in it, quoted and marked
    assert b'"v,""1""#0"' in body and b"\"en\nx\"" in body and b"'=cmd|" in body
    assert b"\"a\rb" in body and b"''=x" in body and b"'''@y" in body and b',"{}",' in body


def test_a_changed_byte_in_a_quoted_or_marked_cell_is_caught(tmp_path, site):
    """Every byte of a row with quoted, multi-line and marked cells, changed in turn, makes
    the export fail verification (on the rows COPY printed, on PostgreSQL)."""
    write_golden_ledger(site["key"])
    path = export(tmp_path, site_key=site["key"], deliveries=False)
    original = path.read_bytes()
    # event 2: policy, locale and key quoted over two lines; event 4: a marked policy
    for number, last_cell in ((2, b'x#1",'), (4, b"''=x,")):
        start = original.index(f"\n{number:032x},".encode()) + 1
        end = original.index(b"\n", original.index(last_cell, start))
        for offset in range(start, end):
            data = bytearray(original)
            data[offset] = ord("x") if data[offset] != ord("x") else ord("y")
            path.write_bytes(bytes(data))
            assert not verify_export_file(str(path)).ok, \
                f"edit at byte {offset - start} of event {number} passed"
    path.write_bytes(original)
    assert verify_export_file(str(path)).ok


def test_hashes_of_copied_rows_are_the_last_cells_a_csv_reader_gives():
    """The PostgreSQL export takes each row's hash from the end of COPY's line, checked
    block-wise; rows whose last cell is not a plain 64-digit hash (a quoted hash with a
    comma where the hash's own comma would be, a longer or shorter one: only a database
    edited by hand) send their block to the CSV reader, so the digest matches the rows."""
    import csv as _csv
    import io

    from consent.audit import _copied_hashes

    h = [f"{i:064x}" for i in range(6)]
    good = [f"{'a' * 32},shop,1,{i},{'b' * 32},2026-01-0{i}T00:00:00.000000Z,custom,api,"
            f'"{{""a"":1}}",,v1,en,,,,{h[i - 1]},{h[i]}\n' for i in (1, 2)]
    tricky = [
        # the last 65 bytes look like a comma and a hash, but are inside one quoted cell
        f"{'c' * 32},shop,2,4,{'b' * 32},2026-02-02T00:00:00.000000Z,custom,api,,,,,,,,"
        f'{h[3]},"{h[4][:63]},{h[4][1:]}"\n',
        # a hash of 130 hex digits: its last 64 are not the cell
        f"{'d' * 32},shop,2,5,{'b' * 32},2026-02-03T00:00:00.000000Z,custom,api,,,,,,,,"
        f"{h[5]},{h[5] * 2}ab\n",
        # a short hash: the 66 bytes before the line end start inside the previous cell
        f"{'e' * 32},shop,2,6,{'b' * 32},2026-02-04T00:00:00.000000Z,custom,api,,,,,,,,"
        f"{h[5]},{h[5][:40]}\n",
        # a row shorter than 66 bytes
        "x,s,1,1,y,,,,,,,,,,,,abc\n"]
    for rows in (good, *(good + [line] for line in tricky), tricky, tricky[-1:] + good):
        joined, first, last = _copied_hashes([r.encode() for r in rows])
        expected = [cells[16] for cells in _csv.reader(io.StringIO("".join(rows)))]
        assert (joined, first, last) == ("".join(expected).encode(), expected[0],
                                         expected[-1])
    assert _copied_hashes([good[0].encode()])[0] == h[1].encode()


def _insert_events(database_url: str, rows: list[dict]) -> None:
    """Insert event rows through a connection of its own (committed at once), as another
    writer, or somebody holding the database, would."""
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    at = ("CAST(:recorded_at AS TIMESTAMP)" if engine.dialect.name == "postgresql"
          else ":recorded_at")
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO consent_events (event_id, site_id, stream, seq, subject, "
                "recorded_at, action, source, categories, channels, policy_version, locale, "
                "meta, details_digest, idempotency_key, prev_hash, hash) VALUES (:event_id, "
                f":site_id, :stream, :seq, :subject, {at}, :action, :source, NULL, NULL, "
                ":policy_version, :locale, NULL, NULL, NULL, :prev_hash, :hash)"), rows)
    finally:
        engine.dispose()


def _file_fold(path: Path, site_key: str):
    """The manifest's summary as the file's event rows say it (CSV reader, Python fold)."""
    import csv as _csv

    from consent.audit import ExportStats, _fold

    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(_csv.reader(fh))
    assert rows[0] == list(COLUMNS) and rows[-1][0] == "#manifest"
    stats = ExportStats()
    _fold(stats, site_key, rows[1:-1])
    return {"row_count": stats.rows, "first_hash": stats.first_hash,
            "last_hash": stats.last_hash, "rows_sha256": stats.digest.hexdigest(),
            "time_range": {"first_recorded_at": stats.first_at,
                           "last_recorded_at": stats.last_at},
            "streams": stats.streams}


def test_manifest_ranges_are_what_the_rows_say_even_for_odd_stored_values(
        tmp_path, site, database_url):
    """The PostgreSQL export takes per-stream and time ranges from an aggregate, not from
    the rows; with hand-inserted events the aggregate could get wrong (times outside the
    years 1000-9999 and infinity, whose rendered text does not sort as the times do; gaps
    in seq; a stream of one row; an empty prev_hash and a quoted hash with a comma), the
    manifest still says exactly what a CSV reader folding the file's rows says."""
    write_golden_ledger(site["key"])
    pg = database_url.startswith("postgresql")
    site_id = db.session.execute(db.select(Site.id).where(Site.key == site["key"])
                                 ).scalar_one()
    odd = [(5, 1, "12000-01-01 00:00:00"), (5, 2, "2026-03-01 11:00:00"),
           (6, 3, "0500-06-01 00:00:00 BC" if pg else "0500-06-01 00:00:00"),
           (6, 7, "infinity" if pg else "9999-12-31 23:59:59"),
           (7, 1, "2026-03-02 00:00:00")]
    odd_hash = 'ab,"c' if pg else "ABC"
    _insert_events(database_url, [
        {"event_id": f"{0xe0 + i:032x}", "site_id": site_id, "stream": stream, "seq": seq,
         "subject": "f" * 32, "recorded_at": at if pg else at + ".000000",
         "action": "custom", "source": "api", "policy_version": "2026-01", "locale": "en",
         "prev_hash": "" if stream == 7 else f"{i:064x}",
         # (SQLite writes hash cells unquoted: there a short one without a comma)
         "hash": odd_hash if stream == 7 else f"{i + 100:064x}"}
        for i, (stream, seq, at) in enumerate(odd)])
    path = export(tmp_path, site_key=site["key"], deliveries=False, log=False)
    signed = json.loads(next(__import__("csv").reader(
        [path.read_text(encoding="utf-8").rstrip("\n").rpartition("\n")[2]]))[1])
    manifest = signed["manifest"]
    expected = _file_fold(path, site["key"])
    assert {k: manifest[k] for k in expected} == expected
    assert expected["row_count"] == 35 and expected["streams"][f"{site['key']}/6"] == {
        "first_seq": 3, "first_prev_hash": f"{2:064x}", "last_seq": 7,
        "last_hash": f"{103:064x}", "rows": 2}
    assert expected["streams"][f"{site['key']}/7"]["last_hash"] == odd_hash


def test_rows_committed_during_an_export_do_not_split_it(tmp_path, site, database_url):
    """An event committed by another writer while an export runs (after the PostgreSQL
    export read its ranges, before its COPY) is in neither or both: the export reads one
    snapshot, so its manifest describes the rows it wrote and it verifies."""
    from consent.audit import iter_export
    from consent.database import iso
    from consent.ledger import LedgerHead, chain_hash, hashed_fields

    count = write_golden_ledger(site["key"])
    site_id = db.session.execute(db.select(Site.id).where(Site.key == site["key"])
                                 ).scalar_one()
    seq, prev = db.session.execute(db.select(LedgerHead.seq, LedgerHead.hash).where(
        LedgerHead.site_id == site_id, LedgerHead.stream == 1)).one()
    from datetime import datetime, timezone

    at = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
    event = dict(event_id="e" * 32, stream=1, seq=seq + 1, subject="d" * 32,
                 action="custom", source="api", categories=None, channels=None,
                 policy_version="2026-01", locale="en", meta=None, details_digest=None,
                 idempotency_key=None)
    value = chain_hash(prev, hashed_fields(site_key=site["key"], recorded_at=iso(at),
                                           **event))
    chunks = iter_export(ExportFilters(site_key=site["key"], deliveries=False, log=False))
    text = next(chunks)  # the header: on PostgreSQL the snapshot and ranges are taken
    _insert_events(database_url, [{
        **{k: event[k] for k in ("event_id", "stream", "seq", "subject", "action", "source",
                                 "policy_version", "locale")},
        "site_id": site_id, "recorded_at": at.strftime("%Y-%m-%d %H:%M:%S.%f"),
        "prev_hash": prev, "hash": value}])
    text += "".join(chunks)
    path = tmp_path / "export.csv"
    path.write_text(text, encoding="utf-8")
    report = verify_export_file(str(path), public_key_text())
    assert report.ok, report.problems
    assert report.rows in (count, count + 1)
    assert report.manifest["streams"][f"{site['key']}/1"]["last_seq"] == \
        seq + report.rows - count


def test_copied_rows_that_disagree_with_the_aggregate_stop_the_export():
    """Each stream's first and last row as COPY printed them are compared with the
    aggregate's stream, seq, prev_hash and hash; any difference is an error (the export
    then ends without a manifest rather than with a wrong one)."""
    from consent.audit import _check_marks, _SiteRanges, _stream_marks

    h = [f"{i:064x}" for i in range(8)]

    def row(stream, seq, prev, value):
        return (f"{'a' * 32},shop,{stream},{seq},{'b' * 32},2026-01-01T00:00:00.000000Z,"
                f"custom,api,,,,,,,,{prev},{value}\n").encode()

    rows = [row(0, 1, h[0], h[1]), row(0, 2, h[1], h[2]), row(3, 5, h[4], h[5])]
    right = [(0, 2, 1, 2, h[0], h[1], h[2]), (3, 1, 5, 5, h[4], h[5], h[5])]
    for blocks in ([rows], [rows[:1], rows[1:]], [rows[:2], rows[2:]]):
        marks, start = _stream_marks(_SiteRanges(streams=right)), 0
        for block in blocks:
            _check_marks(marks, block, start, "shop")
            start += len(block)
        assert not marks
    wrong = [
        [(0, 1, 1, 1, h[0], h[1], h[1]), (3, 2, 2, 5, h[4], h[5], h[5])],  # counts
        [(0, 2, 1, 2, h[0], h[1], h[3]), (3, 1, 5, 5, h[4], h[5], h[5])],  # last hash
        [(0, 2, 1, 2, h[7], h[1], h[2]), (3, 1, 5, 5, h[4], h[5], h[5])],  # first prev
        [(0, 2, 1, 2, h[0], h[1], h[2]), (4, 1, 5, 5, h[4], h[5], h[5])],  # stream
        [(0, 2, 1, 3, h[0], h[1], h[2]), (3, 1, 5, 5, h[4], h[5], h[5])],  # last seq
    ]
    for streams in wrong:
        with pytest.raises(RuntimeError, match="snapshot"):
            _check_marks(_stream_marks(_SiteRanges(streams=streams)), rows, 0, "shop")
