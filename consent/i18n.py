"""Texts per language: built-in catalogs in consent/locales, overridable per site."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

LOCALES_DIR = Path(__file__).resolve().parent / "locales"
SUPPORTED = ("en", "de", "fr", "es")


@lru_cache(maxsize=None)
def catalog(surface: str, locale: str) -> dict[str, str]:
    """Built-in strings of a surface ('widget', 'pages', ...) in LOCALE (falls back to en)."""
    path = LOCALES_DIR / f"{surface}.{locale}.json"
    if not path.exists():
        path = LOCALES_DIR / f"{surface}.en.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def page_strings(site, locale: str) -> dict[str, str]:
    """The pages' texts in LOCALE (catalog `pages`: the preference, unsubscribe and
    guardian pages), with the site's own wording (its settings' `texts`) where it has one."""
    strings = dict(catalog("pages", locale))
    strings.update(((site.settings or {}).get("texts") or {}).get(locale) or {})
    return strings


def localised(texts: dict | None, locale: str, fallback: str) -> str:
    """A site's text (a category's title or description: locale -> text) in LOCALE, else
    in the site's FALLBACK locale, else in English, else in any; "" when it has none."""
    texts = texts or {}
    return texts.get(locale) or texts.get(fallback) or texts.get("en") or \
        next(iter(texts.values()), "")


def pick_locale(requested: str | None, available: tuple[str, ...] | list[str],
                default: str = "en", accept_language: str | None = None) -> str:
    """Best locale among AVAILABLE for a requested tag or an Accept-Language header."""
    candidates: list[str] = []
    if requested:
        candidates.append(requested)
    if accept_language:
        for part in accept_language.split(","):
            candidates.append(part.split(";")[0].strip())
    for tag in candidates:
        tag = tag.strip().lower().replace("_", "-")
        if not tag:
            continue
        if tag in available:
            return tag
        base = tag.split("-")[0]
        if base in available:
            return base
    return default if default in available else (available[0] if available else "en")


def category_defaults() -> dict[str, dict[str, dict[str, str]]]:
    """{category: {locale: {title, description}}} for the standard categories."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for locale in SUPPORTED:
        for key, texts in catalog("categories", locale).items():
            out.setdefault(key, {})[locale] = texts
    return out
