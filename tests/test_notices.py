"""What the visitor was shown (consent.notices): each widget decision records the SHA-256
of the notice its page displayed, the notice is kept unchanged under it, anyone can fetch
it and check the digest, and a receipt carries it so that it checks offline."""
from __future__ import annotations

import copy
import hashlib
import json
import re

import pytest
import sqlalchemy as sa

from consent.extensions import db
from consent.ledger import ConsentEvent, verify_ledger
from consent.ledger.receipts import check_receipt
from consent.notices import Notice
from consent.site_admin import update_category
from tests.support.api import PROBLEM, decide


def config(client, locale="en"):
    r = client.get(f"/api/v1/sites/shop/config?locale={locale}")
    assert r.status_code == 200
    return r.get_json()


def last_event() -> ConsentEvent:
    db.session.rollback()
    return db.session.execute(db.select(ConsentEvent).order_by(ConsentEvent.id.desc())
                              ).scalars().first()


def edit_elsewhere(locale: str, description: str) -> None:
    """Change the analytics description as another process does: this process's cached
    snapshot of the site is not invalidated."""
    from consent.database import run_write, utcnow
    from consent.sites import Category, Site

    def write():
        cat = db.session.execute(sa.select(Category).join(Site).where(
            Site.key == "shop", Category.key == "analytics")).scalar_one()
        cat.descriptions = {locale: description}
        db.session.get(Site, cat.site_id).updated_at = utcnow()

    run_write(write)


def notice_of(client, digest: str):
    return client.get(f"/api/v1/sites/shop/notices/{digest}")


def test_a_widget_decision_records_the_notice_its_page_showed(client, site):
    shown = config(client)
    decide(client, "shop", "accept_all", revision=shown["revision"], locale="en")
    digest = last_event().meta["notice"]
    r = notice_of(client, digest)
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert "immutable" in r.headers["Cache-Control"]
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    # anyone checks the document against the event's digest with nothing but SHA-256
    assert hashlib.sha256(r.get_data()).hexdigest() == digest
    notice = r.get_json()
    # what the banner said, the categories as described then, the policy's own digest
    assert notice["strings"]["acceptAll"] == shown["strings"]["acceptAll"]
    assert [c["title"] for c in notice["categories"]] == [c["title"] for c in
                                                          shown["categories"]]
    analytics = next(c for c in notice["categories"] if c["key"] == "analytics")
    assert analytics["description"] and analytics["services"]
    assert notice["policy"]["version"] == "2026-01"
    assert notice["policy"]["sha256"] == hashlib.sha256(b"Policy text v1").hexdigest()
    # how the widget works is not notice: no endpoints, cookie or cache settings
    assert not {"endpoints", "cookie", "ttl", "revision"} & set(notice)
    assert verify_ledger().ok


def test_an_edit_gives_a_new_notice_and_keeps_the_old_one_for_pages_loaded_before(
        client, site):
    before = config(client)["revision"]
    decide(client, "shop", "accept_all", revision=before)
    old = last_event().meta["notice"]
    update_category("shop", "analytics", titles={"en": "Analytics"},
                    descriptions={"en": "We sell what we learn about you."}, services=[])
    after = config(client)["revision"]
    assert after != before
    decide(client, "shop", "accept_all", revision=after)
    new = last_event().meta["notice"]
    assert new != old
    assert "We sell what we learn" in notice_of(client, new).get_data(as_text=True)
    # a page loaded before the edit and clicked after: recorded with what it showed
    decide(client, "shop", "accept_all", revision=before)
    assert last_event().meta["notice"] == old
    old_text = notice_of(client, old).get_data(as_text=True)
    assert "We sell" not in old_text and hashlib.sha256(old_text.encode()).hexdigest() == old


def test_a_revision_this_server_never_showed_records_no_notice(client, site):
    answer = decide(client, "shop", "reject_all", revision="0123456789abcdef")
    assert answer["event_id"] and last_event().meta is None
    # and a decision without a revision (server callers, older widgets) as before
    decide(client, "shop", "reject_all")
    assert last_event().meta is None


@pytest.mark.parametrize("revision", ["", "ABCDEF0123456789", "0123", "0" * 17, 7])
def test_a_malformed_revision_is_a_problem_naming_it(client, site, revision):
    r = client.post("/api/v1/sites/shop/decisions",
                    json={"action": "accept_all", "revision": revision})
    assert r.status_code == 422 and r.mimetype == PROBLEM
    assert [e["pointer"] for e in r.get_json()["errors"]] == ["#/revision"]


