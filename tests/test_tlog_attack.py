"""Issue 14's check, as an insider with database access would attack: rewrite one event
with recomputed hash links and stream head (and, separately, delete a stream's tail and
rewind its head), and get the log rebuilt over what the database now holds.

The server's own signer refuses to sign it (the new tree does not extend the checkpoint
it signed before, C2SP tlog-checkpoint) and `verify` names the site. If the insider also
deletes the checkpoint rows and gets a signer without a memory of its own to sign (a new
machine, or one whose state directory was wiped), the witness's next run, `verify` on the
signing machine, a receipt issued before the rewrite checked against the new checkpoint,
and `verify-export --since-checkpoint` each fail and name the site. Runs on SQLite and
PostgreSQL, against a real server for the witness."""
from __future__ import annotations

import json
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from consent.extensions import db
from consent.ledger import (ConsentEvent, append_only_ddl, chain_hash, drop_append_only_ddl,
                            event_fields)
from consent.subjects import new_device_key
from tests.support.servers import AppServer


def decide(client, site, action="accept_all", subject=None):
    body = {"action": action}
    if subject:  # a visitor id the test names, minted with its device key as the widget does
        body.update(subject=subject, key=KEYS.setdefault(subject, new_device_key()))
    r = client.post(f"/api/v1/sites/{site['key']}/decisions", json=body)
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.get_json()


KEYS: dict[str, str] = {}  # visitor id -> its device key


def cli(runner, *args):
    return runner.invoke(args=["consent", *args])


def as_insider(statements):
    """Run SQL with the append-only triggers dropped, then put them back (as the attacker
    in the issue did)."""
    db.session.remove()
    with db.engine.begin() as conn:
        for statement in drop_append_only_ddl(conn.dialect.name):
            conn.exec_driver_sql(statement)
        for sql, params in statements:
            conn.execute(sa.text(sql), params)
        for statement in append_only_ddl(conn.dialect.name):
            conn.exec_driver_sql(statement)
    db.session.remove()


def rechain(stream_rows, site_key, edit=None):
    """The UPDATEs that recompute prev_hash/hash of a stream (after EDIT of one row) and
    its head, using only the documented hash formula."""
    statements, prev = [], None
    for row in stream_rows:
        fields = event_fields(row, site_key)
        if edit and row.event_id == edit[0]:
            fields["categories"] = edit[1]
            statements.append(("UPDATE consent_events SET categories = :c WHERE event_id = :e",
                               {"c": json.dumps(edit[1]), "e": row.event_id}))
        prev_hash = row.prev_hash if prev is None else prev
        new_hash = chain_hash(prev_hash, fields)
        statements.append(("UPDATE consent_events SET prev_hash = :p, hash = :h "
                           "WHERE event_id = :e", {"p": prev_hash, "h": new_hash,
                                                    "e": row.event_id}))
        prev = new_hash
    last = stream_rows[-1]
    statements.append(("UPDATE ledger_heads SET seq = :s, hash = :h WHERE site_id = :site "
                       "AND stream = :st", {"s": last.seq, "h": prev, "site": last.site_id,
                                            "st": last.stream}))
    return statements


REBUILD_LOG = [(f"DELETE FROM {t} WHERE site_id = (SELECT id FROM sites WHERE key = 'shop')",
                {}) for t in ("log_leaves", "log_nodes", "log_streams")]
DELETE_CHECKPOINTS = [("DELETE FROM log_checkpoints WHERE site_id = (SELECT id FROM sites "
                       "WHERE key = 'shop')", {})]


@contextmanager
def signer_without_memory(app, tmp_path):
    """A signer whose state directory is empty (another machine, or a wiped one)."""
    before = app.config.get("CONSENT_LOG_STATE_DIR")
    app.config["CONSENT_LOG_STATE_DIR"] = str(tmp_path / "fresh-signer-state")
    try:
        yield
    finally:
        app.config["CONSENT_LOG_STATE_DIR"] = before


def checkpoint_count():
    db.session.remove()
    return db.session.execute(sa.text("SELECT COUNT(*) FROM log_checkpoints")).scalar()


