"""Rules by region (consent.regions) and the GPP / US Privacy strings (consent.gpp): where
a visitor is, which rule applies there, what the widget's config says, what an event
records. GPP strings are decoded with IAB Tech Lab's own @iabgpp/cmpapi."""
from __future__ import annotations

import json
from html import escape as html_escape

import pytest
from marshmallow import ValidationError

from consent.extensions import db
from consent.gpp import UsChoice, encode_header, us_strings
from consent.ledger import ConsentEvent, verify_ledger
from consent.regions import (detect_region, jurisdiction, parse_header_setting,
                             set_region_rules)
from consent.sites import get_site
from tests.support.admin import field_error
from tests.support.api import without_notice
from tests.support.gpp import iab_decode

CA = {"CF-IPCountry": "US", "CF-Region-Code": "CA"}
DE = {"CF-IPCountry": "DE"}
US_RULES = {"rules": {"EEA": "opt-in", "GB": "opt-in", "CH": "opt-in",
                      "US-PRIVACY-STATES": "opt-out", "US": "notice-only"},
            "default": "opt-in"}


@pytest.fixture
def us_site(app, site):
    """The shop with US rules, behind Cloudflare (its headers trusted)."""
    app.config["CONSENT_REGION_HEADERS"] = "cloudflare"
    set_region_rules(site["key"], US_RULES)
    return site


def config(client, key, headers=None, details=0, **environ):
    r = client.get(f"/api/v1/sites/{key}/config?locale=en" + ("&details=1" if details else ""),
                   headers=headers or {}, environ_base=environ)
    assert r.status_code == 200
    return r


def decide(client, site, body, headers=None):
    r = client.post(f"/api/v1/sites/{site['key']}/decisions", json=body,
                    headers={"Origin": site["origin"], **(headers or {})})
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def last_event() -> ConsentEvent:
    db.session.rollback()
    return db.session.execute(db.select(ConsentEvent).order_by(ConsentEvent.id.desc())
                              ).scalars().first()


# ---------------------------------------------------------------- detection


def test_a_header_counts_only_when_the_operator_trusts_it():
    cloudflare = parse_header_setting("cloudflare")
    assert detect_region(CA, None, trusted_headers=cloudflare, use_ip=False).code == "US-CA"
    # Not configured: a visitor can send any header, so it is ignored (IP, then unknown).
    assert detect_region(CA, None, trusted_headers=[], use_ip=False).code is None
    assert detect_region(CA, "193.0.0.1", trusted_headers=[], use_ip=True).code == "NL"
    # CDN codes for "no country" (Cloudflare's XX, Tor's T1) fall through to the IP data.
    assert detect_region({"CF-IPCountry": "T1"}, "8.8.8.8", trusted_headers=cloudflare,
                         use_ip=True) == detect_region({}, "8.8.8.8", trusted_headers=[],
                                                       use_ip=True)
    # Garbage in a trusted header is not a region.
    assert detect_region({"CF-IPCountry": "U<S"}, None, trusted_headers=cloudflare,
                         use_ip=False).code is None
    assert detect_region({"CF-IPCountry": "us", "CF-Region-Code": "C'A;"}, None,
                         trusted_headers=cloudflare, use_ip=False).code == "US"


@pytest.mark.parametrize("setting, headers, code", [
    ("cloudfront", {"CloudFront-Viewer-Country": "US",
                    "CloudFront-Viewer-Country-Region": "CO"}, "US-CO"),
    ("vercel", {"X-Vercel-IP-Country": "US", "X-Vercel-IP-Country-Region": "VA"}, "US-VA"),
    ("fastly", {"Fastly-Geo-Country": "FR"}, "FR"),
    ("X-Geo:X-Geo-Sub", {"X-Geo": "US", "X-Geo-Sub": "US-TX"}, "US-TX"),
])
def test_presets_and_custom_header_names(setting, headers, code):
    assert detect_region(headers, None, trusted_headers=parse_header_setting(setting),
                         use_ip=False).code == code


