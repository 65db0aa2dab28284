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


# Opt-in visitors: the banner's budget (gzip -9, everything before the banner).
BUDGET = 6000  # as tests/test_widget_server.py
# Opt-out visitors get no banner; before any tag runs they need the opt-out build with its
# config (the GPP strings and fields in three states, the link's texts) and the region
# part (__gpp must answer before an ad tag asks). Together they are OVER the 6,000 B of
# the banner's budget (measured on 2026-12-01 with terser: scheduling 6,654 + 2,596 B,
# care_platform 6,707 + 2,596 B gzip -9, about 9.3 kB): a known finding (docs/regions.md),
# not a budget met. These limits are the measured ceilings, so that the opt-out path does
# not grow unnoticed.
OPTOUT_SCRIPT_BUDGET = 6800
REGION_PART_BUDGET = 2700


@pytest.mark.parametrize("profile", ["scheduling", "care_platform"])
def test_first_visit_bytes_per_region(app, client, profile, capsys):
    """What a first visit downloads before any tag runs, per region, for the profiles with
    US rules: opt-in visitors exactly what they did without rules (within the banner's
    budget); opt-out visitors the opt-out build with its config, and the region part."""
    from consent.profiles import load_profile

    app.config["CONSENT_REGION_HEADERS"] = "cloudflare"
    key = load_profile(profile).site_key
    sizes, served = {}, {}
    for name, headers in {"EU (DE)": {"CF-IPCountry": "DE"},
                          "US-CA": {"CF-IPCountry": "US", "CF-Region-Code": "CA"},
                          "unknown": {}}.items():
        urls = [f"/consent.js?site={key}&lang=en"]
        script = client.get(urls[0], headers=headers).get_data(as_text=True)
        if "consent-region.js" in script:
            urls.append(re.search(r"consent-region\.js\?v=[0-9a-f]{12}", script).group(0))
        sizes[name] = [len(gzip.compress(client.get(u, headers=headers).get_data(), 9))
                       for u in urls]
        served[name] = [len(client.get(u, headers={**headers, "Accept-Encoding": "br"})
                            .get_data()) for u in urls]
    with capsys.disabled():
        print(f"\n{profile}: first visit bytes per region, gzip -9: {sizes}; "
              f"brotli as served: {served}")
    assert sizes["EU (DE)"] == sizes["unknown"]  # the default rule here is opt-in
    assert len(sizes["US-CA"]) == 2 and len(sizes["EU (DE)"]) == 1
    assert sizes["EU (DE)"][0] <= BUDGET
    script, part = sizes["US-CA"]
    assert script <= OPTOUT_SCRIPT_BUDGET and part <= REGION_PART_BUDGET, sizes["US-CA"]


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
