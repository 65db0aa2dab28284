"""Inbound SMS from real gateways, as each one documents and signs its requests.

Requests are built with the gateways' field names and methods and signed with their own
helper libraries (twilio's RequestValidator, plivo's signature_v3, vonage-http-client's
Auth), so what the server accepts is what the gateway really sends.
"""
from __future__ import annotations

import base64
import hashlib
import time
import xml.etree.ElementTree as ET
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from consent.database import run_write
from consent.extensions import db
from consent.ledger import ConsentEvent
from consent.sites import get_site, invalidate_site_cache
from consent.sms_gateways import SmsGateway

PROBLEM = "application/problem+json"
TWILIO_TOKEN = "12345678901234567890123456789012"
PLIVO_TOKEN = "MjM0NTY3ODkwMTIzNDU2Nzg5MDEy"
VONAGE_SECRET = "vonage-signature-secret-abc123"


def auth(site):
    return {"Authorization": f"Bearer {site['api_key']}"}


def register(client, site, provider, **body):
    r = client.post(f"/api/v1/sites/{site['key']}/sms/gateways",
                    json={"provider": provider, **body}, headers=auth(site))
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.get_json()


def may_send(client, site, number) -> bool:
    r = client.post(f"/api/v1/sites/{site['key']}/may-i-send",
                    json={"channel": "sms", "kind": "promotional", "address": number},
                    headers=auth(site))
    assert r.status_code == 200
    return r.get_json()["allowed"]


def opt_in(client, site, number):
    r = client.post(f"/api/v1/sites/{site['key']}/channel-choices",
                    json={"address": number, "channel": "sms",
                          "channels": {"sms.promotional": True}}, headers=auth(site))
    assert r.status_code == 200
    assert may_send(client, site, number)


def count_events() -> int:
    return db.session.execute(sa.select(sa.func.count()).select_from(ConsentEvent)).scalar()


def set_settings(site, **settings):
    def write():
        s = get_site(site["key"])
        s.settings = {**s.settings, **settings}
    run_write(write)
    invalidate_site_cache()


def path_of(url: str) -> str:
    return url.removeprefix("http://localhost")


# ---------------------------------------------------------------- Twilio


def twilio_form(number, body, sid="SM0123456789abcdef0123456789abcdef"):
    # The parameters of Twilio's incoming-message webhook (a subset of optional ones).
    return {"ToCountry": "US", "SmsMessageSid": sid, "NumMedia": "0", "ToCity": "",
            "FromZip": "", "SmsSid": sid, "FromState": "CA", "SmsStatus": "received",
            "FromCity": "", "Body": body, "FromCountry": "US", "To": "+15005550006",
            "ToZip": "", "NumSegments": "1", "MessageSid": sid,
            "AccountSid": "AC0123456789abcdef0123456789abcdef", "From": number,
            "ApiVersion": "2010-04-01"}


def twilio_post(client, url, form, token=TWILIO_TOKEN, headers=None):
    from twilio.request_validator import RequestValidator

    signature = RequestValidator(token).compute_signature(url, form)
    return client.post(path_of(url), data=form,
                       headers={"X-Twilio-Signature": signature, **(headers or {})})


def test_twilio_stop_signed_with_the_auth_token_opts_the_number_out(client, site):
    gw = register(client, site, "twilio", signing_secret=TWILIO_TOKEN)
    assert gw["signed"] is True and gw["inbound_url"].endswith("/sms/twilio/" + gw["token"])
    opt_in(client, site, "+15551230001")
    r = twilio_post(client, gw["inbound_url"], twilio_form("+15551230001", "STOP"))
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.mimetype == "text/xml"
    assert ET.fromstring(r.data).tag == "Response"  # TwiML: no reply of our own
    assert r.headers["X-Consent-Result"] == "opted_out"
    assert not may_send(client, site, "+15551230001")
    event = db.session.execute(sa.select(ConsentEvent).order_by(ConsentEvent.id.desc())
                               ).scalars().first()
    assert (event.action, event.source) == ("unsubscribe", "sms")
    assert event.meta["gateway"] == "twilio"