@pytest.fixture
def shop_with_history(app, client, runner, site, tmp_path, database_url):
    """A site with history, an integrated log, a witness that holds its checkpoint, a
    receipt of one decision and an auditor's copy of the checkpoint and an export."""
    victim = decide(client, site, "reject_all", "victim-visitor-0001")
    for i in range(3):
        decide(client, site, "accept_all", f"other-visitor-{i:04d}x")
    later = decide(client, site, "accept_all", "victim-visitor-0001")
    for i in range(4):
        decide(client, site, "reject_all")
    assert cli(runner, "integrate").exit_code == 0
    key = cli(runner, "signing-key", "--site", "shop").output.strip()
    server = AppServer(database_url)
    try:
        url = f"{server.url}/api/v1/sites/shop/log"
        state = tmp_path / "witness"
        first = cli(runner, "witness", url, "--state", str(state), "--public-key", key)
        assert first.exit_code == 0, first.output
        receipt = client.get(f"/api/v1/sites/shop/receipts/{victim['event_id']}",
                             headers={"Authorization": f"Bearer {site['api_key']}"})
        assert receipt.status_code == 200, receipt.get_data(as_text=True)
        receipt_file = tmp_path / "receipt.json"
        receipt_file.write_text(receipt.get_data(as_text=True))
        held = tmp_path / "held-checkpoint.txt"
        held.write_text(client.get("/api/v1/sites/shop/log/checkpoint").get_data(as_text=True))
        yield {"victim": victim, "later": later, "key": key, "url": url, "state": state,
               "receipt": receipt_file, "receipt_size": receipt.get_json()["log"]["tree_size"],
               "held": held, "server": server}
    finally:
        server.stop()


def _new_checkpoint_after(client, site, runner):
    # Business goes on: new decisions, and the server integrates and signs again.
    for _ in range(2):
        decide(client, site, "accept_all")
    assert cli(runner, "integrate").exit_code == 0


def _the_signer_refuses(app, client, site, runner, h, tmp_path):
    """Business goes on; the server's signer will not sign the rebuilt log, verify names
    the site. Then the insider deletes the checkpoint rows and has a signer without a
    memory of its own sign what the database holds."""
    for _ in range(2):
        decide(client, site, "accept_all")
    signed = checkpoint_count()
    refused = cli(runner, "integrate")
    assert refused.exit_code == 1, refused.output
    assert "REFUSED: site shop:" in refused.output and "nothing was signed" in refused.output
    assert ("is not an extension of the checkpoint" in refused.output
            or "the log was rewound" in refused.output)
    assert checkpoint_count() == signed
    served = client.get("/api/v1/sites/shop/log/checkpoint").get_data(as_text=True)
    assert served == h["held"].read_text()
    verify = cli(runner, "verify")
    assert verify.exit_code == 1 and "site shop" in verify.output, verify.output

    as_insider(DELETE_CHECKPOINTS)
    with signer_without_memory(app, tmp_path):
        assert cli(runner, "integrate").exit_code == 0
    assert client.get("/api/v1/sites/shop/log/checkpoint").get_data(as_text=True) != served
    # The machine that signed before still knows better.
    again = cli(runner, "integrate")
    assert again.exit_code == 1 and "REFUSED: site shop:" in again.output, again.output
    assert "is gone from the database" in again.output


def _everyone_notices(client, runner, h, tmp_path):
    witness = cli(runner, "witness", h["url"], "--state", str(h["state"]))
    assert witness.exit_code == 1, witness.output
    assert "site shop: checkpoint" in witness.output and "is not an extension of" in \
        witness.output

    verify = cli(runner, "verify")
    assert verify.exit_code == 1, verify.output
    assert "site shop" in verify.output

    proof = client.get(f"/api/v1/sites/shop/log/consistency?from={h['receipt_size']}")
    later = tmp_path / "later.json"
    if proof.status_code == 422:
        # The log is now smaller than the receipt's checkpoint: the holder checks against
        # the served checkpoint alone.
        later.write_text(client.get("/api/v1/sites/shop/log/checkpoint").get_data(
            as_text=True))
    else:
        assert proof.status_code == 200
        later.write_text(proof.get_data(as_text=True))
    check = cli(runner, "verify-receipt", str(h["receipt"]), "--public-key", h["key"],
                "--checkpoint", str(later))
    assert check.exit_code == 1, check.output
    assert "site shop" in check.output and ("not an extension" in check.output
                                            or "the log was rewound" in check.output)

    export = tmp_path / "after.csv"
    assert cli(runner, "export", "--site", "shop", "-o", str(export)).exit_code == 0
    since = cli(runner, "verify-export", str(export), "--public-key", h["key"],
                "--since-checkpoint", str(h["held"]))
    assert since.exit_code == 1, since.output
    assert "site shop" in since.output


