"""The outbox: which events notify which endpoint, in the event's transaction, and the
delivery worker against a real HTTP receiver on loopback (signing, retries, dead letters,
leases)."""
from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from consent import outbox
from consent.database import run_write, utcnow
from consent.extensions import db
from consent.ledger import ConsentEvent, append_event
from consent.outbox import (OutboxMessage, claim_due, delivery_log_rows, record_result,
                            retry_dead, send, set_endpoint_active)
from consent.sites import site_snapshot
from consent.subjects import Subject, find_subject
from tests.support.api import bearer, decide
from tests.support.outbox import Receiver, add_endpoint, drain, log_of, messages, run_worker


def withdraw(client, site, subject, **categories):
    r = client.post(f"/api/v1/sites/{site['key']}/subjects/{subject}/events",
                    json={"action": "withdraw", "categories": categories},
                    headers=bearer(site))
    assert r.status_code == 201, r.get_data(as_text=True)


def load_example():
    """examples/webhook_receiver.py, the receiver the README quotes."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "webhook_receiver.py"
    spec = importlib.util.spec_from_file_location("webhook_receiver_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def append(site_key, public_id, **kw):
    site = site_snapshot(site_key)
    return run_write(lambda: append_event(site, find_subject(site.id, public_id), **kw))


# ---------------------------------------------------------------- who is told what


def test_withdrawal_notifies_only_endpoints_that_care(client, site, other_site):
    analytics, _ = add_endpoint(site["key"], categories=["analytics"])
    ads, _ = add_endpoint(site["key"], categories=["advertising"])
    mail, _ = add_endpoint(site["key"], channels=["email.*"])
    disabled, _ = add_endpoint(site["key"], categories=["*"])
    set_endpoint_active(site["key"], disabled, False)
    add_endpoint(other_site["key"], categories=["analytics"])

    first = decide(client, site["key"], "accept_all")
    rows = messages(event_id=first["event_id"])
    # A first choice is a grant: the analytics and advertising tools learn of it.
    assert sorted(m.endpoint_id for m in rows) == [analytics, ads]
    assert all(m.state == "pending" and m.kind == "consent.changed" for m in rows)

    decide(client, site["key"], "accept_all", subject=first["subject"])
    assert len(messages()) == 2  # nothing changed, nobody is told

    withdraw(client, site, first["subject"], analytics=False)
    event_id = db.session.execute(db.select(ConsentEvent.event_id).where(
        ConsentEvent.action == "withdraw")).scalar_one()
    rows = messages(event_id=event_id)
    assert [m.endpoint_id for m in rows] == [analytics]
    payload = rows[0].payload
    assert payload["id"] == rows[0].idempotency_key == f"evt_{event_id}_{analytics}"
    assert payload["changes"] == {"categories": {"analytics": {"from": True, "to": False}},
                                  "channels": {}}
    assert payload["state"] == {"categories": {"analytics": False}, "channels": {}}
    assert payload["event"]["action"] == "withdraw" and payload["event"]["source"] == "api"
    assert payload["site"] == site["key"]
    # Identifiers never sit in the stored payload; the visitor id is added when sending.
    assert first["subject"] not in json.dumps(payload)


def test_gpc_opt_out_notifies_the_ad_platform(client, site):
    analytics, _ = add_endpoint(site["key"], categories=["analytics"])
    ads, _ = add_endpoint(site["key"], categories=["advertising"])
    visitor = decide(client, site["key"], "accept_all")["subject"]
    gpc = decide(client, site["key"], "accept_all", subject=visitor, gpc=True)
    rows = messages(event_id=gpc["event_id"])
    assert [m.endpoint_id for m in rows] == [ads]
    assert rows[0].payload["changes"]["categories"] == {
        "advertising": {"from": True, "to": False}}


def test_unsubscribe_notifies_channel_endpoints(client, site):
    mail, _ = add_endpoint(site["key"], channels=["email.*"])
    sms, _ = add_endpoint(site["key"], channels=["sms.promotional"])
    analytics, _ = add_endpoint(site["key"], categories=["analytics"])
    visitor = decide(client, site["key"], "reject_all")["subject"]
    before = len(messages())
    ev = append(site["key"], visitor, action="unsubscribe", source="email_link",
                channels={"email.promotional": False})
    rows = messages(event_id=ev.event_id)
    assert [m.endpoint_id for m in rows] == [mail]
    assert rows[0].payload["changes"]["channels"] == {
        "email.promotional": {"from": None, "to": False}}
    assert len(messages()) == before + 1
    again = append(site["key"], visitor, action="unsubscribe", source="email_link",
                   channels={"email.promotional": False})
    assert messages(event_id=again.event_id) == []


def test_erasure_notifies_every_endpoint_with_the_visitor_id(client, site, fast, receiver):
    a, secret_a = add_endpoint(site["key"], url=receiver.url, categories=["analytics"])
    b, _ = add_endpoint(site["key"], url=receiver.url, channels=["sms.*"])
    visitor = decide(client, site["key"], "reject_all")["subject"]
    ev = append(site["key"], visitor, action="erase", source="admin")
    rows = messages(event_id=ev.event_id)
    assert sorted(m.endpoint_id for m in rows) == [a, b]
    assert {m.kind for m in rows} == {"subject.erased"}
    # The visitor id is kept only encrypted, outside the payload.
    assert all(m.subject_ref and visitor not in m.subject_ref for m in rows)
    assert visitor not in json.dumps([m.payload for m in rows])

    def shred():  # what the erasure request does right after the event
        subject = db.session.execute(db.select(Subject).where(
            Subject.public_id == visitor)).scalar_one()
        subject.public_id = None
    run_write(shred)

    run_worker()
    erased = [b for b in receiver.bodies() if b["type"] == "subject.erased"]
    assert len(erased) == 2
    assert {b["subject"] for b in erased} == {visitor}
    assert all(b["state"] is None for b in erased)
    assert all(m.state == "delivered" and m.subject_ref is None
               for m in messages(event_id=ev.event_id))


def test_an_erasure_request_reaches_every_endpoint_and_leaves_no_identifier(
        client, site, fast, receiver):
    """The real erasure (consent.requests) end to end: told, then nothing left behind."""
    from consent.requests import erase_subject

    add_endpoint(site["key"], url=receiver.url, categories=["analytics"])
    add_endpoint(site["key"], url=receiver.url, channels=["email.*"])
    visitor = decide(client, site["key"], "accept_all")["subject"]
    subject_id = find_subject(site_snapshot(site["key"]).id, visitor).id
    erase_subject(site["key"], subject_id, "user:1")
    db.session.rollback()
    assert db.session.get(Subject, subject_id).public_id is None
    drain()
    erased = [b for b in receiver.bodies() if b["type"] == "subject.erased"]
    assert len(erased) == 2 and {b["subject"] for b in erased} == {visitor}
    # Once acknowledged, no copy of the visitor id is left in the outbox.
    for m in messages():
        assert m.state == "delivered" and m.subject_ref is None
        assert visitor not in json.dumps(m.payload)


def test_replayed_decision_is_not_notified_twice(client, site):
    add_endpoint(site["key"], categories=["analytics"])
    body = {"client_event_id": "replay-0123456789", "subject": "replaying-visitor-01"}
    decide(client, site["key"], "accept_all", **body)
    decide(client, site["key"], "accept_all", **body)
    assert len(messages()) == 1


def test_outbox_rows_commit_or_roll_back_with_their_event(client, site):
    add_endpoint(site["key"], categories=["analytics"])
    visitor = decide(client, site["key"], "reject_all")["subject"]
    events_before, messages_before = db.session.execute(
        sa.select(sa.func.count()).select_from(ConsentEvent)).scalar(), len(messages())
    snap = site_snapshot(site["key"])

    def write_then_fail():
        append_event(snap, find_subject(snap.id, visitor), action="grant", source="api",
                     categories={"analytics": True})
        assert db.session.execute(sa.select(sa.func.count()).select_from(
            OutboxMessage)).scalar() == messages_before + 1
        raise RuntimeError("the request fails after the append")

    with pytest.raises(RuntimeError):
        run_write(write_then_fail)
    db.session.rollback()
    assert db.session.execute(sa.select(sa.func.count()).select_from(
        ConsentEvent)).scalar() == events_before
    assert len(messages()) == messages_before


def test_listener_asks_the_database_at_most_once_per_cache_period(app, client, site):
    """The hot write path reads a site's endpoints from a per-process cache."""
    from consent.outbox import invalidate_endpoint_cache

    app.config["CONSENT_WEBHOOK_CACHE_SECONDS"] = 60
    decide(client, site["key"], "accept_all")           # caches "no endpoints"
    site_id = site_snapshot(site["key"]).id
    # Another process registers an endpoint: this process does not hear of it...
    with db.engine.begin() as conn:
        conn.execute(sa.insert(outbox.DownstreamEndpoint.__table__).values(
            site_id=site_id, name="crm", url="http://127.0.0.1:9/x", categories=["*"],
            channels=[], secret="s" * 30, active=True, created_at=utcnow(),
            consecutive_failures=0))
    decide(client, site["key"], "accept_all")
    assert messages() == []                              # ...no query was made
    invalidate_endpoint_cache(site_id)                   # (or the period ends)
    decide(client, site["key"], "accept_all")
    assert len(messages()) == 1
    # Registering through the service refreshes this process's cache at once.
    add_endpoint(site["key"], categories=["analytics"])
    decide(client, site["key"], "accept_all")
    assert len(messages()) == 3