def test_a_bad_header_setting_is_refused():
    with pytest.raises(ValueError, match="neither a preset"):
        parse_header_setting("cloudflare, X Bad")


def test_the_offline_ip_database_gives_a_country():
    assert detect_region({}, "8.8.8.8", trusted_headers=[], use_ip=True).code == "US"
    assert detect_region({}, "10.1.2.3", trusted_headers=[], use_ip=True).code is None
    assert detect_region({}, "not an ip", trusted_headers=[], use_ip=True).code is None
    assert detect_region({}, "8.8.8.8", trusted_headers=[], use_ip=False).code is None


@pytest.mark.parametrize("region, rule", [
    ("DE", "opt-in"), ("NO", "opt-in"), ("GB", "opt-in"), ("US-CA", "opt-out"),
    ("US-TX", "opt-out"), ("US-WY", "notice-only"), ("US", "notice-only"), ("JP", "opt-in"),
    (None, "opt-in")])
def test_the_most_specific_rule_wins(region, rule):
    assert jurisdiction(US_RULES, region) == rule


def test_no_rules_means_opt_in_everywhere():
    assert jurisdiction(None, "US-CA") == "opt-in"
    assert jurisdiction({"rules": {}, "default": "notice-only"}, None) == "notice-only"


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize("bad, field", [
    ({"rules": {"Mars": "opt-in"}}, "rules"),
    ({"rules": {"US": "opt-maybe"}}, "rules"),
    ({"default": "ask"}, "default"),
    ({"sensitive": ["nosuch"]}, "sensitive"),
    ({"gpp_states": ["usxx"]}, "gpp_states"),
    ({"surprise": 1}, "surprise"),
])
def test_bad_rules_are_refused_and_change_nothing(app, site, bad, field):
    from consent.errors import Invalid

    set_region_rules(site["key"], US_RULES)
    before = dict(get_site(site["key"]).settings)
    with pytest.raises((ValidationError, Invalid)) as caught:
        set_region_rules(site["key"], bad)
    exc = caught.value
    where = json.dumps(exc.messages) if isinstance(exc, ValidationError) else exc.field
    assert field in where
    db.session.rollback()
    assert get_site(site["key"]).settings == before


def test_cli_sets_and_refuses_rules(runner, site):
    r = runner.invoke(args=["consent", "region-rules", site["key"], "--rule", "EEA GB: opt-in",
                            "--rule", "us: opt-out", "--sensitive", "functional",
                            "--gpp-state", "usca"])
    assert r.exit_code == 0, r.output
    stored = get_site(site["key"]).settings["regions"]
    assert stored == {"rules": {"EEA": "opt-in", "GB": "opt-in", "US": "opt-out"},
                      "default": "opt-in", "sensitive": ["functional"], "gpp_states": ["usca"]}
    r = runner.invoke(args=["consent", "region-rules", site["key"], "--rule", "US opt-out"])
    assert r.exit_code != 0 and "line 1" in r.output
    r = runner.invoke(args=["consent", "region-rules", site["key"], "--rule", "XYZ1: opt-in"])
    assert r.exit_code != 0 and "not a region" in r.output
    db.session.rollback()
    assert get_site(site["key"]).settings["regions"] == stored
    r = runner.invoke(args=["consent", "region-rules", site["key"]])
    assert r.exit_code == 0 and "opt-in everywhere" in r.output
    db.session.rollback()
    assert "regions" not in get_site(site["key"]).settings


# ---------------------------------------------------------------- GPP encoding


