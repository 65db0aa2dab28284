"""Build the widget's scripts: `python3 static/widget/build.py` (after `make node-deps`).

- static/consent.js from static/widget/consent.src.js: the first layer (consent engine,
  Consent Mode, GPC, tags, banner). It carries the banner's part of the stylesheet
  (static/widget/consent.src.css, everything before its `/*@` comment) as a string, so the
  banner needs no second request.
- static/consent.css: the whole stylesheet without comments, for browsers without
  constructable stylesheets (the first layer links it for them).
- static/consent-more.js from static/widget/more.src.js: the second part, everything that
  only comes after the banner (sending choices, the check with the server, the preferences
  dialog, deleting cookies), which consent.js loads with a <script src> the first time it
  needs it. It carries the dialog's part of the stylesheet the same way.

Both are minified by terser (pinned in package.json, installed by `make node-deps`) with
name mangling. consent.js asks for
`consent-more.js?v=<hash of the built part>`, so a cached first layer never pairs with
another release's second part (and the part can be cached for long). tests/test_widget_files.py checks that the committed files are
exactly this script's output.

For visitors of opt-out and notice-only regions (docs/regions.md) it also builds, from the
same sources:

- static/consent-optout.js: the first layer with the code between `/*+region*/` and
  `/*-region*/` marks in consent.src.js kept (the plain build drops it: opt-in visitors
  download none of it) and the code between `/*+optin*/` and `/*-optin*/` dropped (only
  the plain build keeps it). It carries the stylesheet's region part (after its
  `/*+region` comment: the notice at collection and the "Your Privacy Choices" link)
  instead of the banner's, which these visitors do not see first. The server sends it
  instead of consent.js to visitors whose config has a `region`
  (consent/widget_config.py). It uses the same consent-more.js.
- static/consent-lean.js: the plain build without the age question and the age rule's part
  of a choice (the code between `/*+age*/` and `/*-age*/`, which the other builds keep;
  it keeps the code between `/*+noage*/` and `/*-noage*/`, which they drop). The server
  inlines a site's config into it instead of consent.js when the config has no `age` (a
  site without an age rule, consent/widget_config.py); the shared consent.js, which serves
  any site, keeps the age code. It uses the same consent-more.js.
- static/consent-region.js from static/widget/region.src.js: the opt-out view, the IAB GPP
  and US Privacy APIs answering what the first layer's stubs queued, and the banner's
  part of the stylesheet. The opt-out build loads it once the notice is shown, as
  `consent-region.js?v=<hash of its build>`.

Slots the server fills: `'@@CONFIG@@'` in consent.js and consent-optout.js (the site's config for
`/consent.js?site=KEY`). The minifier must not see it as a constant (it would fold
`typeof CONFIG == 'object'` away), so it is a free global name during minification.
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SOURCE = HERE / "consent.src.js"
PART_SOURCE = HERE / "more.src.js"
TARGET = HERE.parent / "consent.js"
PART_TARGET = HERE.parent / "consent-more.js"
REGION_SOURCE = HERE / "region.src.js"
REGION_TARGET = HERE.parent / "consent-region.js"
OPTOUT_TARGET = HERE.parent / "consent-optout.js"
LEAN_TARGET = HERE.parent / "consent-lean.js"
STYLESHEET = HERE / "consent.src.css"
CSS_TARGET = HERE.parent / "consent.css"
TERSER = ROOT / "node_modules" / "terser" / "bin" / "terser"

STYLE_SLOT = "'@@STYLE@@'"
CONFIG_SLOT = "'@@CONFIG@@'"
PART_SLOT = "'@@PART@@'"
REGION_SLOT = "'@@REGION@@'"
# Variant marks in the first layer's source: `/*+NAME*/ ... /*-NAME*/` is kept by the
# builds with NAME and dropped by the others. region: code only opt-out and notice-only
# regions need; optin: code only the banner's builds (opt-in) need; age: the age question
# and the age rule (sites with an age rule, and the shared consent.js); noage: what the
# lean build has instead.
MARKS = ("region", "optin", "age", "noage")
PLAIN, OPTOUT, LEAN = {"optin", "age"}, {"region", "age"}, {"optin", "noage"}
# A global name stands in for the config slot while terser runs (see the module docstring).
CONFIG_STAND_IN = "__CONSENT_CONFIG_SLOT__"
DIALOG_MARK = "/*@"
REGION_MARK = "/*+region"
# Comments kept: `/*! ... */`, and V8's explicit compile hint (`//# allFunctionsCalledOnLoad`,
# the first layer's first line: its functions are compiled with the script, not lazily).
COMPILE_HINT = "//# allFunctionsCalledOnLoad"
TERSER_ARGS = ["--ecma", "2020", "--compress", "passes=2", "--mangle", "--comments",
               "/^!|^# allFunctionsCalledOnLoad$/"]


def minify(src: str) -> str:
    """SRC minified by terser (mangled names, `/*! ... */` comments kept)."""
    if not TERSER.exists():
        raise FileNotFoundError(f"{TERSER} is missing: run `make node-deps`")
    done = subprocess.run(["node", str(TERSER), *TERSER_ARGS], input=src, text=True,
                          capture_output=True, check=False)
    if done.returncode:
        raise ValueError(f"terser failed: {done.stderr.strip()}")
    return done.stdout.rstrip("\n") + "\n"


def stylesheets() -> tuple[str, str, str]:
    """The banner's, the dialog's and the regions' parts of consent.css, each one line
    without comments."""
    text = STYLESHEET.read_text(encoding="utf-8")
    for mark, what in ((DIALOG_MARK, "the dialog's"), (REGION_MARK, "the regions'")):
        if text.count(mark) != 1:
            raise ValueError(f"consent.css must mark where {what} rules start with {mark}")
    banner, rest = text.split(DIALOG_MARK)
    dialog, region = rest.split(REGION_MARK)
    return tuple("".join(line.strip() for line in re.sub(r"/\*.*?\*/", "", part, flags=re.S)
                         .splitlines()) for part in (banner, DIALOG_MARK + dialog,
                                                     REGION_MARK + region))


def build_css() -> str:
    """static/consent.css, for browsers without constructable stylesheets: the three parts
    of consent.src.css without comments or indentation (what the scripts carry)."""
    return "".join(stylesheets()) + "\n"


def _fill(src: str, slot: str, value: str) -> str:
    if src.count(slot) != 1:
        raise ValueError(f"the source must hold {slot} exactly once")
    return src.replace(slot, value)


def build_part() -> str:
    """The second part, as committed in static/consent-more.js."""
    src = _fill(PART_SOURCE.read_text(encoding="utf-8"), STYLE_SLOT,
                json.dumps(stylesheets()[1], ensure_ascii=False))
    return minify(src)


def build_region() -> str:
    """The region part, as committed in static/consent-region.js (with the banner's
    stylesheet: the opt-out build carries only the regions' part)."""
    return minify(_fill(REGION_SOURCE.read_text(encoding="utf-8"), STYLE_SLOT,
                        json.dumps(stylesheets()[0], ensure_ascii=False)))


def _version(built: str) -> str:
    return json.dumps(hashlib.sha256(built.encode()).hexdigest()[:12])


def variant(src: str, keep: set[str]) -> str:
    """SRC without the code between the marks of the variants not in KEEP."""
    for name in MARKS:
        if name not in keep:
            src = re.sub(rf"/\*\+{name}\*/.*?/\*-{name}\*/", "", src, flags=re.S)
    return src


def build(part: str | None = None, *, regions: bool = False,
          region_part: str | None = None, age: bool = True) -> str:
    """The first layer, as committed in static/consent.js (with REGIONS: the opt-out build,
    static/consent-optout.js, which keeps the code between the region marks; without AGE:
    the lean build, static/consent-lean.js, without the age code)."""
    part = build_part() if part is None else part
    banner, _, region = stylesheets()
    if regions and not age:
        raise ValueError("the opt-out build keeps the age code")
    src = variant(SOURCE.read_text(encoding="utf-8"), OPTOUT if regions else PLAIN if age else LEAN)
    if regions:
        region_part = build_region() if region_part is None else region_part
        src = _fill(src, REGION_SLOT, _version(region_part))
    elif REGION_SLOT in src:
        raise ValueError(f"{REGION_SLOT} must sit between the region marks")
    src = _fill(src, STYLE_SLOT, json.dumps(region if regions else banner, ensure_ascii=False))
    src = _fill(src, PART_SLOT, _version(part))
    out = minify(_fill(src, CONFIG_SLOT, CONFIG_STAND_IN))
    if out.count(CONFIG_STAND_IN) != 1:
        raise ValueError("the minified widget must read the config slot exactly once")
    if not out.startswith(COMPILE_HINT + "\n"):
        raise ValueError(f"the minified first layer must start with {COMPILE_HINT}")
    return out.replace(CONFIG_STAND_IN, CONFIG_SLOT)


if __name__ == "__main__":
    part_js, region_js = build_part(), build_region()
    PART_TARGET.write_text(part_js, encoding="utf-8")
    TARGET.write_text(build(part_js), encoding="utf-8")
    REGION_TARGET.write_text(region_js, encoding="utf-8")
    OPTOUT_TARGET.write_text(build(part_js, regions=True, region_part=region_js),
                             encoding="utf-8")
    LEAN_TARGET.write_text(build(part_js, age=False), encoding="utf-8")
    CSS_TARGET.write_text(build_css(), encoding="utf-8")
    for path in (TARGET, LEAN_TARGET, PART_TARGET, OPTOUT_TARGET, REGION_TARGET, CSS_TARGET):
        sys.stdout.write(f"wrote {path} ({path.stat().st_size} bytes)\n")