# ---------------------------------------------------------------- delivery


def test_delivery_is_signed_and_acknowledged(client, site, fast, receiver):
    endpoint, secret = add_endpoint(site["key"], url=receiver.url, categories=["analytics"])
    visitor = decide(client, site["key"], "accept_all")["subject"]
    stats = run_worker()
    assert stats["delivered"] == 1
    (headers, body), = receiver.requests
    assert headers["content-type"] == "application/json"
    # Standard Webhooks: the maintained verifier accepts the delivery as sent.
    from standardwebhooks.webhooks import Webhook

    note = Webhook(secret).verify(body, headers)
    assert headers["webhook-id"] == note["id"]
    assert headers["x-consent-attempt"] == "1"
    # A new endpoint gets only the standard headers.
    assert not {"x-consent-signature", "x-consent-timestamp", "idempotency-key"} & set(headers)
    assert note["subject"] == visitor and note["type"] == "consent.changed"
    assert note["changes"]["categories"] == {"analytics": {"from": None, "to": True}}
    msg, = messages()
    assert msg.state == "delivered" and msg.attempts == 1 and msg.acknowledged_at
    entry, = log_of(msg.id)
    assert entry.outcome == "delivered" and entry.status_code == 200
    assert entry.started_at <= entry.finished_at <= msg.acknowledged_at + timedelta(seconds=1)


