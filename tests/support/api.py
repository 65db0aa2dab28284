"""Calling the JSON API as its clients do. CLIENT is a Flask test client or, against a
running server, tests.support.servers.HttpClient (same interface)."""
from __future__ import annotations

from consent.subjects import new_device_key

PROBLEM = "application/problem+json"


def bearer(credential) -> dict:
    """The Authorization header for a token, or for a site fixture's API key."""
    token = credential["api_key"] if isinstance(credential, dict) else credential
    return {"Authorization": f"Bearer {token}"}


def decide(client, site_key: str, action: str = "accept_all", *, subject: str | None = None,
           origin: str | None = None, **body) -> dict:
    """POST a decision as the widget does; asserts it was recorded (201) or replayed (200)
    and returns the answer (`subject`, `event_id`, ...)."""
    body = {"action": action, **body}
    if subject:
        body["subject"] = subject
        # a visitor id needs its device key; one the test names is minted with a new key
        body.setdefault("key", KEYS.setdefault(subject, new_device_key()))
    headers = {"Origin": origin} if origin else {}
    r = client.post(f"/api/v1/sites/{site_key}/decisions", json=body, headers=headers)
    assert r.status_code in (200, 201), r.get_data(as_text=True)
    answer = r.get_json()
    if answer.get("key"):
        KEYS.setdefault(answer["subject"], answer["key"])
    return answer


KEYS: dict[str, str] = {}  # visitor id -> the device key the server minted for it


def device(subject: str) -> dict:
    """A visitor as the site's backend names it to the API: the id and the device key of
    the same consent cookie (`s` and `k`); an id no decision named gets a new key."""
    return {"subject": subject, "key": KEYS.setdefault(subject, new_device_key())}


def may_i_send(client, site: dict, channel: str, kind: str = "promotional", **who) -> dict:
    """Ask "may I send?" with the site's API key; returns the answer (`allowed`, `reason`)."""
    r = client.post(f"/api/v1/sites/{site['key']}/may-i-send",
                    json={"channel": channel, "kind": kind, **who}, headers=bearer(site))
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def without_notice(meta: dict) -> dict:
    """A widget or preference-page event's META less the notice its page showed
    (consent.notices), which it must name: a SHA-256 in hex."""
    import re

    assert re.fullmatch(r"[0-9a-f]{64}", (meta or {}).get("notice") or ""), meta
    return {k: v for k, v in meta.items() if k != "notice"}
