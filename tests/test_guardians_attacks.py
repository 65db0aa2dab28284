"""Attacks on verifiable guardian consent (a security review of consent.guardians and its
pages). Each test passes when the product resists and fails when the attack works."""
from __future__ import annotations

import html
import re

import pytest
import sqlalchemy as sa

from consent.database import run_write, utcnow
from consent.extensions import db
from tests.support.api import bearer
from tests.test_guardians import (awaiting, events, guardian_page, load, local,
                                  minor_asks_parent, notice_of)

XSS = '<img src=x onerror=alert(1)>"\'<script>alert(2)</script>'


def _rename_elsewhere(site_key: str, key: str, title: str) -> None:
    """Rename a category as another process does: this process's cached snapshot of the
    site is not invalidated (as tests/test_notices.py edit_elsewhere)."""
    from consent.sites import Category, Site

    def write():
        cat = db.session.execute(sa.select(Category).join(Site).where(
            Site.key == site_key, Category.key == key)).scalar_one()
        cat.titles = {"en": title}
        db.session.get(Site, cat.site_id).updated_at = utcnow()

    run_write(write)


def _assert_friendly(r, *, low=400, high=499):
    body = r.get_data(as_text=True)
    assert low <= r.status_code <= high, (r.status_code, body[:500])
    assert r.mimetype == "text/html", (r.status_code, r.mimetype, body[:300])
    assert "Internal server error" not in body


# ------------------------------------------------------ (2) words the guardian did not see


def test_policy_version_of_the_event_is_the_one_the_guardians_page_showed(app, client):
    """A new policy version is published while the guardian's page is open: the answer
    records the version the page named (its notice's), not the one published since."""
    from consent.site_admin import publish_site_policy

    site = load("care_platform")
    minor_asks_parent(client, site)
    [request] = awaiting(client, site)
    _page, fields, action = guardian_page(client, local(request["url"]))
    publish_site_policy(site["key"], label="2", text="We now sell minors' data.", url=None,
                        material=True, summary="sale")
    r = client.post(action, data={**fields, "decision": "agree"})
    assert r.status_code == 200
    event = events("guardian")[-1]
    notice = notice_of(client, site, event.meta["notice"])
    assert notice["policy"]["version"] == "1"
    # (as the preference page's save keeps the policy of the page it was made on)
    assert event.policy_version == notice["policy"]["version"], (
        event.policy_version, notice["policy"])


def test_a_stale_snapshot_page_records_the_words_it_showed(app, client):
    """CONSENT_SITE_CACHE_SECONDS (5 by default in production): another process renames
    the category while this one still caches the site. The page reads the site from the
    database, so the revision its form carries names the words it showed."""
    app.config["CONSENT_SITE_CACHE_SECONDS"] = 60
    site = load("care_platform")
    minor_asks_parent(client, site)
    [request] = awaiting(client, site)
    link = local(request["url"])
    client.get(link)  # this process caches the snapshot and keeps revision R1's notice
    _rename_elsewhere(site["key"], "advertising", "Harmless extras")
    page, fields, action = guardian_page(client, link)
    asked = [html.unescape(n) for n in re.findall(
        r'<span class="pc-name">([^<]*)</span>',
        page.split('id="guardian-asked"')[1].split("</ul>")[0])]
    r = client.post(action, data={**fields, "decision": "agree"})
    assert r.status_code == 200
    notice = notice_of(client, site, events("guardian")[-1].meta["notice"])
    titles = {c["key"]: c["title"] for c in notice["categories"] + notice["channels"]}
    named = [titles[k] for k in request["categories"] + request["channels"]]
    assert sorted(asked) == sorted(named), (asked, named)


# ------------------------------------------------------ (5) XSS / HTML injection