def test_server_errors_are_retried_then_dead_lettered_then_retried_by_admin(
        client, site, fast):
    statuses = {"code": 503}
    receiver = Receiver(lambda n: (statuses["code"], 0))
    try:
        endpoint, _ = add_endpoint(site["key"], url=receiver.url, categories=["analytics"])
        decide(client, site["key"], "accept_all")
        drain()
        msg, = messages()
        assert msg.state == "dead" and msg.attempts == 4
        assert msg.last_error.startswith("gave up after 4 attempts: HTTP 503")
        assert [e.outcome for e in log_of(msg.id)] == ["http_error"] * 4
        keys = {h["webhook-id"] for h, _ in receiver.requests}
        attempts = [h["x-consent-attempt"] for h, _ in receiver.requests]
        assert keys == {msg.idempotency_key} and attempts == ["1", "2", "3", "4"]

        statuses["code"] = 200
        assert db.session.get(outbox.DownstreamEndpoint, endpoint).consecutive_failures == 4
        assert retry_dead(site["key"], endpoint_id=endpoint, actor="test") == 1
        msg, = messages()
        assert msg.state == "pending" and msg.attempts == 0
        # Retrying says the receiver is fixed: its pause ends, the retry goes out now.
        health = db.session.get(outbox.DownstreamEndpoint, endpoint)
        assert health.consecutive_failures == 0 and health.paused_until is None
        drain()
        msg, = messages()
        assert msg.state == "delivered"
        assert [e.outcome for e in log_of(msg.id)] == ["http_error"] * 4 + [
            "requeued", "delivered"]
        assert len(receiver.requests) == 5
    finally:
        receiver.stop()


