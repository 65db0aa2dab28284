"""Verifiable guardian consent (issue 20, finding 2): a minor's grants wait for a guardian
who confirms through a signed link the site delivers; the state says "awaiting guardian"."""
from __future__ import annotations

import hashlib
import html
import re
import threading

import pytest
import requests
import sqlalchemy as sa

from consent.audit import verify_all
from consent.channels import Recipient, mint_unsubscribe_token
from consent.extensions import db
from consent.ledger import ConsentEvent
from consent.profiles import load_profile
from tests.support.api import PROBLEM, bearer, decide
from tests.support.outbox import add_endpoint, drain
from tests.support.servers import AppServer

ORIGIN = "https://www.example.test"
PARENT = "Pat.Parent@example.org"
# A name in the guardian page's list of what was asked for.
NAME = r'<span class="pc-name">([^<]*)</span>'


def load(name: str) -> dict:
    result = load_profile(name, origins=[ORIGIN])
    return {"key": result.site_key, "api_key": result.api_key}


def events(action=None) -> list[ConsentEvent]:
    db.session.rollback()
    query = db.select(ConsentEvent).order_by(ConsentEvent.id)
    if action:
        query = query.where(ConsentEvent.action == action)
    return list(db.session.execute(query).scalars())


def minor_asks_parent(client, site, email: str | None = PARENT) -> str:
    """A minor ticks "my parent agrees" in the preference center; returns their visitor id."""
    page = client.get(f"/preferences?site={site['key']}").get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    form = {"csrf_token": token, "age_question": "1", "minor": "1", "guardian": "1",
            "category": ["analytics", "advertising"], "channel": ["email.promotional"]}
    if email is not None:
        form["guardian_email"] = email
    r = client.post(f"/preferences?site={site['key']}", data=form)
    assert r.status_code == 303, r.get_data(as_text=True)
    return events("preferences")[-1].subject


