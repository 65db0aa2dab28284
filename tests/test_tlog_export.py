"""Exports carry each site's verifiable log by default, so any whole export can be checked
against a checkpoint an auditor kept (`verify-export --since-checkpoint`); `--no-log` (API
`log=false`) leaves it out."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from consent.audit import LOG_HEADER, public_key_text, verify_export_file
from tests.support.admin import make_token, record_choice as decide
from tests.support.api import bearer

ROOT = Path(__file__).resolve().parents[1]


def cli(runner, *args):
    return runner.invoke(args=["consent", *args])


def held_checkpoint(runner, tmp_path) -> Path:
    """The checkpoint an auditor keeps (`flask consent log-checkpoint`)."""
    out = cli(runner, "log-checkpoint", "--site", "shop")
    assert out.exit_code == 0, out.output
    path = tmp_path / "shop.checkpoint"
    path.write_text(out.output)
    return path


def test_the_cli_export_carries_the_log_unless_told_not_to(tmp_path, runner, site):
    for _ in range(4):
        decide(site["key"], "accept_all")
    held = held_checkpoint(runner, tmp_path)
    for _ in range(3):
        decide(site["key"], "reject_all")
    out = tmp_path / "shop.csv"
    r = cli(runner, "export", "--site", "shop", "-o", str(out))  # no flag: the default
    assert r.exit_code == 0, r.output
    lines = out.read_text().splitlines()
    assert LOG_HEADER in lines
    assert sum(1 for x in lines if x.startswith("log,shop,")) == 7
    report = verify_export_file(str(out), public_key_text())
    assert report.ok, report.problems
    assert report.manifest["log"]["included"] is True
    assert report.manifest["log"]["sites"]["shop"]["size"] == 7
    r = cli(runner, "verify-export", str(out), "--public-key", public_key_text(),
            "--since-checkpoint", str(held))
    assert r.exit_code == 0, r.output
    assert ("the log of site shop (7 entries) matches its signed checkpoint; site shop: the "
            "exported log extends the held checkpoint of 4 entries") in r.output
    # The verifier without the app takes the held checkpoint too.
    env = {"PATH": "/usr/bin:/bin"}
    plain = subprocess.run([sys.executable, "-m", "consent.audit", str(out), "--public-key",
                            public_key_text(), "--since-checkpoint", str(held)], cwd=ROOT,
                           env=env, capture_output=True, text=True)
    assert plain.returncode == 0 and "extends the held checkpoint of 4" in plain.stdout, \
        plain.stderr

    small = tmp_path / "small.csv"
    r = cli(runner, "export", "--site", "shop", "--no-log", "-o", str(small))
    assert r.exit_code == 0, r.output
    assert LOG_HEADER not in small.read_text()
    report = verify_export_file(str(small), public_key_text())
    assert report.ok and report.manifest["log"] == {"included": False}
    assert report.manifest["checkpoints_at_cut"]["shop"]  # the cut is still named
    r = cli(runner, "verify-export", str(small), "--since-checkpoint", str(held))
    assert r.exit_code == 1 and "carries no log section" in r.output


def test_api_and_admin_downloads_carry_the_log(tmp_path, app, runner, site, admin):
    for _ in range(3):
        decide(site["key"], "accept_all")
    held = held_checkpoint(runner, tmp_path)
    decide(site["key"], "custom", categories={"analytics": True})
    token = make_token(["audit:export"])
    client = app.test_client()
    url = f"/api/v1/audit/sites/{site['key']}/export?format=jsonl"
    downloads = {"api.jsonl": lambda: client.get(url, headers=bearer(token)),
                 "admin.csv": lambda: admin.get(f"/admin/sites/{site['key']}/export.csv")}
    for name, download in downloads.items():
        r = download()
        assert r.status_code == 200, r.get_data(as_text=True)
        path = tmp_path / name
        path.write_bytes(r.data)
        report = verify_export_file(str(path), public_key_text(), held.read_text())
        assert report.ok, (name, report.problems)
        assert report.logs == {"shop": 4} and "held checkpoint of 3" in report.extends
    r = client.get(url + "&log=false", headers=bearer(token))
    path = tmp_path / "no-log.jsonl"
    path.write_bytes(r.data)
    report = verify_export_file(str(path), public_key_text())
    assert report.ok and report.manifest["log"] == {"included": False}
    assert '"type":"log"' not in path.read_text()
    r = client.get(url + "&log=maybe", headers=bearer(token))
    assert r.status_code == 422 and r.mimetype == "application/problem+json"
    assert any(e["pointer"] == "#/log" for e in r.get_json()["errors"])
    spec = client.get("/api/v1/openapi.json").get_json()
    params = spec["paths"]["/api/v1/audit/sites/{site_key}/export"]["get"]["parameters"]
    assert any(p["name"] == "log" and p["schema"]["type"] == "boolean" for p in params)


def test_a_filtered_export_leaves_the_log_out_and_says_why(tmp_path, runner, site):
    visitor = decide(site["key"], "accept_all")
    decide(site["key"], "reject_all")
    held = held_checkpoint(runner, tmp_path)
    out = tmp_path / "one.jsonl"
    r = cli(runner, "export", "--site", "shop", "--subject", visitor, "--format", "jsonl",
            "-o", str(out))
    assert r.exit_code == 0, r.output
    report = verify_export_file(str(out), public_key_text())
    assert report.ok and report.rows == 1 and report.manifest["log"] == {"included": False}
    r = cli(runner, "verify-export", str(out), "--since-checkpoint", str(held), "--json")
    assert r.exit_code == 1
    assert "carries no log section" in json.loads(r.output)["problems"][0]["reason"]


def test_an_event_rewritten_after_it_was_logged_is_named_by_the_export(tmp_path, runner,
                                                                       site):
    from consent.extensions import db
    from consent.ledger import ConsentEvent
    from tests.test_tlog_attack import as_insider, rechain

    visitors = [decide(site["key"], "accept_all") for _ in range(3)]
    for v in visitors:
        decide(site["key"], "reject_all", subject=v)
    assert cli(runner, "integrate").exit_code == 0
    target = db.session.execute(db.select(ConsentEvent).where(
        ConsentEvent.action == "reject_all").order_by(ConsentEvent.id)).scalars().first()
    rows = db.session.execute(db.select(ConsentEvent).where(
        ConsentEvent.site_id == target.site_id, ConsentEvent.stream == target.stream)
        .order_by(ConsentEvent.seq)).scalars().all()
    # The chain is recomputed, so the event rows alone look fine; the log still holds
    # the leaf of what was recorded.
    as_insider(rechain(rows, "shop", edit=(target.event_id, {"advertising": True})))
    out = tmp_path / "shop.csv"
    assert cli(runner, "export", "--site", "shop", "-o", str(out)).exit_code == 0
    r = cli(runner, "verify-export", str(out), "--public-key", public_key_text())
    assert r.exit_code == 1, r.output
    assert (f"site shop: the exported event at stream {target.stream} seq {target.seq} is "
            "not log entry") in r.output
    assert "the event was rewritten after it was logged" in r.output
    no_log = tmp_path / "no-log.csv"
    assert cli(runner, "export", "--site", "shop", "--no-log", "-o", str(no_log)).exit_code == 0
    assert cli(runner, "verify-export", str(no_log)).exit_code == 0  # what --no-log gives up