def test_failed_attempt_waits_an_exponential_backoff(client, site, app):
    app.config.update(CONSENT_WEBHOOK_BACKOFF_BASE=60, CONSENT_WEBHOOK_BACKOFF_MAX=3600)
    receiver = Receiver(lambda n: (500, 0))
    try:
        add_endpoint(site["key"], url=receiver.url, categories=["analytics"])
        decide(client, site["key"], "accept_all")
        before = utcnow()
        run_worker()
        after = utcnow()
        msg, = messages()
        # One attempt only: the next is due between base/2 and base seconds after it ended
        # (bounded by the times read around the worker's run, however long it took).
        assert msg.state == "pending" and msg.attempts == 1 and len(receiver.requests) == 1
        assert (msg.next_attempt_at - before).total_seconds() >= 30
        assert (msg.next_attempt_at - after).total_seconds() <= 60
    finally:
        receiver.stop()
    delays = [outbox.backoff_seconds(n) for n in (1, 2, 3, 4, 5, 6, 7, 8)]
    for n, delay in enumerate(delays, start=1):
        ceiling = min(3600, 60 * 2 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(outbox.backoff_seconds(3), 6) for _ in range(20)}) > 1  # jitter
    assert outbox.backoff_seconds(1, retry_after=500) >= 500  # Retry-After is honoured


def test_an_endpoint_that_is_down_is_probed_not_hammered(client, site, app, receiver):
    from consent.outbox import DownstreamEndpoint

    app.config.update(CONSENT_WEBHOOK_BACKOFF_BASE=60)
    down = Receiver(lambda n: (503, 0))
    try:
        broken, _ = add_endpoint(site["key"], url=down.url, categories=["analytics"])
        healthy, _ = add_endpoint(site["key"], url=receiver.url, categories=["analytics"])
        for _ in range(6):
            decide(client, site["key"], "accept_all")
        started = utcnow()
        run_worker(concurrency=1)
        # One probe, not six attempts; the healthy endpoint is not held up.
        assert len(down.requests) == 1 and len(receiver.requests) == 6
        assert {m.state for m in messages(endpoint_id=healthy)} == {"delivered"}
        queue = messages(endpoint_id=broken)
        assert sum(m.attempts for m in queue) == 1
        endpoint = db.session.get(DownstreamEndpoint, broken)
        assert endpoint.consecutive_failures == 1 and endpoint.failing_since
        assert endpoint.paused_until >= started + timedelta(seconds=30)
        assert all(m.next_attempt_at >= endpoint.paused_until for m in queue)
        # Written during the pause: the new notification waits for it as well...
        later = decide(client, site["key"], "accept_all")
        fresh, = messages(event_id=later["event_id"], endpoint_id=broken)
        assert fresh.next_attempt_at >= endpoint.paused_until
        # ...and one a writer queued before it heard of the pause is deferred, not sent.
        with db.engine.begin() as conn:
            t = OutboxMessage.__table__
            conn.execute(sa.update(t).where(t.c.id == fresh.id).values(
                next_attempt_at=utcnow()))
        run_worker(concurrency=1)
        assert len(down.requests) == 1
        assert messages(event_id=later["event_id"], endpoint_id=broken)[0].next_attempt_at \
            >= endpoint.paused_until
    finally:
        down.stop()


def test_a_recovered_endpoint_is_healthy_again(client, site, fast):
    from consent.outbox import DownstreamEndpoint

    flaky = Receiver(lambda n: (503, 0) if n <= 2 else (200, 0))
    try:
        endpoint, _ = add_endpoint(site["key"], url=flaky.url, categories=["analytics"])
        for _ in range(3):
            decide(client, site["key"], "accept_all")
        drain()
        assert {m.state for m in messages()} == {"delivered"}
        db.session.rollback()
        health = db.session.get(DownstreamEndpoint, endpoint)
        assert health.consecutive_failures == 0 and health.paused_until is None
        assert len(flaky.requests) == 5
    finally:
        flaky.stop()


def test_client_errors_are_not_retried(client, site, fast):
    receiver = Receiver(lambda n: (410, 0))
    try:
        add_endpoint(site["key"], url=receiver.url, categories=["analytics"])
        decide(client, site["key"], "accept_all")
        run_worker()
        msg, = messages()
        assert msg.state == "dead" and msg.attempts == 1 and msg.last_status == 410
        assert [e.outcome for e in log_of(msg.id)] == ["rejected"]
    finally:
        receiver.stop()


