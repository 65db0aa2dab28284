"""Google Consent Mode options of a site (consent/consent_mode.py): stored from the admin
and the CLI, validated, and carried to the widget only when set (issue 15)."""
from __future__ import annotations

import gzip

import pytest
from marshmallow import ValidationError

from consent.consent_mode import set_consent_mode
from consent.errors import Invalid
from consent.extensions import db
from consent.sites import Site
from tests.support.admin import post_form
from tests.test_widget_server import BUDGET, inlined_config

OPTIONS = {"data_layer": "gtmLayer", "ads_data_redaction": True, "url_passthrough": True,
           "regions": [{"region": ["US-CA", "US-VA"], "granted": ["analytics", "advertising"]},
                       {"region": ["ES"], "granted": []}]}


def config(client, **query):
    r = client.get("/api/v1/sites/shop/config", query_string={"locale": "en", **query})
    assert r.status_code == 200
    return r.get_json()


def stored(site_key: str = "shop") -> dict | None:
    db.session.expire_all()
    row = db.session.execute(db.select(Site).where(Site.key == site_key)).scalar_one()
    return (row.settings or {}).get("consent_mode")


def test_nothing_is_sent_until_the_site_sets_an_option(client, site):
    assert "consentMode" not in config(client)
    assert "consentMode" not in inlined_config(client.get("/consent.js?site=shop")
                                               .get_data(as_text=True))
    # defaults given explicitly are defaults: still nothing stored or sent
    assert set_consent_mode("shop", {"data_layer": "dataLayer", "ads_data_redaction": False}) \
        == {}
    assert stored() is None and "consentMode" not in config(client)


def test_the_widget_gets_its_commands_in_order(client, site):
    set_consent_mode("shop", OPTIONS)
    mode = config(client)["consentMode"]
    assert mode["dataLayer"] == "gtmLayer"
    assert mode["push"] == [
        # only what differs from the all-denied default the widget pushes first
        ["consent", "default", {"analytics_storage": "granted", "ad_storage": "granted",
                                "ad_user_data": "granted", "ad_personalization": "granted",
                                "region": ["US-CA", "US-VA"]}],
        ["consent", "default", {"region": ["ES"]}],
        ["set", "ads_data_redaction", True],
        ["set", "url_passthrough", True]]
    # the per-site script carries the same, and the site's revision changed with it
    js = client.get("/consent.js?site=shop").get_data(as_text=True)
    assert inlined_config(js)["consentMode"] == mode


@pytest.mark.parametrize("locale", ["en", "de", "fr", "es"])
def test_a_site_with_every_option_still_fits_the_first_visit_budget(client, site, locale):
    # The recommended embeds (?site=KEY, and data-site with a Referer) inline the config:
    # one response. (The shared script of a page that sends no Referer plus its config
    # request can pass the budget by the options' bytes: docs/widget.md.)
    set_consent_mode("shop", {**OPTIONS, "regions": OPTIONS["regions"] + [
        {"region": ["GB"], "granted": ["functional"]}]})
    one = client.get(f"/consent.js?site=shop&lang={locale}")
    assert "consentMode" in inlined_config(one.get_data(as_text=True))
    assert len(gzip.compress(one.get_data(), 9)) <= BUDGET


@pytest.mark.parametrize("options, error", [
    ({"data_layer": "window.dataLayer"}, ValidationError),
    ({"data_layer": "1st"}, ValidationError),
    ({"ads_data_redaction": "yes"}, ValidationError),
    ({"regions": [{"region": ["California"], "granted": ["analytics"]}]}, ValidationError),
    ({"regions": [{"region": [], "granted": ["analytics"]}]}, ValidationError),
    ({"regions": [{"region": ["US"], "granted": ["location"]}]}, ValidationError),
    ({"regions": [{"region": ["US"]}] * 21}, ValidationError),
    ({"bogus": 1}, ValidationError),
])
def test_bad_options_are_refused_and_nothing_changes(site, options, error):
    set_consent_mode("shop", OPTIONS)
    with pytest.raises(error):
        set_consent_mode("shop", options)
    assert stored() == OPTIONS


def test_a_region_default_for_a_category_the_site_lacks_is_refused(app, other_site):
    from consent.database import run_write
    from consent.sites import create_site

    run_write(lambda: create_site("lean", "Lean", categories=[{"key": "essential"},
                                                              {"key": "functional"}]))
    with pytest.raises(Invalid, match="no category 'analytics'"):
        set_consent_mode("lean", {"regions": [{"region": ["US"], "granted": ["analytics"]}]})
    assert stored("lean") is None


def test_admin_sets_the_options_on_the_settings_page(client, site, admin):
    page = f"/admin/sites/{site['key']}/settings/consent-mode"
    url = f"/admin/sites/{site['key']}/consent-mode"
    r = post_form(admin, url, {"data_layer": "gtmLayer", "ads_data_redaction": "on",
                               "url_passthrough": "on",
                               "regions": "us-ca, US-VA: analytics advertising\n\nES:\n"},
                  page=page)
    assert r.status_code == 302
    assert stored() == OPTIONS
    html = admin.get(page).get_data(as_text=True)
    assert 'value="gtmLayer"' in html and "US-CA US-VA: analytics advertising" in html
    for bad in ({"data_layer": "no spaces please"}, {"regions": "US analytics"},
                {"regions": "US: location"}):
        r = post_form(admin, url, bad, page=page)
        assert r.status_code == 422, bad
    assert stored() == OPTIONS
    # unticked and emptied: back to the defaults, nothing sent
    assert post_form(admin, url, {"data_layer": "", "regions": ""}, page=page).status_code == 302
    assert stored() is None and "consentMode" not in config(client)


def test_cli_sets_the_options_and_refuses_mistakes_in_one_line(runner, site):
    result = runner.invoke(args=["consent", "consent-mode", "shop", "--data-layer", "gtmLayer",
                                 "--ads-data-redaction", "--url-passthrough",
                                 "--region", "US-CA US-VA: analytics advertising",
                                 "--region", "ES:"])
    assert result.exit_code == 0, result.output
    assert stored() == OPTIONS
    for args, expected in ((["--data-layer", "a.b"], "data_layer: the dataLayer name"),
                           (["--region", "US: location"], "'location' has no Consent Mode"),
                           (["--region", "US analytics"], "line 1: write"),):
        result = runner.invoke(args=["consent", "consent-mode", "shop", *args])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1 and expected in lines[0], result.output
    result = runner.invoke(args=["consent", "consent-mode", "nope"])
    assert result.exit_code == 1 and "unknown site 'nope'" in result.output
    assert stored() == OPTIONS
