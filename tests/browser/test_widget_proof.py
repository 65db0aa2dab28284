"""'Download proof of my choice': the preferences dialog links to the receipt of the
visitor's recorded decision (opened with their read token), the browser saves it as a
file, and the offline verifier accepts that file and refuses a tampered copy."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import axe_violations, banner, settle, wait_recorded, wait_until

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
PROOF = "Download proof of my choice"


def flask(database_url: str, *args: str) -> subprocess.CompletedProcess:
    """`flask --app app consent ARGS` in a subprocess, as an auditor or visitor runs it."""
    env = {**os.environ, "CONSENT_DATABASE_URL": database_url, "CONSENT_ENV": "testing"}
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", "consent", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_no_proof_is_offered_before_a_recorded_choice(env, page):
    page.goto(env.url())
    page.get_by_role("button", name="Customise").click()
    dialog = page.get_by_role("dialog", name="Privacy preferences")
    dialog.wait_for()
    settle(page)  # the dialog's details have arrived: only the missing choice hides it
    assert dialog.get_by_role("link", name="All privacy settings (e-mail, SMS, push)"
                              ).is_visible()
    assert dialog.get_by_role("link", name=PROOF).count() == 0


def test_the_visitor_downloads_proof_of_their_choice_and_it_verifies_offline(
        env, page, database_url, tmp_path):
    page.goto(env.url())
    page.get_by_role("button", name="Accept all").click()
    [event] = wait_recorded(env, 1)
    wait_until(page, "window.Consent.get() && window.Consent.get().eventId")
    assert page.evaluate("window.Consent.get().eventId") == event.event_id
    assert banner(page).count() == 0

    page.get_by_role("button", name="Cookie settings").click()
    dialog = page.get_by_role("dialog", name="Privacy preferences")
    link = dialog.get_by_role("link", name=PROOF)
    link.wait_for()
    assert axe_violations(page, "dialog") == []
    # keyboard only: Tab reaches the link inside the modal dialog, Enter downloads
    for _ in range(30):
        if page.evaluate("document.activeElement.textContent") == PROOF:
            break
        page.keyboard.press("Tab")
    else:
        raise AssertionError("Tab never reached the proof link")
    with page.expect_download() as info:
        page.keyboard.press("Enter")
    download = info.value
    assert download.failure() is None
    assert download.suggested_filename == f"consent-proof-shop-{event.event_id}.json"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert dialog.is_visible()  # the page stayed where it was

    receipt = json.loads(saved.read_text())
    assert receipt["event"]["event_id"] == event.event_id
    assert receipt["event"]["action"] == "accept_all"
    # the key an outsider pins (from the operator, not from the file itself)
    key = flask(database_url, "signing-key", "--site", "shop")
    assert key.returncode == 0, key.stderr
    checked = flask(database_url, "verify-receipt", str(saved), "--public-key",
                    key.stdout.strip())
    assert checked.returncode == 0, checked.stderr
    assert f"event {event.event_id} is entry 0 of the log" in checked.stdout

    # a copy that claims the visitor rejected advertising fails
    receipt["event"]["categories"]["advertising"] = False
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(receipt))
    refused = flask(database_url, "verify-receipt", str(tampered), "--public-key",
                    key.stdout.strip())
    assert refused.returncode == 1
    assert "BAD: site shop" in refused.stderr and "edited" in refused.stderr


def test_later_page_views_offer_the_proof_of_the_standing_choice(env, page):
    page.goto(env.url())
    page.get_by_role("button", name="Reject all").click()
    [first] = wait_recorded(env, 1)
    wait_until(page, "window.Consent.get() && window.Consent.get().eventId")
    # another page view: the recorded decision's id comes from the consent cookie
    page.goto(env.url())
    assert page.evaluate("window.Consent.get().eventId") == first.event_id
    page.get_by_role("button", name="Cookie settings").click()
    dialog = page.get_by_role("dialog", name="Privacy preferences")
    href = dialog.get_by_role("link", name=PROOF).get_attribute("href")
    assert href.startswith(f"{env.app_url}/api/v1/sites/shop/receipts/{first.event_id}?r=")
    # a new choice: the proof offered is of the new decision once it is recorded
    dialog.get_by_role("button", name="Accept all").click()
    second = wait_recorded(env, 2)[-1]
    wait_until(page, f"window.Consent.get().eventId == {second.event_id!r}")
    page.get_by_role("button", name="Cookie settings").click()
    href = dialog.get_by_role("link", name=PROOF).get_attribute("href")
    assert f"/receipts/{second.event_id}?r=" in href


def test_the_event_names_the_notice_the_visitor_saw_and_anyone_can_check_it(env, page):
    """The banner's and the dialog's words on the screen are in the notice the event
    records; the site's page fetches it from the consent server and its SHA-256 is the
    event's digest."""
    page.goto(env.url())
    on_banner = " ".join(banner(page).inner_text().split())
    page.get_by_role("button", name="Customise").click()
    dialog = page.get_by_role("dialog", name="Privacy preferences")
    dialog.wait_for()
    settle(page)  # the dialog's details (descriptions, services) have arrived
    in_dialog = " ".join(dialog.inner_text().split())
    dialog.get_by_role("button", name="Accept all").click()
    [event] = wait_recorded(env, 1)
    digest = event.meta["notice"]
    checked = page.evaluate("""async (url) => {
        const r = await fetch(url), bytes = await r.arrayBuffer();
        const sum = await crypto.subtle.digest('SHA-256', bytes);
        return {sha: [...new Uint8Array(sum)].map(b => b.toString(16).padStart(2, '0')).join(''),
                notice: JSON.parse(new TextDecoder().decode(bytes))};
    }""", f"{env.app_url}/api/v1/sites/shop/notices/{digest}")
    assert checked["sha"] == digest
    notice = checked["notice"]
    for key in ("title", "acceptAll", "rejectAll"):
        assert " ".join(notice["strings"][key].split()) in on_banner, key
    for category in notice["categories"]:
        assert category["title"] and category["description"] and category["title"] in in_dialog
        assert " ".join(category["description"].split()) in in_dialog, category["key"]


