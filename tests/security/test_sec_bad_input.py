"""Finding 7: hostile input is a 4xx (problem+json on JSON surfaces, the friendly page on
HTML ones), never a 500, and changes nothing recorded."""
from __future__ import annotations

import pytest

from consent.extensions import db
from consent.ledger import ConsentEvent
from tests.security.sec_fixtures import mode, mode_app, mode_client, mode_site  # noqa: F401
from tests.support.admin import make_admin, make_token, record_choice, session_csrf, sign_in  # noqa: F401
from tests.support.api import bearer

DEEP = "[" * 20000 + "]" * 20000
DEEP_OBJECT = '{"a":' * 10000 + "1" + "}" * 10000  # (under the 64 KiB body limit)
LONE = '"\\ud800"'


def _events() -> int:
    db.session.expire_all()
    return db.session.execute(db.select(db.func.count()).select_from(ConsentEvent)).scalar()


def _problem(r, *codes):
    assert r.status_code in codes, (r.status_code, r.get_data(as_text=True)[:300])
    assert r.mimetype == "application/problem+json", r.mimetype
    return r.get_json()


def test_deeply_nested_json_everywhere(mode_app, mode_client, mode_site):
    key, api = mode_site["key"], {"Authorization": f"Bearer {mode_site['api_key']}"}
    before = _events()
    for body in (DEEP, DEEP_OBJECT, '{"action":"accept_all","categories":' + DEEP + "}"):
        for url, headers in ((f"/api/v1/sites/{key}/decisions", {}),
                             # no key: the body is refused before the key check too
                             (f"/api/v1/sites/{key}/subjects/v_x/events", {}),
                             (f"/api/v1/sites/{key}/subjects/v_x/events", api),
                             (f"/api/v1/sites/{key}/webhooks/endpoints", api),
                             (f"/api/v1/sites/{key}/channel-choices", api)):
            for ctype in ("application/json", "text/plain"):
                r = mode_client.post(url, data=body, headers={**headers,
                                                              "Content-Type": ctype})
                _problem(r, 400)
    assert _events() == before


def _post_json(client, url, raw: str, headers=None):
    return client.post(url, data=raw, headers={"Content-Type": "application/json",
                                               **(headers or {})})


def test_lone_surrogates_in_text_fields(mode_app, mode_client, mode_site):
    key, api = mode_site["key"], {"Authorization": f"Bearer {mode_site['api_key']}"}
    token = bearer(make_token(["requests:write", "audit:read"]))
    visitor = record_choice(key)
    before = _events()
    cases = [
        (f"/api/v1/sites/{key}/decisions",
         '{"action":"accept_all","page_url":"https://shop.example/' + LONE[1:], {}),
        (f"/api/v1/sites/{key}/decisions", '{"action":"accept_all","locale":' + LONE + "}", {}),
        (f"/api/v1/audit/sites/{key}/requests",
         '{"kind":"access","subject":"' + visitor + '","note":' + LONE + "}", token),
        (f"/api/v1/audit/sites/{key}/requests", '{"kind":"access","user_id":' + LONE + "}",
         token),
        (f"/api/v1/sites/{key}/channel-addresses",
         '{"channel":"email","address":' + LONE + ',"user_id":"u1"}', api),
        (f"/api/v1/sites/{key}/may-i-send",
         '{"channel":"email","kind":"promotional","address":"a\\udfff@example.com"}', api),
        (f"/api/v1/sites/{key}/webhooks/endpoints",
         '{"url":"https://crm.example/h","categories":["*"],"name":' + LONE + "}", api),
        (f"/api/v1/sites/{key}/subjects/{visitor}/events",
         '{"categories":{"analytics":true},"note":' + LONE + "}", api),
        (f"/api/v1/sites/{key}/decisions", '{' + LONE + ':1}', {}),
    ]
    for url, raw, headers in cases:
        _problem(_post_json(mode_client, url, raw.replace('"https://shop.example/\\ud800"',
                                                         '"https://shop.example/\\ud800"'),
                            headers), 400)
    # A proper surrogate pair is a character, and passes.
    r = _post_json(mode_client, f"/api/v1/sites/{key}/decisions",
                   '{"action":"accept_all","page_url":"https://shop.example/\\ud83d\\ude00"}')
    assert r.status_code == 201, r.get_data(as_text=True)
    assert _events() == before + 1


