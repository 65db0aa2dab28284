"""Domain errors and how every surface reports them.

JSON surfaces answer RFC 9457 `application/problem+json` with per-field messages; HTML
surfaces render templates/error.html. No error path is allowed to become a 500 except
a genuine bug, which is logged and still reported as problem+json or a page.
"""
from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask.globals import request_ctx
from markupsafe import escape
from marshmallow import ValidationError
from sqlalchemy.exc import DataError, OperationalError, StatementError
from werkzeug.exceptions import HTTPException, SecurityError

from .database import DatabaseUnavailable
from .extensions import db
from .sites import NotFound

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"


class DomainError(Exception):
    """A request that is well-formed but not allowed; carries its HTTP status."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str, *, field: str | None = None, status: int | None = None,
                 headers: dict | None = None):
        super().__init__(detail)
        self.detail, self.field = detail, field
        # Response headers the answer needs (e.g. a 401's WWW-Authenticate challenge).
        self.headers = dict(headers or {})
        if status is not None:
            self.status = status


class Invalid(DomainError):
    """Input that fails a rule the schema cannot express (unknown category, ...)."""

    status = 422
    title = "Invalid input"


class Forbidden(DomainError):
    """The caller is known but may not do this."""

    status = 403
    title = "Forbidden"


class Unauthorized(DomainError):
    """The caller did not prove who it is."""

    status = 401
    title = "Authentication required"


class Conflict(DomainError):
    """The request conflicts with what is recorded."""

    status = 409
    title = "Conflict"


class InvalidLink(DomainError):
    """A signed link that was altered, belongs elsewhere, or is not a link at all."""

    status = 400
    title = "Invalid link"


class ExpiredLink(DomainError):
    """A signed link past its lifetime (or a single-use link already used)."""

    status = 410
    title = "Link expired"


def _pointer_errors(messages, prefix: str = "") -> list[dict]:
    """Flatten marshmallow's nested messages into RFC 9457 style {pointer, detail} items."""
    out: list[dict] = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            out.extend(_pointer_errors(value, f"{prefix}/{key}"))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        out.extend({"pointer": f"#{prefix}", "detail": m} for m in messages)
    elif isinstance(messages, list):
        for value in messages:
            out.extend(_pointer_errors(value, prefix))
    else:
        out.append({"pointer": f"#{prefix}", "detail": str(messages)})
    return out


def pointer_errors(messages) -> list[dict]:
    """marshmallow's messages as RFC 9457 style {pointer, detail} items."""
    return _pointer_errors(messages)


def wants_json() -> bool:
    """Whether the current request is answered in JSON rather than HTML."""
    if request.path.startswith("/api/") or request.is_json:
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json", PROBLEM])
    return best in ("application/json", PROBLEM)


def problem(status: int, title: str, detail: str | None = None, errors=None, *,
            link: dict | None = None, **extra):
    """Build an RFC 9457 response (JSON) or a friendly page (HTML). LINK, `{"href",
    "title"}`, is a way on the person can take (a link on the page, `link` in JSON)."""
    if link:
        extra["link"] = link
    if wants_json():
        body = {"type": "about:blank", "title": title, "status": status}
        if detail:
            body["detail"] = detail
        if errors:
            body["errors"] = errors
        body.update(extra)
        response = jsonify(body)
        response.status_code = status
        response.mimetype = PROBLEM
        return response
    if request_ctx.url_adapter is None:
        # The request named a host the app refuses (not CONSENT_PUBLIC_URL's, or not a
        # host name at all): no URL can be built for it, so no page with links either.
        return _bare_page(status, title, detail), status
    if request.path.startswith("/admin/"):
        # An admin form that has no page of its own to show its errors on: the error in
        # the admin's layout, with the way back to the form.
        html = render_template("admin/error.html", status=status, title=title,
                               detail=detail, errors=errors or [], back=_admin_referrer())
        return html, status
    html = render_template("error.html", status=status, title=title, detail=detail,
                           errors=errors or [], link=link)
    return html, status


def _bare_page(status: int, title: str, detail: str | None) -> str:
    """The friendly error page without the layout (which links the stylesheet)."""
    text = f"<p>{escape(detail)}</p>" if detail else ""
    return (f'<!doctype html><html lang="en"><meta charset="utf-8"><title>{escape(title)}'
            f"</title><h1>{escape(title)}</h1>{text}<p>Error {status}. Nothing was "
            "changed.</p></html>")