def test_site_name_and_category_titles_are_escaped_on_the_guardians_page(app, client):
    from consent.sites import Category, Site, invalidate_site_cache

    site = load("care_platform")

    def write():
        s = db.session.execute(sa.select(Site).where(Site.key == site["key"])).scalar_one()
        s.name = XSS
        for cat in db.session.execute(sa.select(Category).where(
                Category.site_id == s.id)).scalars():
            cat.titles = {"en": XSS + cat.key}
        s.updated_at = utcnow()

    run_write(write)
    invalidate_site_cache()
    minor_asks_parent(client, site)
    [request] = awaiting(client, site)
    link = local(request["url"])
    for path in (link, link + "?lang=%3Cscript%3E", f"/preferences?site={site['key']}"):
        page = client.get(path).get_data(as_text=True)
        assert "<script>alert" not in page and "<img src=x" not in page, path
    page, fields, action = guardian_page(client, link)
    r = client.post(action, data={**fields, "decision": "agree"})
    body = r.get_data(as_text=True)
    assert "<script>alert" not in body and "<img src=x" not in body


# ------------------------------------------------------ (3) bad input: 4xx, friendly


BAD_POSTS = [
    {},                                                   # no decision
    {"decision": "yes"},
    {"decision": "agree", "lang": "x" * 17},
    {"decision": "agree", "revision": "0123456789ABCDEF"},
    {"decision": "agree", "revision": "0123456789abcdef0"},
    {"decision": "agree", "extra": "1"},
    {"decision": "agree", "csrf_token": "x"},
]


@pytest.mark.parametrize("form", BAD_POSTS)
def test_bad_answers_are_friendly_4xx_and_change_nothing(app, client, form):
    site = load("care_platform")
    minor_asks_parent(client, site)
    [request] = awaiting(client, site)
    link = local(request["url"])
    _assert_friendly(client.post(link, data=form))
    assert events("guardian") == []
    assert [x["id"] for x in awaiting(client, site)] == [request["id"]]


def test_bad_links_are_friendly_4xx(app, client):
    site = load("care_platform")
    minor_asks_parent(client, site)
    [request] = awaiting(client, site)
    link = local(request["url"])
    token = link.rsplit("/", 1)[1]
    for path in (f"/guardian/nosuchsite/{token}", f"/guardian/{'x' * 300}/{token}",
                 f"/guardian/{site['key']}/garbage", f"/guardian/{site['key']}/{token}x",
                 f"/guardian/{site['key']}/{'A' * 5000}", f"/guardian/%E2%98%83/{token}",
                 f"/guardian/{site['key']}/%FF%FE", f"/guardian/{site['key']}/a.b.c"):
        _assert_friendly(client.get(path))
        _assert_friendly(client.post(path, data={"decision": "agree"}))
    assert events("guardian") == []


@pytest.mark.parametrize("lang", ["", "%00", "de%00", "x" * 5000, "..%2F..", "%FF",
                                  "de-DE-x-" + "a" * 50, "en;q=1,de", "*"])
def test_odd_lang_parameters_never_fail(app, client, lang):
    site = load("care_platform")
    minor_asks_parent(client, site)
    [request] = awaiting(client, site)
    link = local(request["url"])
    r = client.get(f"{link}?lang={lang}")
    assert r.status_code == 200 or 400 <= r.status_code < 500, r.status_code
    r = client.get(link, headers={"Accept-Language": lang})
    assert r.status_code == 200 or 400 <= r.status_code < 500, r.status_code


@pytest.mark.parametrize("lang", ["\x00", "de\x00", " ", "_", "%", "EN", "de_DE"])
def test_odd_form_lang_with_an_earlier_revision_never_fails(app, client, lang):
    site = load("care_platform")
    minor_asks_parent(client, site)
    [request] = awaiting(client, site)
    _page, fields, action = guardian_page(client, local(request["url"]))
    r = client.post(action, data={"revision": "0123456789abcdef", "lang": lang,
                                  "decision": "agree"})
    # (a revision this server never showed: asked again, 409, nothing recorded)
    assert r.status_code in (409, 400, 422), (r.status_code, r.get_data(as_text=True)[:300])
    assert events("guardian") == []


