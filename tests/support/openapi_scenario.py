"""Every documented operation called for real, successfully and with a mistake, through
schemathesis against the served OpenAPI document.

Used by tests/test_openapi_conformance.py (every answer must match what the document
says for its status and content type) and, with `--write`, to record the examples the
document shows (consent/apidoc_examples.json):

    .venv/bin/python -m tests.support.openapi_scenario --write
"""
from __future__ import annotations

import base64
import json
import sys
from dataclasses import dataclass, field
from typing import Any, Generator

V1 = "/api/v1"
SITES = V1 + "/sites/{site_key}"
AUDIT = V1 + "/audit/sites/{site_key}"
ABSENT = object()
VISITOR = "n_5AOhkjqg-BRg6duVgRz"  # a visitor the widget recorded before the scenario
VISITOR_KEY = "k7Qe2c3vYp1xN0aLr8sTuw"  # the device key its widget minted with it
# A visitor whose widget records its first choice in the scenario (id and key as minted).
NEWCOMER, NEWCOMER_KEY = "Vq3T0bYx8LmN2cRw5ZsA1", "Hd8sK2mQ9vXc4TzR7bWnLe"
MINOR, MINOR_KEY = "Gd7uR2pLx9KmWq4ZtB8sY", "Mn3bV8cX2zL5kJ9hG4fD7s"
DASSET_ORIGIN = "https://www.dasset.example"


@dataclass
class Call:
    """One request of the scenario and the status it must get."""

    method: str
    path: str
    expect: int
    params: dict = field(default_factory=dict)
    query: dict | None = None
    body: Any = ABSENT
    media_type: str | None = None
    headers: dict = field(default_factory=dict)
    record: bool = True  # whether this exchange may serve as the documented example

    @property
    def operation(self) -> str:
        return f"{self.method} {self.path}"