@pytest.mark.parametrize("header", ["Origin", "Referer"])
@pytest.mark.parametrize("value", ["http://[::1", "https://[zz]/", "http://a:99999999/"])
def test_malformed_origin_and_referer(mode_app, mode_client, mode_site, header, value):
    key = mode_site["key"]
    before = _events()
    _problem(mode_client.post(f"/api/v1/sites/{key}/decisions", json={"action": "accept_all"},
                              headers={header: value}), 400)
    _problem(mode_client.get(f"/api/v1/sites/{key}/config", headers={header: value}), 400)
    r = mode_client.get(f"/consent.js?site={key}", headers={header: value})
    assert r.status_code == 400
    r = mode_client.get(f"/preferences?site={key}", headers={header: value,
                                                             "Accept": "text/html"})
    assert r.status_code == 400 and r.mimetype == "text/html"
    assert _events() == before


def test_deeply_nested_consent_cookie_is_ignored(mode_app, mode_client, mode_site):
    key = mode_site["key"]
    host = mode_client.base_url.split("://", 1)[1]
    # Short enough for the cookie parser to try them (<= 4096 characters).
    for value in ("[" * 2000 + "]" * 2000, "%5B" * 600 + "%5D" * 600,
                  '{"s":' * 400 + '"x"' + "}" * 400):
        mode_client.set_cookie("consent", value, domain=host)
        r = mode_client.get(f"/preferences?site={key}", headers={"Accept": "text/html"})
        assert r.status_code == 200 and r.mimetype == "text/html"
        r = mode_client.post(f"/api/v1/sites/{key}/decisions", json={"action": "reject_all"})
        assert r.status_code == 201


def test_out_of_range_dates(mode_app, mode_client, mode_site):
    key = mode_site["key"]
    token = bearer(make_token(["policies:write", "audit:read", "audit:export"]))
    for when in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
        r = mode_client.post(f"/api/v1/audit/sites/{key}/policies", headers=token,
                             json={"label": "x1", "text": "t", "effective_at": when})
        _problem(r, 400, 422)
        r = mode_client.get(f"/api/v1/audit/sites/{key}/export", headers=token,
                            query_string={"since": when})
        _problem(r, 400, 422)
    sign_in(mode_client, make_admin())
    r = mode_client.post(f"/admin/sites/{key}/policies", data={
        "label": "x2", "text": "t", "effective_at": "0001-01-01T00:00:00+14:00",
        "csrf_token": session_csrf(mode_client, f"/admin/sites/{key}/")})
    assert r.status_code in (400, 422) and r.mimetype == "text/html"


def test_deeply_nested_services_json_in_the_admin(mode_app, mode_client, mode_site):
    sign_in(mode_client, make_admin())
    r = mode_client.post(f"/admin/sites/{mode_site['key']}/categories/analytics",
                         data={"services": "[" * 5000 + "]" * 5000, "csrf_token": session_csrf(mode_client, f"/admin/sites/{mode_site['key']}/")})
    assert r.status_code == 422 and r.mimetype == "text/html"
    assert "services" in r.get_data(as_text=True)


def test_request_line_and_headers_over_the_limits_are_problem_json(mode_app, mode_client,
                                                                   mode_site):
    key = mode_site["key"]
    body = _problem(mode_client.get(f"/api/v1/sites/{key}/config?x=" + "a" * 5000), 414)
    assert body["status"] == 414
    body = _problem(mode_client.get(f"/api/v1/sites/{key}/config",
                                    headers={"X-Big": "b" * 9000}), 431)
    assert body["status"] == 431
    many = {f"X-H{i}": "c" * 7000 for i in range(6)}
    _problem(mode_client.get(f"/api/v1/sites/{key}/config", headers=many), 431)
    assert mode_client.get(f"/api/v1/sites/{key}/config").status_code == 200


def test_a_caller_without_a_key_is_refused_before_its_body_is_read(mode_app, mode_client,
                                                                   mode_site):
    """Every endpoint that takes a site's API key checks it before validating the body or
    the query: a caller without the key gets 401 and learns no field name (before, a
    well-formed body with a wrong field got 422 with the schema's messages)."""
    from consent.ratelimit import BEARER_ATTR

    key, checked = mode_site["key"], 0
    for rule in mode_app.url_map.iter_rules():
        view = mode_app.view_functions[rule.endpoint]
        if not getattr(view, BEARER_ATTR, False) or not rule.rule.startswith("/api/v1/sites/"):
            continue
        values = {a: 1 if a.endswith("_id") and "subject" not in a else "v_x"
                  for a in rule.arguments}
        values["site_key"] = key
        url = rule.build(values, append_unknown=False)[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            r = mode_client.open(url + "?bogus=1&channel=carrier-pigeon", method=method,
                                 json={"bogus": 1, "channel": "carrier-pigeon"})
            if r.status_code == 401 and "admin API token" in r.get_json().get("detail", ""):
                continue  # an admin-token view: the token was always checked first
            assert r.status_code == 401, (method, rule.rule, r.status_code, r.get_json())
            assert "bogus" not in r.get_data(as_text=True)
            checked += 1
    assert checked >= 30, checked
