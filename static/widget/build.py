"""Build static/consent.js from static/widget/consent.src.js: `python3 static/widget/build.py`.

For visitors of opt-out and notice-only regions (docs/regions.md) it also builds
static/consent-optout.js, the same widget with the code between `/*+region*/` and
`/*-region*/` marks kept (the plain build drops it: other visitors download none of it),
and static/consent-region.js from static/widget/region.src.js (the "Your Privacy Choices"
UI and the GPP / US Privacy APIs, loaded only there), minified the same way.

The banner's part of the stylesheet static/consent.css (everything before its `/*@`
comment) is embedded too (the source's `'@@STYLE@@'` becomes that CSS as a string,
without comments), so the banner needs no second request. The whole file is served as
consent.css: the script adopts it when the preferences dialog first opens, and browsers
without constructable stylesheets load it with a <link>.

A deliberately tiny, dependency-free minifier: it drops comments (except the leading
`/*! ... */` banner) and whitespace that JavaScript does not need, and keeps a newline
wherever dropping it could change automatic semicolon insertion. It never renames
anything, so the output reads like the source without comments. tests/test_widget_files.py
checks that the committed consent.js is exactly this script's output.

Source conventions it relies on: no template literals; a `/` starts a regular expression
only after a punctuator (or `return`/`typeof`).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "consent.src.js"
TARGET = HERE.parent / "consent.js"
STYLESHEET = HERE.parent / "consent.css"
STYLE_SLOT = "'@@STYLE@@'"
REGION_SOURCE = HERE / "region.src.js"
REGION_TARGET = HERE.parent / "consent-region.js"
OPTOUT_TARGET = HERE.parent / "consent-optout.js"
# Code only opt-out and notice-only regions need, in the widget's source (docs/regions.md).
REGION_ONLY = re.compile(r"/\*\+region\*/.*?/\*-region\*/", re.S)

WORD = re.compile(r"[A-Za-z0-9_$]")
TOKEN = re.compile(r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<string>'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")
  | (?P<word>[A-Za-z0-9_$.]*[A-Za-z0-9_$]|[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<punct>=>|\.\.\.|===|!==|\+\+|--|&&|\|\||[=!<>+\-*/%&|^]=?|[{}()\[\];,.?:~])
""", re.X | re.S)
REGEX = re.compile(r"/(?:\\.|\[(?:\\.|[^\]\\\n])*\]|[^/\\\n\[])+/[a-z]*")
# After these tokens, or before these, a newline can never matter.
OPENERS = {"{", "(", "[", ",", ";", "=>", "&&", "||", "?", ":", "=", "+", "-", "*", "/", "!"}
CLOSERS = {"}", ")", "]", ",", ";", ".", ":", "?", "&&", "||", "="}


def tokens(src: str):
    """(kind, text, newline_before) for every significant token of SRC."""
    pos, newline, prev = 0, False, None
    while pos < len(src):
        if src[pos] == "`":
            raise ValueError(f"template literal at offset {pos}: not supported by this build")
        if src[pos] == "/" and not src.startswith(("//", "/*"), pos) and (
                prev is None or prev[0] == "punct" and prev[1] not in (")", "]", "}")
                or prev[1] in ("return", "typeof")):
            m = REGEX.match(src, pos)
            if not m:
                raise ValueError(f"unterminated regular expression at offset {pos}")
            kind, text = "regex", m.group()
        else:
            m = TOKEN.match(src, pos)
            if not m:
                raise ValueError(f"cannot tokenise at offset {pos}: {src[pos:pos + 20]!r}")
            kind, text = m.lastgroup, m.group()
        pos = m.end()
        if kind == "ws":
            newline = newline or "\n" in text
            continue
        if kind == "comment":
            if text.startswith("/*!"):
                yield "banner", text, False
            newline = newline or "\n" in text or text.startswith("//")
            continue
        yield kind, text, newline
        prev, newline = (kind, text), False


def minify(src: str) -> str:
    """SRC without comments and without the whitespace it does not need."""
    out: list[str] = []
    last = None
    for kind, text, newline in tokens(src):
        if kind == "banner":
            out.append(text + "\n")
            continue
        if last is not None:
            if newline and last not in OPENERS and text not in CLOSERS:
                out.append("\n")
            elif WORD.match(last[-1]) and WORD.match(text[0]) or (last[-1] + text[0]) in ("++", "--", "+-", "-+"):
                out.append(" ")
        out.append(text)
        last = text
    return "".join(out) + "\n"


DIALOG_MARK = "/*@"


def stylesheet() -> str:
    """The banner's part of consent.css as one line without comments, for the script."""
    text = STYLESHEET.read_text(encoding="utf-8")
    if text.count(DIALOG_MARK) != 1:
        raise ValueError(f"consent.css must mark where the dialog's rules start with {DIALOG_MARK}")
    css = re.sub(r"/\*.*?\*/", "", text.split(DIALOG_MARK)[0], flags=re.S)
    return "".join(line.strip() for line in css.splitlines())


def build(*, regions: bool = False) -> str:
    """The minified widget, as it should be committed in static/consent.js (with REGIONS:
    static/consent-optout.js, which keeps the code between `/*+region*/` and
    `/*-region*/` that the plain build drops)."""
    source = SOURCE.read_text(encoding="utf-8")
    out = minify(source if regions else REGION_ONLY.sub("", source))
    if out.count(STYLE_SLOT) != 1:
        raise ValueError(f"the source must hold {STYLE_SLOT} exactly once")
    return out.replace(STYLE_SLOT, json.dumps(stylesheet(), ensure_ascii=False))


def build_region() -> str:
    """The region part, as it should be committed in static/consent-region.js."""
    return minify(REGION_SOURCE.read_text(encoding="utf-8"))


if __name__ == "__main__":
    TARGET.write_text(build(), encoding="utf-8")
    OPTOUT_TARGET.write_text(build(regions=True), encoding="utf-8")
    REGION_TARGET.write_text(build_region(), encoding="utf-8")
    for target in (TARGET, OPTOUT_TARGET, REGION_TARGET):
        sys.stdout.write(f"wrote {target} ({target.stat().st_size} bytes)\n")
