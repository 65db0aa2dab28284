"""The example receiver (examples/webhook_receiver.py, quoted in the README), served over
real HTTP and fed by the real delivery worker: valid notifications are handled once,
tampered, stale and unsigned ones are refused."""
from __future__ import annotations

import importlib.util
import json
import threading
import time
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from consent.extensions import db
from consent.outbox import (GENERIC_NETWORK_ERROR, DeliveryWorker, OutboxMessage,
                            register_endpoint, sign)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "webhook_receiver.py"
SECRET = "whsec_" + "k" * 40


def load_example():
    spec = importlib.util.spec_from_file_location("webhook_receiver_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example():
    """The example's Receiver on a loopback port, recording what it handles."""
    module = load_example()
    handled: list[dict] = []

    class Receiver(module.Receiver):
        secret = SECRET
        seen: set = set()

        def handle_notification(self, note):
            handled.append(note)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/consent", handled
    server.shutdown()
    server.server_close()


def post(url, body: bytes, headers: dict) -> int:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def signed(body: bytes, *, secret=SECRET, at=None, key="evt_1_1") -> dict:
    timestamp = str(int(at if at is not None else time.time()))
    return {"X-Consent-Timestamp": timestamp, "X-Consent-Signature": sign(secret, timestamp, body),
            "Idempotency-Key": key}


NOTE = json.dumps({"id": "evt_1_1", "type": "consent.changed", "subject": "v",
                   "changes": {}, "state": {}}).encode()


def test_the_worker_delivers_to_the_example_receiver(app, client, site, example):
    url, handled = example
    register_endpoint(site["key"], url=url, categories=["analytics"], secret=SECRET)
    subject = client.post(f"/api/v1/sites/{site['key']}/decisions",
                          json={"action": "accept_all"}).get_json()["subject"]
    stats = DeliveryWorker(concurrency=1).run()
    assert stats["delivered"] == 1
    assert len(handled) == 1 and handled[0]["subject"] == subject
    db.session.rollback()
    assert db.session.execute(db.select(OutboxMessage.state)).scalar_one() == "delivered"


def test_production_worker_does_not_contact_a_receiver_that_now_resolves_internal(
        app, client, site, example, monkeypatch, caplog):
    """The address is checked again when the worker connects, not only when the endpoint
    was registered: a name that later resolves to an internal address (DNS rebinding) is
    not contacted, and the attempt is logged with the reason."""
    url, handled = example
    register_endpoint(site["key"], url=url, categories=["analytics"], secret=SECRET)
    client.post(f"/api/v1/sites/{site['key']}/decisions", json={"action": "accept_all"})
    app.config["ENV_NAME"] = "production"
    monkeypatch.delenv("CONSENT_WEBHOOK_ALLOW_PRIVATE", raising=False)
    stats = DeliveryWorker(concurrency=1).run()
    assert stats["delivered"] == 0 and stats["network_error"] == 1
    assert handled == []
    db.session.rollback()
    message = db.session.execute(db.select(OutboxMessage)).scalar_one()
    assert message.state != "delivered"
    # The delivery log's text is generic in production; the reason is in the server log.
    assert message.last_error == GENERIC_NETWORK_ERROR
    assert "resolves to 127.0.0.1, not a public address" in caplog.text


def test_production_worker_delivers_to_internal_receivers_when_allowed(
        app, client, site, example, monkeypatch):
    url, handled = example
    register_endpoint(site["key"], url=url, categories=["analytics"], secret=SECRET)
    client.post(f"/api/v1/sites/{site['key']}/decisions", json={"action": "accept_all"})
    app.config["ENV_NAME"] = "production"
    monkeypatch.setenv("CONSENT_WEBHOOK_ALLOW_PRIVATE", "1")
    assert DeliveryWorker(concurrency=1).run()["delivered"] == 1
    assert len(handled) == 1


def test_valid_notification_is_handled_once(example):
    url, handled = example
    assert post(url, NOTE, signed(NOTE)) == 204
    assert post(url, NOTE, signed(NOTE)) == 204   # a retry: acknowledged, not handled again
    assert len(handled) == 1


@pytest.mark.parametrize("tamper", ["body", "signature", "timestamp", "secret", "missing"])
def test_tampered_notifications_are_rejected(example, tamper):
    url, handled = example
    headers, body = signed(NOTE), NOTE
    if tamper == "body":
        body = NOTE.replace(b"consent.changed", b"consent.granted")
    elif tamper == "signature":
        sig = headers["X-Consent-Signature"]
        headers["X-Consent-Signature"] = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    elif tamper == "timestamp":
        headers["X-Consent-Timestamp"] = str(int(headers["X-Consent-Timestamp"]) - 1)
    elif tamper == "secret":
        headers = signed(NOTE, secret="whsec_" + "x" * 40)
    else:
        del headers["X-Consent-Signature"]
    assert post(url, body, headers) == 401
    assert handled == []


def test_stale_and_future_timestamps_are_replays(example):
    url, handled = example
    module = load_example()
    assert post(url, NOTE, signed(NOTE, at=time.time() - module.TOLERANCE - 60)) == 401
    assert post(url, NOTE, signed(NOTE, at=time.time() + module.TOLERANCE + 60)) == 401
    assert post(url, NOTE, signed(NOTE, at=time.time() - 60)) == 204
    assert len(handled) == 1


def test_verify_matches_the_sender(example):
    module = load_example()
    now = time.time()
    headers = signed(NOTE, at=now)
    assert module.verify(SECRET, headers["X-Consent-Timestamp"],
                         headers["X-Consent-Signature"], NOTE, now=now)
    assert not module.verify(SECRET, "not-a-number", headers["X-Consent-Signature"], NOTE)
