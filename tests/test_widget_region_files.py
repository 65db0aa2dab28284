"""The widget's region part (static/consent-region.js): built from its source, strict-CSP
safe, its strings in every language, served like the widget."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.test_widget_files import load_build

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "static" / "widget" / "region.src.js"
BUILT = ROOT / "static" / "consent-region.js"


def test_committed_region_part_is_the_build_of_its_source():
    assert BUILT.read_text(encoding="utf-8") == load_build().build_region(), (
        "static/consent-region.js is stale: run `python3 static/widget/build.py`")


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_built_region_part_parses():
    subprocess.run(["node", "--check", str(BUILT)], check=True, capture_output=True)


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


def test_opt_in_visitors_download_none_of_the_region_code():
    plain = (ROOT / "static" / "consent.js").read_text(encoding="utf-8")
    optout = (ROOT / "static" / "consent-optout.js").read_text(encoding="utf-8")
    assert optout == load_build().build(regions=True)
    for region_only in ("consent-region.js", "opt_out", "optOut", "cfg.region"):
        assert region_only not in plain and region_only in optout, region_only


def test_the_script_for_a_region_is_the_build_it_needs(app, client, site):
    from consent.regions import set_region_rules

    app.config["CONSENT_REGION_HEADERS"] = "cloudflare"
    set_region_rules(site["key"], {"rules": {"US": "opt-out"}})
    us = client.get(f"/consent.js?site={site['key']}", headers={"CF-IPCountry": "US"})
    eu = client.get(f"/consent.js?site={site['key']}", headers={"CF-IPCountry": "DE"})
    assert b"consent-region.js" in us.get_data() and b'"mode":"opt-out"' in us.get_data()
    assert b"consent-region.js" not in eu.get_data() and b'"region"' not in eu.get_data()
    assert us.headers["ETag"] != eu.headers["ETag"]


BUDGET = 8000  # bytes gzip -9 before the banner (tests/test_widget_server.py)
# Opt-out visitors get no banner; before any tag runs they need the opt-out build with its
# config (the GPP strings and fields in three states, the link's texts) and the region
# part (__gpp must answer before an ad tag asks). Their own limits, measured (docs/regions.md):
OPTOUT_SCRIPT_BUDGET = 9000
REGION_PART_BUDGET = 3000


@pytest.mark.parametrize("profile", ["scheduling", "care_platform"])
def test_first_visit_bytes_per_region(app, client, profile, capsys):
    """What a first visit downloads before any tag runs, per region, for the profiles with
    US rules: opt-in visitors exactly what they did without rules (within the banner's
    budget); opt-out visitors the opt-out build with its config, and the region part."""
    import gzip

    from consent.profiles import load_profile

    app.config["CONSENT_REGION_HEADERS"] = "cloudflare"
    key = load_profile(profile).site_key
    gz = lambda r: len(gzip.compress(r.get_data(), 9))  # noqa: E731
    sizes = {}
    for name, headers in {"EU (DE)": {"CF-IPCountry": "DE"},
                          "US-CA": {"CF-IPCountry": "US", "CF-Region-Code": "CA"},
                          "unknown": {}}.items():
        script = client.get(f"/consent.js?site={key}&lang=en", headers=headers)
        parts = [gz(script)]
        if b"consent-region.js" in script.get_data():
            parts.append(gz(client.get("/consent-region.js")))
        sizes[name] = parts
    with capsys.disabled():
        print(f"\n{profile}: first visit, gzip -9 bytes per region: {sizes}")
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