def test_gpp_strings_decode_with_iab_library():
    cases = [UsChoice(False), UsChoice(True), UsChoice(True, gpc=True),
             UsChoice(False, minor=True)]
    encoded = [us_strings(c, state_sections=("usca",)) for c in cases]
    decoded = iab_decode([e["gpp"] for e in encoded])
    for choice, mine, theirs in zip(cases, encoded, decoded):
        assert "error" not in theirs, theirs
        assert theirs["ids"] == [6, 7, 8] == mine["sid"]
        assert theirs["reencoded"] == mine["gpp"]  # IAB's encoder writes the same string
        usnat, usca, usp = (theirs["sections"][k] for k in ("usnat", "usca", "uspv1"))
        # Every field as this server says it is (what the widget's getSection returns).
        assert usnat == mine["sections"]["usnat"] and usca == mine["sections"]["usca"]
        out = 1 if choice.opted_out or choice.gpc or choice.minor else 2
        assert (usnat["SaleOptOut"], usnat["SharingOptOut"],
                usnat["TargetedAdvertisingOptOut"]) == (out, out, out)
        assert (usca["SaleOptOut"], usca["SharingOptOut"]) == (out, out)
        assert usnat["SaleOptOutNotice"] == usnat["SharingOptOutNotice"] == 1
        assert usnat["Gpc"] is choice.gpc and usca["Gpc"] is choice.gpc
        assert usp == {"Version": 1, "Notice": "Y", "OptOutSale": "Y" if out == 1 else "N",
                       "LspaCovered": "N"}
        assert mine["usp"] == "1Y" + usp["OptOutSale"] + "N"


def test_gpp_header_ranges_decode_with_iab_library():
    # Section ids as Fibonacci-coded ranges: single ids, runs and gaps (9 is usva).
    cases = {(7,): ["usnat"], (6, 7): ["uspv1", "usnat"], (6, 7, 8): ["uspv1", "usnat", "usca"],
             (7, 9): ["usnat", "usva"], (6, 8, 9): ["uspv1", "usca", "usva"]}
    theirs = iab_decode([{"encode": names} for names in cases.values()])
    assert [encode_header(list(ids)) for ids in cases] == [t["header"] for t in theirs]


# ---------------------------------------------------------------- config and events


def test_eu_visitor_config_is_unchanged_by_rules(app, client, site):
    app.config["CONSENT_REGION_HEADERS"] = "cloudflare"
    plain = config(client, site["key"], DE).get_data()
    set_region_rules(site["key"], US_RULES)
    with_rules = json.loads(config(client, site["key"], DE).get_data())
    plain = json.loads(plain)
    assert "region" not in with_rules
    plain.pop("revision"), with_rules.pop("revision")
    assert with_rules == plain  # not a byte more for opt-in visitors


def test_california_config_carries_opt_out_mode_and_gpp(client, us_site):
    r = config(client, us_site["key"], CA)
    region = r.get_json()["region"]
    assert region["code"] == "US-CA" and region["mode"] == "opt-out"
    assert region["on"] == ["functional", "analytics", "advertising"]
    assert region["strings"]["link"] == "Your Privacy Choices"
    # The strings come with the details (the region part asks for them after the notice).
    assert "gpp" not in region
    region = config(client, us_site["key"], CA, details=1).get_json()["region"]
    assert set(region["gpp"]) == {"n", "o", "g"}
    decoded = iab_decode([region["gpp"][k]["gpp"] for k in ("n", "o", "g")])
    assert [d["sections"]["usnat"]["SaleOptOut"] for d in decoded] == [2, 1, 1]
    assert [d["sections"]["usnat"]["Gpc"] for d in decoded] == [False, False, True]
    assert [region["gpp"][k]["usp"] for k in ("n", "o", "g")] == ["1YNN", "1YYN", "1YYN"]
    # Shared caches keep one copy per region header value.
    assert {"CF-IPCountry", "CF-Region-Code"} <= set(r.headers["Vary"].replace(" ", "")
                                                     .split(","))
    assert r.headers["Cache-Control"].startswith("public")
    # The inlined script says the same, with the same Vary.
    js = client.get(f"/consent.js?site={us_site['key']}&lang=en", headers=CA)
    assert b'"mode":"opt-out"' in js.get_data() and "CF-IPCountry" in js.headers["Vary"]
    de = client.get(f"/consent.js?site={us_site['key']}&lang=en", headers=DE)
    assert b'"region"' not in de.get_data()


