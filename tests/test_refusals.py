"""No choice is silently lost: refused decisions are counted per site and reason and shown
on the dashboard; the count stays small and never touches an accepted write."""
from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from consent.database import run_write, utcnow
from consent.extensions import db
from consent.ledger import ConsentEvent
from consent.refusals import MAX_DETAILS, DecisionRefusal, recent_refusals
from consent.sites import get_site


PROBLEM = "application/problem+json"


def post(client, body, **headers):
    return client.post("/api/v1/sites/shop/decisions", json=body, headers=headers)


def rows() -> list[DecisionRefusal]:
    db.session.rollback()
    return list(db.session.execute(db.select(DecisionRefusal)).scalars())


def test_a_refused_origin_is_counted_and_the_page_can_read_why(client, site):
    for _ in range(3):
        r = post(client, {"action": "accept_all"}, Origin="http://127.0.0.9:5202")
        assert r.status_code == 403 and r.mimetype == PROBLEM
        assert r.headers["Access-Control-Allow-Origin"] == "http://127.0.0.9:5202"
        problem = r.get_json()
        assert problem["type"].endswith(":origin")
        assert problem["detail"].startswith(
            "origin http://127.0.0.9:5202 is not allowed for site 'shop'")
    [row] = rows()
    assert (row.reason, row.detail, row.count) == ("origin", "http://127.0.0.9:5202", 3)
    [summary] = recent_refusals(get_site("shop").id)
    assert summary.sentence == "3 decisions refused from origin http://127.0.0.9:5202"
    assert db.session.execute(sa.select(sa.func.count()).select_from(ConsentEvent)
                              ).scalar() == 0


def test_every_kind_of_refusal_is_counted_by_reason(client, site):
    known = post(client, {"action": "reject_all"}).get_json()["subject"]
    assert post(client, {"action": "accept_all", "subject": known}).status_code == 403
    assert post(client, {"action": "custom", "categories": {"bogus": True}}).status_code == 422
    assert client.post("/api/v1/sites/shop/decisions", data="{nope",
                       content_type="text/plain").status_code == 400
    assert post(client, {"action": "accept_all"}, Origin="https://evil.example"
                ).status_code == 403
    counts = {(r.reason, r.detail): r.count for r in rows()}
    assert counts == {("visitor_key", ""): 1, ("invalid", ""): 2,
                      ("origin", "https://evil.example"): 1}
    sentences = {s.sentence for s in recent_refusals(get_site("shop").id)}
    assert "2 decisions refused as invalid input" in sentences
    assert "1 decision refused: a visitor id without the key of its browser" in sentences
    # an unknown site has nothing to count against
    assert client.post("/api/v1/sites/nope/decisions", json={"action": "reject_all"}
                       ).status_code == 404
    assert client.post("/api/v1/sites/nope/decisions", json={}).status_code == 422
    assert len(rows()) == 3


def test_accepted_decisions_write_no_refusal_row(client, site):
    for origin in (site["origin"], None):
        r = post(client, {"action": "accept_all"}, **({"Origin": origin} if origin else {}))
        assert r.status_code == 201
    assert rows() == []


def test_the_table_stays_small(client, site):
    for i in range(MAX_DETAILS + 5):
        post(client, {"action": "accept_all"}, Origin=f"https://evil{i}.example")
    details = {r.detail: r.count for r in rows()}
    assert len(details) == MAX_DETAILS + 1  # the rest are counted together
    assert details["(other origins)"] == 5
    site_id = get_site("shop").id

    def age_them():
        db.session.execute(sa.update(DecisionRefusal.__table__).values(
            hour=utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(days=40)))
    run_write(age_them)
    assert recent_refusals(site_id) == []  # older than a day: not on the dashboard
    post(client, {"action": "accept_all"}, Origin="https://late.example")
    assert [(r.detail, r.count) for r in rows()] == [("https://late.example", 1)]  # pruned


def test_the_dashboard_says_how_many_were_refused_and_why(client, site, admin):
    for _ in range(12):
        post(client, {"action": "accept_all"}, Origin="http://x.example")
    page = admin.get("/admin/sites/shop/").data.decode()
    assert 'id="refused"' in page
    assert "12 decisions refused from origin http://x.example in the last 24 h" in page
