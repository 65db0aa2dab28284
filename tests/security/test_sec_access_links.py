"""Finding 4: an access link ends when its request is rejected or closed by the site."""
from __future__ import annotations

import pytest

from tests.security.sec_fixtures import mode, mode_app, mode_client, mode_site  # noqa: F401
from tests.support.admin import make_token, record_choice  # noqa: F401
from tests.support.api import bearer


def _open_access_request(client, site_key: str, token: str) -> tuple[int, str]:
    visitor = record_choice(site_key, "accept_all")
    r = client.post(f"/api/v1/audit/sites/{site_key}/requests",
                    json={"kind": "access", "subject": visitor}, headers=bearer(token))
    assert r.status_code == 201, r.get_data(as_text=True)
    body = r.get_json()
    return body["id"], "/" + body["access_link"].split("://", 1)[1].split("/", 1)[1]


@pytest.mark.parametrize("status", ["rejected", "completed"])
def test_link_stops_working_once_the_site_closed_its_request(mode_app, mode_client,
                                                             mode_site, status):
    token = make_token(["requests:write", "audit:read"])
    rid, path = _open_access_request(mode_client, mode_site["key"], token)
    r = mode_client.post(f"/api/v1/audit/sites/{mode_site['key']}/requests/{rid}/close",
                         json={"status": status}, headers=bearer(token))
    assert r.status_code == 200
    for suffix in ("", "/history.json", "/receipt.json"):
        answer = mode_client.get(path + suffix)
        assert answer.status_code == 403, suffix
        assert b"consentTimestamp" not in answer.data and b"accept_all" not in answer.data


def test_link_still_serves_the_person_after_it_answered_the_request(mode_app, mode_client,
                                                                    mode_site):
    token = make_token(["requests:write", "audit:read"])
    rid, path = _open_access_request(mode_client, mode_site["key"], token)
    assert mode_client.get(path).status_code == 200  # completes the request
    assert mode_client.get(path + "/history.json").status_code == 200
    # ... and the site can no longer reject it to cut the person off silently
    r = mode_client.post(f"/api/v1/audit/sites/{mode_site['key']}/requests/{rid}/close",
                         json={"status": "rejected"}, headers=bearer(token))
    assert r.status_code == 409