def test_unknown_and_malformed_digests_are_404(client, site, other_site):
    decide(client, "shop", "accept_all", revision=config(client)["revision"])
    digest = last_event().meta["notice"]
    for bad in ("f" * 64, digest[:-1], "x" * 64, "../" + digest):
        r = notice_of(client, bad)
        assert r.status_code == 404, bad
    # another site's notices are not this site's
    assert client.get(f"/api/v1/sites/other/notices/{digest}").status_code == 404


def test_the_database_refuses_to_edit_or_delete_a_notice(client, site):
    decide(client, "shop", "accept_all", revision=config(client)["revision"])
    db.session.rollback()
    for statement in ("UPDATE notices SET body = '{}'", "DELETE FROM notices"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            db.session.execute(sa.text(statement))
        db.session.rollback()
    assert db.session.execute(sa.select(sa.func.count()).select_from(Notice)).scalar() == 1


def test_the_receipt_carries_the_notice_and_an_edited_one_fails_offline(client, runner,
                                                                       site, tmp_path):
    answer = decide(client, "shop", "accept_all", revision=config(client)["revision"])
    r = client.get(f"/api/v1/sites/shop/receipts/{answer['event_id']}?r={answer['read_token']}")
    assert r.status_code == 200
    receipt = r.get_json()
    key = runner.invoke(args=["consent", "signing-key", "--site", "shop"]).output.strip()
    checked = check_receipt(receipt, key)
    assert checked.ok, checked.problems
    assert checked.notice == receipt["event"]["meta"]["notice"]
    assert "the notice it was shown is the one recorded" in checked.summary()
    # the operator's after-the-fact story: a milder description of what was accepted
    edited = copy.deepcopy(receipt)
    cat = next(c for c in edited["notice"]["categories"] if c["key"] == "advertising")
    cat["description"] = "Nothing at all."
    bad = check_receipt(edited, key)
    assert not bad.ok and "notice" in bad.problems[0]
    # ... and the same through the command line
    path = tmp_path / "receipt-edited.json"
    path.write_text(json.dumps(edited))
    out = runner.invoke(args=["consent", "verify-receipt", str(path), "--public-key", key])
    assert out.exit_code == 1 and "notice" in out.output
    path.write_text(json.dumps(receipt))
    out = runner.invoke(args=["consent", "verify-receipt", str(path), "--public-key", key])
    assert out.exit_code == 0 and "the notice it was shown" in out.output


def test_serving_the_config_keeps_its_notice_for_a_decision_made_after_an_edit(client,
                                                                              site):
    """Nobody decided before the edit: the page's notice was kept when its config was
    served, so the first decision from that page still names what it showed."""
    shown = config(client)
    db.session.rollback()
    [kept] = db.session.execute(sa.select(Notice)).scalars().all()
    assert kept.revision == shown["revision"] and kept.locale == "en"
    update_category("shop", "advertising", titles={"en": "Advertising"},
                    descriptions={"en": "Changed after the page was loaded."}, services=[])
    assert config(client)["revision"] != shown["revision"]
    decide(client, "shop", "accept_all", revision=shown["revision"])
    assert last_event().meta["notice"] == kept.digest
    assert "Changed after" not in notice_of(client, kept.digest).get_data(as_text=True)


def test_a_choice_on_a_page_from_before_a_new_category_decides_only_what_it_showed(
        client, site):
    from consent.site_admin import add_category

    shown = config(client)
    add_category("shop", "personalisation", "Personalisation")
    assert config(client)["revision"] != shown["revision"]
    answer = decide(client, "shop", "accept_all", revision=shown["revision"])
    event = last_event()
    assert set(event.categories) == {"essential", "functional", "analytics", "advertising"}
    assert all(event.categories.values())
    # the new category is undecided (off until asked), not granted unseen
    assert answer["consent"]["categories"]["personalisation"] is False
    assert "personalisation" not in answer["consent"]["decided"]
    # nor refused unseen, by "Reject all" or a custom choice on such a page
    decide(client, "shop", "reject_all", revision=shown["revision"])
    assert "personalisation" not in last_event().categories
    decide(client, "shop", "custom", revision=shown["revision"],
           categories={"analytics": True})
    assert "personalisation" not in last_event().categories
    # a page showing it: granted
    decide(client, "shop", "accept_all", revision=config(client)["revision"])
    assert last_event().categories["personalisation"] is True
    assert verify_ledger().ok


def test_visitors_under_other_rules_by_region_are_recorded_with_their_own_words(app, client,
                                                                               site):
    """A Californian saw the opt-out notice and its link; a German the opt-in banner: each
    event names the notice of its own visitor, and every opt-in region shares one."""
    from tests.test_regions import CA, DE, US_RULES
    from consent.regions import set_region_rules

    app.config["CONSENT_REGION_HEADERS"] = "cloudflare"
    set_region_rules("shop", US_RULES)
    revision = config(client)["revision"]
    digests = {}
    for name, headers in (("CA", CA), ("DE", DE), ("FR", {**DE, "CF-IPCountry": "FR"})):
        r = client.post("/api/v1/sites/shop/decisions", headers=headers,
                        json={"action": "reject_all", "revision": revision})
        assert r.status_code == 201
        digests[name] = last_event().meta["notice"]
    assert digests["DE"] == digests["FR"] != digests["CA"]
    ca = notice_of(client, digests["CA"]).get_json()
    assert ca["region"]["mode"] == "opt-out" and ca["region"]["strings"]["link"]
    assert "region" not in notice_of(client, digests["DE"]).get_json()


def test_verify_names_a_notice_edited_or_deleted_behind_the_triggers(app, client, runner,
                                                                    site):
    decide(client, "shop", "accept_all", revision=config(client)["revision"])
    digest = last_event().meta["notice"]
    out = runner.invoke(args=["consent", "verify"])
    assert out.exit_code == 0, out.output
    # an operator who drops the guard and softens the text the visitor saw
    dialect = db.session.get_bind().dialect.name
    from consent.notices import drop_notice_ddl, notice_ddl

    def tamper(statement):
        db.session.rollback()
        for s in drop_notice_ddl(dialect):
            db.session.execute(sa.text(s))
        db.session.execute(sa.text(statement))
        for s in notice_ddl(dialect):
            db.session.execute(sa.text(s))
        db.session.commit()

    tamper("UPDATE notices SET body = replace(body, 'Advertising', 'Nothing')")
    out = runner.invoke(args=["consent", "verify"])
    assert out.exit_code == 1 and f"notice {digest[:16]}" in out.output
    assert "it was edited" in out.output
    tamper("DELETE FROM notices")
    out = runner.invoke(args=["consent", "verify"])
    assert out.exit_code == 1 and "which is not kept: it was deleted" in out.output


def test_a_process_whose_cached_snapshot_is_stale_never_files_new_words_under_the_old_revision(
        app, client, site):
    """Another process edits the site while this one still holds its snapshot (cached for
    CONSENT_SITE_CACHE_SECONDS): the config this one builds meanwhile carries the old
    revision, but the notice kept under that revision is only ever the old words."""
    app.config["CONSENT_SITE_CACHE_SECONDS"] = 60
    decide(client, "shop", "reject_all")  # this process now caches the snapshot
    before = config(client)["revision"]
    db.session.rollback()
    [kept] = db.session.execute(sa.select(Notice)).scalars().all()
    assert "Sold to partners" not in kept.body

    edit_elsewhere("en", "Sold to partners.")
    from consent.notices import forget_notices
    forget_notices()  # (as a process that has not built this revision's notice yet)
    assert client.get("/api/v1/sites/shop/config?locale=de").status_code == 200
    decide(client, "shop", "accept_all", revision=before, locale="de")
    db.session.rollback()
    for notice in db.session.execute(sa.select(Notice)).scalars():
        assert notice.revision != before or "Sold to partners" not in notice.body


def test_a_config_built_after_another_processes_edit_carries_the_new_revision(app, client,
                                                                              site):
    """The config's revision names its words: one built while this process still cached
    the site from before another process's edit has the edit's revision, not the old."""
    app.config["CONSENT_SITE_CACHE_SECONDS"] = 60
    before = config(client)["revision"]

    edit_elsewhere("de", "An Partner verkauft.")
    r = client.get("/api/v1/sites/shop/config?locale=de&details=1").get_json()
    analytics = next(c for c in r["categories"] if c["key"] == "analytics")
    assert analytics["description"] == "An Partner verkauft."
    assert r["revision"] != before
    decide(client, "shop", "accept_all", revision=r["revision"], locale="de")
    assert "An Partner verkauft" in notice_of(client, last_event().meta["notice"]).get_data(
        as_text=True)


def test_the_persons_access_report_links_what_they_were_shown_and_its_receipt_checks_it(
        app, client, runner, site, admin):
    """Seed policies promise access to one's own records: the report the person opens
    (page and JSON) links each widget decision's notice, and the Kantara receipt's proof
    carries it so that verify-receipt checks it."""
    from tests.support.admin import post_form
    from tests.test_requests import set_controller

    set_controller("shop")
    answer = decide(client, "shop", "accept_all", revision=config(client)["revision"])
    digest = last_event().meta["notice"]
    r = post_form(admin, "/admin/sites/shop/requests",
                  {"kind": "access", "subject": answer["subject"]})
    page = admin.get(r.headers["Location"]).data.decode()
    path = page.split('id="access-link">')[1].split("<")[0].split("://", 1)[1].split("/", 1)[1]
    person = app.test_client()
    html = person.get("/" + path).data.decode()
    assert f'/api/v1/sites/shop/notices/{digest}">What was shown</a>' in html
    body = person.get(f"/{path}/history.json").get_json()
    url = body["events"][0]["notice_url"]
    assert url.endswith(f"/api/v1/sites/shop/notices/{digest}")
    assert hashlib.sha256(person.get(url).get_data()).hexdigest() == digest
    receipt = person.get(f"/{path}/receipt.json").get_json()
    key = runner.invoke(args=["consent", "signing-key", "--site", "shop"]).output.strip()
    assert receipt["proof"]["notice"]["site"] == "shop"
    checked = check_receipt(receipt, key)
    assert checked.ok and checked.notice == digest, checked.problems


# ---------------------------------------------------------------- the preference page


def test_a_save_on_the_preference_page_records_what_that_page_said(client, site):
    """The page's own words: its texts, each category as it described it, the channels and
    the policy version in force with its digest, under the page's own notice."""
    from tests.test_preferences import page, save

    html = page(client)
    assert save(client, html, categories=["analytics"]).status_code == 303
    event = last_event()
    digest = event.meta["notice"]
    r = notice_of(client, digest)
    assert r.status_code == 200
    assert hashlib.sha256(r.get_data()).hexdigest() == digest
    notice = r.get_json()
    assert notice["surface"] == "preferences" and notice["locale"] == "en"
    # every category's title and description as the page rendered them
    shown = re.findall(r'<span class="pc-name">([^<]*)</span> <span class="pc-desc">([^<]*)'
                       r'</span>', html)
    described = [(c["title"], c["description"]) for c in notice["categories"]]
    assert len(described) == 4 and all(d for _, d in described)
    assert [(html_unescape(t), html_unescape(d)) for t, d in shown][:len(described)] \
        == described
    assert notice["texts"]["prefs.cookies_heading"] in html
    assert "channel.email.promotional.title" in notice["texts"]
    assert notice["policy"] == {"version": "2026-01",
                                "sha256": hashlib.sha256(b"Policy text v1").hexdigest()}
    # not the widget's notice of the same revision: other words
    decide(client, "shop", "accept_all", revision=config(client)["revision"])
    assert last_event().meta["notice"] != digest
    assert verify_ledger().ok


def test_a_preference_page_loaded_before_a_change_is_recorded_as_it_was(client, site, app):
    """An unticked box is a refusal only of what the page offered: a category added after
    it was loaded stays undecided, and the policy version is the one the page named."""
    from consent.database import run_write
    from consent.policies import publish_policy
    from consent.site_admin import add_category
    from consent.sites import get_site
    from tests.test_preferences import page, save

    html = page(client)
    kept = last_notice("preferences")
    add_category("shop", "personalisation", "Personalisation")
    run_write(lambda: publish_policy(get_site("shop").id, "2026-06", text="Policy text v2",
                                     material=True))
    assert save(client, html, categories=["analytics"]).status_code == 303
    event = last_event()
    assert event.meta["notice"] == kept.digest
    assert set(event.categories) == {"essential", "functional", "analytics", "advertising"}
    assert event.policy_version == "2026-01"
    # a page that offers it: an unticked box refuses it, under the version in force
    save(client, page(client), categories=["analytics"])
    event = last_event()
    assert event.categories["personalisation"] is False
    assert event.policy_version == "2026-06" and event.meta["notice"] != kept.digest
    assert "Personalisation" in notice_of(client, event.meta["notice"]).get_data(as_text=True)
    assert verify_ledger().ok


def test_a_preference_form_with_a_forged_or_malformed_revision(client, site):
    from tests.support.db import count_events
    from tests.test_preferences import page, save

    html = page(client)
    assert save(client, html, categories=["analytics"],
                extra={"revision": "0123456789abcdef"}).status_code == 303
    assert "notice" not in (last_event().meta or {})  # a revision nobody showed: none
    r = save(client, html, extra={"revision": "not a revision"})
    assert r.status_code == 422 and "revision" in r.get_data(as_text=True)
    assert count_events() == 1


def last_notice(surface: str) -> Notice:
    db.session.rollback()
    return db.session.execute(sa.select(Notice).where(Notice.surface == surface)
                              .order_by(Notice.id.desc())).scalars().first()


def html_unescape(text: str) -> str:
    import html

    return html.unescape(text)


# ---------------------------------------------------------------- choices a site collected


SIGN_UP = "Yes, send me offers and news by email. You can unsubscribe at any time."


def test_a_choice_the_sites_backend_reports_keeps_the_words_it_says_it_showed(client, site):
    """Server API and channel choices: `shown` is kept under its digest with the event, so
    the words cannot be changed after the fact; without it, no notice, as before."""
    from tests.support.api import bearer

    subject = decide(client, "shop", "reject_all")["subject"]
    r = client.post(f"/api/v1/sites/shop/subjects/{subject}/events", headers=bearer(site),
                    json={"action": "grant", "categories": {"analytics": True},
                          "note": "account page", "shown": "Help us improve: allow analytics"})
    assert r.status_code == 201, r.get_data(as_text=True)
    event = last_event()
    assert event.source == "api" and event.meta["note"] == "account page"
    served = notice_of(client, event.meta["notice"])
    assert hashlib.sha256(served.get_data()).hexdigest() == event.meta["notice"]
    assert served.get_json() == {"surface": "api", "text": "Help us improve: allow analytics"}

    def choose(**extra):
        r = client.post("/api/v1/sites/shop/channel-choices", headers=bearer(site), json={
            "channels": {"email.promotional": True}, "channel": "email",
            "address": "ann@example.com", **extra})
        assert r.status_code == 200, r.get_data(as_text=True)
        return r.get_json()

    answer = choose(shown=SIGN_UP)
    event = last_event()
    assert event.event_id == answer["event_id"] and event.channels == {"email.promotional": True}
    assert notice_of(client, event.meta["notice"]).get_json()["text"] == SIGN_UP
    # a repeated report changes nothing and records nothing, whatever it says was shown
    assert choose(shown="other words")["event_id"] is None
    client.post(f"/api/v1/sites/shop/subjects/{subject}/events", headers=bearer(site),
                json={"action": "withdraw", "categories": {"analytics": False}})
    assert last_event().meta is None
    assert verify_ledger().ok


def test_shown_words_are_validated_and_kept_only_with_their_event(client, site):
    from tests.support.api import bearer
    from tests.support.db import count_events

    subject = decide(client, "shop", "reject_all")["subject"]
    url = f"/api/v1/sites/shop/subjects/{subject}/events"
    for shown in ("", "x" * 10_001, 42):
        r = client.post(url, headers=bearer(site), json={
            "action": "grant", "categories": {"analytics": True}, "shown": shown})
        assert r.status_code == 422 and r.mimetype == PROBLEM
        assert [e["pointer"] for e in r.get_json()["errors"]] == ["#/shown"]
    # the event is refused (unknown person): its words are not kept either
    r = client.post("/api/v1/sites/shop/subjects/unknownsubject00000/events",
                    headers=bearer(site), json={"action": "grant", "shown": SIGN_UP,
                                                "categories": {"analytics": True}})
    assert r.status_code == 404
    db.session.rollback()
    assert count_events() == 1
    assert db.session.execute(sa.select(sa.func.count()).select_from(Notice).where(
        Notice.surface == "api")).scalar() == 0


def test_a_preference_page_after_another_processes_edit_names_the_words_it_shows(app, client,
                                                                                site):
    """The page reads the categories from the database: the revision its form carries is
    the database's too, not that of a snapshot this process cached before the edit."""
    from tests.test_preferences import page, save

    app.config["CONSENT_SITE_CACHE_SECONDS"] = 60
    first = page(client)  # this process now caches the snapshot and keeps its notice
    edit_elsewhere("en", "Sold to partners.")
    html = page(client)
    assert "Sold to partners." in html
    assert re.search(r'name="revision" value="(\w+)"', html).group(1) != \
        re.search(r'name="revision" value="(\w+)"', first).group(1)
    save(client, html, categories=["analytics"])
    said = notice_of(client, last_event().meta["notice"]).get_json()
    assert next(c for c in said["categories"] if c["key"] == "analytics")["description"] \
        == "Sold to partners."


# ---------------------------------------------------------------- an outside review's findings


def test_a_page_loaded_before_the_region_rules_changed_names_the_words_it_showed(app, client,
                                                                                 site):
    """A Californian loaded the opt-out notice; the operator then made California opt-in
    and the visitor answers on that page: the event names the opt-out notice, not the
    opt-in words today's rules would give."""
    from tests.test_regions import CA, DE, US_RULES
    from consent.regions import set_region_rules

    app.config["CONSENT_REGION_HEADERS"] = "cloudflare"
    set_region_rules("shop", US_RULES)
    before = client.get("/api/v1/sites/shop/config?locale=en", headers=CA).get_json()
    assert before["region"]["mode"] == "opt-out"
    client.get("/api/v1/sites/shop/config?locale=en", headers=DE)  # an opt-in notice too
    rules = copy.deepcopy(US_RULES)
    rules["rules"]["US-PRIVACY-STATES"] = "opt-in"
    set_region_rules("shop", rules)
    r = client.post("/api/v1/sites/shop/decisions", headers=CA,
                    json={"action": "reject_all", "revision": before["revision"],
                          "locale": "en"})
    assert r.status_code == 201
    said = notice_of(client, last_event().meta["notice"]).get_json()
    assert said["region"]["mode"] == "opt-out"
    assert said["region"]["strings"].items() >= before["region"]["strings"].items()


def test_a_page_in_a_language_removed_since_names_its_own_words(client, site):
    from consent.site_admin import site_values, update_site_section
    from consent.sites import get_site

    german = config(client, "de")
    config(client, "en")
    values = site_values(get_site("shop"))
    update_site_section("shop", "general", {
        "name": values["name"], "allowed_origins": values["allowed_origins"],
        "locales": ["en"], "default_locale": "en"}, "root@example.com")
    decide(client, "shop", "reject_all", revision=german["revision"], locale="de")
    event = last_event()
    said = notice_of(client, event.meta["notice"]).get_json()
    assert said["locale"] == "de" and said["strings"].items() >= german["strings"].items()
    assert event.locale == "de"  # the language the choice was made in


def _failing_once(monkeypatch):
    """The next notice store fails (as a busy database would): the page is served all
    the same, and its words are not kept."""
    import consent.notices as notices

    real, calls = notices._store, []

    def store(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))
        return real(*args, **kwargs)

    monkeypatch.setattr(notices, "_store", store)