def awaiting(client, site) -> list[dict]:
    r = client.get(f"/api/v1/sites/{site['key']}/guardian-requests?status=awaiting",
                   headers=bearer(site))
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def local(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def page_form(http, link: str) -> dict:
    """The hidden fields of the guardian's page at LINK (its revision and language), which
    an answer sends back with its decision."""
    page = http.get(link)
    text = page.text if hasattr(page, "text") else page.get_data(as_text=True)
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', text))


def agree(http, link: str):
    """The guardian agrees on their page, as the browser posts its form."""
    return http.post(link, data={**page_form(http, link), "decision": "agree"})


def test_a_parent_confirms_through_the_link_the_site_delivers(app, client, fast, receiver):
    site = load("care_platform")
    add_endpoint(site["key"], receiver.url, categories=["analytics"])
    minor_asks_parent(client, site)
    saved = events("preferences")[-1]
    assert saved.categories["analytics"] is False and saved.channels["email.promotional"] is False
    assert saved.meta["awaiting_guardian"] is True

    # The page and the server API say the grants await the parent.
    page = client.get(f"/preferences?site={site['key']}").get_data(as_text=True)
    assert 'id="awaiting-guardian"' in page and "Waiting for your parent" in page
    # what waits, named as the page names it (not "analytics, email.promotional")
    waiting = page.split('id="awaiting-guardian">')[1].split("</p>")[0]
    assert "Promotional email" in waiting and "email.promotional" not in waiting, waiting
    [request] = awaiting(client, site)
    subject = request["subject"]
    state = client.get(f"/api/v1/sites/{site['key']}/subjects/{subject}",
                       headers=bearer(site)).get_json()
    assert state["guardian"]["status"] == "awaiting"
    assert sorted(state["guardian"]["categories"]) == ["advertising", "analytics"]
    assert state["consent"]["categories"]["analytics"] is False

    # The webhook tells the site to deliver a link; it carries neither link nor address.
    drain()
    [note] = [b for b in receiver.bodies() if b["type"] == "guardian.requested"]
    assert note["guardian_request"]["id"] == request["id"] and note["subject"] == subject
    assert PARENT.lower() not in str(note) and "/guardian/" not in str(note)
    # The site's backend reads the link and the address the minor gave, and sends it.
    assert request["address"] == PARENT.lower()
    assert "/guardian/alopal/" in request["url"]

    # The parent opens the link: what was asked for, then agrees.
    link = local(request["url"])
    shown = client.get(link).get_data(as_text=True)
    assert "under 18" in shown and "as their parent" in shown
    assert shown.split('id="guardian-asked"')[1].split("</ul>")[0].count("<li>") == 3
    done = agree(client, link)
    assert done.status_code == 200 and 'id="guardian-agreed"' in done.get_data(as_text=True)
    guardian = events("guardian")[-1]
    assert (guardian.source, guardian.meta) == ("email_link", {
        "age": "minor", "guardian": True, "verified": "link", "guardian_request": request["id"],
        "notice": guardian.meta.get("notice") or "(missing)",
        # AloPal has rules by region: the guardian's page records where they were (the
        # test client sends no region header and a private address: unknown, the default).
        "region": None, "rule": "opt-in"})
    state = client.get(f"/api/v1/sites/{site['key']}/subjects/{subject}",
                       headers=bearer(site)).get_json()
    assert state["consent"]["categories"]["analytics"] is True
    assert state["channels"]["email.promotional"] is True and state["guardian"] is None
    # The link works once, and the address is gone once answered.
    assert client.post(link, data={"decision": "agree"}).status_code == 403
    assert client.get(link).status_code == 403
    after = client.get(f"/api/v1/sites/{site['key']}/guardian-requests/{request['id']}",
                       headers=bearer(site)).get_json()
    assert (after["status"], after["address"], after["url"]) == ("confirmed", None, None)
    assert db.session.execute(sa.text(
        "SELECT count(*) FROM guardian_requests WHERE address_sealed IS NOT NULL")).scalar() == 0
    assert verify_all().ok


def test_a_parent_who_refuses_grants_nothing(app, client):
    site = load("care_platform")
    minor_asks_parent(client, site, email=None)
    [request] = awaiting(client, site)
    assert request["address"] is None  # the site may know the parent's address itself
    r = client.post(local(request["url"]), data={"decision": "refuse"})
    assert r.status_code == 200 and 'id="guardian-refused"' in r.get_data(as_text=True)
    assert events("guardian") == []
    assert awaiting(client, site) == []
    bad = client.post(local(request["url"]), data={"decision": "maybe"})
    assert bad.status_code in (403, 422)


def test_links_cannot_be_forged_reused_elsewhere_or_used_late(app, client, clock):
    site = load("care_platform")
    other = load("device_network")
    minor_asks_parent(client, site)
    [request] = awaiting(client, site)
    link = local(request["url"])
    token = link.rsplit("/", 1)[1]
    # Altered token, another site's key: refused, nothing recorded.
    assert client.get(link[:-2] + ("AA" if not link.endswith("AA") else "BB")).status_code == 403
    assert client.post(f"/guardian/{other['key']}/{token}",
                       data={"decision": "agree"}).status_code == 403
    # Without the site's API key nobody reads the link or the address.
    r = client.get(f"/api/v1/sites/{site['key']}/guardian-requests")
    assert r.status_code == 401 and r.mimetype == PROBLEM
    r = client.get(f"/api/v1/sites/{site['key']}/guardian-requests", headers=bearer(other))
    assert r.status_code in (401, 403)
    # After 7 days the link has expired and the person no longer awaits anyone.
    clock.advance(days=8)
    assert client.post(link, data={"decision": "agree"}).status_code == 403
    assert events("guardian") == []
    assert awaiting(client, site) == []


def test_the_sites_own_verification_settles_the_request(app, client):
    site = load("device_network")
    minor = decide(client, site["key"], "accept_all", age="minor", guardian=True,
                   origin=ORIGIN)["subject"]
    [request] = awaiting(client, site)
    r = client.post(f"/api/v1/sites/{site['key']}/guardian-consents",
                    json={"subject": minor, "categories": {"analytics": True}},
                    headers=bearer(site))
    assert r.status_code == 201, r.get_data(as_text=True)
    assert awaiting(client, site) == []
    assert client.get(local(request["url"])).status_code == 403


def test_erasure_ends_the_request_and_deletes_the_parents_address(app, client):
    from tests.support.admin import make_token

    site = load("care_platform")
    minor_asks_parent(client, site)
    [request] = awaiting(client, site)
    token = make_token(["requests:write"])
    rid = client.post(f"/api/v1/audit/sites/{site['key']}/requests",
                      json={"kind": "erasure", "subject": request["subject"]},
                      headers=bearer(token)).get_json()["id"]
    r = client.post(f"/api/v1/audit/sites/{site['key']}/requests/{rid}/erase",
                    headers=bearer(token))
    assert r.status_code == 200, r.get_data(as_text=True)
    # ended, not deleted (SQLite would reuse a deleted last row's id for the next request)
    assert db.session.execute(sa.text(
        "SELECT status, address_sealed FROM guardian_requests")).all() == [("erased", None)]
    assert client.get(local(request["url"])).status_code == 403


def test_a_bad_guardian_address_is_refused_and_changes_nothing(app, client):
    site = load("care_platform")
    page = client.get(f"/preferences?site={site['key']}").get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    r = client.post(f"/preferences?site={site['key']}", data={
        "csrf_token": token, "age_question": "1", "minor": "1", "guardian": "1",
        "guardian_email": "not an address", "category": ["analytics"]})
    assert 400 <= r.status_code < 500
    assert events() == []


def test_a_choice_the_minor_made_since_the_request_stands(app, client):
    # The minor asked, then changed their mind in the preference center (nothing ticked):
    # the guardian's link, opened later, cannot turn the withdrawn choices back on.
    site = load("care_platform")
    minor_asks_parent(client, site)
    [request] = awaiting(client, site)
    page = client.get(f"/preferences?site={site['key']}").get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    assert client.post(f"/preferences?site={site['key']}",
                       data={"csrf_token": token}).status_code == 303
    link = local(request["url"])
    assert client.get(link).status_code == 403
    assert client.post(link, data={"decision": "agree"}).status_code == 403
    assert events("guardian") == []
    # Nothing waits any more: the site is not asked to deliver a link that cannot work.
    assert awaiting(client, site) == []
    state = client.get(f"/api/v1/sites/{site['key']}/subjects/{request['subject']}",
                       headers=bearer(site)).get_json()
    assert state["guardian"] is None
    assert state["consent"]["categories"]["advertising"] is False
    assert state["channels"]["email.promotional"] is False


def test_an_unsubscribe_since_the_request_is_not_undone_by_the_guardian(app, client):
    # The minor asked for promotional e-mail too, then used a message's one-click
    # unsubscribe: the guardian's agreement covers what is still asked for, not that.
    site = load("care_platform")
    minor_asks_parent(client, site)
    [request] = awaiting(client, site)
    # (The preference page made this visitor: no browser holds a key the API could be
    # sent with, so the site mapped the address by its own means; here, in process.)
    minted = mint_unsubscribe_token(site["key"], "email.promotional", "kid@example.org",
                                    Recipient(subject=request["subject"]))
    assert client.post(f"/unsubscribe/{site['key']}/{minted.token}",
                       data={"List-Unsubscribe": "One-Click"}).status_code == 200
    link = local(request["url"])
    shown = client.get(link).get_data(as_text=True)
    asked = re.findall(NAME, shown.split('id="guardian-asked"')[1].split("</ul>")[0])
    assert len(asked) == 2
    done = agree(client, link)
    assert done.status_code == 200
    # "Thank you: ... these are now on" names those two, not promotional e-mail
    assert re.findall(NAME, done.get_data(as_text=True).split(
        'id="guardian-asked"')[1].split("</ul>")[0]) == asked
    guardian = events("guardian")[-1]
    assert guardian.categories == {"analytics": True, "advertising": True}
    assert guardian.channels is None
    state = client.get(f"/api/v1/sites/{site['key']}/subjects/{request['subject']}",
                       headers=bearer(site)).get_json()
    assert state["consent"]["categories"]["advertising"] is True
    assert state["channels"]["email.promotional"] is False
    r = client.post(f"/api/v1/sites/{site['key']}/may-i-send",
                    json={"channel": "email", "kind": "promotional",
                          "address": "kid@example.org"}, headers=bearer(site))
    assert r.get_json()["allowed"] is False


def test_an_opt_out_the_site_reports_since_the_request_stands(app, client):
    # The site's backend reports the minor's "no promotional e-mail" (a checkout box)
    # while the request waits: recorded although the channel is off, and kept.
    site = load("care_platform")
    minor_asks_parent(client, site)
    [request] = awaiting(client, site)
    r = client.post(f"/api/v1/sites/{site['key']}/channel-choices",
                    json={"subject": request["subject"],
                          "channels": {"email.promotional": False}}, headers=bearer(site))
    assert r.status_code == 200 and r.get_json()["event_id"] is not None
    # reported again: nothing new
    again = client.post(f"/api/v1/sites/{site['key']}/channel-choices",
                        json={"subject": request["subject"],
                              "channels": {"email.promotional": False}}, headers=bearer(site))
    assert again.status_code == 200 and again.get_json()["event_id"] is None
    assert agree(client, local(request["url"])).status_code == 200
    assert events("guardian")[-1].channels is None
    state = client.get(f"/api/v1/sites/{site['key']}/subjects/{request['subject']}",
                       headers=bearer(site)).get_json()
    assert state["channels"]["email.promotional"] is False
    assert state["consent"]["categories"]["analytics"] is True


@pytest.mark.backend
@pytest.mark.slow
def test_two_answers_at_once_record_one_guardian_event(app, database_url):
    # Two clicks, or the link open in two tabs, answered at the same moment: real HTTP to
    # the app under gunicorn (two workers, each request on its own connection), several
    # rounds so the answers overlap inside the write. One answer per request counts
    # (one guardian event when it agrees); the others find it answered (403, as a used
    # link). Odd rounds: one tab agrees, another refuses, a third agrees.
    site = load("device_network")
    server = AppServer(database_url, workers=2, threads=4)
    try:
        http = server.client()
        for n in range(6):
            decide(http, site["key"], "accept_all", age="minor", guardian=True, origin=ORIGIN)
            [request] = awaiting(http, site)
            url = server.url + local(request["url"])
            decisions = ["agree", "refuse", "agree"] if n % 2 else ["agree"] * 3
            start = threading.Barrier(len(decisions))
            answers: dict = {}

            form = page_form(requests, url)

            def click(i, decision):
                start.wait()
                r = requests.post(url, data={**form, "decision": decision}, timeout=60)
                answers[i] = (decision, r.status_code)

            clicks = [threading.Thread(target=click, args=(i, d))
                      for i, d in enumerate(decisions)]
            for t in clicks:
                t.start()
            for t in clicks:
                t.join(90)
            statuses = [s for _, s in answers.values()]
            assert sorted(statuses) == [200] + [403] * (len(decisions) - 1), (n, answers)
            [winner] = [d for d, s in answers.values() if s == 200]
            recorded = [e for e in events("guardian")
                        if e.meta.get("guardian_request") == request["id"]]
            after = http.get(f"/api/v1/sites/{site['key']}/guardian-requests/{request['id']}",
                             headers=bearer(site)).get_json()
            if winner == "agree":
                assert len(recorded) == 1, (n, answers, [e.event_id for e in recorded])
                assert (after["status"], after["decision_event_id"]) == \
                    ("confirmed", recorded[0].event_id)
            else:
                assert recorded == [] and after["status"] == "refused", (n, answers)
            assert after["address"] is None and after["url"] is None
    finally:
        server.stop()
    assert verify_all().ok


# ---------------------------------------------------------------- what the guardian saw


def guardian_page(client, link: str) -> tuple[str, dict, str]:
    """The guardian's page: its HTML, the form's hidden fields and where it posts."""
    page = client.get(link).get_data(as_text=True)
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))
    action = html.unescape(re.search(r'<form method="post" action="([^"]+)"', page).group(1))
    return page, fields, action