def test_an_honest_log_satisfies_everyone(client, runner, site, shop_with_history, tmp_path):
    h = shop_with_history
    _new_checkpoint_after(client, site, runner)
    assert cli(runner, "witness", h["url"], "--state", str(h["state"])).exit_code == 0
    verify = cli(runner, "verify")
    assert verify.exit_code == 0, verify.output
    proof = client.get(f"/api/v1/sites/shop/log/consistency?from={h['receipt_size']}")
    later = tmp_path / "later.json"
    later.write_text(proof.get_data(as_text=True))
    check = cli(runner, "verify-receipt", str(h["receipt"]), "--public-key", h["key"],
                "--checkpoint", str(later))
    assert check.exit_code == 0, check.output
    assert "still in the log" in check.output
    export = tmp_path / "after.csv"
    assert cli(runner, "export", "--site", "shop", "-o", str(export)).exit_code == 0
    since = cli(runner, "verify-export", str(export), "--public-key", h["key"],
                "--since-checkpoint", str(h["held"]))
    assert since.exit_code == 0, since.output


def test_a_rewritten_event_with_recomputed_hashes_is_caught(app, client, runner, site,
                                                          shop_with_history, tmp_path):
    h = shop_with_history
    target = db.session.execute(db.select(ConsentEvent).where(
        ConsentEvent.event_id == h["victim"]["event_id"])).scalar_one()
    rows = db.session.execute(db.select(ConsentEvent).where(
        ConsentEvent.site_id == target.site_id, ConsentEvent.stream == target.stream)
        .order_by(ConsentEvent.seq)).scalars().all()
    forged = {k: True for k in ("essential", "functional", "analytics", "advertising")}
    as_insider(rechain(rows, "shop", edit=(target.event_id, forged)) + REBUILD_LOG)
    _the_signer_refuses(app, client, site, runner, h, tmp_path)
    _everyone_notices(client, runner, h, tmp_path)


def test_a_deleted_tail_with_a_rewound_head_is_caught(app, client, runner, site,
                                                     shop_with_history, tmp_path):
    h = shop_with_history
    target = db.session.execute(db.select(ConsentEvent).where(
        ConsentEvent.event_id == h["victim"]["event_id"])).scalar_one()
    rows = db.session.execute(db.select(ConsentEvent).where(
        ConsentEvent.site_id == target.site_id, ConsentEvent.stream == target.stream)
        .order_by(ConsentEvent.seq)).scalars().all()
    # The victim's events sit in one stream: delete from the victim's first event on.
    cut = [r for r in rows if r.seq >= target.seq]
    kept = [r for r in rows if r.seq < target.seq]
    statements = [("DELETE FROM event_details WHERE event_id = :e", {"e": r.event_id})
                  for r in cut]
    statements += [("DELETE FROM consent_events WHERE event_id = :e", {"e": r.event_id})
                   for r in cut]
    head = (kept[-1].seq, kept[-1].hash) if kept else (0, "0" * 64)
    statements.append(("UPDATE ledger_heads SET seq = :s, hash = :h WHERE site_id = :site "
                       "AND stream = :st", {"s": head[0], "h": head[1],
                                            "site": target.site_id, "st": target.stream}))
    statements.append(("DELETE FROM consent_states WHERE subject = :s",
                       {"s": target.subject}))
    as_insider(statements + REBUILD_LOG)
    _the_signer_refuses(app, client, site, runner, h, tmp_path)
    _everyone_notices(client, runner, h, tmp_path)