@pytest.mark.parametrize("status", [408, 425, 429])
def test_timeout_too_early_and_too_many_requests_are_retried(client, site, fast, status):
    flaky = Receiver(lambda n: (status, 0) if n == 1 else (200, 0))
    try:
        add_endpoint(site["key"], url=flaky.url, categories=["analytics"])
        decide(client, site["key"], "accept_all")
        drain()
        msg, = messages()
        assert msg.state == "delivered" and len(flaky.requests) == 2
        assert [e.outcome for e in log_of(msg.id)] == ["http_error", "delivered"]
        assert log_of(msg.id)[0].status_code == status
    finally:
        flaky.stop()


def test_retry_after_of_a_receiver_sets_the_next_attempt(client, site, app):
    app.config.update(CONSENT_WEBHOOK_BACKOFF_BASE=1, CONSENT_WEBHOOK_BACKOFF_MAX=3600)
    busy = Receiver(lambda n: (429, 0, {"Retry-After": "120"}))
    try:
        add_endpoint(site["key"], url=busy.url, categories=["analytics"])
        decide(client, site["key"], "accept_all")
        before = utcnow()
        run_worker()
        msg, = messages()
        assert msg.state == "pending" and msg.last_status == 429
        # the backoff alone would be under a second; the receiver asked for 120
        assert msg.next_attempt_at >= before + timedelta(seconds=119)
    finally:
        busy.stop()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_not_followed_and_not_retried(client, site, fast, receiver, status):
    elsewhere = receiver.url
    moved = Receiver(lambda n: (status, 0, {"Location": elsewhere}))
    try:
        add_endpoint(site["key"], url=moved.url, categories=["analytics"])
        decide(client, site["key"], "accept_all")
        drain()
        msg, = messages()
        assert msg.state == "dead" and msg.attempts == 1 and msg.last_status == status
        assert [e.outcome for e in log_of(msg.id)] == ["rejected"]
        assert len(moved.requests) == 1 and receiver.requests == []  # Location not visited
    finally:
        moved.stop()


def test_hanging_and_unreachable_receivers_are_retried(client, site, fast):
    # The first request never gets an answer (until the receiver stops); later ones do.
    hanging = Receiver(lambda n: (200, 60 if n == 1 else 0))
    fast.config["CONSENT_WEBHOOK_TIMEOUT"] = 1
    try:
        add_endpoint(site["key"], url=hanging.url, categories=["analytics"])
        add_endpoint(site["key"], url="http://127.0.0.1:9/closed", categories=["analytics"])
        decide(client, site["key"], "accept_all")
        drain()
        timed_out, refused = messages()
        outcomes = [e.outcome for e in log_of(timed_out.id)]
        # timed out first, delivered in the end (a busy machine may time out once more)
        assert outcomes[0] == "timeout" and outcomes[-1] == "delivered", outcomes
        assert set(outcomes[1:-1]) <= {"timeout"}, outcomes
        assert timed_out.state == "delivered"
        assert {e.outcome for e in log_of(refused.id)} == {"network_error"}
        assert refused.state == "dead" and "ConnectionRefused" in refused.last_error
    finally:
        hanging.stop()