def _admin_referrer() -> str | None:
    """The admin page the request came from (same host), to go back to."""
    from urllib.parse import urlsplit

    ref = urlsplit(request.referrer or "")
    if ref.netloc == request.host and ref.path.startswith("/admin/"):
        return ref.path + (f"?{ref.query}" if ref.query else "")
    return None


def register_error_handlers(app: Flask) -> None:
    """Route every error to problem()."""

    @app.errorhandler(DomainError)
    def _domain(exc: DomainError):
        errors = [{"pointer": f"#/{exc.field.replace('.', '/')}", "detail": exc.detail}] \
            if exc.field else None
        # A problem type of its own lets a client tell this refusal from others.
        extra = {"type": exc.type} if getattr(exc, "type", None) else {}
        response = problem(exc.status, exc.title, exc.detail, errors,
                           link=getattr(exc, "link", None), **extra)
        if exc.headers:
            if isinstance(response, tuple):
                return response[0], response[1], exc.headers
            response.headers.update(exc.headers)
        return response

    @app.errorhandler(NotFound)
    def _not_found(exc: NotFound):
        return problem(404, "Not found", str(exc), None, missing={exc.kind: exc.name})

    @app.errorhandler(ValidationError)
    def _invalid(exc: ValidationError):
        return problem(422, "Invalid input", "Some fields are not valid.",
                       _pointer_errors(exc.messages))

    @app.errorhandler(DatabaseUnavailable)
    def _db_down(exc: DatabaseUnavailable):
        response = problem(503, "Service unavailable",
                           "The consent store is not reachable; nothing was recorded. "
                           "Try again shortly.")
        if isinstance(response, tuple):
            return response[0], 503, {"Retry-After": "5"}
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(OperationalError)
    def _db_error(exc: OperationalError):
        log.warning("database error: %s", exc.orig or exc)
        return _db_down(DatabaseUnavailable(str(exc)))

    @app.errorhandler(StatementError)
    def _bad_parameter(exc: StatementError):
        # A value that cannot even be bound (a date of year 1 at +14:00 has no UTC form,
        # text the driver cannot encode): the caller's error, like DataError below.
        if isinstance(exc.orig, (OverflowError, ValueError, UnicodeError)) and \
                not isinstance(exc, (OperationalError,)):
            return _out_of_range(exc.orig)
        return _unexpected(exc)

    @app.errorhandler(OverflowError)
    @app.errorhandler(DataError)
    def _out_of_range(exc):
        # A number or text the database cannot hold (e.g. an id of 2**70 in a URL):
        # no such thing can exist, so it is the caller's error, never a 500.
        db.session.rollback()
        return problem(400, "Bad request", "A value in the request is out of range.")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        data = getattr(exc, "data", None) or {}
        messages = data.get("messages")
        if exc.code == 422 and messages:
            # webargs/flask-smorest wrap messages by location: {"json": {...}}
            if isinstance(messages, dict) and len(messages) == 1 and \
                    next(iter(messages)) in ("json", "query", "form", "view_args", "headers"):
                messages = next(iter(messages.values()))
            return problem(422, "Invalid input", "Some fields are not valid.",
                           _pointer_errors(messages))
        detail = exc.description
        if isinstance(exc, SecurityError):
            # (werkzeug's text repeats the Host header: an attacker's words in our answer)
            detail = "The request names a host this server does not answer to."
        if exc.code == 400 and messages:
            detail = "The request body is not valid JSON."
        if exc.code == 413:
            detail = f"The request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes."
        response = problem(exc.code or 500, exc.name, detail)
        retry_after = getattr(exc, "retry_after_seconds", None)
        if retry_after is not None:
            if isinstance(response, tuple):
                return response[0], response[1], {"Retry-After": str(retry_after)}
            response.headers["Retry-After"] = str(retry_after)
        if exc.code == 405 and hasattr(exc, "valid_methods") and exc.valid_methods:
            if not isinstance(response, tuple):
                response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return problem(500, "Internal server error",
                       "Something went wrong on our side; nothing was recorded.")
