"""Finding 13.2: reading a visitor's consent needs the device's read token, not its id."""
from __future__ import annotations


def test_me_with_only_the_id_is_a_404_like_an_unknown_visitor(client, site):
    mine = client.post("/api/v1/sites/shop/decisions", json={"action": "accept_all"}).get_json()
    url = f"/api/v1/sites/shop/me/{mine['subject']}"
    unknown = client.get("/api/v1/sites/shop/me/nobody-has-this-id-0123")
    only_the_id = client.get(url)
    assert only_the_id.status_code == 404
    other = client.post("/api/v1/sites/shop/decisions", json={"action": "reject_all"}).get_json()
    for r in (only_the_id, client.get(url + "?r=" + other["read_token"]),
              client.get(url + "?r=" + "A" * 22), client.get(url + "?r=" + mine["key"])):
        assert r.status_code == 404
        assert r.get_json()["detail"] == unknown.get_json()["detail"].replace(
            "nobody-has-this-id-0123", mine["subject"])
    # the device's own token (never the write key) reads it
    r = client.get(url + "?r=" + mine["read_token"])
    assert r.status_code == 200 and r.get_json()["categories"]["advertising"] is True
    assert mine["read_token"] != mine["key"]
