"""The admin's "Widget texts" settings (an outside review: the banner's words could be
changed only by hand-written JSON in settings.texts): per language, empty means the
built-in text, placeholders kept, and what is saved is what the widget's script and
configuration carry."""
from __future__ import annotations

import re
from html import unescape

from consent.extensions import db
from consent.site_history import list_changes
from consent.sites import get_site
from tests.support.admin import post_form
from tests.test_widget_server import inlined_config

PAGE = "/admin/sites/shop/settings/texts"


def save(admin, locale: str, form: dict):
    return post_form(admin, f"/admin/sites/shop/texts/{locale}", form,
                     page=f"{PAGE}?locale={locale}")


def inlined_strings(client, locale: str) -> dict:
    body = client.get(f"/consent.js?site=shop&lang={locale}").get_data(as_text=True)
    return inlined_config(body)["strings"]


def test_the_page_lists_every_string_with_its_built_in_text(site, admin):
    html = unescape(admin.get(PAGE).get_data(as_text=True))
    assert "Built-in: Your privacy choices" in html and 'name="t_title" value=""' in html
    assert 'name="t_nt"' in html and "Banner text" in html
    german = unescape(admin.get(PAGE + "?locale=de").get_data(as_text=True))
    assert "Built-in: Alle akzeptieren" in german
    assert 'action="/admin/sites/shop/texts/de"' in german


def test_saved_texts_are_what_the_widget_shows_and_empty_means_built_in(client, site, admin):
    before = inlined_strings(client, "en")
    r = save(admin, "en", {"t_title": "Cookies at Example shop",
                           "t_acceptAll": "  Yes, all of them ",
                           "t_rejectAll": before["rejectAll"]})  # the built-in: not kept
    assert r.status_code == 302, r.get_data(as_text=True)[:2000]
    assert "Saved (en): acceptAll, title" in admin.get(r.headers["Location"]).get_data(
        as_text=True)
    strings = inlined_strings(client, "en")
    assert strings["title"] == "Cookies at Example shop"
    assert strings["acceptAll"] == "Yes, all of them"
    assert strings["rejectAll"] == before["rejectAll"]
    assert client.get("/api/v1/sites/shop/config?locale=en").get_json()["strings"][
        "title"] == "Cookies at Example shop"
    assert inlined_strings(client, "de")["title"] != "Cookies at Example shop"
    assert get_site("shop").settings["texts"] == {
        "en": {"title": "Cookies at Example shop", "acceptAll": "Yes, all of them"}}
    [change] = [c for c in list_changes(get_site("shop").id) if c.kind == "settings:texts"]
    assert change.summary == "widget texts (en): acceptAll, title"

    # a preference-page string kept in the same place survives a save of the widget's
    def keep_page_string():
        from consent.database import run_write

        def write():
            s = get_site("shop")
            texts = {**s.settings["texts"], "en": {**s.settings["texts"]["en"],
                                                   "unsubscribed": "Done."}}
            s.settings = {**s.settings, "texts": texts}
        run_write(write)

    keep_page_string()
    r = save(admin, "en", {"t_title": "", "t_acceptAll": ""})
    assert r.status_code == 302
    db.session.expire_all()
    assert get_site("shop").settings["texts"] == {"en": {"unsubscribed": "Done."}}
    assert inlined_strings(client, "en")["title"] == before["title"]


def test_bad_texts_are_refused_by_their_field_and_change_nothing(client, site, admin):
    assert save(admin, "en", {"t_title": "Ours"}).status_code == 302
    stored = dict(get_site("shop").settings)
    for locale, form, field, said in (
            ("en", {"t_nt": "A new policy is coming."}, "t_nt", "{date} {version}"),
            ("en", {"t_title": "Version {version}"}, "t_title", "takes no"),
            ("en", {"t_title": "x" * 2001}, "t_title", "at most 2000"),
            ("en", {"t_nosuch": "hello"}, "t_nosuch", "no string 'nosuch'"),
            ("en", {"title": "hello"}, "_form", "unknown field title"),
            ("it", {"t_title": "Ciao"}, "locale", "not one of the site's languages")):
        if locale == "en":
            r = save(admin, locale, form)
        else:  # no page has a form for a language the site lacks: a hand-made request
            token = re.search(r'name="csrf_token" value="([^"]+)"',
                              admin.get(PAGE).get_data(as_text=True)).group(1)
            r = admin.post(f"/admin/sites/shop/texts/{locale}",
                           data={**form, "csrf_token": token})
        assert r.status_code == 422, form
        html = unescape(r.get_data(as_text=True))
        assert said in html, (form, said)
        if field.startswith("t_") and field != "t_nosuch":
            assert re.search(rf'id="err-{field}"', html), form
        db.session.expire_all()
        assert get_site("shop").settings == stored, form


def test_markup_in_a_text_is_text_everywhere(client, site, admin):
    evil = '<img src=x onerror="alert(1)">'
    assert save(admin, "en", {"t_title": evil}).status_code == 302
    html = admin.get(PAGE).get_data(as_text=True)
    assert evil not in html and "&lt;img src=x" in html
    # the script carries it as a string, and the widget sets it as text (the browser
    # tests' banner shows it as typed)
    assert inlined_strings(client, "en")["title"] == evil


def test_a_reader_cannot_change_texts(app, site):
    from tests.support.admin import admin_client

    reader = admin_client(app, ("audit:read",), "reader@example.com")
    assert "Save texts" not in reader.get(PAGE).get_data(as_text=True)
    r = post_form(reader, "/admin/sites/shop/texts/en", {"t_title": "Mine"}, page=PAGE)
    assert r.status_code == 403
    assert "texts" not in get_site("shop").settings
