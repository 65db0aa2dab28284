"""The example receiver (examples/webhook_receiver.py, quoted in docs/webhooks.md),
served over real HTTP and fed by the real delivery worker: it verifies with the
maintained Standard Webhooks library, handles each signed `webhook-id` once, and refuses
tampered, replayed-under-another-id, stale and unsigned notifications."""
from __future__ import annotations

import importlib.util
import io
import json
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from consent.extensions import db
from consent.outbox import (GENERIC_NETWORK_ERROR, DeliveryWorker, OutboxMessage,
                            register_endpoint)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "webhook_receiver.py"
SECRET = "whsec_" + "k" * 40
TOLERANCE = 300  # the library's: 5 minutes


def load_example():
    spec = importlib.util.spec_from_file_location("webhook_receiver_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example():
    """The example's Receiver on a loopback port, recording what it handles and every
    request it got (headers, body)."""
    module = load_example()
    handled: list[dict] = []
    raw: list[tuple[dict, bytes]] = []

    class Receiver(module.Receiver):
        secret = SECRET
        seen = module.SeenIds()

        def handle_notification(self, note):
            handled.append(note)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            raw.append((dict(self.headers), body))
            self.rfile = io.BytesIO(body)  # the example reads the body itself
            super().do_POST()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/consent"
    yield url, handled, raw
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


def signed(body: bytes, *, secret=SECRET, at=None, msg_id="evt_1_1") -> dict:
    """Headers as a Standard Webhooks sender makes them (the library's own signer)."""
    when = datetime.fromtimestamp(at if at is not None else time.time(), timezone.utc)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, when, body.decode())}


NOTE = json.dumps({"id": "evt_1_1", "type": "consent.changed", "subject": "v",
                   "changes": {}, "state": {}}).encode()


def test_the_worker_delivers_to_the_example_receiver(app, client, site, example):
    url, handled, _raw = example
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
    url, handled, _raw = example
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
    url, handled, _raw = example
    register_endpoint(site["key"], url=url, categories=["analytics"], secret=SECRET)
    client.post(f"/api/v1/sites/{site['key']}/decisions", json={"action": "accept_all"})
    app.config["ENV_NAME"] = "production"
    monkeypatch.setenv("CONSENT_WEBHOOK_ALLOW_PRIVATE", "1")
    assert DeliveryWorker(concurrency=1).run()["delivered"] == 1
    assert len(handled) == 1


def test_the_workers_delivery_replayed_under_another_id_is_refused(app, client, site,
                                                                     example):
    """Issue 15: one signed delivery re-sent with a second id ran the handler twice when
    receivers de-duplicated on an unsigned header. The id is signed now."""
    url, handled, raw = example
    register_endpoint(site["key"], url=url, categories=["analytics"], secret=SECRET)
    client.post(f"/api/v1/sites/{site['key']}/decisions", json={"action": "accept_all"})
    assert DeliveryWorker(concurrency=1).run()["delivered"] == 1
    headers, body = raw[0]
    assert body and headers["webhook-id"] == json.loads(body)["id"]
    replay = {k: v for k, v in headers.items()
              if k.lower().startswith("webhook-")}
    assert post(url, body, replay) == 204          # the same id again: not handled again
    other = {**replay, "webhook-id": replay["webhook-id"] + "9"}
    assert post(url, body, other) == 401           # another id: the signature fails
    assert len(handled) == 1


def test_valid_notification_is_handled_once(example):
    url, handled, _raw = example
    assert post(url, NOTE, signed(NOTE)) == 204
    assert post(url, NOTE, signed(NOTE)) == 204   # a retry: acknowledged, not handled again
    assert len(handled) == 1


@pytest.mark.parametrize("tamper", ["body", "signature", "timestamp", "secret", "id",
                                    "missing"])
def test_tampered_notifications_are_rejected(example, tamper):
    url, handled, _raw = example
    headers, body = signed(NOTE), NOTE
    if tamper == "body":
        body = NOTE.replace(b"consent.changed", b"consent.granted")
    elif tamper == "signature":
        sig = headers["webhook-signature"]
        headers["webhook-signature"] = sig[:-3] + ("AAA" if sig[-3:] != "AAA" else "BBB")
    elif tamper == "timestamp":
        headers["webhook-timestamp"] = str(int(headers["webhook-timestamp"]) - 1)
    elif tamper == "secret":
        headers = signed(NOTE, secret="whsec_" + "x" * 40)
    elif tamper == "id":
        headers["webhook-id"] = "evt_1_2"
    else:
        del headers["webhook-signature"]
    assert post(url, body, headers) == 401
    assert handled == []


def test_stale_and_future_timestamps_are_replays(example):
    url, handled, _raw = example
    assert post(url, NOTE, signed(NOTE, at=time.time() - TOLERANCE - 60)) == 401
    assert post(url, NOTE, signed(NOTE, at=time.time() + TOLERANCE + 60)) == 401
    assert post(url, NOTE, signed(NOTE, at=time.time() - 60)) == 204
    assert len(handled) == 1


def test_seen_ids_survive_a_restart(tmp_path):
    module = load_example()
    first = module.SeenIds(str(tmp_path / "seen.sqlite3"))
    assert first.first_time("evt_a_1") and not first.first_time("evt_a_1")
    again = module.SeenIds(str(tmp_path / "seen.sqlite3"))
    assert not again.first_time("evt_a_1") and again.first_time("evt_b_1")