def test_state_sections_only_where_enabled(client, us_site):
    set_region_rules(us_site["key"], {**US_RULES, "gpp_states": ["usca"]})
    ca = config(client, us_site["key"], CA, details=1).get_json()["region"]["gpp"]["o"]
    co = config(client, us_site["key"], {"CF-IPCountry": "US", "CF-Region-Code": "CO"},
                details=1).get_json()["region"]["gpp"]["o"]
    assert ca["sid"] == [6, 7, 8] and co["sid"] == [6, 7]
    assert iab_decode([ca["gpp"]])[0]["sections"]["usca"]["SaleOptOut"] == 1


def test_notice_only_and_sensitive_categories(client, us_site):
    set_region_rules(us_site["key"], {**US_RULES, "sensitive": ["analytics"]})
    wy = config(client, us_site["key"], {"CF-IPCountry": "US", "CF-Region-Code": "WY"},
                details=1).get_json()["region"]
    assert wy["mode"] == "notice-only" and "gpp" not in wy
    assert wy["on"] == ["functional", "advertising"]  # analytics stays opt-in


def test_region_from_the_ip_keeps_answers_out_of_shared_caches(app, client, site):
    app.config["CONSENT_REGION_HEADERS"] = ""
    set_region_rules(site["key"], US_RULES)
    r = config(client, site["key"], REMOTE_ADDR="8.8.8.8")
    assert r.get_json()["region"]["mode"] == "notice-only"  # US, no state: notice only
    assert r.headers["Cache-Control"].startswith("private")
    # A forged CDN header is not trusted: the address decides.
    forged = config(client, site["key"], CA, REMOTE_ADDR="193.0.0.1")
    assert "region" not in forged.get_json()


def test_opting_out_is_one_event_with_region_and_strings(client, us_site):
    body = decide(client, us_site, {"action": "opt_out", "source": "preferences"}, CA)
    assert body["consent"]["categories"]["advertising"] is False
    assert body["consent"]["decidedAt"] is None  # nothing else decided: still opt-out mode
    assert body["gpp"]["usp"] == "1YYN"
    ev = last_event()
    assert ev.action == "opt_out" and ev.categories == {"advertising": False}
    assert ev.meta["region"] == "US-CA" and ev.meta["rule"] == "opt-out"
    assert ev.meta["gpp"] == body["gpp"]["gpp"] and ev.meta["usp"] == "1YYN"
    usnat = iab_decode([ev.meta["gpp"]])[0]["sections"]["usnat"]
    assert (usnat["SaleOptOut"], usnat["SharingOptOut"], usnat["TargetedAdvertisingOptOut"],
            usnat["Gpc"]) == (1, 1, 1, False)
    assert verify_ledger().ok  # region and strings are covered by the event hash


def test_gpc_in_california_sets_the_gpc_field(client, us_site):
    body = decide(client, us_site, {"action": "gpc", "source": "gpc"},
                  {**CA, "Sec-GPC": "1"})
    usnat = iab_decode([body["gpp"]["gpp"]])[0]["sections"]["usnat"]
    assert usnat["Gpc"] is True and usnat["SaleOptOut"] == 1
    assert last_event().meta["gpc"] is True


def test_the_view_says_which_categories_an_event_decided(client, us_site):
    """GPC and an opt-out of sale/sharing decide only what they turn off; the view's map
    says false for the rest too, so `decided` tells the widget which keys to adopt (an
    opt-out region has the others on). The decision's answer, GET .../me and the site
    backend's reading say the same."""
    from tests.support.api import bearer

    key = us_site["key"]
    body = decide(client, us_site, {"action": "gpc", "source": "gpc"}, {**CA, "Sec-GPC": "1"})
    assert body["consent"]["categories"]["functional"] is False  # the shape stays
    assert body["consent"]["decided"] == ["advertising"]
    subject, token = body["subject"], body["read_token"]
    # The site's backend opts the person out of sale/sharing (one category).
    r = client.post(f"/api/v1/sites/{key}/subjects/{subject}/events",
                    json={"action": "withdraw", "categories": {"advertising": False}},
                    headers=bearer(us_site))
    assert r.status_code == 201 and r.get_json()["consent"]["decided"] == ["advertising"]
    me = client.get(f"/api/v1/sites/{key}/me/{subject}?r={token}").get_json()
    assert me["decided"] == ["advertising"] and me["categories"]["analytics"] is False
    assert me["eventId"] != body["event_id"] and me["decidedAt"] is not None
    everything = decide(client, us_site, {"action": "accept_all", "subject": subject,
                                          "key": body["key"]}, CA)
    assert everything["consent"]["decided"] == ["essential", "functional", "analytics",
                                                "advertising"]


