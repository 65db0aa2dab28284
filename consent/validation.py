"""Shared marshmallow building blocks for every surface's schemas."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

import marshmallow as ma

from .subjects import PUBLIC_ID_RE

URL_MAX = 2048
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\]")


class StrictSchema(ma.Schema):
    """Refuses unknown fields, so typos are reported instead of silently ignored."""

    class Meta:
        unknown = ma.RAISE


class Exact(ma.validate.Regexp):
    """A pattern the whole value must match. marshmallow's Regexp uses `re.match`, whose
    `$` also matches before a final newline: "key\\n" passed every `^...$` pattern. The
    pattern itself is unchanged, so the OpenAPI spec shows it as before."""

    def __call__(self, value):
        if self.regex.fullmatch(value) is None:
            raise ma.ValidationError(self._format_error(value))
        return value


class StrictBoolean(ma.fields.Boolean):
    """A JSON true/false only: "yes", 1 or "false" are errors, not guesses."""

    default_error_messages = {"invalid": "Must be true or false."}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class Lines(ma.fields.Field):
    """A textarea: values one per line (or comma-separated)."""

    default_error_messages = {"invalid": "Give one value per line."}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise self.make_error("invalid")
        return [p.strip() for p in value.replace(",", "\n").splitlines() if p.strip()]


class PersonFields(StrictSchema):
    """Names a person either by visitor id or by the site's own user id (not both)."""

    subject = ma.fields.String(validate=Exact(PUBLIC_ID_RE),
                               metadata={"description": "Visitor id (the widget cookie's `s`)"})
    user_id = ma.fields.String(validate=ma.validate.Length(1, 200),
                               metadata={"description": "The site's own user id"})

    @ma.validates_schema
    def _one_person(self, data, **kwargs):
        if ("subject" in data) == ("user_id" in data):
            raise ma.ValidationError("give exactly one of subject or user_id", "subject")


def http_url_problem(value) -> str | None:
    """Why VALUE is not an absolute http(s) URL to show as a link, or None when it is.

    The one rule for every URL the product links to (policy URLs from the CLI, the admin
    form, the API and the profiles): anything else -- `javascript:`, `data:`, a relative
    or scheme-relative URL, or one a browser would rewrite (spaces, control characters,
    backslashes) -- would run or lead somewhere else when a visitor clicks it."""
    if not isinstance(value, str) or not value:
        return "give an absolute http(s) URL"
    if len(value) > URL_MAX:
        return f"a URL has at most {URL_MAX} characters"
    if _URL_FORBIDDEN.search(value):
        return "a URL may not contain spaces, control characters or backslashes"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "give an absolute http(s) URL"
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return "give an absolute http(s) URL"
    if parts.username is not None or parts.password is not None:
        return "a URL may not carry a user name or password"
    return None


class HttpUrl(ma.fields.String):
    """An absolute http(s) URL (see http_url_problem)."""

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        problem = http_url_problem(value)
        if problem:
            raise ma.ValidationError(problem)
        return value
