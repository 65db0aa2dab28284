"""The webhooks API: site-key auth, registering and disabling endpoints, the delivery
log, retrying dead letters, and clear 4xx answers for bad input."""
from __future__ import annotations

import base64

import pytest

from consent.extensions import db
from consent.outbox import DeliveryWorker, OutboxMessage
from tests.support.api import PROBLEM, bearer


def base(site):
    return f"/api/v1/sites/{site['key']}/webhooks"


def register(client, site, **body):
    body.setdefault("url", "http://127.0.0.1:9/hook")
    body.setdefault("categories", ["analytics"])
    return client.post(f"{base(site)}/endpoints", json=body, headers=bearer(site))


def endpoint_count() -> int:
    from consent.outbox import DownstreamEndpoint

    db.session.rollback()
    return db.session.execute(db.select(db.func.count()).select_from(DownstreamEndpoint)).scalar()


@pytest.fixture
def fast(app):
    app.config.update(CONSENT_WEBHOOK_TIMEOUT=0.5, CONSENT_WEBHOOK_BACKOFF_BASE=0.01,
                      CONSENT_WEBHOOK_BACKOFF_MAX=0.02, CONSENT_WEBHOOK_MAX_ATTEMPTS=2)
    return app


def deliver_all():
    for _ in range(50):
        DeliveryWorker(concurrency=2, poll_seconds=0.05).run()
        db.session.rollback()
        if not db.session.execute(db.select(OutboxMessage).where(
                OutboxMessage.state.in_(("pending", "delivering")))).first():
            return
    raise AssertionError("messages still pending")


def test_register_shows_the_secret_once(client, site):
    r = register(client, site, name="CRM", categories=["analytics", "advertising"],
                 channels=["email.*"])
    assert r.status_code == 201, r.get_data(as_text=True)
    created = r.get_json()
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 30
    assert created["name"] == "CRM" and created["active"] is True
    assert created["categories"] == ["advertising", "analytics"]
    assert created["channels"] == ["email.*"]
    assert created["deliveries"] == {"pending": 0, "delivering": 0, "delivered": 0, "dead": 0}

    listed = client.get(f"{base(site)}/endpoints", headers=bearer(site)).get_json()
    assert [e["id"] for e in listed] == [created["id"]]
    assert "secret" not in listed[0] and created["secret"] not in str(listed)
    assert listed[0]["secret_hint"] == created["secret"][:10] + "…"
    one = client.get(f"{base(site)}/endpoints/{created['id']}", headers=bearer(site))
    assert one.status_code == 200 and "secret" not in one.get_json()


def test_own_secret_is_accepted_when_long_enough(client, site):
    # Text of one's own becomes the Standard Webhooks form of the same key bytes.
    r = register(client, site, secret="x" * 32)
    assert r.status_code == 201
    assert r.get_json()["secret"] == "whsec_" + base64.b64encode(b"x" * 32).decode()
    # A Standard Webhooks secret (whsec_ + base64 of 24-64 bytes) is kept as given.
    own = "whsec_" + base64.b64encode(bytes(range(40))).decode()
    r = register(client, site, secret=own)
    assert r.status_code == 201 and r.get_json()["secret"] == own
    assert r.get_json()["legacy_headers"] is False
    r = register(client, site, secret="short")
    assert r.status_code == 422 and r.mimetype == PROBLEM
    assert r.get_json()["errors"][0]["pointer"] == "#/secret"


@pytest.mark.parametrize("body, pointer", [
    ({"url": "ftp://example.com/x"}, "#/url"),
    ({"url": "not a url"}, "#/url"),
    ({"url": "http://user:pw@example.com/x"}, "#/url"),
    ({"categories": ["nope"]}, "#/categories"),
    ({"categories": [], "channels": []}, "#/categories"),
    ({"categories": "analytics"}, "#/categories"),
    ({"channels": ["email promotional"], "categories": []}, "#/channels"),
    ({"colour": "blue"}, "#/colour"),
])
def test_bad_endpoints_are_refused_by_field(client, site, body, pointer):
    r = register(client, site, **body)
    assert r.status_code == 422, r.get_data(as_text=True)
    assert r.mimetype == PROBLEM
    assert pointer in [e["pointer"] for e in r.get_json()["errors"]]
    assert endpoint_count() == 0