def test_a_page_whose_words_were_not_kept_still_decides_only_what_its_revision_offered(
        client, site, monkeypatch):
    """The widget's notice in one language failed to be kept; the revision's notice in
    another was kept. A category added since is neither granted nor refused, and the
    event names no words it cannot prove."""
    from consent.site_admin import add_category

    config(client, "de")  # kept
    _failing_once(monkeypatch)
    shown = config(client, "en")  # served, not kept
    add_category("shop", "personalisation", "Personalisation")
    decide(client, "shop", "reject_all", revision=shown["revision"], locale="en")
    event = last_event()
    assert "personalisation" not in event.categories
    assert set(event.categories) == {"essential", "functional", "analytics", "advertising"}
    assert "notice" not in (event.meta or {})
    # the same on the preference page, with the policy version the revision showed
    from tests.test_preferences import page, save

    html = page(client)
    add_category("shop", "second", "Second")
    _failing_once(monkeypatch)
    assert save(client, html, categories=["analytics"]).status_code == 303
    event = last_event()
    assert "second" not in event.categories and event.categories["personalisation"] is False
    assert event.meta["notice"]  # the page's own notice was kept when it was rendered


def test_a_notice_built_while_another_process_edits_is_not_filed_under_the_old_revision(
        client, site, monkeypatch):
    """An edit committed between reading the site's revision and reading the words (on
    PostgreSQL each read sees the latest commits): the config and the notice each carry
    the revision their words belong to."""
    import consent.widget_config as widget_config

    original = {c["key"]: c.get("description")
                for c in config(client)["categories"]}["analytics"]
    real, calls, edited = widget_config.site_snapshot, [], []

    def then_edit(key):
        snapshot = real(key)
        calls.append(1)
        if len(calls) == 2:  # (the first is the document cache's; this one, the words')
            edited.append(1)
            edit_elsewhere("en", "Sold to data brokers.")
        return snapshot

    monkeypatch.setattr(widget_config, "site_snapshot", then_edit)
    served = client.get("/api/v1/sites/shop/config?locale=en&details=1").get_json()
    monkeypatch.undo()
    assert edited
    description = {c["key"]: c.get("description") for c in served["categories"]}["analytics"]
    current = config(client)["revision"]
    assert description == ("Sold to data brokers." if served["revision"] == current
                           else original)
    decide(client, "shop", "accept_all", revision=served["revision"], locale="en")
    said = notice_of(client, last_event().meta["notice"]).get_json()
    assert {c["key"]: c.get("description") for c in said["categories"]}["analytics"] \
        == description