def notice_of(client, site, digest: str) -> dict:
    r = client.get(f"/api/v1/sites/{site['key']}/notices/{digest}")
    assert r.status_code == 200
    # anyone checks the document against the event's digest with nothing but SHA-256
    assert hashlib.sha256(r.get_data()).hexdigest() == digest
    return r.get_json()


def test_the_guardians_consent_records_the_words_their_page_showed(app, client, runner):
    site = load("care_platform")
    minor_asks_parent(client, site)
    [request] = awaiting(client, site)
    page, fields, action = guardian_page(client, local(request["url"]))
    assert set(fields) == {"revision", "lang"} and fields["lang"] == "en"
    r = client.post(action, data={**fields, "decision": "agree"})
    assert r.status_code == 200 and 'id="guardian-agreed"' in r.get_data(as_text=True)

    event = events("guardian")[-1]
    notice = notice_of(client, site, event.meta["notice"])
    assert notice["surface"] == "guardian" and notice["locale"] == "en"
    # the sentence the guardian agreed under, the names of what was asked, word for word
    intro = re.search(r'<p id="guardian-intro">([^<]*)</p>', page).group(1)
    assert notice["texts"]["page.intro"] == html.unescape(intro)
    assert "under 18" in intro and "AloPal" in intro
    agree = re.search(r'id="guardian-agree">([^<]*)</button>', page).group(1)
    assert notice["texts"]["page.agree"] == html.unescape(agree)
    asked = page.split('id="guardian-asked"')[1].split("</ul>")[0]
    named = {c["key"]: c for c in notice["categories"] + notice["channels"]}
    keys = request["categories"] + request["channels"]
    assert [html.unescape(n) for n in re.findall(NAME, asked)] == \
        [named[k]["title"] for k in keys]
    # what each one is, as the page explained it: a guardian agrees to purposes, not names
    assert [html.unescape(d) for d in re.findall(r'<span class="pc-desc">([^<]*)</span>',
                                                 asked)] == [named[k]["description"] for k in keys]
    assert all(named[k]["description"] for k in keys)
    assert sorted(request["categories"] + request["channels"]) == [
        "advertising", "analytics", "email.promotional"]
    assert sorted(event.categories) == ["advertising", "analytics"]
    assert notice["policy"]["version"] == event.policy_version
    assert "page.agreed" not in notice["texts"]  # shown after the answer: not agreed to
    # the policy it was given under: named on the page, linked to its archived text
    line = re.search(r'<p id="guardian-policy"><a href="([^"]+)">([^<]*)</a>', page)
    assert line.group(1) == f"/sites/{site['key']}/policies/{event.policy_version}"
    assert notice["texts"]["page.policy"] == html.unescape(line.group(2))
    assert event.policy_version in line.group(2)
    assert client.get(line.group(1)).status_code == 200

    # The person's receipt carries the notice, and it checks offline.
    from consent.ledger.receipts import check_receipt
    from consent.subjects import read_token as subject_read_token

    r = client.get(f"/api/v1/sites/{site['key']}/receipts/{event.event_id}"
                   f"?r={subject_read_token(event.subject)}")
    assert r.status_code == 200, r.get_data(as_text=True)
    receipt = r.get_json()
    key = runner.invoke(args=["consent", "signing-key", "--site", site["key"]]).output.strip()
    checked = check_receipt(receipt, key)
    assert checked.ok and checked.notice == event.meta["notice"], checked.problems
    receipt["notice"]["texts"]["page.intro"] = "Someone asked for nothing much."
    assert not check_receipt(receipt, key).ok
    assert verify_all().ok


