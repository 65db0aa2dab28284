"""The widget's region part (static/consent-region.js): built from its source, strict-CSP
safe, its strings in every language, served like the widget."""
from __future__ import annotations

import gzip
import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.test_widget_files import load_build

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "static" / "widget" / "region.src.js"
BUILT = ROOT / "static" / "consent-region.js"
OPTOUT = ROOT / "static" / "consent-optout.js"
PLAIN = ROOT / "static" / "consent.js"


def test_committed_region_part_is_the_build_of_its_source():
    assert BUILT.read_text(encoding="utf-8") == load_build().build_region(), (
        "static/consent-region.js is stale: run `python3 static/widget/build.py`")


@pytest.mark.parametrize("path", [BUILT, OPTOUT])
def test_built_region_files_parse(path):
    subprocess.run(["node", "--check", str(path)], check=True, capture_output=True)


def test_region_part_needs_no_inline_style_eval_or_html_injection():
    code = SOURCE.read_text(encoding="utf-8")
    for forbidden in ("eval(", "new Function", ".style", "innerHTML", "outerHTML",
                      "insertAdjacentHTML", "document.write", "'style'", "<style",
                      "insertRule"):
        assert forbidden not in code, forbidden


def test_region_strings_exist_in_every_language():
    catalogs = {loc: json.loads((ROOT / f"consent/locales/region.{loc}.json").read_text("utf-8"))
                for loc in ("en", "de", "fr", "es")}
    used = set(re.findall(r"S\('(\w+)'\)", SOURCE.read_text("utf-8")))
    keys = set(catalogs["en"])
    assert used and used <= keys, used - keys
    for loc, strings in catalogs.items():
        assert set(strings) == keys and all(v.strip() for v in strings.values()), loc
    # The CPRA link's official wording.
    assert catalogs["en"]["link"] == "Your Privacy Choices"


def test_region_part_is_served_cacheable_to_any_site(client):
    r = client.get("/consent-region.js")
    assert r.status_code == 200 and r.mimetype == "text/javascript"
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert r.get_data(as_text=True) == BUILT.read_text(encoding="utf-8")


def test_the_opt_out_build_asks_for_the_region_part_of_its_own_build(client):
    optout = OPTOUT.read_text(encoding="utf-8")
    version = hashlib.sha256(BUILT.read_bytes()).hexdigest()[:12]
    assert f"consent-region.js?v={version}" in optout
    # the same second part as the plain build's, the config slot kept once
    plain = PLAIN.read_text(encoding="utf-8")
    more = re.search(r"consent-more\.js\?v=[0-9a-f]{12}", plain).group(0)
    assert more in optout and optout.count("'@@CONFIG@@'") == 1
    r = client.get(f"/consent-region.js?v={version}")
    assert r.status_code == 200
    assert r.cache_control.max_age == 365 * 86400 and r.cache_control.immutable


def test_region_files_are_served_compressed(app, client, site):
    import brotli

    from consent.regions import set_region_rules

    app.config["CONSENT_REGION_HEADERS"] = "cloudflare"
    set_region_rules(site["key"], {"rules": {"US": "opt-out"}})
    us = {"CF-IPCountry": "US", "CF-Region-Code": "CA"}
    for path, headers in (("/consent-region.js", {}),
                          (f"/consent.js?site={site['key']}&lang=en", us)):
        plain = client.get(path, headers={**headers, "Accept-Encoding": "identity"})
        gz = client.get(path, headers={**headers, "Accept-Encoding": "gzip"})
        br = client.get(path, headers={**headers, "Accept-Encoding": "gzip, br"})
        assert "Content-Encoding" not in plain.headers, path
        assert gz.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(gz.get_data()) == plain.get_data()
        assert br.headers["Content-Encoding"] == "br"
        assert brotli.decompress(br.get_data()) == plain.get_data()
        assert "Accept-Encoding" in br.headers["Vary"]
        again = client.get(path, headers={**headers, "Accept-Encoding": "br",
                                          "If-None-Match": br.headers["ETag"]})
        assert again.status_code == 304, path
    assert b"consent-region.js" in plain.get_data()  # the opt-out build, compressed too