def test_accepting_in_california_is_not_an_opt_out(client, us_site):
    body = decide(client, us_site, {"action": "accept_all"}, CA)
    assert body["gpp"]["usp"] == "1YNN"
    assert iab_decode([body["gpp"]["gpp"]])[0]["sections"]["usnat"]["SaleOptOut"] == 2


def test_eu_events_record_the_region_and_no_us_strings(client, us_site):
    body = decide(client, us_site, {"action": "reject_all"}, DE)
    assert "gpp" not in body
    assert last_event().meta == {"region": "DE", "rule": "opt-in"}


def test_an_edited_region_is_detected(app, client, runner, us_site):
    from tests.test_ledger import raw

    decide(client, us_site, {"action": "opt_out"}, CA)
    ev = last_event()
    # Somebody holding the database claims the visitor was in Germany (opt-in).
    raw("UPDATE consent_events SET meta = :m WHERE event_id = :e",
        m=json.dumps({**ev.meta, "region": "DE", "rule": "opt-in"}), e=ev.event_id)
    result = runner.invoke(args=["consent", "verify"])
    assert result.exit_code == 1 and ev.event_id in result.output


def test_opt_out_is_refused_with_unknown_extra_fields(client, us_site):
    r = client.post(f"/api/v1/sites/{us_site['key']}/decisions",
                    json={"action": "opt_out", "region": "DE"},
                    headers={"Origin": us_site["origin"], **CA})
    assert r.status_code == 422
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert any(e["pointer"] == "#/region" for e in r.get_json()["errors"])


def test_the_app_refuses_to_start_with_a_bad_region_header_setting(database_url):
    from consent import create_app

    with pytest.raises(ValueError, match="CONSENT_REGION_HEADERS"):
        create_app({"ENV_NAME": "testing", "SQLALCHEMY_DATABASE_URI": database_url,
                    "CONSENT_REGION_HEADERS": "cloudflare, Not A Header"})


def test_admin_sets_the_rules_on_the_settings_page(client, site, admin):
    from tests.support.admin import post_form

    page = f"/admin/sites/{site['key']}/settings/regions"
    url = f"/admin/sites/{site['key']}/regions"
    r = post_form(admin, url, {"rules": "eea, GB CH: opt-in\n\nUS: opt-out\n",
                               "default": "notice-only", "sensitive": "functional",
                               "gpp_usca": "on"}, page=page)
    assert r.status_code == 302
    stored = {"rules": {"EEA": "opt-in", "GB": "opt-in", "CH": "opt-in", "US": "opt-out"},
              "default": "notice-only", "sensitive": ["functional"], "gpp_states": ["usca"]}
    db.session.rollback()
    assert get_site(site["key"]).settings["regions"] == stored
    html = admin.get(page).get_data(as_text=True)
    assert "EEA GB CH: opt-in" in html and "US: opt-out" in html and 'value="functional"' in html
    for bad, field, said in (({"rules": "US opt-out"}, "rules", "line 1"),
                             ({"rules": "DE: opt-in\nUS: maybe"}, "rules", "line 2"),
                             ({"rules": "Atlantis: opt-in"}, "rules", "ATLANTIS"),
                             ({"default": "ask"}, "default", "must be one of"),
                             ({"sensitive": "nosuch"}, "sensitive", "nosuch")):
        r = post_form(admin, url, bad, page=page)
        assert r.status_code == 422, bad
        # the page again, the error next to its field, what was typed kept
        html = r.get_data(as_text=True)
        error = field_error(html, field)
        assert error and said in error, (bad, error)
        assert f'aria-describedby="err-{field}"' in html
        if field == "rules":
            assert f'name="rules" aria-invalid="true" aria-describedby="err-rules">' \
                   f'{html_escape(bad["rules"], quote=False)}</textarea>' in html, bad
        elif field == "sensitive":
            assert 'value="nosuch"' in html
        db.session.rollback()
        assert get_site(site["key"]).settings["regions"] == stored
    assert post_form(admin, url, {"rules": "", "default": "opt-in"}, page=page).status_code == 302
    db.session.rollback()
    assert "regions" not in get_site(site["key"]).settings


