"""Admin forms that keep the operator's input: errors per field, shown next to the field
inside the normal page (not an error page), with what was typed still in the form."""
from __future__ import annotations

import marshmallow as ma

from ..errors import DomainError
from ..sites import NotFound

GENERAL = "_form"


def errors_of(exc: Exception) -> dict[str, list[str]]:
    """{field name: [messages]} of a marshmallow or domain error (GENERAL: the form's)."""
    if isinstance(exc, ma.ValidationError):
        out: dict[str, list[str]] = {}
        _flatten(exc.messages, "", out)
        return out
    if isinstance(exc, DomainError):
        field = (exc.field or GENERAL).split(".")[0]
        return {field: [exc.detail]}
    if isinstance(exc, NotFound):
        return {GENERAL: [str(exc)]}
    return {GENERAL: [str(exc)]}


def _flatten(messages, prefix: str, out: dict) -> None:
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict):
                _flatten(value, name, out)
            else:
                out.setdefault(name, []).extend(_texts(value))
    else:
        out.setdefault(prefix or GENERAL, []).extend(_texts(messages))


def _texts(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            out.extend(_texts(v))
        return out
    if isinstance(value, dict):
        return [f"{k}: {'; '.join(_texts(v))}" for k, v in value.items()]
    return [str(value)]
