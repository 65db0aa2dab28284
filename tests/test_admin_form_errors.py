"""Every admin form answers bad input on its own page, inside the normal layout: the error
next to the field (aria-invalid, described by the message), what was typed still in the
form (never a password), a 4xx, and nothing recorded. Posted without JavaScript, as a
browser without it would."""
from __future__ import annotations

import re

from consent import admin_auth
from consent.extensions import db
from consent.outbox import list_endpoints
from consent.requests import list_requests, open_request
from consent.site_admin import list_api_keys
from consent.sites import get_site
from consent.consent_mode import describe as describe_consent_mode
from tests.support.admin import PASSWORD, admin_client, field_error, post_form, record_choice


def _field_error(r, name: str) -> str:
    """The message shown next to field NAME (the test fails if there is none)."""
    assert r.status_code in (409, 422), r.status_code
    page = r.get_data(as_text=True)
    assert 'class="admin-nav"' in page, "not inside the admin layout"
    assert "Nothing was saved" in page
    found = field_error(page, name)
    assert found is not None, f"no error next to {name}"
    assert re.search(rf'aria-invalid="true" aria-describedby="err-{re.escape(name)}"', page)
    return found


def test_webhook_endpoint_form_keeps_the_input(app, site, admin):
    url = f"/admin/sites/{site['key']}/webhooks"
    r = post_form(admin, url, {"name": "CRM", "url": "https://crm.example/hook",
                               "channels": "email promo!"})
    assert "channel pattern 'email promo!'" in _field_error(r, "channels")
    page = r.get_data(as_text=True)
    assert 'value="CRM"' in page and 'value="https://crm.example/hook"' in page
    assert ">email promo!</textarea>" in page
    r = post_form(admin, url, {"name": "CRM", "url": "not a url", "categories": "analytics"})
    assert _field_error(r, "url")
    assert re.search(r'value="analytics" checked', r.get_data(as_text=True))
    db.session.rollback()
    assert list_endpoints(site["key"]) == []


def test_profile_load_form_keeps_the_input(app, admin):
    r = post_form(admin, "/admin/profiles", {"profile": "no-such-profile", "site_key": "x",
                                             "site_name": "My shop"})
    page = r.get_data(as_text=True)
    assert _field_error(r, "site_key")
    assert 'value="My shop"' in page and 'value="x"' in page
    assert db.session.execute(db.select(db.func.count()).select_from(
        db.metadata.tables["sites"])).scalar() == 0


def test_user_form_keeps_the_input_but_never_the_password(app, admin):
    r = post_form(admin, "/admin/users", {"email": "new@example.com", "name": "New",
                                          "password": "short-pw", "scopes": "audit:read"})
    assert "at least 12 characters" in _field_error(r, "password")
    page = r.get_data(as_text=True)
    assert 'value="new@example.com"' in page and 'value="New"' in page
    assert "short-pw" not in page
    assert re.search(r'value="audit:read" checked', page)
    db.session.rollback()
    assert "new@example.com" not in {u.email for u in admin_auth.list_admins()}
    # the own account cannot be disabled: said on the users page, not an error page
    me = next(u for u in admin_auth.list_admins() if u.email == "root@example.com")
    r = post_form(admin, f"/admin/users/{me.id}/disable", page="/admin/users")
    assert r.status_code == 422
    assert "You cannot disable your own account." in r.get_data(as_text=True)
    assert 'class="admin-nav"' in r.get_data(as_text=True)


def test_password_form_shows_the_error_by_the_field(app, admin):
    r = post_form(admin, "/admin/account/password",
                  {"current": "wrong password here", "password": "a new password 1",
                   "confirm": "a new password 1"})
    assert _field_error(r, "current") == "the current password is not right"
    assert "wrong password here" not in r.get_data(as_text=True)
    r = post_form(admin, "/admin/account/password",
                  {"current": PASSWORD, "password": "a new password 1",
                   "confirm": "a new password 2"})
    assert _field_error(r, "confirm") == "the two new passwords differ"
    # nothing changed: the old password still signs in
    assert admin_client(app, ("audit:read",), "reader@example.com")
    db.session.rollback()
    assert admin_auth.authenticate("root@example.com", PASSWORD)


def test_token_form_keeps_the_input(app, site, admin):
    r = post_form(admin, "/admin/tokens", {"name": "ci", "days": "0", "site": site["key"],
                                           "scopes": "audit:export"})
    assert _field_error(r, "days")
    page = r.get_data(as_text=True)
    assert 'value="ci"' in page and f'value="{site["key"]}" selected' in page
    assert re.search(r'value="audit:export" checked', page)
    r = post_form(admin, "/admin/tokens", {"name": "ci", "site": "nowhere",
                                           "scopes": "audit:export"})
    assert "no site 'nowhere'" in _field_error(r, "site")
    r = post_form(admin, "/admin/tokens", {"name": "ci"})
    assert _field_error(r, "scopes") == "give at least one scope"
    db.session.rollback()
    assert admin_auth.list_tokens() == []