def test_twilio_forged_or_missing_signature_is_refused(client, site):
    gw = register(client, site, "twilio", signing_secret=TWILIO_TOKEN)
    opt_in(client, site, "+15551230002")
    before = count_events()
    form = twilio_form("+15551230002", "STOP")
    forged = twilio_post(client, gw["inbound_url"], form, token="not-the-auth-token-000000")
    assert forged.status_code == 403 and forged.mimetype == PROBLEM
    unsigned = client.post(path_of(gw["inbound_url"]), data=form)
    assert unsigned.status_code == 403
    # A signature of other parameters (the body changed in transit) fails too.
    from twilio.request_validator import RequestValidator
    sig = RequestValidator(TWILIO_TOKEN).compute_signature(
        gw["inbound_url"], twilio_form("+15551230002", "HELLO"))
    r = client.post(path_of(gw["inbound_url"]), data=form, headers={"X-Twilio-Signature": sig})
    assert r.status_code == 403
    assert count_events() == before and may_send(client, site, "+15551230002")


def test_twilio_http_basic_credentials_after_the_challenge(client, site):
    gw = register(client, site, "twilio", signing_secret=TWILIO_TOKEN)
    assert gw["basic_auth_url"] == (
        f"http://sms:{gw['token']}@localhost/api/v1/sites/shop/sms/twilio")
    bare = "http://localhost/api/v1/sites/shop/sms/twilio"
    form = twilio_form("+15551230003", "STOPALL")
    # Twilio first calls without credentials and answers the 401's Basic challenge.
    first = twilio_post(client, bare, form)
    assert first.status_code == 401
    assert first.headers["WWW-Authenticate"].startswith("Basic ")
    basic = base64.b64encode(f"sms:{gw['token']}".encode()).decode()
    r = twilio_post(client, bare, form, headers={"Authorization": f"Basic {basic}"})
    assert r.status_code == 200 and r.headers["X-Consent-Result"] == "opted_out"
    # A wrong password, or the site's API key in its place, is not the credential.
    for password in ("wrong-token", site["api_key"]):
        wrong = base64.b64encode(f"sms:{password}".encode()).decode()
        r = twilio_post(client, bare, twilio_form("+15551230004", "STOP"),
                        headers={"Authorization": f"Basic {wrong}"})
        assert r.status_code == 401


def test_twilio_signature_over_the_url_with_its_basic_credentials(client, site):
    # A gateway configured with https://sms:TOKEN@host/... may sign the URL as configured.
    gw = register(client, site, "twilio", signing_secret=TWILIO_TOKEN)
    form = twilio_form("+15551230012", "STOP")
    basic = base64.b64encode(f"sms:{gw['token']}".encode()).decode()
    from twilio.request_validator import RequestValidator

    signature = RequestValidator(TWILIO_TOKEN).compute_signature(gw["basic_auth_url"], form)
    r = client.post("/api/v1/sites/shop/sms/twilio", data=form,
                    headers={"Authorization": f"Basic {basic}", "X-Twilio-Signature": signature})
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.headers["X-Consent-Result"] == "opted_out"


def test_plivo_main_account_signature_is_accepted(client, site):
    gw = register(client, site, "plivo", signing_secret=PLIVO_TOKEN)
    form = plivo_form("14155550127", "STOP", "ma1")
    headers = plivo_headers("POST", gw["inbound_url"], form)
    headers = {"X-Plivo-Signature-Ma-V3": headers["X-Plivo-Signature-V3"],
               "X-Plivo-Signature-V3": "not-this-account",
               "X-Plivo-Signature-V3-Nonce": headers["X-Plivo-Signature-V3-Nonce"]}
    r = client.post(path_of(gw["inbound_url"]), data=form, headers=headers)
    assert r.status_code == 200 and r.headers["X-Consent-Result"] == "opted_out"


