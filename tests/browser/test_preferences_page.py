"""The preference center and unsubscribe page in real Chromium, with JavaScript off and on."""
from __future__ import annotations

import hashlib

import pytest
import requests

from consent.channels import CHANNELS
from tests.support.api import bearer
from tests.support.browser import new_context
from tests.support.db import events as recorded
from tests.support.login import follow_in_browser
from tests.support.servers import AppServer, StaticSite
from tests.support.widget import axe_violations

pytestmark = pytest.mark.browser


@pytest.fixture
def server(database_url, site):
    app_server = AppServer(database_url, workers=2)
    yield app_server
    app_server.stop()


def api(server, site, path, body):
    r = requests.post(f"{server.url}/api/v1/sites/{site['key']}{path}", json=body, timeout=30,
                      headers=bearer(site))
    assert r.status_code in (200, 201), r.text
    return r.json()


def visitor(server, site) -> dict:
    r = requests.post(f"{server.url}/api/v1/sites/{site['key']}/decisions",
                      json={"action": "reject_all"}, timeout=30)
    return r.json()


def box(page, key: str):
    return page.locator(f"#channel-{key.replace('.', '-')}")


@pytest.mark.parametrize("javascript", [False, True], ids=["js-off", "js-on"])
def test_every_channel_toggles_and_is_recorded(browser, server, site, javascript):
    context = new_context(browser, java_script_enabled=javascript)
    page = context.new_page()
    who = visitor(server, site)
    # The widget's cookie where this server sees it (same-site deployment): id and key.
    context.add_cookies([{"name": "consent", "value": f"v=1&s={who['subject']}&k={who['key']}",
                          "url": server.url}])
    page.goto(f"{server.url}/preferences?site=shop")
    assert page.locator("h1").inner_text() == "Privacy preferences"
    # Transactional messages: shown, on, and cannot be switched off.
    transactional = page.locator("#channel-transactional")
    assert transactional.is_checked() and transactional.is_disabled()
    assert "do not depend on your consent" in page.locator("#why-transactional").inner_text()
    assert page.locator("#category-essential").is_disabled()
    for key in CHANNELS:
        assert not box(page, key).is_checked()

    # Tick every channel one by one (clicking the label, as a person would).
    for key in CHANNELS:
        page.locator(f"label[for=channel-{key.replace('.', '-')}]").click()
        page.locator("#save").click()
        page.wait_for_url("**saved=*")
        assert page.locator("#saved").is_visible()
        assert box(page, key).is_checked()
        ev = recorded("preferences")[-1]
        assert ev.source == "preferences" and ev.channels[key] is True
        assert "Chosen" in page.locator(f"#when-channel-{key.replace('.', '-')}").inner_text()

    # And off again, all in one save: one event.
    before = len(recorded())
    for key in CHANNELS:
        box(page, key).uncheck()
    page.locator("#category-analytics").check()
    page.locator("#save").click()
    page.wait_for_url("**saved=*")
    events = recorded()
    assert len(events) == before + 1
    assert events[-1].channels == {k: False for k in CHANNELS}
    assert events[-1].categories["analytics"] is True
    assert page.locator("#category-analytics").is_checked()
    assert transactional.is_checked()
    # The event names what the page said (consent.notices): each category as shown.
    digest = events[-1].meta["notice"]
    notice = requests.get(f"{server.url}/api/v1/sites/shop/notices/{digest}", timeout=30)
    assert hashlib.sha256(notice.content).hexdigest() == digest
    said = notice.json()["categories"]
    assert len(said) == 4 and [(c["title"], c["description"]) for c in said] == [
        (page.locator(f"#row-category-{c['key']} .pc-name").inner_text(),
         page.locator(f"#row-category-{c['key']} .pc-desc").inner_text()) for c in said]
    # The widget's view of this visitor changed too.
    me = requests.get(f"{server.url}/api/v1/sites/shop/me/{who['subject']}",
                      params={"r": who["read_token"]}, timeout=30).json()
    assert me["categories"]["analytics"] is True and me["source"] == "preferences"
    context.close()