def test_site_api_key_form_keeps_the_input(app, site, admin):
    url = f"/admin/sites/{site['key']}/api-keys"
    before = len(list_api_keys(site["key"]))
    r = post_form(admin, url, {"name": "b" * 101},
                  page=f"/admin/sites/{site['key']}/settings/api-keys")
    assert _field_error(r, "name")
    assert f'value="{"b" * 101}"' in r.get_data(as_text=True)
    db.session.rollback()
    assert len(list_api_keys(site["key"])) == before


def test_consent_mode_form_keeps_the_input(app, site, admin):
    url = f"/admin/sites/{site['key']}/consent-mode"
    page = f"/admin/sites/{site['key']}/settings/consent-mode"
    before = describe_consent_mode(get_site(site["key"]))
    r = post_form(admin, url, {"data_layer": "myLayer", "url_passthrough": "1",
                               "regions": "US-CA: nonsense"}, page=page)
    assert "'nonsense' has no Consent Mode type" in _field_error(r, "regions")
    body = r.get_data(as_text=True)
    assert 'value="myLayer"' in body and ">US-CA: nonsense</textarea>" in body
    assert re.search(r'name="url_passthrough" value="1" checked', body)
    db.session.rollback()
    assert describe_consent_mode(get_site(site["key"])) == before
    r = post_form(admin, url, {"data_layer": "myLayer", "regions": "US-CA analytics"},
                  page=page)
    assert _field_error(r, "regions").startswith("line 1: write 'REGION")


def test_request_forms_keep_the_input(app, site, admin):
    url = f"/admin/sites/{site['key']}/requests"
    r = post_form(admin, url, {"kind": "erasure", "via": "letter", "subject": "v-123",
                               "received_at": "yesterday", "note": "letter of 3 May"})
    assert _field_error(r, "received_at") == "received at: a date and time (UTC)"
    page = r.get_data(as_text=True)
    assert 'value="erasure" selected' in page and 'value="letter" selected' in page
    assert 'value="v-123"' in page and 'value="letter of 3 May"' in page
    assert 'value="yesterday"' in page
    db.session.rollback()
    assert list_requests(site["key"]) == []
    # rejecting asks for the reason, on the request's page
    req = open_request(site["key"], "access", subject=record_choice(site["key"]))
    page = f"/admin/sites/{site['key']}/requests/{req.id}"
    r = post_form(admin, f"{page}/reject", {"note": ""}, page=page)
    assert _field_error(r, "note") == "give the reason (1-500 characters)"
    assert 'id="rnote"' in r.get_data(as_text=True)
    assert ">open<" in r.get_data(as_text=True)


def test_sign_in_without_a_password_keeps_the_address(app, admin):
    client = app.test_client()
    r = post_form(client, "/admin/sign-in", {"email": "root@example.com", "password": ""})
    assert r.status_code == 422
    page = r.get_data(as_text=True)
    assert "Give your e-mail address and password." in page
    assert 'value="root@example.com"' in page


def test_saves_and_switches_flash_what_changed(app, site, admin):
    from consent.outbox import register_endpoint

    page = f"/admin/sites/{site['key']}/settings/consent-mode"
    url = f"/admin/sites/{site['key']}/consent-mode"
    r = post_form(admin, url, {"data_layer": "dataLayer", "url_passthrough": "1"}, page=page)
    assert "Saved Google Consent Mode: url_passthrough." in \
        admin.get(r.headers["Location"]).get_data(as_text=True)
    r = post_form(admin, url, {"data_layer": "dataLayer", "url_passthrough": "1"}, page=page)
    assert "Nothing changed." in admin.get(r.headers["Location"]).get_data(as_text=True)
    endpoint, _ = register_endpoint(site["key"], url="https://crm.example/hook",
                                    name="CRM", categories=["*"])
    hooks = f"/admin/sites/{site['key']}/webhooks"
    r = post_form(admin, f"{hooks}/{endpoint.id}/disable", page=hooks)
    shown = admin.get(r.headers["Location"]).get_data(as_text=True)
    assert "Endpoint CRM disabled: its unsent notifications are dead letters" in shown
    r = post_form(admin, f"{hooks}/{endpoint.id}/enable", page=hooks)
    assert "Endpoint CRM enabled" in admin.get(r.headers["Location"]).get_data(as_text=True)


def test_every_editing_form_warns_before_leaving_unsaved_changes(app, site, admin):
    """Each form that takes typed input carries data-warn-unsaved (static/admin.js)."""
    key = site["key"]
    pages = ["/admin/sites", f"/admin/sites/{key}/policies", f"/admin/sites/{key}/requests",
             f"/admin/sites/{key}/webhooks", f"/admin/sites/{key}/scans", "/admin/profiles",
             "/admin/users", "/admin/tokens", "/admin/account/password",
             f"/admin/sites/{key}/settings/consent-mode", f"/admin/sites/{key}/settings/api-keys",
             f"/admin/sites/{key}/settings/categories/analytics"]
    for path in pages:
        body = admin.get(path).get_data(as_text=True)
        for form in re.findall(r"<form\b[^>]*>.*?</form>", body, re.S):
            head = form[:form.index(">") + 1]
            typed = re.search(r'<(textarea|select)\b|<input (?![^>]*type="(hidden|submit)")', form)
            if 'method="post"' in head and typed:
                assert "data-warn-unsaved" in head, f"{path}: {head}"
