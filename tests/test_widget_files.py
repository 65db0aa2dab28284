"""The widget's files: build output up to date, strict-CSP safe source, complete strings."""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "static" / "widget" / "consent.src.js"
BUILT = ROOT / "static" / "consent.js"


def load_build():
    spec = importlib.util.spec_from_file_location("widget_build", ROOT / "static/widget/build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_consent_js_is_the_build_of_the_source():
    assert BUILT.read_text(encoding="utf-8") == load_build().build(), (
        "static/consent.js is stale: run `python3 static/widget/build.py`")


@pytest.mark.parametrize("source, expected", [
    ("const a = 1;  // note\nconst b = a / 2;", "const a=1;const b=a/2;"),
    ("x.split(/\\s+/).map(y => y + 'a // b');", "x.split(/\\s+/).map(y=>y+'a // b');"),
    ("let i = 0\ni++\nfoo()", "let i=0\ni++\nfoo()"),
    ("return a + +b;", "return a+ +b;"),
    ("/*! keep */\n/* drop */ if (a) { b(); }", "/*! keep */\nif(a){b();}"),
    ("const s = \"it's\";", "const s=\"it's\";"),
])
def test_minifier_keeps_meaning(source, expected):
    assert load_build().minify(source) == expected + "\n"


def test_minifier_refuses_what_it_does_not_understand():
    with pytest.raises(ValueError):
        load_build().minify("const t = `template ${x}`;")


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_built_widget_parses(tmp_path):
    subprocess.run(["node", "--check", str(BUILT)], check=True, capture_output=True)


def test_widget_needs_no_inline_style_eval_or_html_injection():
    code = SOURCE.read_text(encoding="utf-8")
    for forbidden in ("eval(", "new Function", ".style", "innerHTML", "outerHTML",
                      "insertAdjacentHTML", "document.write", "'style'", "<style",
                      "insertRule", "setTimeout('", 'setTimeout("'):
        assert forbidden not in code, forbidden


def test_widget_strings_exist_in_every_language():
    catalogs = {loc: json.loads((ROOT / f"consent/locales/widget.{loc}.json").read_text("utf-8"))
                for loc in ("en", "de", "fr", "es")}
    keys = set(catalogs["en"])
    used = set(re.findall(r"S\('(\w+)'\)|btn\('(\w+)'", SOURCE.read_text("utf-8")))
    used = {a or b for a, b in used}
    assert used <= keys, used - keys
    for loc, strings in catalogs.items():
        assert set(strings) == keys, loc
        assert all(v.strip() for v in strings.values()), loc
    assert catalogs["de"]["acceptAll"] != catalogs["en"]["acceptAll"]
