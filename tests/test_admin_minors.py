"""The admin's "Minors" settings (an outside review: an age rule could be set only by
loading a profile or by hand-written JSON): the rule saved there is the one the widget
asks by and the server withholds by, and a bad one is refused by its field."""
from __future__ import annotations

import re
from html import unescape

from consent.extensions import db
from consent.sites import get_site
from tests.support.admin import field_error, post_form

PAGE = "/admin/sites/shop/settings/minors"
RULE = {"age_rule_on": "on", "adult_age": "16", "from_age": "13", "guardian": "parent",
        "ask": "always", "guardian_verification": "link",
        "categories": ["analytics", "advertising"], "channels": ["email.promotional"],
        "quote": "If you are under 16, your parent must agree."}


def save(admin, form: dict):
    return post_form(admin, PAGE, form, page=PAGE)


def test_the_rule_saved_is_the_one_the_widget_and_the_server_apply(client, site, admin):
    assert "age" not in client.get("/api/v1/sites/shop/config?locale=en").get_json()
    r = save(admin, RULE)
    assert r.status_code == 302, r.get_data(as_text=True)[:2000]
    assert get_site("shop").settings["age_rule"] == {
        "adult_age": 16, "from_age": 13, "guardian": "parent", "ask": "always",
        "guardian_verification": "link", "categories": ["analytics", "advertising"],
        "channels": ["email.promotional"], "quote": "If you are under 16, your parent must agree."}
    html = unescape(admin.get(PAGE).get_data(as_text=True))
    assert 'name="age_rule_on" checked' in html and 'name="adult_age" value="16"' in html
    assert set(re.findall(r'name="categories" value="(\w+)" checked', html)) == {
        "analytics", "advertising"}

    # the widget asks, and a minor's "Accept all" is recorded with those held back
    assert "age" in client.get("/api/v1/sites/shop/config?locale=en").get_json()
    r = client.post("/api/v1/sites/shop/decisions",
                    json={"action": "accept_all", "age": "minor"})
    assert r.status_code == 201, r.get_data(as_text=True)
    categories = r.get_json()["consent"]["categories"]
    assert categories["analytics"] is False and categories["advertising"] is False
    assert categories["functional"] is True
    adult = client.post("/api/v1/sites/shop/decisions",
                        json={"action": "accept_all", "age": "adult"}).get_json()
    assert adult["consent"]["categories"]["analytics"] is True

    # off again: no rule, no question
    assert save(admin, {}).status_code == 302
    db.session.expire_all()
    assert "age_rule" not in get_site("shop").settings
    assert "age" not in client.get("/api/v1/sites/shop/config?locale=en").get_json()


def test_a_bad_rule_is_refused_by_its_field_and_changes_nothing(site, admin):
    before = dict(get_site("shop").settings)
    for form, field, said in (
            ({"from_age": "16"}, "from_age", "below adult_age"),
            ({"adult_age": "40"}, "adult_age", "less than or equal to 25"),
            ({"guardian": "uncle"}, "guardian", "'guardian' or 'parent'"),
            ({"ask": "never"}, "ask", "always, when_flagged"),
            ({"guardian_verification": "trust"}, "guardian_verification", "'link' or"),
            ({"categories": ["nosuch"]}, "categories", "no category 'nosuch'"),
            ({"categories": ["essential"]}, "categories", "optional category"),
            ({"channels": ["carrier.pigeon"]}, "channels", "channel keys")):
        r = save(admin, {**RULE, **form})
        assert r.status_code == 422, form
        html = unescape(r.get_data(as_text=True))
        error = field_error(html, field)
        assert error and said in error, (form, error)
        db.session.expire_all()
        assert get_site("shop").settings == before, form
