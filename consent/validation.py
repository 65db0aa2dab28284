"""Shared marshmallow building blocks for every surface's schemas."""
from __future__ import annotations

import marshmallow as ma

from .subjects import PUBLIC_ID_RE


class StrictSchema(ma.Schema):
    """Refuses unknown fields, so typos are reported instead of silently ignored."""

    class Meta:
        unknown = ma.RAISE


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

    subject = ma.fields.String(validate=ma.validate.Regexp(PUBLIC_ID_RE),
                               metadata={"description": "Visitor id (the widget cookie's `s`)"})
    user_id = ma.fields.String(validate=ma.validate.Length(1, 200),
                               metadata={"description": "The site's own user id"})

    @ma.validates_schema
    def _one_person(self, data, **kwargs):
        if ("subject" in data) == ("user_id" in data):
            raise ma.ValidationError("give exactly one of subject or user_id", "subject")