def test_missing_url_and_bad_json(client, site):
    r = client.post(f"{base(site)}/endpoints", json={"categories": ["analytics"]},
                    headers=bearer(site))
    assert r.status_code == 422 and r.get_json()["errors"][0]["pointer"] == "#/url"
    r = client.post(f"{base(site)}/endpoints", data="{not json",
                    headers={**bearer(site), "Content-Type": "application/json"})
    assert 400 <= r.status_code < 500 and r.mimetype == PROBLEM
    assert endpoint_count() == 0


def test_every_route_needs_this_sites_key(client, site, other_site):
    created = register(client, site).get_json()
    routes = [
        ("get", f"{base(site)}/endpoints"),
        ("post", f"{base(site)}/endpoints"),
        ("get", f"{base(site)}/endpoints/{created['id']}"),
        ("post", f"{base(site)}/endpoints/{created['id']}/disable"),
        ("post", f"{base(site)}/endpoints/{created['id']}/enable"),
        ("post", f"{base(site)}/endpoints/{created['id']}/retry"),
        ("get", f"{base(site)}/deliveries"),
        ("get", f"{base(site)}/deliveries/1"),
        ("post", f"{base(site)}/deliveries/1/retry"),
    ]
    for method, url in routes:
        kwargs = {"json": {"url": "http://127.0.0.1:9/x", "categories": ["analytics"]}} \
            if method == "post" else {}
        anonymous = getattr(client, method)(url, **kwargs)
        assert anonymous.status_code == 401, url
        wrong = getattr(client, method)(url, headers=bearer(other_site), **kwargs)
        assert wrong.status_code == 403, url
    assert endpoint_count() == 1
    # Another site's endpoint is invisible through this site's URL.
    theirs = register(client, other_site).get_json()
    r = client.get(f"{base(site)}/endpoints/{theirs['id']}", headers=bearer(site))
    assert r.status_code == 404
    r = client.post(f"{base(site)}/endpoints/{theirs['id']}/disable", headers=bearer(site))
    assert r.status_code == 404


def test_disable_stops_notifications_and_enable_resumes(client, site):
    created = register(client, site).get_json()
    r = client.post(f"{base(site)}/endpoints/{created['id']}/disable", headers=bearer(site))
    assert r.status_code == 200 and r.get_json()["active"] is False
    assert r.get_json()["disabled_at"]
    client.post(f"/api/v1/sites/{site['key']}/decisions", json={"action": "accept_all"})
    assert client.get(f"{base(site)}/deliveries", headers=bearer(site)).get_json()[
        "deliveries"] == []
    r = client.post(f"{base(site)}/endpoints/{created['id']}/enable", headers=bearer(site))
    assert r.get_json()["active"] is True and r.get_json()["disabled_at"] is None
    client.post(f"/api/v1/sites/{site['key']}/decisions", json={"action": "accept_all"})
    log = client.get(f"{base(site)}/deliveries", headers=bearer(site)).get_json()["deliveries"]
    assert len(log) == 1 and log[0]["state"] == "pending"


