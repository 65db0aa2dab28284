"""Deliveries conform to Standard Webhooks: the maintained `standardwebhooks` library
verifies a real delivery of the worker, and endpoints registered before keep working
(their key bytes are unchanged and they get the former headers until turned off)."""
from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from consent import create_app
from consent.database import run_write
from consent.decisions import RequestContext, record_decision
from consent.extensions import db
from consent.outbox import DeliveryWorker, DownstreamEndpoint, register_endpoint
from consent.secretbox import seal, unseal
from tests.support.outbox import Receiver

DATA_KEY = "a-data-key-for-the-migration-test-0123456789"


@pytest.fixture
def receiver(monkeypatch):
    monkeypatch.setenv("CONSENT_WEBHOOK_ALLOW_HTTP", "1")
    monkeypatch.setenv("CONSENT_WEBHOOK_ALLOW_PRIVATE", "1")
    r = Receiver()
    yield r
    r.stop()


def decide(site_key: str, action: str = "accept_all") -> str:
    return record_decision(site_key, {"action": action},
                           RequestContext(ip="203.0.113.9", user_agent="UA", gpc_header=False)
                           ).subject_public_id


def old_scheme_ok(raw_secret: str, headers: dict, body: bytes) -> bool:
    """What receivers of the former scheme computed: hex HMAC-SHA256 keyed with the
    secret's text over "<X-Consent-Timestamp>." + body."""
    mac = hmac.new(raw_secret.encode(), headers["x-consent-timestamp"].encode() + b"." + body,
                   hashlib.sha256).hexdigest()
    return hmac.compare_digest("v1=" + mac, headers["x-consent-signature"])


def test_a_real_delivery_verifies_with_the_standardwebhooks_library(app, site, receiver):
    endpoint, secret = register_endpoint(site["key"], url=receiver.url, categories=["*"])
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    visitor = decide(site["key"])
    assert DeliveryWorker(concurrency=1).run()["delivered"] == 1
    (headers, body), = receiver.requests
    note = Webhook(secret).verify(body, headers)
    assert note["subject"] == visitor and note["type"] == "consent.changed"
    # The signed id is the notification id: the same on every attempt.
    assert headers["webhook-id"] == note["id"] == f"evt_{note['event']['id']}_{endpoint.id}"
    assert "." not in headers["webhook-id"]
    assert note["timestamp"] == note["event"]["recorded_at"]
    # Signed by another secret, or with the id changed, the library refuses it.
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"o" * 32).decode()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**headers, "webhook-id": headers["webhook-id"] + "0"})


def test_an_endpoint_from_before_keeps_its_key_and_gets_both_header_sets(tmp_path,
                                                                       monkeypatch):
    """Upgrade an installation whose endpoint has a secret of the former kind: its
    receiver's old check still passes, the Standard Webhooks form of the same secret
    verifies the new headers, and turning legacy headers off leaves only the new ones."""
    from flask_migrate import upgrade

    from consent.sites import create_api_key, create_site, invalidate_site_cache

    monkeypatch.setenv("CONSENT_WEBHOOK_ALLOW_HTTP", "1")
    monkeypatch.setenv("CONSENT_WEBHOOK_ALLOW_PRIVATE", "1")
    old_secret = "whsec_Ab-cd_EF0123456789ghijklmnopqrstuvwxyz01"  # token_urlsafe style
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    app = create_app({"ENV_NAME": "testing", "SQLALCHEMY_DATABASE_URI": url,
                      "CONSENT_DATA_KEY": DATA_KEY, "SERVER_NAME": None})
    invalidate_site_cache()
    receiver = Receiver()
    try:
        with app.app_context():
            upgrade(revision="security_0001")
            upgrade(revision="tlog_0002")
            site_id, api_key = run_write(lambda: (lambda s: (s.id, create_api_key(s)))(
                create_site("old", "Old site", allowed_origins=[])))
            with db.engine.begin() as conn:
                conn.execute(sa.text(
                    "INSERT INTO webhook_endpoints (site_id, name, url, categories, channels, "
                    "secret, active, created_at, consecutive_failures) VALUES (:s, 'crm', "
                    ":u, '[\"*\"]', '[]', :secret, 1, '2026-01-01 00:00:00', 0)"),
                    {"s": site_id, "u": receiver.url,
                     "secret": seal(old_secret, "webhook-secret")})
            db.session.remove()
            upgrade(revision="heads")
            endpoint = db.session.execute(sa.select(DownstreamEndpoint)).scalar_one()
            assert endpoint.legacy_headers is True
            standard = unseal(endpoint.secret, "webhook-secret")
            assert standard == "whsec_" + base64.b64encode(old_secret.encode()).decode()

            decide("old")
            assert DeliveryWorker(concurrency=1).run()["delivered"] == 1
            headers, body = receiver.requests[-1]
            assert old_scheme_ok(old_secret, headers, body)
            assert headers["idempotency-key"] == headers["webhook-id"]
            assert Webhook(standard).verify(body, headers)["id"] == headers["webhook-id"]

            client = app.test_client()
            r = client.patch(f"/api/v1/sites/old/webhooks/endpoints/{endpoint.id}",
                             json={"legacy_headers": False},
                             headers={"Authorization": f"Bearer {api_key}"})
            assert r.status_code == 200 and r.get_json()["legacy_headers"] is False
            decide("old", "reject_all")
            assert DeliveryWorker(concurrency=1).run()["delivered"] == 1
            headers, body = receiver.requests[-1]
            assert "x-consent-signature" not in headers and "idempotency-key" not in headers
            assert Webhook(standard).verify(body, headers)["state"]["categories"]
            db.session.remove()
            db.engine.dispose()
    finally:
        receiver.stop()
        invalidate_site_cache()


@pytest.mark.parametrize("body", [{"legacy_headers": "no"}, {}, {"legacy_headers": False,
                                                                 "url": "https://x.test"}])
def test_patching_an_endpoint_validates(client, site, body):
    endpoint, _ = register_endpoint(site["key"], url="https://crm.example/h", categories=["*"])
    r = client.patch(f"/api/v1/sites/shop/webhooks/endpoints/{endpoint.id}", json=body,
                     headers={"Authorization": f"Bearer {site['api_key']}"})
    assert r.status_code == 422 and r.mimetype == "application/problem+json"
    r = client.patch("/api/v1/sites/shop/webhooks/endpoints/999", json={"legacy_headers": False},
                     headers={"Authorization": f"Bearer {site['api_key']}"})
    assert r.status_code == 404


def test_legacy_headers_from_the_command_line(runner, site):
    endpoint, _ = register_endpoint(site["key"], url="https://crm.example/h", categories=["*"])
    run_write(lambda: setattr(db.session.get(DownstreamEndpoint, endpoint.id),
                              "legacy_headers", True))
    result = runner.invoke(args=["consent", "webhook-legacy-headers", "shop", str(endpoint.id)])
    assert result.exit_code == 0 and "legacy headers off" in result.output
    db.session.expire_all()
    assert db.session.get(DownstreamEndpoint, endpoint.id).legacy_headers is False
    result = runner.invoke(args=["consent", "webhook-legacy-headers", "shop", "999"])
    assert result.exit_code != 0 and "Traceback" not in result.output