def _pseudonyms_in_streams(monkeypatch, streams):
    """The next pseudonyms drawn fall in STREAMS, in turn (a stream is the number in a
    pseudonym's first 8 hex digits, modulo the site's streams; a decision draws one, kept
    when its visitor is new); the rest stays random."""
    import secrets

    import consent.subjects

    wanted = iter(streams)

    class Chosen:
        def __getattr__(self, name):
            return getattr(secrets, name)

        @staticmethod
        def token_hex(nbytes=None):
            stream = next(wanted, None) if nbytes == 16 else None  # (a secret has 32)
            if stream is not None:
                return f"{stream:08x}{secrets.token_hex(12)}"
            return secrets.token_hex(nbytes)

    monkeypatch.setattr(consent.subjects, "secrets", Chosen())


def _stream_of(event_id):
    target = db.session.execute(db.select(ConsentEvent).where(
        ConsentEvent.event_id == event_id)).scalar_one()
    return db.session.execute(db.select(ConsentEvent).where(
        ConsentEvent.site_id == target.site_id, ConsentEvent.stream == target.stream)
        .order_by(ConsentEvent.seq)).scalars().all()


def _export_says(runner, h, tmp_path, *args, since=True):
    export = tmp_path / f"export{len(list(tmp_path.iterdir()))}.csv"
    made = cli(runner, "export", "--site", "shop", "-o", str(export), *args)
    assert made.exit_code == 0, made.output
    extra = ["--since-checkpoint", str(h["held"])] if since else []
    return cli(runner, "verify-export", str(export), "--public-key", h["key"], *extra)


@pytest.mark.parametrize("which", ["first", "last"])
def test_an_event_deleted_after_it_was_logged_is_named_by_the_export(
        client, runner, site, shop_with_history, tmp_path, which):
    """The log keeps the entry of an event an insider deleted (the first of its stream, or
    its last with the head rewound): the log still extends every checkpoint, so the
    witness and receipts are content, but an export no longer holds an event for each log
    entry, and its streams no longer start at seq 1."""
    h = shop_with_history
    rows = _stream_of(h["victim"]["event_id"])
    gone = rows[0] if which == "first" else rows[-1]
    statements = [("DELETE FROM event_details WHERE event_id = :e", {"e": gone.event_id}),
                  ("DELETE FROM consent_events WHERE event_id = :e", {"e": gone.event_id})]
    if which == "last":
        before = rows[-2] if len(rows) > 1 else None
        statements.append(("UPDATE ledger_heads SET seq = :s, hash = :h WHERE site_id = "
                           ":site AND stream = :st",
                           {"s": before.seq if before else 0,
                            "h": before.hash if before else "0" * 64,
                            "site": gone.site_id, "st": gone.stream}))
    as_insider(statements)
    assert cli(runner, "witness", h["url"], "--state", str(h["state"])).exit_code == 0
    for since in (True, False):
        said = _export_says(runner, h, tmp_path, since=since)
        assert said.exit_code == 1, said.output
        assert "has no event in the export" in said.output and "deleted" in said.output
    if which == "first":
        # Without its log section the export still shows the stream's start is gone.
        said = _export_says(runner, h, tmp_path, "--no-log", since=False)
        assert said.exit_code == 1, said.output
        assert f"stream shop/{gone.stream} starts at seq 2" in said.output
    verify = cli(runner, "verify")
    assert verify.exit_code == 1 and "site shop" in verify.output, verify.output


def test_a_backdated_event_appended_to_a_stream_is_caught(client, runner, site, clock,
                                                          shop_with_history, tmp_path):
    """An insider running the app with its clock set back appends a withdrawal dated a
    month ago: the chain links and the log takes it, but it is dated before the event it
    follows in its stream."""
    h = shop_with_history
    clock.advance(days=-30)
    decide(client, site, "reject_all", "victim-visitor-0001")
    clock.offset = clock.offset * 0
    assert cli(runner, "integrate").exit_code == 0
    verify = cli(runner, "verify")
    assert verify.exit_code == 1, verify.output
    assert "it was backdated" in verify.output and "site shop" in verify.output
    said = _export_says(runner, h, tmp_path, since=False)
    assert said.exit_code == 1 and "it was backdated" in said.output, said.output