# ------------------------------------------------- every event records the region

def test_preference_center_events_record_the_visitors_region(client, us_site):
    """The preference center is the person's own browser: its events carry their region
    and the rule there, like the widget's, covered by the event hash."""
    from tests.test_preferences import page, save

    html = page(client, f"site={us_site['key']}", **CA)
    r = save(client, html, categories=["analytics"], query=f"site={us_site['key']}", **CA)
    assert r.status_code == 303
    ev = last_event()
    assert ev.source == "preferences"
    assert (ev.meta["region"], ev.meta["rule"]) == ("US-CA", "opt-out")
    html = page(client, f"site={us_site['key']}", **DE)
    save(client, html, categories=[], query=f"site={us_site['key']}", **DE)
    assert (last_event().meta["region"], last_event().meta["rule"]) == ("DE", "opt-in")
    assert verify_ledger().ok


def test_the_preference_center_shows_undecided_categories_as_the_region_has_them(client,
                                                                                  us_site):
    """A California visitor who sent GPC decided only sale/sharing: functional and analytics
    are on for them (opt-out rules), so the preference center shows them ticked, and saving
    it (for a channel, say) does not record them off. In Germany (opt-in) nothing is
    pre-ticked."""
    from tests.test_preferences import enter, page, parse, save, widget_decision

    gpc = {**CA, "Sec-GPC": "1"}
    subject = widget_decision(client, us_site, "gpc", source="gpc")
    assert last_event().categories == {"advertising": False}
    enter(client, us_site, subject)
    html = page(client, f"site={us_site['key']}", **gpc)
    boxes = parse(html).inputs
    ticked = {k for k in ("functional", "analytics", "advertising")
              if "checked" in boxes[f"category-{k}"]}
    assert ticked == {"functional", "analytics"}
    save(client, html, categories=sorted(ticked), channels=["email.promotional"],
         query=f"site={us_site['key']}", **gpc)
    assert last_event().categories == {"essential": True, "functional": True,
                                       "analytics": True, "advertising": False}
    # Without GPC, a new California visitor's defaults: all but essential on, advertising too.
    fresh = parse(page(client.application.test_client(), f"site={us_site['key']}", **CA))
    assert all("checked" in fresh.inputs[f"category-{k}"]
               for k in ("functional", "analytics", "advertising"))
    german = parse(page(client.application.test_client(), f"site={us_site['key']}", **DE))
    assert not any("checked" in german.inputs[f"category-{k}"]
                   for k in ("functional", "analytics", "advertising"))