def scenario(site: dict, dasset: dict, admin: str) -> Generator[Call, Any, None]:
    """The calls, in order; each receives the previous response (to pick up ids)."""
    key = {"Authorization": f"Bearer {site['api_key']}"}
    other = {"Authorization": f"Bearer {dasset['api_key']}"}
    token = {"Authorization": f"Bearer {admin}"}
    shop = {"site_key": site["key"]}
    nope = {"site_key": "nope"}
    visitor = VISITOR

    # ------------------------------------------------------------ the widget
    page = {"Origin": site.get("origin", "https://shop.example")}
    r = yield Call("GET", SITES + "/config", 200, shop, {"locale": "de", "details": "1"},
                   headers=page)
    yield Call("GET", SITES + "/config", 304, shop, {"locale": "de", "details": "1"},
               headers={**page, "If-None-Match": _header(r, "ETag")})
    yield Call("GET", SITES + "/config", 404, nope, headers=page)
    yield Call("GET", SITES + "/config", 422, shop, {"locale": "x"}, headers=page)
    choice = {"subject": NEWCOMER, "key": NEWCOMER_KEY, "action": "custom",
              "categories": {"analytics": True, "advertising": False},
              "client_event_id": "c9a1f0e2-scenario-1", "source": "preferences",
              "locale": "de", "page_url": "https://shop.example/products?id=7",
              "revision": r.json()["revision"]}
    r = yield Call("POST", SITES + "/decisions", 201, shop, body=choice, headers=page)
    me = {**shop, "subject_id": NEWCOMER}
    read, choice_event = r.json()["read_token"], r.json()["event_id"]
    yield Call("POST", SITES + "/decisions", 200, shop, body=choice, headers=page)
    yield Call("POST", SITES + "/decisions", 403, shop, headers=page,
               body={**choice, "key": "a-key-this-browser-never-held", "client_event_id":
                     "c9a1f0e2-scenario-2"})
    yield Call("POST", SITES + "/decisions", 403, shop,
               headers={"Origin": "https://elsewhere.example"},
               body={**choice, "client_event_id": "c9a1f0e2-scenario-3"})
    yield Call("POST", SITES + "/decisions", 422, shop, headers=page,
               body={**choice, "action": "maybe"})
    r = yield Call("GET", SITES + "/me/{subject_id}", 200, me, {"r": read}, headers=page)
    yield Call("GET", SITES + "/me/{subject_id}", 304, me, {"r": read},
               headers={**page, "If-None-Match": _header(r, "ETag")})
    yield Call("GET", SITES + "/me/{subject_id}", 404, me, headers=page)
    yield Call("GET", SITES + "/me/{subject_id}", 422, me, {"r": "not a token"}, headers=page)

    # ------------------------------------------------------------ consent of a person
    r = yield Call("POST", SITES + "/subjects/{subject_id}/events", 201,
                   {**shop, "subject_id": visitor}, headers=key,
                   body={"action": "grant", "categories": {"analytics": True},
                         "note": "ticked on the account page"})
    yield Call("POST", SITES + "/subjects/{subject_id}/events", 422,
               {**shop, "subject_id": visitor}, headers=key,
               body={"action": "grant", "categories": {"bogus": True}})
    yield Call("POST", SITES + "/subjects/{subject_id}/events", 401,
               {**shop, "subject_id": visitor}, body={"action": "grant"})
    yield Call("GET", SITES + "/subjects/{subject_id}", 200, {**shop, "subject_id": visitor},
               headers=key)
    yield Call("GET", SITES + "/subjects/{subject_id}", 404,
               {**shop, "subject_id": "never-seen-visitor-1"}, headers=key)
    r = yield Call("GET", SITES + "/subjects/{subject_id}/history", 200,
                   {**shop, "subject_id": visitor}, headers=key)
    event_id = r.json()["events"][-1]["event_id"]
    yield Call("GET", SITES + "/subjects/{subject_id}/history", 403,
               {**shop, "subject_id": visitor}, headers=other)

    # ------------------------------------------------------------ message channels
    yield Call("POST", SITES + "/channel-addresses", 200, shop, headers=key,
               body={"channel": "email", "address": "ann@example.com", "user_id": "42"})
    yield Call("POST", SITES + "/channel-addresses", 422, shop, headers=key,
               body={"channel": "email", "address": "not an address", "user_id": "42"})
    yield Call("POST", SITES + "/channel-choices", 200, shop, headers=key,
               body={"user_id": "42", "channels": {"email.promotional": True,
                                                   "sms.promotional": False}})
    yield Call("POST", SITES + "/channel-choices", 422, shop, headers=key,
               body={"user_id": "42", "channels": {"email.transactional": False}})
    yield Call("GET", SITES + "/users/{user_id}", 200, {**shop, "user_id": "42"}, headers=key)
    yield Call("GET", SITES + "/users/{user_id}", 404, {**shop, "user_id": "nobody"},
               headers=key)
    yield Call("POST", SITES + "/may-i-send", 200, shop, headers=key,
               body={"channel": "email", "kind": "promotional", "address": "ann@example.com"})
    yield Call("POST", SITES + "/may-i-send", 422, shop, headers=key,
               body={"channel": "fax", "kind": "promotional", "user_id": "42"})
    yield Call("POST", SITES + "/may-i-send", 404, nope, headers=key,
               body={"channel": "email", "kind": "promotional", "user_id": "42"})
    yield Call("POST", SITES + "/unsubscribe-links", 200, shop, headers=key,
               body={"channel": "email", "address": "ann@example.com", "user_id": "42"})
    yield Call("POST", SITES + "/unsubscribe-links", 422, shop, headers=key,
               body={"channel": "email", "kind": "transactional",
                     "address": "ann@example.com"})
    yield Call("POST", SITES + "/login-links", 200, shop, headers=key,
               body={"user_id": "42", "ttl_seconds": 900, "locale": "de"})
    yield Call("POST", SITES + "/login-links", 422, shop, headers=key,
               body={"user_id": "42", "ttl_seconds": 5})
    yield Call("POST", SITES + "/identity-links", 200, shop, headers=key,
               body={"user_id": "42", "subject": visitor, "key": VISITOR_KEY})
    yield Call("POST", SITES + "/identity-links", 403, shop, headers=key,
               body={"user_id": "43", "subject": visitor, "key": "not-" + VISITOR_KEY})
    yield Call("POST", SITES + "/identity-links", 422, shop, headers=key,
               body={"user_id": "42"})

    # ------------------------------------------------------------ SMS
    yield Call("POST", SITES + "/sms/inbound", 200, shop, headers=key,
               body={"from": "+15551230000", "body": "STOP", "message_id": "SM1"},
               media_type="application/json")
    yield Call("POST", SITES + "/sms/inbound", 200, shop, headers=key,
               body={"From": "+15551230001", "Body": "STOP", "MessageSid": "SM2"},
               media_type="application/x-www-form-urlencoded", record=False)
    yield Call("POST", SITES + "/sms/inbound", 422, shop, headers=key,
               body={"from": "not-a-number", "body": "STOP"}, media_type="application/json")
    yield Call("GET", SITES + "/suppressions", 200, shop, {"channel": "sms"}, headers=key)
    yield Call("GET", SITES + "/suppressions", 200, shop, {"channel": "sms", "format": "csv"},
               headers=key, record=False)
    yield Call("GET", SITES + "/suppressions", 422, shop, {"channel": "pigeon"}, headers=key)
    gateways = {}
    for provider in ("twilio", "vonage", "plivo"):
        r = yield Call("POST", SITES + "/sms/gateways", 201, shop, headers=key,
                       body={"provider": provider}, record=provider == "twilio")
        gateways[provider] = r.json()["token"]
    yield Call("POST", SITES + "/sms/gateways", 422, shop, headers=key,
               body={"provider": "vonage", "signature_method": "sha256"})
    yield Call("GET", SITES + "/sms/gateways", 200, shop, headers=key)
    yield Call("GET", SITES + "/sms/gateways", 401, shop,
               headers={"Authorization": "Bearer ck_wrong_key"})
    form = {"From": "+15551230002", "To": "+15005550006", "Body": "STOPALL",
            "MessageSid": "SM3", "AccountSid": "AC1"}
    yield Call("POST", SITES + "/sms/twilio/{token}", 200,
               {**shop, "token": gateways["twilio"]}, body=form,
               media_type="application/x-www-form-urlencoded")
    yield Call("POST", SITES + "/sms/twilio/{token}", 401, {**shop, "token": "wrong-token"},
               body=form, media_type="application/x-www-form-urlencoded")
    basic = base64.b64encode(f"sms:{gateways['twilio']}".encode()).decode()
    yield Call("POST", SITES + "/sms/twilio", 200, shop, body={**form, "MessageSid": "SM4"},
               media_type="application/x-www-form-urlencoded",
               headers={"Authorization": f"Basic {basic}"})
    yield Call("POST", SITES + "/sms/twilio", 401, shop, body=form,
               media_type="application/x-www-form-urlencoded")
    yield Call("POST", SITES + "/sms/twilio/{token}", 422,
               {**shop, "token": gateways["twilio"]}, body={"Body": "STOP"},
               media_type="application/x-www-form-urlencoded")
    vonage = {"msisdn": "447700900123", "to": "447700900000", "messageId": "0A1",
              "text": "STOP", "type": "text", "keyword": "STOP"}
    basic = base64.b64encode(f"sms:{gateways['vonage']}".encode()).decode()
    for path, params, headers in (
            (SITES + "/sms/vonage/{token}", {**shop, "token": gateways["vonage"]}, {}),
            (SITES + "/sms/vonage", shop, {"Authorization": f"Basic {basic}"})):
        yield Call("GET", path, 204, params, query=vonage, headers=headers)
        yield Call("POST", path, 204, params, body={**vonage, "messageId": "0A2"},
                   media_type="application/json", headers=headers)
        yield Call("GET", path, 422, params, query={"text": "STOP"}, headers=headers)
        yield Call("POST", path, 401, {**params, "token": "wrong"} if "token" in params
                   else params, body=vonage, media_type="application/json")
        yield Call("GET", path, 401, {**params, "token": "wrong"} if "token" in params
                   else params, query=vonage)
    plivo = {"From": "14155550123", "To": "14155550100", "Type": "sms", "Text": "STOP",
             "MessageUUID": "d4f5b6c8-1234-11ee-9e1d-0242ac120002"}
    basic = base64.b64encode(f"sms:{gateways['plivo']}".encode()).decode()
    for path, params, headers in (
            (SITES + "/sms/plivo/{token}", {**shop, "token": gateways["plivo"]}, {}),
            (SITES + "/sms/plivo", shop, {"Authorization": f"Basic {basic}"})):
        yield Call("POST", path, 200, params, body=plivo,
                   media_type="application/x-www-form-urlencoded", headers=headers)
        yield Call("GET", path, 200, params, query={**plivo, "MessageUUID": "e1"},
                   headers=headers)
        yield Call("POST", path, 422, params, body={"Text": "STOP"},
                   media_type="application/x-www-form-urlencoded", headers=headers)
        yield Call("GET", path, 401, {**params, "token": "wrong"} if "token" in params
                   else params, query=plivo)
        yield Call("POST", path, 401, {**params, "token": "wrong"} if "token" in params
                   else params, body=plivo, media_type="application/x-www-form-urlencoded")
    yield Call("DELETE", SITES + "/sms/gateways/{provider}", 204,
               {**shop, "provider": "plivo"}, headers=key)
    yield Call("DELETE", SITES + "/sms/gateways/{provider}", 404,
               {**shop, "provider": "plivo"}, headers=key)

    # ------------------------------------------------------------ webhooks
    r = yield Call("POST", SITES + "/webhooks/endpoints", 201, shop, headers=key,
                   body={"name": "CRM", "url": "https://crm.example/hooks/consent",
                         "categories": ["analytics"], "channels": ["email.*"]})
    endpoint = r.json()["id"]
    ep = {**shop, "endpoint_id": endpoint}
    yield Call("POST", SITES + "/webhooks/endpoints", 422, shop, headers=key,
               body={"url": "ftp://crm.example/hooks"})
    yield Call("GET", SITES + "/webhooks/endpoints", 200, shop, headers=key)
    yield Call("GET", SITES + "/webhooks/endpoints", 401, shop)
    yield Call("GET", SITES + "/webhooks/endpoints/{endpoint_id}", 200, ep, headers=key)
    yield Call("GET", SITES + "/webhooks/endpoints/{endpoint_id}", 404,
               {**shop, "endpoint_id": 9999}, headers=key)
    yield Call("PATCH", SITES + "/webhooks/endpoints/{endpoint_id}", 200, ep, headers=key,
               body={"legacy_headers": False})
    yield Call("PATCH", SITES + "/webhooks/endpoints/{endpoint_id}", 422, ep, headers=key,
               body={"legacy_headers": "no"})
    # a notification to look at: a change the endpoint cares about
    yield Call("POST", SITES + "/subjects/{subject_id}/events", 201,
               {**shop, "subject_id": visitor}, headers=key, record=False,
               body={"action": "withdraw", "categories": {"analytics": False}})
    r = yield Call("GET", SITES + "/webhooks/deliveries", 200, shop, {"limit": 10},
                   headers=key)
    message = r.json()["deliveries"][0]["id"]
    yield Call("GET", SITES + "/webhooks/deliveries", 422, shop, {"state": "lost"},
               headers=key)
    yield Call("GET", SITES + "/webhooks/deliveries/{message_id}", 200,
               {**shop, "message_id": message}, headers=key)
    yield Call("GET", SITES + "/webhooks/deliveries/{message_id}", 404,
               {**shop, "message_id": 9999}, headers=key)
    yield Call("POST", SITES + "/webhooks/deliveries/{message_id}/retry", 409,
               {**shop, "message_id": message}, headers=key)
    yield Call("POST", SITES + "/webhooks/endpoints/{endpoint_id}/disable", 200, ep,
               headers=key)
    yield Call("POST", SITES + "/webhooks/endpoints/{endpoint_id}/retry", 409, ep,
               headers=key)
    yield Call("POST", SITES + "/webhooks/endpoints/{endpoint_id}/enable", 200, ep,
               headers=key)
    yield Call("POST", SITES + "/webhooks/deliveries/{message_id}/retry", 200,
               {**shop, "message_id": message}, headers=key)
    yield Call("POST", SITES + "/webhooks/endpoints/{endpoint_id}/enable", 404,
               {**shop, "endpoint_id": 9999}, headers=key)
    yield Call("POST", SITES + "/webhooks/endpoints/{endpoint_id}/retry", 200, ep,
               headers=key)
    yield Call("POST", SITES + "/webhooks/endpoints/{endpoint_id}/disable", 404,
               {**shop, "endpoint_id": 9999}, headers=key)

    # ------------------------------------------------------------ linked accounts
    person = {"subject": visitor, "integration": "zoom"}
    yield Call("POST", SITES + "/linked-accounts", 201, shop, headers=key,
               body={**person, "token": "zoom-access-token-0123456789"})
    yield Call("POST", SITES + "/linked-accounts", 422, shop, headers=key,
               body={**person, "integration": "Not A Name", "token": "t"})
    yield Call("GET", SITES + "/linked-accounts", 200, shop, {"subject": visitor},
               headers=key)
    yield Call("GET", SITES + "/linked-accounts", 422, shop, headers=key)
    yield Call("POST", SITES + "/linked-accounts/token", 200, shop, headers=key, body=person)
    yield Call("POST", SITES + "/linked-accounts/token", 422, shop, headers=key,
               body={"integration": "zoom"})
    yield Call("POST", SITES + "/linked-accounts/deauthorize", 200, shop, headers=key,
               body={**person, "via": "third_party"})
    yield Call("POST", SITES + "/linked-accounts/token", 410, shop, headers=key, body=person)
    yield Call("POST", SITES + "/linked-accounts/deauthorize", 422, shop, headers=key,
               body={**person, "via": "carrier pigeon"})

    # ------------------------------------------------------------ minors (the DASSET profile)
    dk = {"site_key": dasset["key"]}
    # The backend names visitors that have recorded something (an unknown id without its
    # key would be anyone's): this one's first choice, from its browser.
    yield Call("POST", SITES + "/decisions", 201, dk, headers={"Origin": DASSET_ORIGIN},
               body={"subject": "young-visitor-0001", "key": "young-visitor-key-00001",
                     "action": "reject_all"}, record=False)
    yield Call("POST", SITES + "/age", 404, dk, headers=other,
               body={"subject": "never-recorded-0001", "minor": True})
    yield Call("POST", SITES + "/age", 200, dk, headers=other,
               body={"subject": "young-visitor-0001", "minor": True})
    yield Call("POST", SITES + "/age", 422, dk, headers=other,
               body={"subject": "young-visitor-0001", "minor": "yes"})
    yield Call("POST", SITES + "/guardian-consents", 201, dk, headers=other,
               body={"subject": "young-visitor-0001", "categories": {"analytics": True},
                     "channels": {"email.promotional": False}})
    yield Call("POST", SITES + "/guardian-consents", 422, dk, headers=other,
               body={"subject": "young-visitor-0001", "categories": {"bogus": True}})

    # A minor says a guardian agrees: the grants wait for the guardian's link, which
    # the site's backend reads to deliver it (sites whose age rule verifies by link).
    minor = {"subject": MINOR, "key": MINOR_KEY, "action": "custom", "age": "minor",
             "guardian": True, "categories": {"analytics": True},
             "client_event_id": "c9a1f0e2-scenario-minor"}
    yield Call("POST", SITES + "/decisions", 201, dk, body=minor,
               headers={"Origin": DASSET_ORIGIN}, record=False)
    r = yield Call("GET", SITES + "/guardian-requests", 200, dk, {"status": "awaiting"},
                   headers=other)
    guardian = {**dk, "request_id": r.json()[0]["id"]}
    yield Call("GET", SITES + "/guardian-requests", 422, dk, {"status": "lost"},
               headers=other)
    yield Call("GET", SITES + "/guardian-requests/{request_id}", 200, guardian,
               headers=other)
    yield Call("GET", SITES + "/guardian-requests/{request_id}", 404,
               {**dk, "request_id": 9999}, headers=other)

    # ------------------------------------------------------------ verifiable log
    yield Call("GET", SITES + "/log/checkpoint", 200, shop)
    yield Call("GET", SITES + "/log/checkpoint", 404, nope)
    yield Call("GET", SITES + "/log/keys", 200, shop)
    yield Call("GET", SITES + "/log/keys", 404, nope)
    yield Call("GET", SITES + "/log/inclusion", 200, shop, {"event": event_id})
    yield Call("GET", SITES + "/receipts/{event_id}", 200, {**shop, "event_id": event_id},
               headers=key)
    yield Call("GET", SITES + "/receipts/{event_id}", 401, {**shop, "event_id": event_id})
    # what the widget's visitor was shown: the receipt of its decision carries the notice
    r = yield Call("GET", SITES + "/receipts/{event_id}", 200,
                   {**shop, "event_id": choice_event}, headers=key)
    notice = {**shop, "digest": r.json()["event"]["meta"]["notice"]}
    yield Call("GET", SITES + "/notices/{digest}", 200, notice)
    yield Call("GET", SITES + "/notices/{digest}", 404, {**shop, "digest": "0" * 64})
    yield Call("GET", SITES + "/log/inclusion", 422, shop, {"event": "not-an-id"})
    yield Call("GET", SITES + "/log/consistency", 200, shop, {"from": 1, "to": 2})
    yield Call("GET", SITES + "/log/consistency", 422, shop, {"from": 3, "to": 2})

    # ------------------------------------------------------------ audit and requests
    yield Call("GET", V1 + "/audit/signing-key", 200, headers=token)
    yield Call("GET", V1 + "/audit/signing-key", 401)
    yield Call("GET", AUDIT + "/policies", 200, shop, headers=token)
    yield Call("GET", AUDIT + "/policies", 401, shop)
    yield Call("POST", AUDIT + "/policies", 201, shop, headers=token,
               body={"label": "2026-12", "url": "https://shop.example/privacy-2026-12",
                     "material": False, "summary": "New contact address"})
    yield Call("POST", AUDIT + "/policies", 422, shop, headers=token,
               body={"label": "2026-12b", "url": "javascript:alert(1)"})
    yield Call("POST", AUDIT + "/policies", 409, shop, headers=token,
               body={"label": "2026-12", "url": "https://shop.example/privacy-2026-12"})
    r = yield Call("POST", AUDIT + "/requests", 201, shop, headers=token,
                   body={"kind": "access", "subject": visitor, "note": "asked by e-mail"})
    request_id = r.json()["id"]
    rq = {**shop, "request_id": request_id}
    yield Call("POST", AUDIT + "/requests", 422, shop, headers=token,
               body={"kind": "gossip", "subject": visitor})
    yield Call("GET", AUDIT + "/requests", 200, shop, {"status": "open"}, headers=token)
    yield Call("GET", AUDIT + "/requests", 422, shop, {"status": "lost"}, headers=token)
    yield Call("GET", AUDIT + "/requests/{request_id}", 200, rq, headers=token)
    yield Call("GET", AUDIT + "/requests/{request_id}", 404,
               {**shop, "request_id": 9999}, headers=token)
    yield Call("GET", AUDIT + "/requests/{request_id}/history", 200, rq, headers=token)
    yield Call("GET", AUDIT + "/requests/{request_id}/history", 404,
               {**shop, "request_id": 9999}, headers=token)
    yield Call("GET", AUDIT + "/requests/{request_id}/receipt", 409, rq, headers=token,
               record=False)  # the controller's details are not set yet
    yield ("set_controller",)
    yield Call("GET", AUDIT + "/requests/{request_id}/receipt", 200, rq, headers=token)
    yield Call("GET", AUDIT + "/export", 200, shop, {"format": "jsonl", "deliveries": "false"},
               headers=token)
    yield Call("GET", AUDIT + "/export", 200, shop, {"since": "2026-01-01"}, headers=token,
               record=False)
    yield Call("GET", AUDIT + "/export", 422, shop, {"since": "not a date"}, headers=token)
    yield Call("POST", AUDIT + "/requests/{request_id}/close", 200, rq, headers=token,
               body={"status": "completed", "note": "sent by e-mail"})
    yield Call("POST", AUDIT + "/requests/{request_id}/close", 409, rq, headers=token,
               body={"status": "completed"})
    yield Call("POST", AUDIT + "/requests/{request_id}/close", 422, rq, headers=token,
               body={"status": "forgotten"})
    r = yield Call("POST", AUDIT + "/requests", 201, shop, headers=token, record=False,
                   body={"kind": "erasure", "subject": visitor})
    erase = {**shop, "request_id": r.json()["id"]}
    yield Call("POST", AUDIT + "/requests/{request_id}/erase", 200, erase, headers=token)
    yield Call("POST", AUDIT + "/requests/{request_id}/erase", 409, erase, headers=token)
    yield Call("POST", AUDIT + "/requests/{request_id}/erase", 404,
               {**shop, "request_id": 9999}, headers=token)
    # A US opt-out of sale/sharing received by phone: carried out as a withdrawal.
    r = yield Call("POST", AUDIT + "/requests", 201, shop, headers=token, record=False,
                   body={"kind": "opt-out-sale", "subject": NEWCOMER, "via": "phone"})
    sale = {**shop, "request_id": r.json()["id"]}
    yield Call("POST", AUDIT + "/requests/{request_id}/carry-out", 200, sale, headers=token)
    yield Call("POST", AUDIT + "/requests/{request_id}/carry-out", 409, sale, headers=token)
    yield Call("POST", AUDIT + "/requests/{request_id}/carry-out", 404,
               {**shop, "request_id": 9999}, headers=token)
    yield Call("GET", AUDIT + "/requests/{request_id}/request-receipt", 200, sale,
               headers=token)
    yield Call("GET", AUDIT + "/requests/{request_id}/request-receipt", 404,
               {**shop, "request_id": 9999}, headers=token)


