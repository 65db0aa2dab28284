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
