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
    i = next(n for n in range(1, len(streams) - 1) if streams[n] == streams[n - 1]
             and n > 1 and streams[n - 2] == streams[n - 1])  # rows n-1, n, n+1 one stream
    removed = lines[:i] + lines[i + 1:]  # drops row i (line i+1 of the file)
    path.write_text("\n".join(removed) + "\n")
    report = verify_export_file(str(path))
    assert not report.ok and report.problems[0].row == i
    assert "missing" in report.problems[0].reason
    # Swapping two rows is seen as a reordering.
    swapped = lines[:2] + [lines[3], lines[2]] + lines[4:]
    path.write_text("\n".join(swapped) + "\n")
    assert not verify_export_file(str(path)).ok
    # Dropping the last event row changes the signed count.
    path.write_text("\n".join(lines[:end - 1] + lines[end:]) + "\n")
    report = verify_export_file(str(path))
    assert not report.ok and "row_count" in report.problems[0].reason
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
                                   "it's", "plain", "'", "x\ny"])
def test_cells_rendered_by_the_database_match_the_python_writer(app, site, value):
    """The export lets the database render CSV cells (SQLite and PostgreSQL, each in its own
    SQL): every line is what the Python CSV writer makes of the same values."""
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
    filters = ExportFilters(site_key=site["key"])
    rendered = "".join("\n".join(",".join(r) for r in batch) + "\n"
                       for _key, batch, _layout in _iter_batches(filters, lines=True))
    buf = io.StringIO()
    for _key, batch, _layout in _iter_batches(filters, lines=False):
        csvcells.writer(buf).writerows(batch)
    if "\r" in value and "\n" not in value:
        # Python's writer (LF line ends) leaves a lone CR unquoted; the database quotes it
        # (safer for readers that end lines at CR), on both backends alike.
        assert rendered == buf.getvalue().replace(value, f'"{value}"'), rendered
    else:
        assert rendered == buf.getvalue()
    assert rendered.count("\n") >= 12
    with_seqs = [[str(r[2]), str(r[3])] for _k, batch, _l in _iter_batches(filters, lines=True)
                 for r in batch]
    assert with_seqs == sorted(with_seqs, key=lambda r: (int(r[0]), int(r[1])))