def test_the_preference_center_ticks_no_restricted_category_for_a_known_minor(client,
                                                                               us_site):
    """A California visitor the site's backend records as a minor (age rule: analytics
    and advertising need a guardian). Nobody decided analytics: the opt-out region has it
    on for an adult, but a minor does not have it without a guardian, so the page does not
    tick it -- ticked, saving the page as shown records it withheld, a box the ledger
    says is off."""
    from tests.support.api import bearer
    from tests.test_preferences import enter, page, parse, save, widget_decision
    from tests.test_widget_server import set_settings

    set_settings(us_site["key"], age_rule={"adult_age": 16, "ask": "when_flagged",
                                           "categories": ["analytics", "advertising"]})
    subject = widget_decision(client, us_site, "gpc", source="gpc")
    r = client.post(f"/api/v1/sites/{us_site['key']}/age",
                    json={"subject": subject, "minor": True}, headers=bearer(us_site))
    assert r.status_code == 200 and r.get_json()["minor"] is True
    enter(client, us_site, subject)
    html = page(client, f"site={us_site['key']}", **CA)
    boxes = parse(html).inputs
    ticked = {k for k in ("functional", "analytics", "advertising")
              if "checked" in boxes[f"category-{k}"]}
    assert ticked == {"functional"}
    save(client, html, categories=sorted(ticked), query=f"site={us_site['key']}", **CA)
    saved = last_event()
    assert saved.categories == {"essential": True, "functional": True, "analytics": False,
                                "advertising": False}
    assert "withheld" not in (saved.meta or {})
    assert verify_ledger().ok


def test_backend_events_record_that_the_region_is_unknown(client, us_site):
    """A call from the site's backend says nothing about where the person is: the event
    records `region: None` (not the backend's own region, even with a CDN header)."""
    from tests.support.api import bearer

    subject = decide(client, us_site, {"action": "accept_all"}, CA)["subject"]
    r = client.post(f"/api/v1/sites/{us_site['key']}/subjects/{subject}/events",
                    json={"action": "withdraw", "categories": {"analytics": False}},
                    headers={**bearer(us_site), **CA})
    assert r.status_code == 201, r.get_json()
    ev = last_event()
    assert ev.source == "api" and ev.meta == {"region": None}
    assert verify_ledger().ok


def test_sites_without_rules_record_no_region(client, site):
    from tests.test_preferences import page, save

    save(client, page(client, f"site={site['key']}", **CA), categories=["analytics"],
         query=f"site={site['key']}", **CA)
    assert without_notice(last_event().meta) == {}


def test_state_rules_without_a_subdivision_header_are_flagged_where_they_are_set(
        app, runner, site, admin, monkeypatch):
    # An outside review: rules for US-CA or US-PRIVACY-STATES were saved without a word on
    # a server that trusts no CDN header. The IP database knows countries only, so those
    # rules never applied: every Californian got the US rule or the default.
    from consent.regions import subdivision_warning

    states = {"regions": {"rules": {"US-PRIVACY-STATES": "opt-out", "EEA": "opt-in"}}}
    assert "US-PRIVACY-STATES" in subdivision_warning(states, "")
    assert "US-CA" in subdivision_warning({"regions": {"rules": {"US-CA": "opt-out"}}}, "")
    assert "US-CA" in subdivision_warning({"regions": {"gpp_states": ["usca"]}}, "")
    assert subdivision_warning(states, "X-Geo-Country")  # a country header only
    assert subdivision_warning(states, "cloudflare") is None
    assert subdivision_warning(states, "X-Geo-Country:X-Geo-Region") is None
    countries = {"regions": {"rules": {"EEA": "opt-in", "US": "opt-out", "GB": "opt-in"}}}
    assert subdivision_warning(countries, "") is None

    monkeypatch.setitem(app.config, "CONSENT_REGION_HEADERS", "")
    r = runner.invoke(args=["consent", "region-rules", site["key"], "--rule", "US-CA: opt-out"])
    assert r.exit_code == 0, r.output
    assert "warning:" in r.stderr and "US-CA" in r.stderr and "warning" not in r.stdout
    page = f"/admin/sites/{site['key']}/settings/regions"
    html = admin.get(page).get_data(as_text=True)
    assert 'id="region-warning"' in html and "CONSENT_REGION_HEADERS" in html
    monkeypatch.setitem(app.config, "CONSENT_REGION_HEADERS", "cloudfront")
    assert 'id="region-warning"' not in admin.get(page).get_data(as_text=True)
    r = runner.invoke(args=["consent", "region-rules", site["key"], "--rule", "US-CA: opt-out"])
    assert r.exit_code == 0 and not r.stderr