def test_gateway_routes_refuse_the_bearer_api_key_and_unknown_tokens(client, site):
    register(client, site, "twilio")
    form = twilio_form("+15551230005", "STOP")
    r = client.post("/api/v1/sites/shop/sms/twilio", data=form, headers=auth(site))
    assert r.status_code == 401 and r.mimetype == PROBLEM
    r = client.post("/api/v1/sites/shop/sms/twilio/not-the-token", data=form)
    assert r.status_code == 401
    # A gateway the site never registered answers like a wrong token.
    r = client.post("/api/v1/sites/shop/sms/plivo/not-the-token", data={"From": "1", "Text": "STOP"})
    assert r.status_code == 401
    assert count_events() == 0


def test_a_token_of_one_site_does_not_open_another(client, site, other_site):
    gw = register(client, site, "twilio")
    other = register(client, other_site, "twilio")
    r = client.post(f"/api/v1/sites/other/sms/twilio/{gw['token']}",
                    data=twilio_form("+15551230006", "STOP"))
    assert r.status_code == 401
    r = client.post(path_of(other["inbound_url"]), data=twilio_form("+15551230006", "STOP"))
    assert r.status_code == 200


@pytest.mark.parametrize("word", ["STOP", "stopall", "Stop All", "UNSUBSCRIBE", "cancel",
                                  "END", "quit", "REVOKE", "opt out", "OPTOUT", "Stop.",
                                  "ＳＴＯＰ"])
def test_every_opt_out_word_of_the_gateways(client, site, word):
    gw = register(client, site, "twilio")
    opt_in(client, site, "+15551230007")
    r = client.post(path_of(gw["inbound_url"]), data=twilio_form("+15551230007", word))
    assert r.headers["X-Consent-Result"] == "opted_out"
    assert not may_send(client, site, "+15551230007")


def test_opt_in_words_only_where_the_operator_enables_them(client, site):
    gw = register(client, site, "twilio")
    url = path_of(gw["inbound_url"])
    client.post(url, data=twilio_form("+15551230008", "STOP", sid="SM1"))
    r = client.post(url, data=twilio_form("+15551230008", "START", sid="SM2"))
    assert r.headers["X-Consent-Result"] == "ignored"
    assert not may_send(client, site, "+15551230008")
    set_settings(site, sms_keywords={"opt_in": True})
    for n, word in enumerate(("UNSTOP", "yes", "START")):
        client.post(url, data=twilio_form("+15551230008", "STOP", sid=f"SMs{n}"))
        r = client.post(url, data=twilio_form("+15551230008", word, sid=f"SMw{n}"))
        assert r.headers["X-Consent-Result"] == "opted_in", word
        assert may_send(client, site, "+15551230008")


def test_a_retried_webhook_is_one_event(client, site):
    gw = register(client, site, "twilio", signing_secret=TWILIO_TOKEN)
    form = twilio_form("+15551230009", "STOP")
    assert twilio_post(client, gw["inbound_url"], form).status_code == 200
    before = count_events()
    assert twilio_post(client, gw["inbound_url"], form).status_code == 200
    assert count_events() == before


def test_a_malformed_number_from_the_gateway_is_a_problem_naming_its_field(client, site):
    gw = register(client, site, "twilio")
    r = client.post(path_of(gw["inbound_url"]), data=twilio_form("not-a-number", "STOP"))
    assert r.status_code == 422 and r.mimetype == PROBLEM
    assert [e["pointer"] for e in r.get_json()["errors"]] == ["#/From"]
    r = client.post(path_of(gw["inbound_url"]), data={"Body": "STOP"})
    assert r.status_code == 422 and "#/From" in [e["pointer"] for e in r.get_json()["errors"]]
    assert count_events() == 0


# ---------------------------------------------------------------- Vonage


def vonage_params(number, text, message_id="0A0000000123ABCD1"):
    # Vonage SMS API inbound message fields, with the signing fields added below.
    return {"msisdn": number, "to": "447700900000", "messageId": message_id, "text": text,
            "type": "text", "keyword": text.split()[0].upper() if text.split() else "",
            "api-key": "abcd1234", "message-timestamp": "2026-11-30 12:00:00",
            "timestamp": str(int(time.time())), "nonce": "a1b2c3d4-e5f6-7890"}


