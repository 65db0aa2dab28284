"""Senders and people over real HTTP: the app under gunicorn, requests as the client."""
from __future__ import annotations

import csv
import io
import re

import pytest
import requests

from tests.support.api import bearer, may_i_send
from tests.support.login import follow_http
from tests.support.servers import AppServer


@pytest.fixture
def server(database_url, site):
    app_server = AppServer(database_url, workers=2)
    yield app_server
    app_server.stop()


def api(server, site, path, **kwargs):
    headers = {**bearer(site), **kwargs.pop("headers", {})}
    method = kwargs.pop("method", "POST")
    return requests.request(method, f"{server.url}/api/v1/sites/{site['key']}{path}",
                            headers=headers, timeout=30, **kwargs)


def test_email_one_click_unsubscribe_end_to_end(server, site):
    address = "Reader@Example.test"
    r = api(server, site, "/channel-addresses",
            json={"channel": "email", "address": address, "user_id": "user-1"})
    assert r.status_code == 200
    api(server, site, "/channel-choices",
        json={"user_id": "user-1", "channels": {"email.promotional": True}})
    assert may_i_send(server.client(), site, "email", address=address)["allowed"] is True

    link = api(server, site, "/unsubscribe-links",
               json={"channel": "email", "address": address}).json()
    url = link["url"]
    assert url.startswith(server.url + "/unsubscribe/shop/")
    assert link["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    # A link scanner (or the person) opening the URL changes nothing.
    page = requests.get(url, timeout=30, allow_redirects=False)
    assert page.status_code == 200 and "List-Unsubscribe" in page.text
    assert may_i_send(server.client(), site, "email", address=address)["allowed"] is True

    # The mailbox provider's POST: no cookies, form body, must not be redirected.
    r = requests.post(url, data="List-Unsubscribe=One-Click", timeout=30,
                      allow_redirects=False,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert 200 <= r.status_code < 300
    assert "Location" not in r.headers and "Set-Cookie" not in r.headers
    answer = may_i_send(server.client(), site, "email", address=address)
    assert answer["allowed"] is False and answer["reason"] == "opted_out"
    assert may_i_send(server.client(), site, "email", user_id="user-1")["allowed"] is False
    assert may_i_send(server.client(), site, "email", "transactional", address=address)["allowed"]

    # A token altered by one character of its signature is refused and changes nothing.
    # (Not the last character: its low bits are base64 padding the decoder ignores.)
    api(server, site, "/channel-choices",
        json={"user_id": "user-1", "channels": {"email.promotional": True}})
    bad = url[:-5] + ("A" if url[-5] != "A" else "B") + url[-4:]
    r = requests.post(bad, data={"List-Unsubscribe": "One-Click"}, timeout=30,
                      allow_redirects=False)
    assert r.status_code == 400
    assert may_i_send(server.client(), site, "email", address=address)["allowed"] is True


def test_sms_stop_start_and_streamed_suppression_list(server, site):
    from consent.database import run_write
    from consent.sites import get_site

    def enable_opt_in():  # START re-subscribes where the site enables opt-in by SMS
        s = get_site(site["key"])
        s.settings = {**s.settings, "sms_keywords": {"opt_in": True}}
    run_write(enable_opt_in)
    number = "+1 555 010 9999"
    api(server, site, "/channel-choices",
        json={"address": number, "channel": "sms", "channels": {"sms.promotional": True}})
    r = api(server, site, "/sms/inbound",
            data={"From": "+15550109999", "Body": "  Opt Out ", "MessageSid": "SM1"})
    assert r.status_code == 200 and r.json()["result"] == "opted_out"
    assert may_i_send(server.client(), site, "sms", address=number)["allowed"] is False

    export = api(server, site, "/suppressions", method="GET",
                 params={"channel": "sms", "format": "csv"})
    assert export.status_code == 200
    assert export.headers["Content-Type"].startswith("text/csv")
    assert export.headers.get("Transfer-Encoding") == "chunked"  # streamed, not buffered
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert len(rows) == 1 and len(rows[0]["address_ref"]) == 64

    r = api(server, site, "/sms/inbound", data={"From": "+15550109999", "Body": "START"})
    assert r.json()["result"] == "opted_in"
    assert may_i_send(server.client(), site, "sms", address=number)["allowed"] is True
    export = api(server, site, "/suppressions", method="GET", params={"channel": "sms"})
    assert export.json()["suppressions"] == []


def test_preference_page_and_login_across_two_devices(server, site):
    phone, laptop = requests.Session(), requests.Session()
    # A form post without the CSRF token is refused.
    r = phone.post(f"{server.url}/preferences?site=shop", data={"channel": "sms.promotional"},
                   allow_redirects=False, timeout=30)
    assert r.status_code == 403

    link = api(server, site, "/login-links", json={"user_id": "user-9"}).json()
    r = follow_http(phone, link["url"])
    assert r.status_code == 200 and "You are signed in" in r.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)
    r = phone.post(f"{server.url}/preferences?site=shop", timeout=30, allow_redirects=False,
                   data={"csrf_token": token, "category": ["analytics"],
                         "channel": ["push.service"]})
    assert r.status_code == 303
    assert may_i_send(server.client(), site, "push", "service", user_id="user-9")["allowed"] is True
    assert may_i_send(server.client(), site, "push", "promotional", user_id="user-9")["allowed"] is False

    # The same link cannot be used again, on any device.
    assert laptop.get(link["url"], timeout=30).status_code == 410
    link = api(server, site, "/login-links", json={"user_id": "user-9"}).json()
    r = follow_http(laptop, link["url"])
    assert r.status_code == 200
    assert re.search(r'id="category-analytics"[^>]*checked', r.text)
    assert re.search(r'id="channel-push-service"[^>]*checked', r.text)
    assert not re.search(r'id="channel-push-promotional"[^>]*checked', r.text)
