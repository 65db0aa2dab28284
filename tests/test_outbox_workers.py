"""Delivery workers as real processes (`flask consent deliver --forever`) against a flaky
loopback receiver: several at once, and one killed with SIGKILL mid-flight.

Runs on SQLite and, with CONSENT_TEST_DB=postgresql, on PostgreSQL (SKIP LOCKED).
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from consent.extensions import db
from consent.ledger import ConsentEvent
from consent.outbox import DeliveryAttempt, OutboxMessage, register_endpoint

ROOT = Path(__file__).resolve().parents[1]


def verify(secret: str, headers, body: bytes) -> bool:
    """The Standard Webhooks library's verdict on a delivery."""
    from standardwebhooks.webhooks import Webhook

    try:
        Webhook(secret).verify(body, dict(headers))
        return True
    except Exception:  # noqa: BLE001 - any refusal (bad signature, no secret) is a no
        return False


class FlakyReceiver:
    """Answers 503 to ~30% and hangs ~15% of early attempts; dedupes by webhook-id.

    A hung request is still handled once it wakes up (after the worker gave up on it), as
    a real slow receiver would; the retry is then a duplicate the dedupe absorbs.
    """

    def __init__(self, hang_seconds: float, fail_share: int = 30, hang_share: int = 15):
        self.secrets: dict[str, str] = {}
        self.hang_seconds = hang_seconds
        self.fail_share, self.hang_share = fail_share, hang_share
        self.lock = threading.Lock()
        self.handled: dict[str, dict] = {}      # idempotency key -> notification
        self.handled_twice: list[str] = []
        self.received: Counter = Counter()
        self.outcomes: Counter = Counter()
        self.hanging = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                outer.serve(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def fate(self, key: str, attempt: int) -> str:
        if attempt >= 4:
            return "ok"
        roll = int(hashlib.sha256(f"{key}:{attempt}".encode()).hexdigest()[:8], 16) % 100
        if roll < self.fail_share:
            return "fail"
        return "hang" if roll < self.fail_share + self.hang_share else "ok"

    def handle_once(self, key: str, note: dict) -> None:
        with self.lock:
            if key in self.handled:
                self.handled_twice.append(key)  # a duplicate delivery, absorbed here
                return
            self.handled[key] = note

    def serve(self, request) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        path = request.path
        ok = verify(self.secrets.get(path, "") or "whsec_", request.headers, body)
        key = request.headers.get("webhook-id", "")
        attempt = int(request.headers.get("X-Consent-Attempt", "0"))
        fate = self.fate(key, attempt) if ok else "unsigned"
        with self.lock:
            self.received[key] += 1
            self.outcomes[fate] += 1
        if fate == "unsigned":
            return self.answer(request, 401)
        if fate == "fail":
            return self.answer(request, 503)
        if fate == "hang":
            with self.lock:
                self.hanging += 1
            time.sleep(self.hang_seconds)
            self.handle_once(key, json.loads(body))
            with self.lock:
                self.hanging -= 1
            return self.answer(request, 200)
        self.handle_once(key, json.loads(body))
        self.answer(request, 200)

    @staticmethod
    def answer(request, status: int) -> None:
        try:
            request.send_response(status)
            request.send_header("Content-Length", "0")
            request.end_headers()
        except OSError:
            pass  # the worker gave up on us

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Worker:
    """`flask consent deliver --forever` in its own process group."""

    def __init__(self, database_url: str, **settings):
        env = dict(os.environ)
        env.update({"CONSENT_DATABASE_URL": database_url, "CONSENT_ENV": "testing",
                    "FLASK_APP": "app", "PYTHONUNBUFFERED": "1"})
        env.update({f"CONSENT_WEBHOOK_{k.upper()}": str(v) for k, v in settings.items()})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flask", "consent", "deliver", "--forever", "--poll", "0.05"],
            cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)

    def kill(self, sig=signal.SIGKILL) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)


@pytest.fixture
def receiver():
    r = FlakyReceiver(hang_seconds=1.0)
    yield r
    r.stop()


def setup_endpoints(site_key: str, receiver: FlakyReceiver) -> tuple[int, int]:
    crm, secret = register_endpoint(site_key, url=receiver.base + "/crm",
                                    categories=["analytics"])
    receiver.secrets["/crm"] = secret
    ads, secret = register_endpoint(site_key, url=receiver.base + "/ads",
                                    categories=["advertising"])
    receiver.secrets["/ads"] = secret
    return crm.id, ads.id


def record_changes(client, site, count: int) -> None:
    """COUNT visitors accept everything, then each withdraws analytics."""
    auth = {"Authorization": f"Bearer {site['api_key']}"}
    for _ in range(count):
        r = client.post(f"/api/v1/sites/{site['key']}/decisions", json={"action": "accept_all"})
        assert r.status_code == 201
        subject = r.get_json()["subject"]
        r = client.post(f"/api/v1/sites/{site['key']}/subjects/{subject}/events",
                        json={"action": "withdraw", "categories": {"analytics": False}},
                        headers=auth)
        assert r.status_code == 201