def test_a_trickling_receiver_cannot_outlast_the_attempt_deadline(client, site, fast):
    """Each byte comes before the read timeout; the whole answer does not."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def trickle():
        conn, _ = listener.accept()
        conn.recv(65536)
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100:
            if stop.is_set():
                break
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.1)
        conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    try:
        delivery = outbox.Delivery(message_id=0, site_id=0, endpoint_id=0,
                                   url=f"http://127.0.0.1:{listener.getsockname()[1]}/",
                                   secret="s" * 30, key="k", body=b"{}", attempt=1,
                                   lease_token="t")
        result = send(delivery, timeout=0.5)
        assert result.outcome == "timeout" and result.retryable
    finally:
        stop.set()
        listener.close()


def test_an_expired_lease_is_taken_over_and_the_late_result_ignored(client, site, fast,
                                                                   receiver, clock):
    add_endpoint(site["key"], url=receiver.url, categories=["analytics"])
    decide(client, site["key"], "accept_all")
    ghost, = claim_due(5, "ghost-worker")          # a worker that then dies
    assert claim_due(5, "another") == []            # the lease is exclusive
    msg, = messages()
    assert msg.state == "delivering" and msg.lease_owner.startswith("ghost-worker/")
    clock.advance(seconds=outbox.lease_seconds() - 10)
    assert claim_due(5, "another") == []            # not before the lease runs out
    clock.advance(seconds=11)
    assert msg.lease_until < clock.now()
    run_worker()
    msg, = messages()
    assert msg.state == "delivered" and msg.attempts == 2
    assert [e.outcome for e in log_of(msg.id)] == ["abandoned", "delivered"]
    # The ghost wakes up and reports a failure: it no longer holds the lease.
    late = outbox.SendResult("http_error", 500, "HTTP 500", utcnow(), utcnow())
    assert record_result(ghost, late) == "lease_lost"
    msg, = messages()
    assert msg.state == "delivered"
    assert "lease lost" in log_of(msg.id)[-1].error


def test_disabling_an_endpoint_dead_letters_its_queue(client, site, fast, receiver):
    from consent.errors import Conflict

    endpoint, _ = add_endpoint(site["key"], url=receiver.url, categories=["analytics"])
    decide(client, site["key"], "accept_all")
    set_endpoint_active(site["key"], endpoint, False)
    decide(client, site["key"], "accept_all")        # nobody is told any more
    msg, = messages()
    assert msg.state == "dead" and msg.last_error == "endpoint disabled"
    with pytest.raises(Conflict):
        retry_dead(site["key"], endpoint_id=endpoint)
    run_worker()
    assert receiver.requests == []
    set_endpoint_active(site["key"], endpoint, True)
    assert retry_dead(site["key"], message_id=msg.id) == 1
    run_worker()
    assert messages()[0].state == "delivered" and len(receiver.requests) == 1


def test_delivery_log_rows_tell_who_was_told_and_when(client, site, fast, receiver):
    endpoint, _ = add_endpoint(site["key"], url=receiver.url, name="CRM",
                               categories=["analytics"])
    decide(client, site["key"], "accept_all")
    decide(client, site["key"], "accept_all")
    run_worker()
    rows = list(delivery_log_rows(site_snapshot(site["key"]).id))
    assert len(rows) == 2
    row = rows[0]
    assert row["endpoint_name"] == "CRM" and row["endpoint_url"] == receiver.url
    assert row["state"] == "delivered" and row["attempts"] == 1
    assert row["acknowledged_at"].endswith("Z") and row["notification_id"].startswith("evt_")
    event_ids = {r["event_id"] for r in rows}
    assert event_ids == set(db.session.execute(db.select(ConsentEvent.event_id)).scalars())
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    assert list(delivery_log_rows(site_snapshot(site["key"]).id, since=future)) == []
    assert len(list(delivery_log_rows(site_snapshot(site["key"]).id, until=future))) == 2


def test_cli_deliver_one_shot_and_status(client, site, fast, receiver, runner):
    add_endpoint(site["key"], url=receiver.url, categories=["*"])
    decide(client, site["key"], "accept_all")
    status = runner.invoke(args=["consent", "outbox-status", "--site", site["key"]])
    assert "pending 1" in status.output
    result = runner.invoke(args=["consent", "deliver", "-v"])
    assert result.exit_code == 0, result.output
    assert "delivered 1" in result.output and "-> delivered" in result.output
    status = runner.invoke(args=["consent", "outbox-status", "--site", site["key"]])
    assert "delivered 1" in status.output and "pending 0" in status.output
    again = runner.invoke(args=["consent", "deliver"])
    assert "nothing was due" in again.output


def test_cli_add_webhook_and_retry_dead(client, site, fast, runner):
    result = runner.invoke(args=["consent", "add-webhook", site["key"],
                                 "http://127.0.0.1:9/closed", "--category", "analytics"])
    assert result.exit_code == 0 and "whsec_" in result.output
    bad = runner.invoke(args=["consent", "add-webhook", site["key"], "ftp://x",
                              "--category", "analytics"])
    assert bad.exit_code != 0 and "http(s)" in bad.output
    decide(client, site["key"], "accept_all")
    drain()
    assert messages()[0].state == "dead"
    result = runner.invoke(args=["consent", "retry-dead", site["key"]])
    assert result.exit_code == 0 and "requeued 1" in result.output
    assert messages()[0].state == "pending"