def test_same_look_in_every_language(browser, server, site):
    context = new_context(browser, java_script_enabled=False, viewport={"width": 1000,
                                                                         "height": 900})
    page = context.new_page()
    layouts = {}
    for lang in ("en", "de", "fr", "es"):
        page.goto(f"{server.url}/preferences?site=shop&lang={lang}")
        assert page.locator("html").get_attribute("lang") == lang
        # Where every control and row sits (texts differ in length, the grid does not).
        layouts[lang] = page.evaluate("""() => Array.from(
            document.querySelectorAll('input[type=checkbox], .pc-row, .pc-section, h2, #save'),
            e => [e.id || e.className || e.tagName, Math.round(e.getBoundingClientRect().left),
                  e.tagName === 'H2' || e.id === 'save' ? 0
                  : Math.round(e.getBoundingClientRect().width)])""")
        overflow = page.evaluate("document.documentElement.scrollWidth - innerWidth")
        assert overflow <= 0, lang
    assert layouts["de"] == layouts["en"] == layouts["fr"] == layouts["es"]
    # Narrow (phone) screens too: nothing runs off the side in any language.
    page.set_viewport_size({"width": 360, "height": 800})
    for lang in ("en", "de", "fr", "es"):
        page.goto(f"{server.url}/preferences?site=shop&lang={lang}")
        assert page.evaluate("document.documentElement.scrollWidth - innerWidth") <= 0, lang
    context.close()


def test_the_sign_in_page_of_a_login_link_in_every_language(browser, server, site):
    """The page a login link opens: in the link's language, accessible, no overflow on a
    phone, and opening it (and reloading it) spends nothing until Continue is pressed."""
    context = new_context(browser, viewport={"width": 360, "height": 800})
    page = context.new_page()
    words = {"en": "Continue", "de": "Weiter", "fr": "Continuer", "es": "Continuar"}
    for lang, word in words.items():
        link = api(server, site, "/login-links", {"user_id": f"user-{lang}", "locale": lang})
        page.goto(link["url"])
        page.reload()
        assert page.locator("html").get_attribute("lang") == lang
        assert page.locator("#continue").inner_text() == word
        assert page.evaluate("document.documentElement.scrollWidth - innerWidth") <= 0, lang
        assert axe_violations(page) == [], lang
        page.locator("#continue").click()
        page.wait_for_url("**/preferences?site=*")
        assert page.locator("html").get_attribute("lang") == lang
        # signed in: the page offers to sign out (a form to the logout URL)
        assert page.locator("#who form[action*='/preferences/logout']").count() == 1
    context.close()


def test_logged_in_choice_follows_the_user_to_another_device(browser, server, site):
    phone = new_context(browser, java_script_enabled=False)
    laptop = new_context(browser)
    link = api(server, site, "/login-links", {"user_id": "user-77"})
    page = phone.new_page()
    follow_in_browser(page, link["url"])
    assert "signed in" in page.locator("#who").inner_text()
    page.locator("#channel-email-promotional").check()
    page.locator("#category-functional").check()
    page.locator("#save").click()
    page.wait_for_url("**saved=*")

    other = laptop.new_page()
    follow_in_browser(other, api(server, site, "/login-links", {"user_id": "user-77"})["url"])
    assert other.locator("#channel-email-promotional").is_checked()
    assert other.locator("#category-functional").is_checked()
    assert not other.locator("#category-analytics").is_checked()
    assert api(server, site, "/may-i-send", {"channel": "email", "kind": "promotional",
                                             "user_id": "user-77"})["allowed"] is True
    phone.close()
    laptop.close()