def vonage_sign(params, method="sha256", secret=VONAGE_SECRET):
    from vonage_http_client import Auth

    signed = dict(params)
    signed["sig"] = Auth(api_key="abcd1234", signature_secret=secret,
                         signature_method=method).sign_params(dict(params))
    return signed


def test_vonage_get_signed_with_sha256_hmac_opts_out_with_204(client, site):
    gw = register(client, site, "vonage", signing_secret=VONAGE_SECRET,
                  signature_method="sha256")
    opt_in(client, site, "+447700900123")
    params = vonage_sign(vonage_params("447700900123", "STOP"))
    r = client.get(path_of(gw["inbound_url"]) + "?" + urlencode(params))
    assert r.status_code == 204, r.get_data(as_text=True)
    assert not may_send(client, site, "+447700900123")


def test_vonage_post_json_and_form_signed_with_md5_hmac(client, site):
    gw = register(client, site, "vonage", signing_secret=VONAGE_SECRET,
                  signature_method="md5")
    url = path_of(gw["inbound_url"])
    opt_in(client, site, "+447700900124")
    r = client.post(url, json=vonage_sign(vonage_params("447700900124", "STOP"), "md5"))
    assert r.status_code == 204 and r.headers["X-Consent-Result"] == "opted_out"
    opt_in(client, site, "+447700900125")
    r = client.post(url, data=vonage_sign(vonage_params("447700900125", "Stop All", "0B1"),
                                          "md5"))
    assert r.status_code == 204 and not may_send(client, site, "+447700900125")


def test_vonage_md5hash_signature_as_documented(client, site):
    # md5hash (Vonage's default): MD5 of "&name=value" for every sorted parameter but
    # sig (with & and = in values replaced by _), followed by the secret; lower-case hex.
    gw = register(client, site, "vonage", signing_secret=VONAGE_SECRET)
    assert gw["signature_method"] == "md5hash"
    params = vonage_params("447700900126", "STOP")
    text = "".join(f"&{k}={params[k].replace('&', '_').replace('=', '_')}"
                   for k in sorted(params))
    params["sig"] = hashlib.md5((text + VONAGE_SECRET).encode()).hexdigest()
    r = client.get(path_of(gw["inbound_url"]) + "?" + urlencode(params))
    assert r.status_code == 204 and r.headers["X-Consent-Result"] == "opted_out"


def test_vonage_forged_stale_or_unsigned_requests_are_refused(client, site):
    gw = register(client, site, "vonage", signing_secret=VONAGE_SECRET,
                  signature_method="sha256")
    url = path_of(gw["inbound_url"])
    forged = vonage_sign(vonage_params("447700900127", "STOP"), secret="another-secret-99")
    assert client.get(url + "?" + urlencode(forged)).status_code == 403
    stale = vonage_params("447700900127", "STOP")
    stale["timestamp"] = str(int(time.time()) - 3 * 86400)
    assert client.get(url + "?" + urlencode(vonage_sign(stale))).status_code == 403
    unsigned = vonage_params("447700900127", "STOP")
    assert client.get(url + "?" + urlencode(unsigned)).status_code == 403
    # Changing a signed field breaks the signature.
    tampered = vonage_sign(vonage_params("447700900128", "HELLO"))
    tampered["text"] = "STOP"
    assert client.get(url + "?" + urlencode(tampered)).status_code == 403
    assert count_events() == 0


def test_vonage_unsigned_gateway_works_with_its_token_and_binary_is_ignored(client, site):
    gw = register(client, site, "vonage")
    url = path_of(gw["inbound_url"])
    params = {"msisdn": "447700900129", "to": "447700900000", "messageId": "0C1",
              "text": "stop", "type": "text"}
    assert client.get(url + "?" + urlencode(params)).status_code == 204
    binary = {"msisdn": "447700900130", "messageId": "0C2", "type": "binary", "data": "00"}
    r = client.get(url + "?" + urlencode(binary))
    assert r.status_code == 204 and r.headers["X-Consent-Result"] == "ignored"