@pytest.mark.parametrize("value", ["%s\n", "%s\r", " %s"])
def test_a_revision_with_anything_around_it_is_refused(client, site, value):
    revision = value % config(client)["revision"]
    r = client.post("/api/v1/sites/shop/decisions",
                    json={"action": "accept_all", "revision": revision})
    assert r.status_code == 422 and r.get_json()["errors"][0]["pointer"] == "#/revision"
    from tests.test_preferences import page, save

    r = save(client, page(client), extra={"revision": revision})
    assert r.status_code == 422


def test_no_statement_replaces_or_truncates_the_kept_words_or_events(client, site):
    decide(client, "shop", "accept_all", revision=config(client)["revision"])
    db.session.rollback()
    kept = db.session.execute(sa.select(Notice)).scalar_one()
    before = (kept.id, kept.body)
    dialect = db.session.get_bind().dialect.name
    if dialect == "sqlite":
        db.session.execute(sa.text(
            "INSERT OR REPLACE INTO notices (id, site_id, digest, revision, locale, region, "
            "surface, body, first_at) SELECT id, site_id, digest, revision, locale, region, "
            "surface, 'nothing', first_at FROM notices"))
        db.session.commit()
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            db.session.execute(sa.text(
                "INSERT OR REPLACE INTO consent_events SELECT * FROM consent_events"))
        db.session.rollback()
    else:
        for table in ("notices", "consent_events"):
            with pytest.raises(sa.exc.DBAPIError, match="append-only"):
                db.session.execute(sa.text(f"TRUNCATE {table} CASCADE"))
            db.session.rollback()
    rows = db.session.execute(sa.select(Notice.id, Notice.body)).all()
    assert [tuple(r) for r in rows] == [before]
    assert verify_ledger().ok