# ------------------------------------------------------ (1) consent the guardian did not give


def _erase(client, site, subject) -> None:
    from tests.support.admin import make_token

    token = make_token(["requests:write"])
    rid = client.post(f"/api/v1/audit/sites/{site['key']}/requests",
                      json={"kind": "erasure", "subject": subject},
                      headers=bearer(token)).get_json()["id"]
    r = client.post(f"/api/v1/audit/sites/{site['key']}/requests/{rid}/erase",
                    headers=bearer(token))
    assert r.status_code == 200, r.get_data(as_text=True)


def test_an_erased_minors_old_link_never_confirms_another_minors_request(app, client):
    """Whoever received minor A's link (A's guardian, a mail archive, A themself) must
    not confirm minor B's request after A is erased."""
    site = load("care_platform")
    minor_a = minor_asks_parent(client, site, email="parent.of.a@example.org")
    [request_a] = awaiting(client, site)
    link_a = local(request_a["url"])
    _erase(client, site, request_a["subject"])
    assert client.get(link_a).status_code == 403

    other = app.test_client()  # another child, in another browser
    minor_asks_parent(other, site, email="parent.of.b@example.org")
    [request_b] = awaiting(client, site)
    assert request_b["subject"] != request_a["subject"]
    # A's old link must not open or answer B's request
    page = client.get(link_a)
    r = client.post(link_a, data={"decision": "agree"})
    granted = [e for e in events("guardian")]
    assert (page.status_code, r.status_code, granted) == (403, 403, []), (
        request_a["id"], request_b["id"], page.status_code, r.status_code,
        [(e.subject, e.categories, e.meta) for e in granted], minor_a)


def test_an_old_link_after_the_minor_asked_again_is_refused(app, client):
    site = load("care_platform")
    minor_asks_parent(client, site)
    [first] = awaiting(client, site)
    minor_asks_parent(client, site)
    [second] = awaiting(client, site)
    assert second["id"] != first["id"]
    assert client.post(local(first["url"]), data={"decision": "agree"}).status_code == 403
    assert events("guardian") == []


def test_erasure_while_the_page_is_open_refuses_the_answer(app, client):
    site = load("care_platform")
    minor_asks_parent(client, site)
    [request] = awaiting(client, site)
    _page, fields, action = guardian_page(client, local(request["url"]))
    _erase(client, site, request["subject"])
    r = client.post(action, data={**fields, "decision": "agree"})
    _assert_friendly(r)
    assert events("guardian") == []


# (the answer's page naming only what was turned on: tests/test_guardians.py,
# test_an_unsubscribe_since_the_request_is_not_undone_by_the_guardian)


# ------------------------------------------------------ (4) the guardian's address


def test_an_expired_requests_guardian_address_is_not_kept(app, client, clock):
    """A guardian who never answers: once the link has expired, the address is deleted
    (when the site's backend next lists its requests, or the next request opens)."""
    site = load("care_platform")
    minor_asks_parent(client, site)
    [request] = awaiting(client, site)
    clock.advance(days=8)
    assert awaiting(client, site) == []
    assert client.get(local(request["url"])).status_code == 403
    kept = db.session.execute(sa.text(
        "SELECT count(*) FROM guardian_requests WHERE address_sealed IS NOT NULL")).scalar()
    assert kept == 0


