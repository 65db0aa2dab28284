"""Server-to-server API: API-key auth, reading consent and history, backend changes."""
from __future__ import annotations

from tests.support.api import PROBLEM, bearer, decide


def test_requires_api_key(client, site):
    subject = decide(client, site["key"])["subject"]
    url = f"/api/v1/sites/{site['key']}/subjects/{subject}"
    r = client.get(url)
    assert r.status_code == 401 and r.mimetype == PROBLEM
    assert client.get(url, headers=bearer("ck_nope_nope")).status_code == 401
    assert client.get(url, headers=bearer(site["api_key"] + "x")).status_code == 401


def test_key_of_another_site_is_forbidden(client, site, other_site):
    subject = decide(client, site["key"])["subject"]
    r = client.get(f"/api/v1/sites/{site['key']}/subjects/{subject}",
                   headers=bearer(other_site))
    assert r.status_code == 403


def test_read_subject_and_history(client, site):
    subject = decide(client, site["key"])["subject"]
    decide(client, site["key"], "reject_all", subject=subject)
    r = client.get(f"/api/v1/sites/{site['key']}/subjects/{subject}", headers=bearer(site))
    assert r.status_code == 200
    assert r.get_json()["consent"]["categories"]["analytics"] is False
    h = client.get(f"/api/v1/sites/{site['key']}/subjects/{subject}/history",
                   headers=bearer(site)).get_json()
    assert [e["action"] for e in h["events"]] == ["accept_all", "reject_all"]
    assert h["events"][1]["prev_hash"] == h["events"][0]["hash"]


def test_backend_records_withdrawal(client, site):
    subject = decide(client, site["key"])["subject"]
    r = client.post(f"/api/v1/sites/{site['key']}/subjects/{subject}/events",
                    json={"action": "withdraw", "categories": {"advertising": False},
                          "note": "user asked by phone"},
                    headers=bearer(site))
    assert r.status_code == 201, r.get_data(as_text=True)
    cats = r.get_json()["consent"]["categories"]
    assert cats["advertising"] is False and cats["analytics"] is True
    h = client.get(f"/api/v1/sites/{site['key']}/subjects/{subject}/history",
                   headers=bearer(site)).get_json()
    assert h["events"][-1]["source"] == "api"
    # Withdrawal is prospective: the earlier grant stays in the history.
    assert h["events"][0]["categories"]["advertising"] is True


def test_backend_bad_input(client, site):
    subject = decide(client, site["key"])["subject"]
    url = f"/api/v1/sites/{site['key']}/subjects/{subject}/events"
    r = client.post(url, json={"action": "withdraw", "categories": {"nope": False}},
                    headers=bearer(site))
    assert r.status_code == 422 and r.get_json()["errors"][0]["pointer"] == "#/categories/nope"
    r = client.post(f"/api/v1/sites/{site['key']}/subjects/unknownsubject00000/events",
                    json={"action": "withdraw", "categories": {"analytics": False}},
                    headers=bearer(site))
    assert r.status_code == 404


def test_unknown_user_is_404(client, site):
    r = client.get(f"/api/v1/sites/{site['key']}/users/u-1", headers=bearer(site))
    assert r.status_code == 404 and r.mimetype == PROBLEM