def test_a_revision_keeps_a_bounded_number_of_regional_notices(app, client, site,
                                                               monkeypatch):
    """Region codes come from a header: made-up subdivisions (a deployment that lets
    visitors forge it) cannot grow the kept notices without bound."""
    import consent.notices as notices
    from tests.test_regions import US_RULES
    from consent.regions import set_region_rules

    monkeypatch.setattr(notices, "MAX_REGIONAL", 3)
    app.config["CONSENT_REGION_HEADERS"] = "cloudflare"
    set_region_rules("shop", US_RULES)
    for code in ("A1", "A2", "A3", "A4", "A5"):
        r = client.get("/api/v1/sites/shop/config?locale=en",
                       headers={"CF-IPCountry": "US", "CF-Region-Code": code})
        assert r.status_code == 200
    db.session.rollback()
    regional = db.session.execute(sa.select(Notice.region).where(Notice.region != "")
                                  ).scalars().all()
    assert sorted(regional) == ["US-A1", "US-A2", "US-A3"]
    # a visitor past the bound is recorded with no words, and nothing it was not offered
    r = client.post("/api/v1/sites/shop/decisions",
                    headers={"CF-IPCountry": "US", "CF-Region-Code": "A5"},
                    json={"action": "reject_all", "revision": config(client)["revision"]})
    assert r.status_code == 201 and "notice" not in (last_event().meta or {})
    assert verify_ledger().ok


