"""The widget API: recording decisions, reading consent, bad input, CORS."""
from __future__ import annotations

import pytest

from consent.extensions import db
from consent.ledger import ConsentEvent, verify_ledger
from tests.support.api import PROBLEM
from tests.support.db import count_events


def post(client, site_key, body, **headers):
    return client.post(f"/api/v1/sites/{site_key}/decisions", json=body, headers=headers)


def test_accept_all_records_event_and_returns_consent(client, site):
    r = post(client, site["key"], {"action": "accept_all",
                                   "page_url": "https://shop.example/cart?email=a@b.c#x"},
             Origin=site["origin"])
    assert r.status_code == 201
    body = r.get_json()
    assert body["consent"]["categories"] == {"essential": True, "functional": True,
                                             "analytics": True, "advertising": True}
    assert body["consent"]["policyVersion"] == "2026-01"
    assert r.headers["Access-Control-Allow-Origin"] == site["origin"]
    ev = db.session.execute(db.select(ConsentEvent)).scalar_one()
    assert ev.action == "accept_all" and ev.source == "banner"
    from consent.ledger import EventDetails
    details = db.session.get(EventDetails, ev.event_id)
    assert details.page_url == "https://shop.example/cart"  # query string dropped
    assert details.ip_prefix == "127.0.0.0/24"  # truncated
    assert verify_ledger().ok


def recorded_ip_prefix() -> str | None:
    from consent.ledger import EventDetails

    db.session.rollback()
    event = db.session.execute(db.select(ConsentEvent).order_by(ConsentEvent.id.desc())
                               ).scalars().first()
    return db.session.get(EventDetails, event.event_id).ip_prefix


@pytest.mark.parametrize("address, stored", [
    ("2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3::/48"),
    ("2001:0db8:0000:ffff:ffff:ffff:ffff:ffff", "2001:db8::/48"),
    ("::ffff:198.51.100.23", "198.51.100.0/24"),  # IPv4 in IPv6 clothing: its /24
    ("203.0.113.200", "203.0.113.0/24"),
    ("not an address", None),
])
def test_the_address_is_kept_only_as_its_network(client, site, address, stored):
    r = client.post(f"/api/v1/sites/{site['key']}/decisions", json={"action": "reject_all"},
                    environ_base={"REMOTE_ADDR": address})
    assert r.status_code == 201
    assert recorded_ip_prefix() == stored


def test_forwarded_for_counts_only_behind_a_trusted_proxy(app, client, site, database_url):
    from consent import create_app

    spoofed = {"X-Forwarded-For": "2001:db8:aaaa:1::7"}
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    # the default: no proxy is trusted, the header is the caller's to invent
    post(client, site["key"], {"action": "reject_all"}, **spoofed)
    assert recorded_ip_prefix() == "127.0.0.0/24"
    # one trusted proxy: the address it appended (the last one) is the visitor's; what the
    # visitor wrote in front of it is not believed
    behind = create_app({"ENV_NAME": "testing", "SQLALCHEMY_DATABASE_URI": database_url,
                         "SERVER_NAME": None, "CONSENT_PROXY_FOR": 1})
    with behind.app_context():
        proxied = behind.test_client()
        r = proxied.post(f"/api/v1/sites/{site['key']}/decisions",
                         json={"action": "reject_all"},
                         headers={"X-Forwarded-For": "198.51.100.9, 2001:db8:aaaa:1::7"},
                         environ_base=proxy)
        assert r.status_code == 201
        assert recorded_ip_prefix() == "2001:db8:aaaa::/48"
        proxied.post(f"/api/v1/sites/{site['key']}/decisions", json={"action": "reject_all"},
                     environ_base=proxy)
        assert recorded_ip_prefix() == "10.0.0.0/24"  # no header: the peer's own address
        db.session.remove()


def test_reject_all_keeps_only_essential(client, site):
    r = post(client, site["key"], {"action": "reject_all"})
    cats = r.get_json()["consent"]["categories"]
    assert cats == {"essential": True, "functional": False, "analytics": False,
                    "advertising": False}


def test_custom_unticked_categories_are_refused(client, site):
    r = post(client, site["key"], {"action": "custom", "categories": {"analytics": True}})
    assert r.status_code == 201
    assert r.get_json()["consent"]["categories"] == {
        "essential": True, "functional": False, "analytics": True, "advertising": False}


def test_gpc_header_turns_advertising_off(client, site):
    r = post(client, site["key"], {"action": "accept_all"}, **{"Sec-GPC": "1"})
    consent = r.get_json()["consent"]
    assert consent["categories"]["advertising"] is False
    assert consent["categories"]["analytics"] is True
    assert consent["gpc"] is True
    ev = db.session.execute(db.select(ConsentEvent)).scalar_one()
    assert ev.meta == {"gpc": True}