def test_an_answer_on_a_page_loaded_before_an_edit_records_that_pages_words(app, client):
    from consent.site_admin import update_category
    from consent.sites import Category

    site = load("care_platform")
    minor_asks_parent(client, site)
    [request] = awaiting(client, site)
    link = local(request["url"])
    page, fields, action = guardian_page(client, link)
    cat = db.session.execute(db.select(Category).where(Category.key == "advertising")
                             .order_by(Category.id.desc())).scalars().first()
    old = cat.titles["en"]
    assert old in page
    # The operator renames what the guardian is agreeing to while their page is open.
    update_category(site["key"], "advertising", titles={"en": "Harmless extras"},
                    descriptions=cat.descriptions, services=cat.services)
    assert "Harmless extras" in client.get(link).get_data(as_text=True)
    r = client.post(action, data={**fields, "decision": "agree"})
    assert r.status_code == 200
    notice = notice_of(client, site, events("guardian")[-1].meta["notice"])
    titles = {c["key"]: c["title"] for c in notice["categories"]}
    assert titles["advertising"] == old  # what their page said, not today's name


def test_the_guardian_reads_the_names_the_sites_preference_page_gives(app, client):
    """A site that words its channels itself (settings.texts, as its preference page shows
    them to the minor) is read in those words on the guardian's page and in its notice."""
    from consent.database import run_write
    from consent.sites import get_site, invalidate_site_cache

    site = load("care_platform")
    own = {"channel.email.promotional.title": "AloPal news by e-mail",
           "channel.email.promotional.description": "Our monthly letter, with offers."}

    def write():
        s = get_site(site["key"])
        texts = {k: dict(v) for k, v in (s.settings.get("texts") or {}).items()}
        texts.setdefault("en", {}).update(own)
        s.settings = {**s.settings, "texts": texts}
    run_write(write)
    invalidate_site_cache()
    minors_page = client.get(f"/preferences?site={site['key']}").get_data(as_text=True)
    assert all(html.escape(text) in minors_page for text in own.values())
    minor_asks_parent(client, site)
    [request] = awaiting(client, site)
    page, fields, action = guardian_page(client, local(request["url"]))
    assert all(html.escape(text) in page for text in own.values())
    assert client.post(action, data={**fields, "decision": "agree"}).status_code == 200
    notice = notice_of(client, site, events("guardian")[-1].meta["notice"])
    [email] = [c for c in notice["channels"] if c["key"] == "email.promotional"]
    assert (email["title"], email["description"]) == tuple(own.values())