def test_a_category_offered_by_a_page_newer_than_this_processs_copy_is_recorded(app, client,
                                                                               site):
    """Another process added a category and served a page offering it; this process still
    caches the site from before. The choice on that page is recorded, not refused as
    naming an unknown category, on the widget and on the preference page."""
    from consent import sites
    from consent.database import run_write, utcnow
    from consent.sites import Category, Site
    from tests.test_preferences import page, save

    app.config["CONSENT_SITE_CACHE_SECONDS"] = 60
    config(client)  # this process caches the site now
    stale = dict(sites._cache)

    def add():  # as another process: this one's cache is not told
        shop = db.session.execute(sa.select(Site).where(Site.key == "shop")).scalar_one()
        db.session.add(Category(site_id=shop.id, key="location", position=9,
                                titles={"en": "Location"}, descriptions={"en": "Stores."}))
        shop.updated_at = utcnow()

    run_write(add)
    from consent import widget_config
    widget_config._documents.clear()  # (the other process has no copy of its own)
    sites._cache.clear()
    served = client.get("/api/v1/sites/shop/config?locale=en").get_json()  # the other's page
    html = page(client)
    assert "location" in [c["key"] for c in served["categories"]] and "Location" in html

    def as_this_process():
        sites._cache.clear()
        sites._cache.update(stale)
        assert "location" not in sites.site_snapshot("shop").category_keys

    as_this_process()
    r = client.post("/api/v1/sites/shop/decisions", json={
        "action": "custom", "categories": {"location": True},
        "revision": served["revision"], "locale": "en"})
    assert r.status_code == 201, r.get_json()
    assert last_event().categories["location"] is True
    as_this_process()
    assert save(client, html, categories=["location"]).status_code == 303
    assert last_event().categories["location"] is True


