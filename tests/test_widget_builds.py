"""Which build of the first layer the server inlines a site's config into
(consent/widget_config.py, static/widget/build.py): consent-lean.js, without the age
question and the age rule, for configs without `age`; consent.js (also the shared script)
for sites with an age rule; consent-optout.js for opt-out and notice-only visitors. The
server must never send a config inlined into a build that lacks code the config needs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from consent.profiles import PROFILES, load_profile
from consent.regions import set_region_rules
from consent.widget_config import build_for
from tests.test_widget_server import set_settings

ROOT = Path(__file__).resolve().parents[1]
BUILDS = {name: (ROOT / "static" / name).read_text(encoding="utf-8")
          for name in ("consent.js", "consent-lean.js", "consent-optout.js")}
# Only in the age question's code (ageQ: the page flags a visitor with data-age-check).
AGE_CODE = "data-age-check"
AGE_RULE = {"adult_age": 16, "ask": "always", "categories": ["advertising"]}
ORIGIN = "https://www.example.test"


def build_of(js: str) -> tuple[str, dict]:
    """The build a per-site script is made of, and the config inlined into it."""
    found = []
    for name, text in BUILDS.items():
        head, tail = text.split("'@@CONFIG@@'")
        if js.startswith(head) and js.endswith(tail):
            found.append((name, json.JSONDecoder().raw_decode(js, len(head))[0]))
    assert len(found) == 1, [name for name, _ in found]
    return found[0]


def checked(response) -> str:
    """The build of RESPONSE's script, failing if it lacks code its config needs."""
    assert response.status_code == 200
    name, config = build_of(response.get_data(as_text=True))
    if "age" in config:
        assert AGE_CODE in BUILDS[name], f"{name} has no age code for a config with an age rule"
    if "region" in config:
        assert name == "consent-optout.js", name
    else:
        # the lean build wherever it does: a site without an age rule gets no age code
        assert name == ("consent.js" if "age" in config else "consent-lean.js"), name
    return name


def test_only_the_lean_build_goes_without_the_age_code():
    assert AGE_CODE not in BUILDS["consent-lean.js"]
    assert AGE_CODE in BUILDS["consent.js"] and AGE_CODE in BUILDS["consent-optout.js"]
    # all three carry the compile hint on their first line (kept by the minifier)
    for text in BUILDS.values():
        assert text.startswith("//# allFunctionsCalledOnLoad\n")


def test_the_shared_script_keeps_the_age_code(client, site):
    # without a site (no Referer): any site's config may come, so the full build
    assert client.get("/consent.js").get_data(as_text=True) == BUILDS["consent.js"]


def test_a_site_gets_the_age_code_exactly_while_it_has_an_age_rule(client, site):
    def both_embeds():
        return {checked(client.get("/consent.js?site=shop&lang=en")),
                checked(client.get("/consent.js", headers={"Referer": "https://shop.example/a"}))}

    assert both_embeds() == {"consent-lean.js"}
    set_settings("shop", age_rule=AGE_RULE)
    assert both_embeds() == {"consent.js"}
    set_settings("shop", age_rule=None)
    assert both_embeds() == {"consent-lean.js"}


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_gets_a_build_with_the_code_its_config_needs(app, client, name):
    key = load_profile(name, origins=[ORIGIN]).site_key
    want = "consent.js" if PROFILES[name].age_rule else "consent-lean.js"
    for lang in ("en", "de", "fr", "es"):
        assert checked(client.get(f"/consent.js?site={key}&lang={lang}")) == want
    assert checked(client.get("/consent.js", headers={"Referer": ORIGIN + "/x"})) == want


@pytest.mark.parametrize("name", ["care_platform", "scheduling"])
def test_opt_out_visitors_get_the_opt_out_build_with_its_age_code(app, client, name):
    app.config["CONSENT_REGION_HEADERS"] = "cloudflare"
    key = load_profile(name, origins=[ORIGIN]).site_key
    set_region_rules(key, {"rules": {"US": "opt-out"}})
    us = client.get(f"/consent.js?site={key}", headers={"CF-IPCountry": "US"})
    eu = client.get(f"/consent.js?site={key}", headers={"CF-IPCountry": "DE"})
    assert checked(us) == "consent-optout.js"
    assert checked(eu) == ("consent.js" if PROFILES[name].age_rule else "consent-lean.js")


def test_the_choice_reads_the_document_itself():
    assert build_for('{"site":"a","age":{"ask":"always"}}', False) == "consent.js"
    assert build_for('{"site":"a"}', False) == "consent-lean.js"
    # a text that mentions the key is not an age rule
    assert build_for(json.dumps({"strings": {"text": '"age":{'}}), False) == "consent-lean.js"
    assert build_for('{"site":"a"}', True) == build_for('{"age":{}}', True) == "consent-optout.js"