def test_opt_in_visitors_download_none_of_the_region_code():
    plain = PLAIN.read_text(encoding="utf-8")
    optout = OPTOUT.read_text(encoding="utf-8")
    assert optout == load_build().build(regions=True)
    # (names are mangled: `.region` is the config's field and Consent.region)
    for region_only in ("consent-region.js", "opt_out", "optOut", ".region"):
        assert region_only not in plain and region_only in optout, region_only
    assert plain == load_build().build(), "the plain build keeps none of the region code"


def test_the_script_for_a_region_is_the_build_it_needs(app, client, site):
    from consent.regions import set_region_rules

    app.config["CONSENT_REGION_HEADERS"] = "cloudflare"
    set_region_rules(site["key"], {"rules": {"US": "opt-out"}})
    us = client.get(f"/consent.js?site={site['key']}", headers={"CF-IPCountry": "US"})
    eu = client.get(f"/consent.js?site={site['key']}", headers={"CF-IPCountry": "DE"})
    assert b"consent-region.js" in us.get_data() and b'"mode":"opt-out"' in us.get_data()
    assert b"consent-region.js" not in eu.get_data() and b'"region"' not in eu.get_data()
    assert us.headers["ETag"] != eu.headers["ETag"]


# Every first visit: the banner's budget (gzip -9, everything before the banner or, for
# opt-out and notice-only visitors, before the notice at collection and the link).
BUDGET = 6000  # as tests/test_widget_server.py
# The region part comes after the notice (not in the budget): a ceiling so that it does
# not grow unnoticed (measured 2026-12-01: 2,887 B).
REGION_PART_CEILING = 3100
US_RULES = {"rules": {"EEA": "opt-in", "GB": "opt-in", "CH": "opt-in",
                      "US-PRIVACY-STATES": "opt-out", "US": "notice-only"},
            "default": "opt-in", "gpp_states": ["usca"]}
REGIONS = {"EU (DE)": {"CF-IPCountry": "DE"},
           "US-CA": {"CF-IPCountry": "US", "CF-Region-Code": "CA"},
           "US-WY": {"CF-IPCountry": "US", "CF-Region-Code": "WY"},
           "unknown": {}}


def first_visit_bytes(client, key: str, lang: str) -> dict:
    """Per region: (the script's bytes gzip -9, brotli as served, its build)."""
    out = {}
    for name, headers in REGIONS.items():
        url = f"/consent.js?site={key}&lang={lang}"
        body = client.get(url, headers=headers).get_data()
        served = client.get(url, headers={**headers, "Accept-Encoding": "br"}).get_data()
        out[name] = (len(gzip.compress(body, 9)), len(served),
                     "opt-out" if b"consent-region.js" in body else "opt-in")
    return out


def sixty_service_site(key: str) -> None:
    from consent.database import run_write
    from consent.policies import publish_policy
    from consent.sites import create_site

    services = [{"name": f"Tool {n}", "provider": f"Vendor {n} Ltd", "purpose":
                 f"Measures how page {n} is used, for the vendor's monthly reports",
                 "cookies": [{"name": f"_tool{n}_id"}, {"pattern": f"^_t{n}_"}]}
                for n in range(60)]

    def write():
        site = create_site(key, "Sixty services", allowed_origins=["https://sixty.example"],
                           categories=[{"key": k, "services": services[i::3]} for i, k in
                                       enumerate(("functional", "analytics", "advertising"))],
                           settings={"regions": US_RULES})
        publish_policy(site.id, "2026-01", text="Policy", material=True)
    run_write(write)


