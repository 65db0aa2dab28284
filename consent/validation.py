"""Shared marshmallow building blocks for every surface's schemas."""
from __future__ import annotations

import marshmallow as ma


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