# ---------------------------------------------------------------- Plivo


def plivo_form(number, text, uuid="d4f5b6c8-1234-11ee-9e1d-0242ac120002"):
    return {"From": number, "To": "14155550100", "Type": "sms", "Text": text,
            "MessageUUID": uuid, "TotalRate": "0", "TotalAmount": "0", "Units": "1",
            "MessageIntent": "optout"}


def plivo_headers(method, url, params, token=PLIVO_TOKEN, nonce="12345678901234567890"):
    from plivo.utils.signature_v3 import (construct_get_url, construct_post_url,
                                          get_signature_v3)

    base = (construct_post_url(url, dict(params)) if method == "POST"
            else construct_get_url(url, dict(params)))
    sig = get_signature_v3(token.encode(), base.decode(), nonce.encode()).decode()
    return {"X-Plivo-Signature-V3": sig, "X-Plivo-Signature-V3-Nonce": nonce,
            "X-Plivo-Signature-Ma-V3": sig}


def test_plivo_post_signed_v3_opts_out_and_gets_xml(client, site):
    from plivo.utils import validate_v3_signature

    gw = register(client, site, "plivo", signing_secret=PLIVO_TOKEN)
    opt_in(client, site, "+14155550123")
    form = plivo_form("14155550123", "STOP")
    headers = plivo_headers("POST", gw["inbound_url"], form)
    # (the header is what plivo's own validator accepts)
    assert validate_v3_signature("POST", gw["inbound_url"], headers[
        "X-Plivo-Signature-V3-Nonce"], PLIVO_TOKEN, headers["X-Plivo-Signature-V3"], form)
    r = client.post(path_of(gw["inbound_url"]), data=form, headers=headers)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.mimetype == "application/xml" and ET.fromstring(r.data).tag == "Response"
    assert not may_send(client, site, "+14155550123")


def test_plivo_get_with_a_query_in_the_configured_url(client, site):
    gw = register(client, site, "plivo", signing_secret=PLIVO_TOKEN)
    params = plivo_form("14155550124", "unsubscribe", "e1")
    url = gw["inbound_url"] + "?" + urlencode(params)
    r = client.get(path_of(url), headers=plivo_headers("GET", url, {}))
    assert r.status_code == 200 and r.headers["X-Consent-Result"] == "opted_out"


def test_plivo_forged_signature_is_refused(client, site):
    gw = register(client, site, "plivo", signing_secret=PLIVO_TOKEN)
    form = plivo_form("14155550125", "STOP")
    r = client.post(path_of(gw["inbound_url"]), data=form,
                    headers=plivo_headers("POST", gw["inbound_url"], form,
                                          token="forged-auth-token-000"))
    assert r.status_code == 403 and r.mimetype == PROBLEM
    r = client.post(path_of(gw["inbound_url"]), data=form)
    assert r.status_code == 403
    assert count_events() == 0


# ---------------------------------------------------------------- keywords per locale/site


def test_chinese_replies_on_a_site_in_chinese_and_only_there(client, site):
    gw = register(client, site, "twilio")
    url = path_of(gw["inbound_url"])
    r = client.post(url, data=twilio_form("+8613800138000", "TD", sid="SMa"))
    assert r.headers["X-Consent-Result"] == "ignored"  # an English/European site
    run_write(lambda: setattr(get_site("shop"), "locales", ["zh", "en"]))
    invalidate_site_cache()
    for n, word in enumerate(("TD", "退订", "td")):
        opt_in(client, site, "+8613800138000")
        r = client.post(url, data=twilio_form("+8613800138000", word, sid=f"SMz{n}"))
        assert r.headers["X-Consent-Result"] == "opted_out", word
        assert not may_send(client, site, "+8613800138000")