def test_cross_site_form_post_is_refused(browser, server, site, tmp_path):
    (tmp_path / "attack.html").write_text(
        f'<form id="f" method="post" action="{server.url}/preferences?site=shop">'
        '<input name="channel" value="sms.promotional"></form>'
        '<script>document.getElementById("f").submit()</script>')
    attacker = StaticSite(tmp_path)
    try:
        context = new_context(browser)
        page = context.new_page()
        page.console.expect("status of 403")  # the refused post's answer
        page.goto(f"{server.url}/preferences?site=shop")  # the victim has a session
        with page.expect_response(lambda r: r.request.method == "POST") as posted:
            page.goto(f"{attacker.url}/attack.html")
        assert posted.value.status == 403
        # (the answer's headers are in; its page loads after: wait for that page)
        page.wait_for_url(f"{server.url}/preferences?site=shop")
        assert "Nothing was changed" in page.content()
        assert recorded() == []
        context.close()
    finally:
        attacker.stop()


def test_unsubscribe_confirmation_page_without_javascript(browser, server, site):
    api(server, site, "/channel-choices", {"address": "r@example.test", "channel": "email",
                                           "channels": {"email.promotional": True}})
    link = api(server, site, "/unsubscribe-links", {"channel": "email",
                                                    "address": "r@example.test"})
    context = new_context(browser, java_script_enabled=False)
    page = context.new_page()
    response = page.goto(link["url"])
    assert response.status == 200
    assert "Promotional email" in page.locator("#question").inner_text()
    assert recorded("unsubscribe") == []  # opening the link changed nothing
    assert context.cookies() == []
    page.locator("#confirm").click()
    page.locator("#unsubscribed").wait_for()
    assert [e.meta for e in recorded("unsubscribe")] == [{"via": "page"}]
    assert api(server, site, "/may-i-send", {"channel": "email", "kind": "promotional",
                                             "address": "r@example.test"})["allowed"] is False
    context.close()


def test_a_guardian_confirms_in_the_browser_and_the_event_names_what_they_read(browser,
                                                                             server, site):
    """Across the seam: a minor asks in the preference center, the parent opens the link
    the site delivers in a browser of their own and agrees; the guardian event names a
    notice whose words are the ones the parent's browser displayed."""
    from consent.profiles import load_profile

    loaded = load_profile("care_platform", origins=["https://www.example.test"])
    minor = new_context(browser)
    page = minor.new_page()
    page.goto(f"{server.url}/preferences?site={loaded.site_key}")
    page.locator("#age-minor").check()
    page.locator("#age-guardian").check()
    page.locator("#age-guardian-email").fill("pat.parent@example.org")
    page.locator("#category-analytics").check()
    page.locator("#save").click()
    page.wait_for_url("**saved=*")
    assert page.locator("#awaiting-guardian").is_visible()
    minor.close()

    r = requests.get(f"{server.url}/api/v1/sites/{loaded.site_key}/guardian-requests",
                     params={"status": "awaiting"}, timeout=30,
                     headers={"Authorization": f"Bearer {loaded.api_key}"})
    [request] = r.json()
    link = f"{server.url}/guardian/" + request["url"].split("/guardian/", 1)[1]
    parent = new_context(browser)
    page = parent.new_page()
    page.goto(link)
    intro = page.locator("#guardian-intro").inner_text()
    agree = page.locator("#guardian-agree").inner_text()
    names = page.locator("#guardian-asked .pc-name").all_inner_texts()
    explained = page.locator("#guardian-asked .pc-desc").all_inner_texts()
    assert names and "as their parent" in intro
    page.locator("#guardian-agree").click()
    page.locator("#guardian-agreed").wait_for()
    parent.close()

    [event] = recorded("guardian")
    digest = event.meta["notice"]
    notice = requests.get(f"{server.url}/api/v1/sites/{loaded.site_key}/notices/{digest}",
                          timeout=30)
    assert hashlib.sha256(notice.content).hexdigest() == digest
    said = notice.json()
    assert (said["surface"], said["texts"]["page.intro"], said["texts"]["page.agree"]) == (
        "guardian", intro, agree)
    named = {c["key"]: c for c in said["categories"] + said["channels"]}
    keys = request["categories"] + request["channels"]
    assert names == [named[k]["title"] for k in keys]
    assert explained == [named[k]["description"] for k in keys] and all(explained)
    assert event.categories == {k: True for k in request["categories"]}