def test_an_answer_whose_page_no_notice_tells_is_asked_again_and_records_nothing(app,
                                                                                client):
    from consent.site_admin import publish_site_policy

    site = load("care_platform")
    minor_asks_parent(client, site)
    [request] = awaiting(client, site)
    _page, fields, action = guardian_page(client, local(request["url"]))
    # A malformed revision is refused and changes nothing: the link still works.
    r = client.post(action, data={**fields, "revision": "not-a-revision", "decision": "agree"})
    assert r.status_code == 422 and events("guardian") == []
    assert [x["id"] for x in awaiting(client, site)] == [request["id"]]
    # A new policy version while the page is open; then answers that cannot say which
    # page they were given on: a revision this server never showed, none at all (a page
    # from before this version, a hand-made post). Nothing is recorded: the guardian is
    # shown the page as it is now (the new policy named), and answers again on it.
    publish_site_policy(site["key"], label="2", text="New terms.", url=None, material=True,
                        summary="new")
    for form in ({**fields, "revision": "0123456789abcdef"}, {"lang": "en"}, {}):
        r = client.post(action, data={**form, "decision": "agree"})
        page = r.get_data(as_text=True)
        assert r.status_code == 409 and 'id="guardian-changed"' in page, r.status_code
        assert "version 2" in page and events("guardian") == []
    again = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))
    assert client.post(action, data={**again, "decision": "agree"}).status_code == 200
    event = events("guardian")[-1]
    assert event.policy_version == "2" and event.meta["notice"]
    assert notice_of(client, site, event.meta["notice"])["policy"]["version"] == "2"