def test_idempotency_key_prevents_duplicates(client, site):
    # Keys are scoped to the visitor (issue 13.3): a retry carries the same visitor id,
    # as the widget's does (it mints the id before the first send).
    body = {"action": "reject_all", "client_event_id": "retry-0123456789",
            "subject": "retrying-visitor-0001", "key": "retrying-visitor-key-0001"}
    first = post(client, site["key"], body)
    second = post(client, site["key"], body)
    assert first.status_code == 201 and second.status_code == 200
    assert second.get_json()["duplicate"] is True
    assert first.get_json()["event_id"] == second.get_json()["event_id"]
    assert count_events() == 1


def test_read_my_consent(client, site):
    answer = post(client, site["key"], {"action": "reject_all"}).get_json()
    subject, token = answer["subject"], answer["read_token"]
    r = client.get(f"/api/v1/sites/{site['key']}/me/{subject}?r={token}")
    assert r.status_code == 200
    assert r.get_json()["categories"]["analytics"] is False
    assert client.get(f"/api/v1/sites/{site['key']}/me/unknownunknown1234?r={token}"
                      ).status_code == 404


@pytest.mark.parametrize("body, pointer", [
    ({"action": "custom", "categories": {"bogus": True}}, "#/categories/bogus"),
    ({"action": "custom", "categories": {"essential": False}}, "#/categories/essential"),
    ({"action": "custom", "categories": {"analytics": "yes"}}, "#/categories/analytics/value"),
    ({"action": "maybe"}, "#/action"),
    ({}, "#/action"),
    ({"action": "accept_all", "surprise": 1}, "#/surprise"),
    ({"action": "custom"}, "#/categories"),
    ({"action": "accept_all", "policy_version": "no-such"}, "#/policy_version"),
    ({"action": "accept_all", "page_url": "javascript:alert(1)"}, "#/page_url"),
    ({"action": "accept_all", "subject": "x"}, "#/subject"),
])
def test_bad_input_is_problem_json_naming_the_field(client, site, body, pointer):
    r = post(client, site["key"], body)
    assert r.status_code == 422
    assert r.mimetype == PROBLEM
    problem = r.get_json()
    assert problem["status"] == 422
    assert pointer in [e["pointer"] for e in problem["errors"]]
    assert count_events() == 0


def test_unknown_site_is_404_naming_it(client, site):
    r = post(client, "no-such-site", {"action": "accept_all"})
    assert r.status_code == 404 and r.mimetype == PROBLEM
    assert r.get_json()["missing"] == {"site": "no-such-site"}


def test_malformed_json_is_400(client, site):
    r = client.post(f"/api/v1/sites/{site['key']}/decisions", data="{not json",
                    content_type="application/json")
    assert r.status_code == 400 and r.mimetype == PROBLEM
    assert count_events() == 0


def test_oversized_body_is_413(client, site):
    r = client.post(f"/api/v1/sites/{site['key']}/decisions", data="[" + "1," * 40000 + "1]",
                    content_type="application/json")
    assert r.status_code == 413 and r.mimetype == PROBLEM
    assert count_events() == 0


def test_foreign_origin_is_refused_and_gets_no_cors(client, site):
    r = post(client, site["key"], {"action": "accept_all"}, Origin="https://evil.example")
    assert r.status_code == 403 and r.mimetype == PROBLEM
    # the page may read why (the widget logs it); it holds no one's data
    assert r.get_json()["detail"].startswith(
        "origin https://evil.example is not allowed for site 'shop'")
    assert count_events() == 0
    pre = client.options(f"/api/v1/sites/{site['key']}/decisions",
                         headers={"Origin": "https://evil.example",
                                  "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in pre.headers


def test_preflight_allows_configured_origin(client, site):
    r = client.options(f"/api/v1/sites/{site['key']}/decisions",
                       headers={"Origin": site["origin"], "Access-Control-Request-Method": "POST",
                                "Access-Control-Request-Headers": "content-type"})
    assert r.status_code in (200, 204)
    assert r.headers["Access-Control-Allow-Origin"] == site["origin"]
    assert "Content-Type" in r.headers["Access-Control-Allow-Headers"]


def test_config_is_cacheable_and_localised(client, site):
    r = client.get(f"/api/v1/sites/{site['key']}/config?locale=de")
    assert r.status_code == 200
    cfg = r.get_json()
    assert cfg["locale"] == "de"
    assert [c["key"] for c in cfg["categories"]] == ["essential", "functional", "analytics",
                                                    "advertising"]
    assert cfg["categories"][3]["title"] == "Werbung"
    assert cfg["policy"]["version"] == "2026-01"
    assert "max-age" in r.headers["Cache-Control"]
    again = client.get(f"/api/v1/sites/{site['key']}/config?locale=de",
                       headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304


def test_html_errors_are_friendly_pages(client, site):
    r = client.get("/sites/shop/policies/none", headers={"Accept": "text/html"})
    assert r.status_code == 404
    assert r.mimetype == "text/html"
    assert b"Nothing was changed" in r.data


def test_openapi_spec_and_docs_page(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/sites/{site_key}/decisions" in spec["paths"]
    assert client.get("/api/v1/docs").status_code == 200
    assert client.get("/api/v1/docs-assets/swagger-ui-bundle.js").status_code == 200