def test_a_form_whose_revision_no_notice_tells_refuses_only_the_boxes_it_had(client, site,
                                                                             monkeypatch):
    """The page's notice failed to be kept and no other notice of its revision exists:
    the form's own list of boxes still keeps a category added since undecided."""
    from consent.site_admin import add_category
    from tests.test_preferences import page, save

    _failing_once(monkeypatch)
    html = page(client)
    db.session.rollback()
    assert db.session.execute(sa.select(sa.func.count()).select_from(Notice)).scalar() == 0
    add_category("shop", "personalisation", "Personalisation")
    assert save(client, html, categories=["analytics"]).status_code == 303
    event = last_event()
    assert "personalisation" not in event.categories and event.categories["analytics"]
    assert event.categories["advertising"] is False  # a box it had, unticked: refused
    assert "notice" not in (event.meta or {})


# ---------------------------------------------------------------- a second review's findings


def test_a_regional_notice_not_kept_is_never_replaced_by_the_opt_in_words(app, client, site,
                                                                          monkeypatch):
    """The Californian's opt-out notice failed to be kept; after an edit their choice on
    that page names no notice rather than the opt-in words other visitors saw."""
    import consent.notices as notices
    from tests.test_regions import CA, DE, US_RULES
    from consent.regions import set_region_rules

    real = notices._store

    def store(site_id, digest, revision, locale, region, *rest):
        if region == "US-CA":
            raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))
        return real(site_id, digest, revision, locale, region, *rest)

    monkeypatch.setattr(notices, "_store", store)
    app.config["CONSENT_REGION_HEADERS"] = "cloudflare"
    set_region_rules("shop", US_RULES)
    client.get("/api/v1/sites/shop/config?locale=en", headers=DE)
    client.get("/api/v1/sites/shop/config?locale=en")  # a visitor with no region
    page_ = client.get("/api/v1/sites/shop/config?locale=en", headers=CA).get_json()
    assert page_["region"]["mode"] == "opt-out"
    monkeypatch.undo()
    edit_elsewhere("en", "Edited later.")
    r = client.post("/api/v1/sites/shop/decisions", headers=CA, json={
        "action": "reject_all", "revision": page_["revision"], "locale": "en"})
    assert r.status_code == 201
    assert "notice" not in {k: v for k, v in (last_event().meta or {}).items()}
    # the German visitor's page of that revision is found under their own region
    r = client.post("/api/v1/sites/shop/decisions", headers=DE, json={
        "action": "reject_all", "revision": page_["revision"], "locale": "en"})
    said = notice_of(client, last_event().meta["notice"]).get_json()
    assert "region" not in said


