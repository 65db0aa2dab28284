"""Admin forms that keep the operator's input: errors per field, shown next to the field
inside the normal page (not an error page), with what was typed still in the form."""
from __future__ import annotations

import functools
import re
from typing import Callable

import marshmallow as ma
from flask import request

from ..errors import DomainError
from ..sites import NotFound

GENERAL = "_form"
# Fields never sent back to the browser with an error (what was typed stays secret).
SECRET_FIELDS = frozenset({"csrf_token", "password", "current", "confirm"})


def typed_values(lists: tuple[str, ...] = ()) -> dict:
    """What the operator typed into the posted form (LISTS: repeated fields, as lists)."""
    sent = request.form if request.method == "POST" else request.args
    values = {k: v for k, v in sent.to_dict().items() if k not in SECRET_FIELDS}
    values.update({name: sent.getlist(name) for name in lists})
    return values


def status_of(exc: Exception) -> int:
    """The HTTP status a refused form answers with."""
    return exc.status if isinstance(exc, DomainError) else 422


def by_form_field(errors: dict[str, list[str]]) -> dict[str, list[str]]:
    """Errors of nested parts (`regions.0.granted.0`) shown by the form field holding them."""
    out: dict[str, list[str]] = {}
    for name, messages in errors.items():
        out.setdefault(name.split(".")[0], []).extend(messages)
    return out


def errors_on(page: Callable, lists: tuple[str, ...] = ()):
    """Decorate a POST view: bad input re-renders PAGE (called with the view's URL
    arguments and values=, errors=, status=) with each error next to its field and the
    input kept, instead of an error page. Nothing the view did is kept (services roll
    back their own transaction on error)."""
    def decorate(view):
        @functools.wraps(view)
        def wrapper(**kwargs):
            try:
                return view(**kwargs)
            except (ma.ValidationError, DomainError) as exc:
                return page(**kwargs, values=typed_values(lists),
                            errors=by_form_field(errors_of(exc)), status=status_of(exc))
        return wrapper
    return decorate


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


# ---------------------------------------------------------------- category service rows
#
# A category's services are form rows: name, provider, purpose, privacy URL, lifetime, and
# three textareas, one entry per line. A cookie line is a name or a /pattern/, optionally
# followed by `; domain=...; path=...; lifetime=...` (the row's lifetime is the default).
# A storage line is a key or /pattern/, `session:` first for sessionStorage. Hosts: one
# host name per line. An empty row is ignored; "Remove" drops a row.

SERVICE_FIELDS = ("name", "provider", "purpose", "privacy_url")
ROW_FIELDS = SERVICE_FIELDS + ("lifetime", "cookies", "storage", "hosts", "remove")
MAX_ROWS = 100
_ROW = re.compile(r"^svc-(\d{1,3})-([a-z_]+)$")


def _head(text: str) -> dict:
    if len(text) > 2 and text.startswith("/") and text.endswith("/"):
        return {"pattern": text[1:-1]}
    return {"name": text}


def _show_head(entry: dict) -> str:
    return f"/{entry['pattern']}/" if entry.get("pattern") else entry.get("name", "")


def service_rows(services: list[dict]) -> list[dict]:
    """A category's services as the form shows them (plus one empty row to add one)."""
    rows = []
    for s in services or ():
        durations = {c.get("duration") for c in s.get("cookies") or ()}
        lifetime = durations.pop() if len(durations) == 1 else None
        cookies = []
        for c in s.get("cookies") or ():
            line = _show_head(c)
            for k in ("domain", "path"):
                if c.get(k):
                    line += f"; {k}={c[k]}"
            if c.get("duration") and c.get("duration") != lifetime:
                line += f"; lifetime={c['duration']}"
            cookies.append(line)
        storage = [("session:" if e.get("area") == "session" else "") + _show_head(e)
                   for e in s.get("storage") or ()]
        rows.append({**{k: s.get(k) or "" for k in SERVICE_FIELDS},
                     "lifetime": lifetime or "", "cookies": "\n".join(cookies),
                     "storage": "\n".join(storage), "hosts": "\n".join(s.get("hosts") or ())})
    rows.append({k: "" for k in ROW_FIELDS if k != "remove"})
    return rows


def _lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def parse_service_rows(form) -> tuple[list[dict], list[dict], dict[str, list[str]]]:
    """(services, the rows as typed, errors by field name) from a category form."""
    typed: dict[int, dict] = {}
    errors: dict[str, list[str]] = {}
    for name, value in form.items():
        match = _ROW.fullmatch(name)
        if not match:
            continue
        index, field = int(match.group(1)), match.group(2)
        if field not in ROW_FIELDS or index >= MAX_ROWS:
            errors.setdefault(GENERAL, []).append(f"unknown field {name}")
            continue
        typed.setdefault(index, {})[field] = value
    rows, services, where = [], [], []
    for index in sorted(typed):
        row = {k: typed[index].get(k, "") for k in ROW_FIELDS}
        row["remove"] = bool(row["remove"])
        rows.append(row)
        if row["remove"] or not any(str(row[k]).strip() for k in ROW_FIELDS if k != "remove"):
            continue
        position = len(rows) - 1
        service = {k: row[k].strip() for k in SERVICE_FIELDS if row[k].strip()}
        lifetime = row["lifetime"].strip()
        cookies = []
        for line in _lines(row["cookies"]):
            head, *attrs = [p.strip() for p in line.split(";")]
            cookie = _head(head)
            for attr in attrs:
                key, eq, value = attr.partition("=")
                key = {"lifetime": "duration"}.get(key.strip().lower(), key.strip().lower())
                if not eq or key not in ("domain", "path", "duration") or not value.strip():
                    errors.setdefault(f"svc-{position}-cookies", []).append(
                        f"{line!r}: after the name, give domain=, path= or lifetime=")
                    break
                cookie[key] = value.strip()
            if lifetime and "duration" not in cookie:
                cookie["duration"] = lifetime
            cookies.append(cookie)
        service["cookies"] = cookies
        storage = []
        for line in _lines(row["storage"]):
            area = "session" if line.lower().startswith("session:") else "local"
            storage.append({**_head(line.split(":", 1)[1].strip() if area == "session"
                                    else line), "area": area})
        if storage:
            service["storage"] = storage
        hosts = [h.lower() for h in _lines(row["hosts"])]
        if hosts:
            service["hosts"] = hosts
        services.append(service)
        where.append(position)
    if not errors:
        from ..site_admin import ServiceSchema

        try:
            ServiceSchema(many=True).load(services)
        except ma.ValidationError as exc:
            for index, messages in exc.messages.items():
                if not isinstance(messages, dict):
                    errors.setdefault(GENERAL, []).extend(_texts(messages))
                    continue
                for field, detail in messages.items():
                    column = field if field in SERVICE_FIELDS else {
                        "cookies": "cookies", "storage": "storage", "hosts": "hosts"}.get(
                        field, None)
                    target = f"svc-{where[index]}-{column}" if column else GENERAL
                    errors.setdefault(target, []).extend(_texts(detail))
    names = [s.get("name") for s in services]
    for i, name in enumerate(names):
        if name and names.index(name) != i:
            errors.setdefault(f"svc-{where[i]}-name", []).append(
                "two services have this name")
    return services, rows, errors