def reword_analytics(add_location: bool = False) -> None:
    """Edit the site as its operator does while a visitor's banner is up: the analytics
    description reworded, and (ADD_LOCATION) a category added."""
    import sqlalchemy as sa

    from consent.database import run_write, utcnow
    from consent.extensions import db
    from consent.sites import Category, Site

    def edit():
        site = db.session.execute(sa.select(Site).where(Site.key == "shop")).scalar_one()
        analytics = db.session.execute(sa.select(Category).where(
            Category.site_id == site.id, Category.key == "analytics")).scalar_one()
        analytics.descriptions = {"en": "Counts visits, reworded after the page loaded."}
        if add_location:
            db.session.add(Category(site_id=site.id, key="location", position=9,
                                    titles={"en": "Location"},
                                    descriptions={"en": "Finds stores near you."}))
        site.updated_at = utcnow()

    run_write(edit)


def open_dialog(page):
    """Customise, then the dialog once its details have settled."""
    page.get_by_role("button", name="Customise").click()
    dialog = page.get_by_role("dialog", name="Privacy preferences")
    dialog.wait_for()
    settle(page)
    return dialog


def test_a_dialog_opened_after_an_edit_records_the_words_it_shows(env, page):
    """The site was edited after the banner appeared (a description reworded, a category
    added); the dialog, opened later, shows the new words, and the choice made in it is
    recorded under the revision of those words: the new category is decided and the
    notice the event names holds the description on the screen."""
    page.goto(env.url())
    banner(page).wait_for()
    reword_analytics(add_location=True)
    dialog = open_dialog(page)
    assert "reworded after the page loaded" in dialog.inner_text()
    dialog.get_by_role("button", name="Accept all").click()
    [event] = wait_recorded(env, 1)
    assert event.categories["location"] is True  # offered by the dialog, so decided
    notice = json.loads(page.evaluate(
        "async url => (await fetch(url)).text()",
        f"{env.app_url}/api/v1/sites/shop/notices/{event.meta['notice']}"))
    said = {c["key"]: c["description"] for c in notice["categories"]}
    assert said["analytics"] == "Counts visits, reworded after the page loaded."
    assert said["location"] == "Finds stores near you."


def test_a_dialog_whose_details_the_banner_cannot_catch_up_with_keeps_its_texts(env, page):
    """After an edit a server whose cache is still older answers the banner's renewed
    config: the dialog opens all the same with its details and texts, not with bare keys."""
    import re
    import urllib.request

    older = urllib.request.urlopen(f"{env.app_url}/api/v1/sites/shop/config?locale=en").read()
    page.route(re.compile(r".*/api/v1/sites/shop/config\?locale=en$"), lambda route: route.fulfill(
        status=200, body=older, content_type="application/json",
        headers={"Access-Control-Allow-Origin": "*"}))
    page.goto(env.url())
    banner(page).wait_for()
    reword_analytics()
    dialog = open_dialog(page)
    text = dialog.inner_text()
    assert "reworded after the page loaded" in text and "prefsTitle" not in text
    dialog.get_by_role("button", name="Accept all").click()
    assert wait_recorded(env, 1)[0].action == "accept_all"