def test_a_sites_own_words(client, site):
    set_settings(site, sms_keywords={"stop": ["NO MORE"], "start": ["MORE"], "opt_in": True})
    gw = register(client, site, "plivo")
    url = path_of(gw["inbound_url"])
    r = client.post(url, data=plivo_form("14155550126", "no  more", "f1"))
    assert r.headers["X-Consent-Result"] == "opted_out"
    r = client.post(url, data=plivo_form("14155550126", "More", "f2"))
    assert r.headers["X-Consent-Result"] == "opted_in"


def test_gateways_are_listed_without_secrets_and_removed(client, site):
    gw = register(client, site, "twilio", signing_secret=TWILIO_TOKEN)
    r = client.get("/api/v1/sites/shop/sms/gateways", headers=auth(site))
    assert r.get_json()["gateways"] == [{"provider": "twilio", "signed": True,
                                         "signature_method": None,
                                         "created_at": gw["created_at"]}]
    stored = db.session.execute(sa.select(SmsGateway)).scalar_one()
    assert gw["token"] not in repr(stored.__dict__) and TWILIO_TOKEN not in stored.signing_secret
    # Registering again rotates the token: the old URL stops working.
    again = register(client, site, "twilio")
    assert client.post(path_of(gw["inbound_url"]),
                       data=twilio_form("+15551230010", "STOP")).status_code == 401
    assert client.post(path_of(again["inbound_url"]),
                       data=twilio_form("+15551230010", "STOP")).status_code == 200
    r = client.delete("/api/v1/sites/shop/sms/gateways/twilio", headers=auth(site))
    assert r.status_code == 204
    assert client.post(path_of(again["inbound_url"]),
                       data=twilio_form("+15551230011", "STOP")).status_code == 401
    assert client.delete("/api/v1/sites/shop/sms/gateways/twilio",
                         headers=auth(site)).status_code == 404


@pytest.mark.parametrize("body, pointer", [
    ({"provider": "telegram"}, "#/provider"),
    ({"provider": "twilio", "signature_method": "sha256"}, "#/signature_method"),
    ({"provider": "vonage", "signature_method": "sha256"}, "#/signing_secret"),
    ({"provider": "plivo", "signing_secret": "short"}, "#/signing_secret"),
    ({"provider": "plivo", "extra": 1}, "#/extra"),
])
def test_bad_registrations_are_problems(client, site, body, pointer):
    r = client.post("/api/v1/sites/shop/sms/gateways", json=body, headers=auth(site))
    assert r.status_code == 422 and r.mimetype == PROBLEM
    assert pointer in [e["pointer"] for e in r.get_json()["errors"]]
    assert db.session.execute(sa.select(sa.func.count()).select_from(SmsGateway)).scalar() == 0


def test_td_unsubscribes_on_the_dasset_profile(client):
    # Issue 20 finding 6: policy 001 (a company in China) says to unsubscribe "via SMS
    # reply (following the SMS prompt)"; its senders prompt "回复TD退订".
    from consent.profiles import load_profile

    loaded = load_profile("device_network", site_key="dasset")
    site = {"key": "dasset", "api_key": loaded.api_key}
    gw = register(client, site, "twilio")
    for n, word in enumerate(("TD", "退订")):
        number = f"+861380013800{n}"
        assert may_send(client, site, number)  # the profile's default: commercial SMS on
        r = client.post(path_of(gw["inbound_url"]),
                        data=twilio_form(number, word, sid=f"SMd{n}"))
        assert r.headers["X-Consent-Result"] == "opted_out", word
        assert not may_send(client, site, number)


def test_the_inbound_token_in_a_path_is_kept_out_of_logs():
    from consent.logredact import redact

    line = '"POST /api/v1/sites/shop/sms/vonage/Zq8-Yy_4Tk0aBcDeFgHiJkLmNoPq?msisdn=1 HTTP/1.1"'
    assert "Zq8-Yy_4Tk0a" not in redact(line)
    # and the query of a GET callback too: the sender's number and the text
    assert "/sms/vonage/[redacted]?[redacted] HTTP/1.1" in redact(line)