def test_a_guardian_reading_in_german_is_recorded_with_the_german_words(app, client):
    from consent.database import run_write
    from consent.sites import Site, invalidate_site_cache

    site = load("care_platform")

    def add_german():  # (the seed sites start in English; the operator adds German)
        db.session.execute(sa.update(Site).where(Site.key == site["key"])
                           .values(locales=["en", "de"]))
    run_write(add_german)
    invalidate_site_cache()
    minor_asks_parent(client, site)
    [request] = awaiting(client, site)
    link = local(request["url"])
    page = client.get(link, headers={"Accept-Language": "de-DE,de;q=0.9"}).get_data(
        as_text=True)
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))
    action = html.unescape(re.search(r'<form method="post" action="([^"]+)"', page).group(1))
    assert fields["lang"] == "de" and action.endswith("?lang=de")
    # the answer's page keeps the language even from a browser that sends another
    r = client.post(action, data={**fields, "decision": "agree"},
                    headers={"Accept-Language": "en"})
    agreed = re.search(r'id="guardian-agreed">([^<]*)<', r.get_data(as_text=True)).group(1)
    assert html.unescape(agreed) == load_json("minors.de.json")["page.agreed"]
    notice = notice_of(client, site, events("guardian")[-1].meta["notice"])
    intro = re.search(r'<p id="guardian-intro">([^<]*)</p>', page).group(1)
    assert notice["locale"] == "de" and notice["texts"]["page.intro"] == html.unescape(intro)
    assert notice["texts"]["page.intro"] != notice_in_english(site)


def load_json(name: str) -> dict:
    import json

    from consent.i18n import LOCALES_DIR

    return json.loads((LOCALES_DIR / name).read_text(encoding="utf-8"))


def notice_in_english(site) -> str:
    from consent.guardian_page import page_words
    from consent.sites import site_snapshot

    return page_words(site_snapshot(site["key"]), "en")["texts"]["page.intro"]