def test_delivery_log_and_dead_letter_retry(client, site, fast):
    created = register(client, site, url="http://127.0.0.1:9/closed").get_json()
    for _ in range(3):
        client.post(f"/api/v1/sites/{site['key']}/decisions", json={"action": "accept_all"})
    deliver_all()
    r = client.get(f"{base(site)}/deliveries", headers=bearer(site))
    assert r.status_code == 200
    log = r.get_json()["deliveries"]
    assert len(log) == 3 and {d["state"] for d in log} == {"dead"}
    assert log[0]["id"] > log[1]["id"] > log[2]["id"]          # newest first
    assert log[0]["attempts"] == 2 and "gave up after 2 attempts" in log[0]["last_error"]
    assert log[0]["endpoint_id"] == created["id"] and log[0]["type"] == "consent.changed"

    page = client.get(f"{base(site)}/deliveries?limit=2", headers=bearer(site)).get_json()
    assert len(page["deliveries"]) == 2 and page["next_before"] == log[1]["id"]
    rest = client.get(f"{base(site)}/deliveries?limit=2&before={page['next_before']}",
                      headers=bearer(site)).get_json()
    assert [d["id"] for d in rest["deliveries"]] == [log[2]["id"]]
    assert rest["next_before"] is None
    only = client.get(f"{base(site)}/deliveries?event={log[1]['event_id']}",
                      headers=bearer(site)).get_json()["deliveries"]
    assert [d["id"] for d in only] == [log[1]["id"]]
    assert client.get(f"{base(site)}/deliveries?state=delivered",
                      headers=bearer(site)).get_json()["deliveries"] == []

    detail = client.get(f"{base(site)}/deliveries/{log[0]['id']}", headers=bearer(site))
    assert detail.status_code == 200
    body = detail.get_json()
    assert [a["outcome"] for a in body["log"]] == ["network_error", "network_error"]
    assert body["payload"]["changes"]["categories"]["analytics"]["to"] is True

    one = client.post(f"{base(site)}/deliveries/{log[0]['id']}/retry", headers=bearer(site))
    assert one.status_code == 200 and one.get_json() == {"requeued": 1}
    again = client.post(f"{base(site)}/deliveries/{log[0]['id']}/retry", headers=bearer(site))
    assert again.status_code == 409 and again.mimetype == PROBLEM
    rest = client.post(f"{base(site)}/endpoints/{created['id']}/retry", headers=bearer(site))
    assert rest.get_json() == {"requeued": 2}
    states = {d["state"] for d in client.get(f"{base(site)}/deliveries",
                                             headers=bearer(site)).get_json()["deliveries"]}
    assert states == {"pending"}
    detail = client.get(f"{base(site)}/deliveries/{log[0]['id']}", headers=bearer(site))
    assert detail.get_json()["log"][-1]["outcome"] == "requeued"
    assert detail.get_json()["next_attempt_at"]


@pytest.mark.parametrize("query", ["state=lost", "limit=0", "limit=501", "endpoint=x",
                                   "event=nothex"])
def test_bad_log_queries_are_refused(client, site, query):
    r = client.get(f"{base(site)}/deliveries?{query}", headers=bearer(site))
    assert r.status_code == 422 and r.mimetype == PROBLEM
    assert r.get_json()["errors"]


def test_unknown_delivery_and_endpoint_are_404(client, site):
    for url in (f"{base(site)}/deliveries/999", f"{base(site)}/endpoints/999",
                f"{base(site)}/deliveries/abc"):
        r = client.get(url, headers=bearer(site))
        assert r.status_code == 404 and r.mimetype == PROBLEM
    r = client.post(f"{base(site)}/deliveries/999/retry", headers=bearer(site))
    assert r.status_code == 404


def test_routes_are_in_the_openapi_spec(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    paths = spec["paths"]
    assert "/api/v1/sites/{site_key}/webhooks/endpoints" in paths
    assert "/api/v1/sites/{site_key}/webhooks/deliveries/{message_id}/retry" in paths
    post = paths["/api/v1/sites/{site_key}/webhooks/endpoints"]["post"]
    assert post["security"] == [{"siteApiKey": []}]


def test_production_refuses_receivers_on_internal_addresses(app, client, site, monkeypatch):
    """A site API key must not turn the server into a proxy into its own network."""
    monkeypatch.delenv("CONSENT_WEBHOOK_ALLOW_PRIVATE", raising=False)
    monkeypatch.setenv("CONSENT_WEBHOOK_ALLOW_HTTP", "1")
    app.config["ENV_NAME"] = "production"
    headers = {"Authorization": f"Bearer {site['api_key']}"}
    url = f"/api/v1/sites/{site['key']}/webhooks/endpoints"
    for target in ("http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "http://[::1]/hook",
                   "http://169.254.169.254/latest", "http://localhost:8080/x"):
        r = client.post(url, json={"url": target, "categories": ["analytics"]}, headers=headers)
        assert r.status_code == 422, (target, r.get_data(as_text=True))
        assert r.get_json()["errors"][0]["pointer"] == "#/url"
    monkeypatch.setenv("CONSENT_WEBHOOK_ALLOW_PRIVATE", "1")
    r = client.post(url, json={"url": "http://127.0.0.1:9/hook", "categories": ["analytics"]},
                    headers=headers)
    assert r.status_code == 201, r.get_data(as_text=True)