def _header(response, name: str) -> str:
    values = {k.lower(): v for k, v in response.headers.items()}[name.lower()]
    return values[0] if isinstance(values, list) else str(values)


def _body_of(response) -> Any:
    values = {k.lower(): v for k, v in response.headers.items()}.get("content-type") or [""]
    kind = values[0] if isinstance(values, list) else str(values)
    if "json" in kind and "jsonl" not in kind and "ndjson" not in kind:
        try:
            return response.json()
        except ValueError:
            return None
    if kind.startswith(("text/", "application/xml", "application/x-ndjson",
                        "application/jsonl")):
        lines = response.text.splitlines(keepends=True)
        return "".join(lines[:4]) + ("…\n" if len(lines) > 4 else "")
    return None


def examples_from(results) -> dict:
    """The first successful exchange of each operation, as {operation: {request, query,
    responses: {status: body}}}, with this test server's host shown as a public one."""
    out: dict = {}
    for call, _case, response in results:
        if not call.record or not 200 <= response.status_code < 300:
            continue
        entry = out.setdefault(call.operation, {"responses": {}})
        if call.body is not ABSENT and "request" not in entry:
            entry["request"] = call.body
        if call.query and "query" not in entry:
            entry["query"] = call.query
        status = str(response.status_code)
        body = _body_of(response)
        if status not in entry["responses"] and body is not None:
            entry["responses"][status] = body
    text = json.dumps(out).replace("http://localhost", "https://consent.example")
    return json.loads(text)


if __name__ == "__main__":
    if "--write" not in sys.argv:
        sys.exit(__doc__)
    import os

    import pytest

    os.environ["CONSENT_WRITE_EXAMPLES"] = "1"
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider",
                          "tests/test_openapi_conformance.py::test_every_operation_conforms"]))
