"""gunicorn's logger with credentials taken out of the access log.

gunicorn's `access_log_format` cannot rewrite the request line, and the request line of
an access, login or unsubscribe link carries its token. Used by gunicorn.conf.py
(`logger_class`), which `make run` and the docs use.
"""
from __future__ import annotations

from gunicorn.glogging import Logger

from .logredact import RedactingFilter, redact

_URL_ATOMS = ("r", "U", "q", "f", "{referer}i", "{authorization}i", "{cookie}i")


class RedactingLogger(Logger):
    """Access log atoms (request line, path, query, referer) without tokens."""

    def atoms(self, resp, req, environ, request_time):
        """gunicorn's atoms, redacted."""
        atoms = super().atoms(resp, req, environ, request_time)
        for name in _URL_ATOMS:
            if name in atoms:
                atoms[name] = redact(atoms[name])
        return atoms

    def setup(self, cfg):
        """gunicorn's set-up, plus redaction of its error log (e.g. bad request lines)."""
        super().setup(cfg)
        self.error_log.addFilter(RedactingFilter())
