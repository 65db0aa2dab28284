"""Remove credentials that travel in URLs (access, login, unsubscribe and guardian tokens,
signed `k`/`r` parameters), and the personal data of SMS gateways' GET callbacks (the
sender's number, the text), from log lines: the access log of gunicorn and the app's own
logs.

Pure functions, no Flask: gunicorn's logger class imports this before any app exists.
"""
from __future__ import annotations

import logging
import re

MARK = "[redacted]"
# Query parameters that carry a credential (or a signed link's payload).
SECRET_PARAMS = ("token", "k", "r", "t", "sig", "signature", "key", "code", "secret")
_PARAM = re.compile(r"(?i)([?&;](?:%s)=)[^&;#\s\"]*" % "|".join(SECRET_PARAMS))
# Path segments that are credentials: /my-data/<token>, /unsubscribe/<site>/<token>,
# /guardian/<site>/<token>, /sms/<gateway>/<token>,
# and the same under any prefix.
_PATHS = (re.compile(r"(/my-data/)[^/?#\s\"]+"),
          re.compile(r"(/(?:unsubscribe|guardian)/[^/?#\s\"]+/)[^/?#\s\"]+"),
          re.compile(r"(/(?:login|l|u|access)/)[A-Za-z0-9_.~-]{16,}"),
          # SMS gateways' inbound token: /api/v1/sites/<site>/sms/<gateway>/<token>
          re.compile(r"(/sms/(?:twilio|vonage|plivo)/)[^/?#\s\"]+"),
          # and the whole query of an inbound message sent as a GET (Vonage's default):
          # the sender's number and the text are personal data, not for the access log
          re.compile(r"(/sms/(?:twilio|vonage|plivo)(?:/[^?#\s\"]*)?\?)[^#\s\"]+"))
_BEARER = re.compile(r"(?i)(bearer\s+)\S+")


def redact(text):
    """TEXT with every credential in URLs (and bearer tokens) replaced by [redacted]."""
    if not isinstance(text, str) or not text:
        return text
    if "=" in text:
        text = _PARAM.sub(lambda m: m.group(1) + MARK, text)
    if "/" in text:
        for pattern in _PATHS:
            text = pattern.sub(lambda m: m.group(1) + MARK, text)
    if "earer" in text:
        text = _BEARER.sub(lambda m: m.group(1) + MARK, text)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the message and its arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v
                           for k, v in record.args.items()}
        return True


def install(*logger_names: str) -> None:
    """Redact the records of these loggers (and their handlers') once."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