def test_after_an_erasure_the_next_minors_request_still_works_with_a_webhook(app, client):
    """With a webhook endpoint, the guardian.requested notice's idempotency key is
    grd_<request id>_<endpoint> and erasure keeps the outbox row: had erasure deleted the
    request, SQLite would reuse its id and the next minor's save would collide."""
    from tests.support.outbox import add_endpoint

    site = load("care_platform")
    add_endpoint(site["key"], "https://hooks.example.test/consent", categories=["analytics"])
    minor_asks_parent(client, site)
    [request_a] = awaiting(client, site)
    _erase(client, site, request_a["subject"])
    statuses = []
    for _ in range(3):  # three more children, each in their own browser
        other = app.test_client()
        page = other.get(f"/preferences?site={site['key']}").get_data(as_text=True)
        token = page.split('name="csrf_token" value="')[1].split('"')[0]
        r = other.post(f"/preferences?site={site['key']}", data={
            "csrf_token": token, "age_question": "1", "minor": "1", "guardian": "1",
            "guardian_email": "someone@example.org", "category": ["analytics"]})
        statuses.append(r.status_code)
    assert statuses == [303, 303, 303], statuses


def test_after_an_erasure_the_widgets_minor_decisions_still_work_with_a_webhook(app, client):
    """The same on the banner's hot path (POST /decisions)."""
    from tests.support.outbox import add_endpoint
    from tests.test_guardians import ORIGIN

    site = load("device_network")
    add_endpoint(site["key"], "https://hooks.example.test/consent", categories=["analytics"])
    body = {"action": "accept_all", "age": "minor", "guardian": True}
    first = client.post(f"/api/v1/sites/{site['key']}/decisions", json=body,
                        headers={"Origin": ORIGIN})
    assert first.status_code == 201
    [request_a] = awaiting(client, site)
    _erase(client, site, request_a["subject"])
    statuses = [app.test_client().post(f"/api/v1/sites/{site['key']}/decisions", json=body,
                                       headers={"Origin": ORIGIN}).status_code
                for _ in range(3)]
    assert statuses == [201, 201, 201], statuses



def test_a_link_never_names_a_request_that_reused_its_row_id(app, client):
    """Erasure used to delete the request; on SQLite (an INTEGER PRIMARY KEY is the rowid)
    the next request then got the deleted last row's id. A database that did so keeps such
    ids: a link names its request's event too, and one signed before that (only the row
    id) must be older than the request it names."""
    import time

    from itsdangerous import TimestampSigner, URLSafeTimedSerializer

    site = load("care_platform")
    minor_asks_parent(client, site)
    [request_a] = awaiting(client, site)
    link_a = local(request_a["url"])
    salt = f"consent.guardian.v1:{site['key']}"

    class HourAgo(TimestampSigner):
        def get_timestamp(self):
            return int(time.time()) - 3600

    legacy_old = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=salt,
                                        signer=HourAgo).dumps({"g": request_a["id"]})
    run_write(lambda: db.session.execute(sa.text("DELETE FROM guardian_requests")))
    minor_asks_parent(app.test_client(), site)  # another child
    [request_b] = awaiting(client, site)
    if request_b["id"] != request_a["id"]:  # (PostgreSQL's sequences never reuse one)
        run_write(lambda: db.session.execute(sa.text(
            "UPDATE guardian_requests SET id = :a WHERE id = :b"),
            {"a": request_a["id"], "b": request_b["id"]}))
        [request_b] = awaiting(client, site)
    assert request_b["id"] == request_a["id"]  # the id was reused
    base = link_a.rsplit("/", 1)[0]
    for token_link in (link_a, f"{base}/{legacy_old}"):
        assert client.get(token_link).status_code == 403
        assert client.post(token_link, data={"decision": "agree"}).status_code == 403
    assert events("guardian") == []
    # a link signed before this version, after its request opened, still works
    legacy = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=salt).dumps(
        {"g": request_b["id"]})
    assert client.get(f"{base}/{legacy}").status_code == 200
    assert client.get(local(request_b["url"])).status_code == 200