def test_an_event_dated_before_a_checkpoint_that_left_it_out_is_caught(
        client, runner, site, clock, tmp_path, database_url, monkeypatch):
    """A visitor's stream whose last event is a year old: an event appended now but dated
    after it still passes the stream's order, yet it is dated before a checkpoint that did
    not hold it and left no event out. `verify` and `verify-export --since-checkpoint`
    name it; an honest backlog (committed, then logged in batches) does not."""
    # Pseudonyms pick streams: the old visitors go to streams 0-3, the new ones to 4-6,
    # so that an old visitor's stream has nothing since (by chance, 1 run in 70 had none).
    _pseudonyms_in_streams(monkeypatch, [0, 1, 2, 3, 4, 5, 6])
    clock.advance(days=-400)
    old = {decide(client, site, "accept_all", f"old-visitor-{i:06d}")["event_id"]: i
           for i in range(4)}
    assert cli(runner, "integrate").exit_code == 0
    clock.offset = clock.offset * 0
    new = [decide(client, site, "reject_all", f"new-visitor-{i:06d}") for i in range(3)]
    from flask import current_app
    current_app.config["CONSENT_LOG_BATCH"] = 1  # a backlog of whole batches
    try:
        assert cli(runner, "integrate").exit_code == 0
    finally:
        current_app.config.pop("CONSENT_LOG_BATCH")
    assert cli(runner, "verify").exit_code == 0
    key = cli(runner, "signing-key", "--site", "shop").output.strip()
    held = tmp_path / "held.txt"
    held.write_text(client.get("/api/v1/sites/shop/log/checkpoint").get_data(as_text=True))
    assert held.read_text().split("\n")[1] == "7" and "\npending none\n" in held.read_text()
    h = {"key": key, "held": held}
    assert _export_says(runner, h, tmp_path).exit_code == 0

    # An old visitor whose stream had nothing since (pseudonyms pick streams).
    busy = {_stream_of(n["event_id"])[0].stream for n in new}
    quiet = next(i for event_id, i in old.items() if _stream_of(event_id)[0].stream not in busy)
    clock.advance(days=-399)
    decide(client, site, "reject_all", f"old-visitor-{quiet:06d}")
    clock.offset = clock.offset * 0
    assert cli(runner, "integrate").exit_code == 0
    verify = cli(runner, "verify")
    assert verify.exit_code == 1, verify.output
    assert "it was backdated" in verify.output and "left out no event" in verify.output
    said = _export_says(runner, h, tmp_path)
    assert said.exit_code == 1 and "the held checkpoint" in said.output, said.output
    assert "it was backdated" in said.output
    # Without the held checkpoint only the stream's order is checked, and it holds.
    assert _export_says(runner, h, tmp_path, since=False).exit_code == 0


def test_a_bare_later_checkpoint_of_another_size_cannot_condemn_an_honest_log(
        client, runner, site, shop_with_history, tmp_path):
    """A receipt holder who gives the newer checkpoint without its consistency proof is
    told the check cannot be made (exit 2), not that an honest log was rewritten; the
    receipt's own checkpoint, given bare, still matches."""
    h = shop_with_history
    _new_checkpoint_after(client, site, runner)
    later = tmp_path / "bare.txt"
    later.write_text(client.get("/api/v1/sites/shop/log/checkpoint").get_data(as_text=True))
    check = cli(runner, "verify-receipt", str(h["receipt"]), "--public-key", h["key"],
                "--checkpoint", str(later))
    assert check.exit_code == 2, check.output
    assert "CANNOT CHECK" in check.output and "log/consistency?from=" in check.output
    assert "rewritten" not in check.output
    same = tmp_path / "same.txt"
    same.write_text(json.loads(h["receipt"].read_text())["log"]["checkpoint"])
    check = cli(runner, "verify-receipt", str(h["receipt"]), "--public-key", h["key"],
                "--checkpoint", str(same))
    assert check.exit_code == 0 and "still in the log" in check.output, check.output
