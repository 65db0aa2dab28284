"""The widget's files: build output up to date, strict-CSP safe source, complete strings."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "static" / "widget" / "consent.src.js"
PART_SOURCE = ROOT / "static" / "widget" / "more.src.js"
BUILT = ROOT / "static" / "consent.js"
PART = ROOT / "static" / "consent-more.js"
LEAN = ROOT / "static" / "consent-lean.js"


def load_build():
    spec = importlib.util.spec_from_file_location("widget_build", ROOT / "static/widget/build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built():
    """What static/widget/build.py makes now: (consent-more.js, consent.js)."""
    build = load_build()
    part = build.build_part()
    return part, build.build(part)


def test_committed_scripts_are_the_build_of_the_sources(built):
    part, first = built
    assert PART.read_text(encoding="utf-8") == part, (
        "static/consent-more.js is stale: run `python3 static/widget/build.py`")
    assert BUILT.read_text(encoding="utf-8") == first, (
        "static/consent.js is stale: run `python3 static/widget/build.py`")
    assert (ROOT / "static" / "consent.css").read_text(encoding="utf-8") == (
        load_build().build_css()), "static/consent.css is stale: run `python3 static/widget/build.py`"
    assert LEAN.read_text(encoding="utf-8") == load_build().build(part, age=False), (
        "static/consent-lean.js is stale: run `python3 static/widget/build.py`")


def test_lean_build_is_the_plain_build_without_the_age_code(built):
    """consent-lean.js (sites without an age rule, tests/test_widget_builds.py) drops the
    code between the age marks and keeps the rest of the plain build, the second part's
    version and the config slot included."""
    part, first = built
    lean = LEAN.read_text(encoding="utf-8")
    assert lean.count("'@@CONFIG@@'") == 1
    assert f"consent-more.js?v={hashlib.sha256(part.encode()).hexdigest()[:12]}" in lean
    assert "data-age-check" in first and "data-age-check" not in lean
    assert "cw-age" not in lean and "guardian" not in lean
    src = SOURCE.read_text(encoding="utf-8")
    assert src.count("/*+age*/") == src.count("/*-age*/") > 0
    assert src.count("/*+noage*/") == src.count("/*-noage*/") > 0


def test_first_layer_asks_for_the_second_part_of_its_own_build(built):
    part, first = built
    version = hashlib.sha256(part.encode()).hexdigest()[:12]
    assert f"consent-more.js?v={version}" in first
    # the minifier renamed the widget's own names (mangling) but kept the slots
    assert first.count("'@@CONFIG@@'") == 1 and "@@STYLE@@" not in first + part
    assert "function choose(" not in first and "const STYLE" not in first


@pytest.mark.parametrize("path", [BUILT, PART, LEAN])
def test_built_widget_parses(path):
    subprocess.run(["node", "--check", str(path)], check=True, capture_output=True)


def test_widget_needs_no_inline_style_eval_or_html_injection():
    code = SOURCE.read_text(encoding="utf-8") + PART_SOURCE.read_text(encoding="utf-8")
    for forbidden in ("eval(", "new Function", ".style", "innerHTML", "outerHTML",
                      "insertAdjacentHTML", "document.write", "'style'", "<style",
                      "insertRule", "setTimeout('", 'setTimeout("'):
        assert forbidden not in code, forbidden


def test_widget_strings_exist_in_every_language():
    catalogs = {loc: json.loads((ROOT / f"consent/locales/widget.{loc}.json").read_text("utf-8"))
                for loc in ("en", "de", "fr", "es")}
    keys = set(catalogs["en"])
    used = set(re.findall(r"S\('(\w+)'\)|btn\('(\w+)'", SOURCE.read_text("utf-8")
                          + PART_SOURCE.read_text("utf-8")))
    used = {a or b for a, b in used}
    assert used <= keys, used - keys
    for loc, strings in catalogs.items():
        assert set(strings) == keys, loc
        assert all(v.strip() for v in strings.values()), loc
    assert catalogs["de"]["acceptAll"] != catalogs["en"]["acceptAll"]


def test_without_constructable_stylesheets_the_first_visit_is_within_the_budget():
    """A browser without constructable stylesheets fetches consent.css beside consent.js
    before the banner: both together stay within the 6,000 B gzip budget."""
    import gzip

    both = BUILT.read_bytes() + (ROOT / "static" / "consent.css").read_bytes()
    assert len(gzip.compress(both, 9)) <= 6000
    # (consent-lean.js is only ever sent with a config inlined: the sites' budgets)