def test_refusals_at_a_links_url_are_kept_out_of_caches_and_referrers(app, client):
    """An expired, forged or answered link, or an invalid form, answers at the URL that
    carries the token: like the page itself, with no-store and no-referrer."""
    from consent.channels import mint_unsubscribe_token

    site = load("care_platform")
    minor_asks_parent(client, site)
    [request] = awaiting(client, site)
    link = local(request["url"])
    minted = mint_unsubscribe_token(site["key"], "email.promotional", "kid@example.org")
    answers = [
        client.get(link[:-2] + ("AA" if not link.endswith("AA") else "BB")),  # forged
        client.post(link, data={"decision": "maybe"}),                        # invalid
        client.get(f"/unsubscribe/{site['key']}/{minted.token[:-3]}xyz"),    # forged
        client.post(f"/unsubscribe/{site['key']}/not-a-token"),
        client.get(f"/preferences/login?site={site['key']}&token=not-a-token"),
    ]
    for r in answers:
        assert 400 <= r.status_code < 500, r.status_code
        assert r.headers.get("Cache-Control") == "no-store", (r.status_code, r.headers)
        assert r.headers.get("Referrer-Policy") == "no-referrer"


# ------------------------------------------------------ (second review) odd tokens, settled


ODD = ["huge", "neg_huge", "str", "float", "bool_true", "none", "list", "e_none", "e_list",
       "e_dict", "e_int", "e_true", "not_dict", "e_other_event"]


@pytest.mark.parametrize("kind", ODD)
def test_signed_tokens_with_odd_payload_types_are_refused_not_500(app, client, kind):
    """A payload a correct server never signs (a key leak, a future format, a bug
    elsewhere) is a friendly 4xx, never a 500, and never opens a request."""
    from itsdangerous import URLSafeTimedSerializer

    site = load("care_platform")
    minor_asks_parent(client, site)
    [request] = awaiting(client, site)
    rid, eid = request["id"], request["event_id"]
    payload = {
        "huge": {"g": 10 ** 30, "e": eid}, "neg_huge": {"g": -(10 ** 30)},
        "str": {"g": str(rid), "e": eid}, "float": {"g": float(rid), "e": eid},
        # True == 1 to Python: a bool must not name request 1 (here: the only request)
        "bool_true": {"g": True}, "none": {"g": None, "e": eid},
        "list": {"g": [rid], "e": eid}, "e_none": {"g": rid, "e": None},
        "e_list": {"g": rid, "e": [eid]}, "e_dict": {"g": rid, "e": {"x": eid}},
        "e_int": {"g": rid, "e": 0}, "e_true": {"g": rid, "e": True},
        "not_dict": [rid, eid], "e_other_event": {"g": rid, "e": "0" * 32},
    }[kind]
    assert rid == 1  # (so that g=True would name it)
    token = URLSafeTimedSerializer(app.config["SECRET_KEY"],
                                   salt=f"consent.guardian.v1:{site['key']}").dumps(payload)
    path = f"/guardian/{site['key']}/{token}"
    _assert_friendly(client.get(path))
    _assert_friendly(client.post(path, data={"decision": "agree"}))
    assert events("guardian") == []


def test_a_request_nothing_can_answer_any_more_does_not_keep_the_address(app, client):
    """The person decided every asked-for key again: the request reads settled, its link
    is refused, and the site's next listing marks it settled and deletes the address."""
    site = load("care_platform")
    minor_asks_parent(client, site)
    [request] = awaiting(client, site)
    page = client.get(f"/preferences?site={site['key']}").get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    r = client.post(f"/preferences?site={site['key']}", data={
        "csrf_token": token, "age_question": "1", "minor": "1"})
    assert r.status_code == 303, r.get_data(as_text=True)[:300]
    assert client.get(local(request["url"])).status_code == 403
    client.get(f"/api/v1/sites/{site['key']}/guardian-requests", headers=bearer(site))
    db.session.rollback()
    assert db.session.execute(sa.text(
        "SELECT id, status, address_sealed FROM guardian_requests")).all() == [
        (request["id"], "settled", None)]