def expected_keys(crm: int, ads: int) -> set[str]:
    """What must reach the receiver, from the ledger alone (not from the outbox)."""
    db.session.rollback()
    keys = set()
    for event_id, action in db.session.execute(
            db.select(ConsentEvent.event_id, ConsentEvent.action)).all():
        keys.add(f"evt_{event_id}_{crm}")          # analytics changes in both events
        if action == "accept_all":
            keys.add(f"evt_{event_id}_{ads}")      # advertising only granted
    return keys


def states() -> Counter:
    db.session.rollback()
    return Counter(db.session.execute(db.select(OutboxMessage.state)).scalars())


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def assert_no_concurrent_attempts() -> None:
    """No message was ever sent by two workers (or twice by one) at the same time."""
    db.session.rollback()
    by_message: dict[int, list] = {}
    for a in db.session.execute(db.select(DeliveryAttempt).where(
            DeliveryAttempt.outcome.notin_(("abandoned", "requeued", "cancelled")))
            .order_by(DeliveryAttempt.started_at)).scalars():
        by_message.setdefault(a.message_id, []).append(a)
        assert not (a.error or "").endswith("lease lost: result not applied")
    for attempts in by_message.values():
        for earlier, later in zip(attempts, attempts[1:]):
            assert earlier.finished_at <= later.started_at, (earlier.id, later.id)
        numbers = [a.attempt for a in attempts]
        assert len(numbers) == len(set(numbers))


def test_several_workers_deliver_every_notification_exactly_once(
        app, client, site, database_url, receiver):
    crm, ads = setup_endpoints(site["key"], receiver)
    record_changes(client, site, 15)
    # (a lease far longer than an attempt's 0.5 s timeout: on a machine loaded enough to
    # hold a worker for seconds, a 3-s lease ran out under a live attempt; expired leases
    # are the next test's subject)
    settings = dict(timeout=0.5, lease_seconds=10, backoff_base=0.05, backoff_max=0.3,
                    max_attempts=30, concurrency=3)
    workers = [Worker(database_url, **settings) for _ in range(3)]
    try:
        record_changes(client, site, 15)           # while the workers run
        want = expected_keys(crm, ads)
        assert len(want) == 90
        wait_until(lambda: states().get("delivered", 0) == len(want), 120,
                   "every notification to be delivered")
    finally:
        for worker in workers:
            worker.kill(signal.SIGTERM)
    assert states() == Counter({"delivered": len(want)})
    # Exactly once after dedupe: every (event, endpoint), nothing else, none missing.
    assert set(receiver.handled) == want
    for key, note in receiver.handled.items():
        assert note["id"] == key
        endpoint_id = int(key.rsplit("_", 1)[1])
        cared = "analytics" if endpoint_id == crm else "advertising"
        assert set(note["changes"]["categories"]) == {cared}
    # The receiver really misbehaved, and retries really happened.
    assert receiver.outcomes["fail"] > 0 and receiver.outcomes["hang"] > 0
    assert receiver.outcomes["unsigned"] == 0
    assert sum(receiver.received.values()) > len(want)
    assert_no_concurrent_attempts()
    workers_seen = set(db.session.execute(db.select(DeliveryAttempt.worker)).scalars())
    assert len({w.split("/")[0] for w in workers_seen if w}) > 1  # the work was shared


def test_a_worker_killed_mid_flight_loses_nothing(app, client, site, database_url):
    receiver = FlakyReceiver(hang_seconds=3.0, fail_share=20, hang_share=40)
    try:
        crm, ads = setup_endpoints(site["key"], receiver)
        record_changes(client, site, 10)
        want = expected_keys(crm, ads)
        settings = dict(timeout=1.5, lease_seconds=4, backoff_base=0.05, backoff_max=0.3,
                        max_attempts=30, concurrency=4)
        worker = Worker(database_url, **settings)
        try:
            # Kill while the worker waits on a hanging request (its timeout is 1.5 s).
            wait_until(lambda: receiver.hanging > 0, 60, "a request in flight")
        finally:
            worker.kill(signal.SIGKILL)
        assert worker.proc.returncode == -signal.SIGKILL
        in_flight = states().get("delivering", 0)
        assert in_flight > 0                       # leases of the dead worker remain
        assert states().get("delivered", 0) < len(want)

        worker = Worker(database_url, **settings)
        try:
            wait_until(lambda: states().get("delivered", 0) == len(want), 120,
                       "every notification after the restart")
        finally:
            worker.kill(signal.SIGTERM)
        assert set(receiver.handled) == want
        db.session.rollback()
        abandoned = db.session.execute(db.select(DeliveryAttempt).where(
            DeliveryAttempt.outcome == "abandoned")).scalars().all()
        assert len(abandoned) >= in_flight
        assert_no_concurrent_attempts()
    finally:
        receiver.stop()