@pytest.mark.parametrize("site", ["scheduling", "care_platform", "60 services"])
def test_first_visit_bytes_per_region(app, client, site, capsys):
    """What a first visit downloads before the banner or the notice, per region: opt-in
    visitors exactly what they did without rules, opt-out and notice-only visitors the
    opt-out build with its config; all within the budget (the region part comes after the
    notice: tests/browser/test_widget_regions.py holds it back and sees the notice)."""
    from consent.profiles import load_profile

    app.config["CONSENT_REGION_HEADERS"] = "cloudflare"
    if site == "60 services":
        sixty_service_site(key := "sixty")
        langs = ("en", "de", "fr", "es")
    else:
        key, langs = load_profile(site).site_key, ("en",)
    for lang in langs:
        sizes = first_visit_bytes(client, key, lang)
        with capsys.disabled():
            print(f"\n{site} ({lang}): first visit before the banner or notice, "
                  f"(gzip -9, brotli as served, build): {sizes}")
        assert sizes["EU (DE)"] == sizes["unknown"]  # the default rule here is opt-in
        assert sizes["EU (DE)"][2] == "opt-in" and sizes["US-CA"][2] == "opt-out"
        if site == "60 services":
            assert sizes["US-WY"][2] == "opt-out"  # notice-only: the same build
        for name, (gz, _, _) in sizes.items():
            assert gz <= BUDGET, (name, sizes)
    part = client.get("/consent-region.js").get_data()
    assert len(gzip.compress(part, 9)) <= REGION_PART_CEILING


def test_opt_out_build_carries_the_notice_not_the_banner():
    """The opt-out build's stylesheet is the regions' part of consent.css (the notice and
    the link); the banner's comes with the region part, after the notice."""
    build = load_build()
    banner, dialog, region = build.stylesheets()
    optout = OPTOUT.read_text(encoding="utf-8")
    part = BUILT.read_text(encoding="utf-8")
    plain = PLAIN.read_text(encoding="utf-8")
    assert json.dumps(region) in optout and ".cw-rn{" in region
    assert ".cw-banner{" not in optout and json.dumps(banner) in part
    assert json.dumps(banner) in plain and ".cw-rn" not in plain
    # no banner in the opt-out build: its texts and buttons live in the plain build only
    for banner_only in ("cw-banner", "customise", "cw-alt"):
        assert banner_only in plain and banner_only not in optout, banner_only


def test_the_first_layer_config_leaves_the_gpp_strings_to_the_details(app, client):
    app.config["CONSENT_REGION_HEADERS"] = "cloudflare"
    sixty_service_site("sixty")
    ca = REGIONS["US-CA"]
    first = client.get("/api/v1/sites/sixty/config?locale=en", headers=ca).get_json()
    details = client.get("/api/v1/sites/sixty/config?locale=en&details=1",
                         headers=ca).get_json()
    assert "gpp" not in first["region"] and set(first["region"]["strings"]) == {"link",
                                                                               "notice"}
    # the banner's texts too: these visitors get the notice
    assert not {"title", "text", "acceptAll"} & set(first["strings"])
    assert set(details["region"]["gpp"]) == {"n", "o", "g"}
    assert {"title", "text", "optOut", "done"} <= set(details["region"]["strings"])
    assert {"title", "text", "acceptAll"} <= set(details["strings"])
    script = client.get("/consent.js?site=sixty&lang=en", headers=ca).get_data(as_text=True)
    assert '"gpp"' not in script and "DBA" not in script


def test_rules_by_region_cost_opt_in_visitors_nothing(app, client, site):
    from consent.regions import set_region_rules

    app.config["CONSENT_REGION_HEADERS"] = "cloudflare"
    before = client.get(f"/consent.js?site={site['key']}&lang=en",
                        headers={"CF-IPCountry": "FR"}).get_data()
    set_region_rules(site["key"], {"rules": {"US": "opt-out", "EEA": "opt-in"}})
    after = client.get(f"/consent.js?site={site['key']}&lang=en",
                       headers={"CF-IPCountry": "FR"}).get_data()
    # Only the site's revision (a timestamp) differs.
    assert abs(len(after) - len(before)) <= 2 and b"region" not in after
