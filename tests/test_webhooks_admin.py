"""The admin page of downstream webhooks: endpoints, health, delivery log, dead-letter
retries, with the admin's sign-in and scopes."""
from __future__ import annotations

import re

import pytest

from consent.extensions import db
from consent.outbox import DeliveryWorker, DownstreamEndpoint, OutboxMessage, register_endpoint
from tests.support.admin import admin_client, post_form, record_choice, session_csrf


@pytest.fixture
def fast(app):
    app.config.update(CONSENT_WEBHOOK_TIMEOUT=0.5, CONSENT_WEBHOOK_MAX_ATTEMPTS=1)
    return app


def page(client, site_key, query=""):
    r = client.get(f"/admin/sites/{site_key}/webhooks{query}")
    assert r.status_code == 200, r.get_data(as_text=True)[:500]
    return r.get_data(as_text=True)


def test_anonymous_visitors_are_sent_to_sign_in(app, site):
    r = app.test_client().get(f"/admin/sites/{site['key']}/webhooks")
    assert r.status_code == 302 and "/admin/sign-in" in r.headers["Location"]


def test_add_endpoint_shows_secret_once(admin, site):
    r = post_form(admin, f"/admin/sites/{site['key']}/webhooks",
                  {"name": "CRM", "url": "https://crm.example/hooks",
                   "categories": ["analytics", "advertising"], "channels": "email.*\nsms.*"})
    assert r.status_code == 200
    secret = re.search(r'id="secret">(whsec_[^<]+)<', r.get_data(as_text=True)).group(1)
    endpoint = db.session.execute(db.select(DownstreamEndpoint)).scalar_one()
    assert endpoint.signing_secret == secret and endpoint.name == "CRM"
    assert secret not in endpoint.secret  # stored encrypted
    assert endpoint.categories == ["advertising", "analytics"]
    assert endpoint.channels == ["email.*", "sms.*"]
    html = page(admin, site["key"])
    assert "CRM" in html and "https://crm.example/hooks" in html
    assert secret not in html


def test_bad_endpoint_form_is_refused_with_a_page(admin, site):
    for data in ({"url": "ftp://x.example/"}, {"url": "https://x.example/"},
                 {"url": "https://x.example/", "categories": ["nope"]}):
        r = post_form(admin, f"/admin/sites/{site['key']}/webhooks", data)
        assert r.status_code == 422 and r.mimetype == "text/html"
    db.session.rollback()
    assert db.session.execute(db.select(DownstreamEndpoint)).first() is None


def test_delivery_log_and_dead_letter_retry(app, admin, site, fast):
    endpoint, _ = register_endpoint(site["key"], url="http://127.0.0.1:9/closed",
                                    name="Ad platform", categories=["advertising"])
    record_choice(site["key"], "accept_all")
    DeliveryWorker(concurrency=1).run()
    db.session.rollback()
    message = db.session.execute(db.select(OutboxMessage)).scalar_one()
    assert message.state == "dead"

    html = page(admin, site["key"])
    assert "Ad platform" in html and "failing" in html and "1 dead" in html
    assert "ConnectionRefused" in html
    assert "Retry 1 dead" in html
    delivered_only = page(admin, site["key"], "?state=delivered")
    assert "No notification in state delivered" in delivered_only

    detail = admin.get(f"/admin/sites/{site['key']}/webhooks/deliveries/{message.id}")
    text = detail.get_data(as_text=True)
    assert detail.status_code == 200 and "network_error" in text
    assert message.idempotency_key in text and '"advertising": true' in text

    r = post_form(admin, f"/admin/sites/{site['key']}/webhooks/deliveries/{message.id}/retry")
    assert r.status_code == 302
    db.session.rollback()
    message = db.session.get(OutboxMessage, message.id)
    assert message.state == "pending" and message.attempts == 0
    detail = admin.get(f"/admin/sites/{site['key']}/webhooks/deliveries/{message.id}")
    assert "dead letter requeued by admin user:" in detail.get_data(as_text=True)

    r = post_form(admin, f"/admin/sites/{site['key']}/webhooks/{endpoint.id}/disable")
    assert r.status_code == 302
    db.session.rollback()
    assert db.session.get(DownstreamEndpoint, endpoint.id).active is False
    assert db.session.get(OutboxMessage, message.id).last_error == "endpoint disabled"
    assert "disabled" in page(admin, site["key"])


def test_readers_see_but_cannot_change(app, site):
    endpoint, _ = register_endpoint(site["key"], url="https://crm.example/hooks",
                                    categories=["analytics"])
    reader = admin_client(app, ("audit:read",))
    html = page(reader, site["key"])
    assert "https://crm.example/hooks" in html and "Add an endpoint" not in html
    assert "Disable" not in html
    for url in (f"/admin/sites/{site['key']}/webhooks",
                f"/admin/sites/{site['key']}/webhooks/{endpoint.id}/disable",
                f"/admin/sites/{site['key']}/webhooks/{endpoint.id}/retry"):
        # a session token of the reader's own (no form for this: it may not write)
        r = reader.post(url, data={"url": "https://evil.example/",
                                   "csrf_token": session_csrf(reader, url.split("/webhooks")[0])})
        assert r.status_code == 403, url
    db.session.rollback()
    assert db.session.get(DownstreamEndpoint, endpoint.id).active is True
    assert db.session.execute(db.select(db.func.count()).select_from(
        DownstreamEndpoint)).scalar() == 1


def test_forms_without_csrf_token_are_refused(admin, site):
    endpoint, _ = register_endpoint(site["key"], url="https://crm.example/hooks",
                                    categories=["analytics"])
    r = admin.post(f"/admin/sites/{site['key']}/webhooks/{endpoint.id}/disable")
    assert r.status_code == 403
    db.session.rollback()
    assert db.session.get(DownstreamEndpoint, endpoint.id).active is True


def test_other_sites_deliveries_are_not_found(admin, site, other_site, fast):
    register_endpoint(other_site["key"], url="http://127.0.0.1:9/x", categories=["analytics"])
    record_choice(other_site["key"], "accept_all")
    theirs = db.session.execute(db.select(OutboxMessage)).scalar_one()
    r = admin.get(f"/admin/sites/{site['key']}/webhooks/deliveries/{theirs.id}")
    assert r.status_code == 404