def test_a_language_tag_with_capitals_finds_its_earlier_notice(client, site):
    from consent.site_admin import site_values, update_site_section
    from consent.sites import get_site

    values = site_values(get_site("shop"))
    update_site_section("shop", "general", {
        "name": values["name"], "allowed_origins": values["allowed_origins"],
        "locales": ["pt-BR", "en"], "default_locale": "pt-BR"}, "root@example.com")
    shown = client.get("/api/v1/sites/shop/config").get_json()
    assert shown["locale"] == "pt-BR"
    decide(client, "shop", "reject_all", revision=shown["revision"], locale="pt-BR")
    kept = last_event().meta["notice"]
    edit_elsewhere("en", "Edited.")
    decide(client, "shop", "reject_all", revision=shown["revision"], locale="pt-BR")
    assert last_event().meta["notice"] == kept and last_event().locale == "pt-BR"


def test_reject_all_on_a_page_newer_than_this_processs_copy_refuses_what_it_offered(
        app, client, site):
    """As above, but nothing unknown is named: "Reject all", or the new box left
    unticked. The category the page offered is refused, not left undecided."""
    from consent import sites, widget_config
    from consent.database import run_write, utcnow
    from consent.sites import Category, Site
    from tests.test_preferences import page, save

    app.config["CONSENT_SITE_CACHE_SECONDS"] = 60
    config(client)
    stale = dict(sites._cache)

    def add():
        shop = db.session.execute(sa.select(Site).where(Site.key == "shop")).scalar_one()
        db.session.add(Category(site_id=shop.id, key="location", position=9,
                                titles={"en": "Location"}, descriptions={"en": "Stores."}))
        shop.updated_at = utcnow()

    run_write(add)
    widget_config._documents.clear()
    sites._cache.clear()
    served = client.get("/api/v1/sites/shop/config?locale=en").get_json()
    html = page(client)

    def as_this_process():
        sites._cache.clear()
        sites._cache.update(stale)

    as_this_process()
    r = client.post("/api/v1/sites/shop/decisions", json={
        "action": "reject_all", "revision": served["revision"], "locale": "en"})
    assert r.status_code == 201 and last_event().categories["location"] is False
    as_this_process()
    assert save(client, html, categories=["analytics"]).status_code == 303
    assert last_event().categories["location"] is False
