"""Webhook deliveries against a real HTTP receiver on loopback (a pytest plugin: fixtures
`fast` and `receiver`)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from consent.extensions import db
from consent.outbox import DeliveryAttempt, DeliveryWorker, OutboxMessage, register_endpoint

from .waits import poll


class Receiver:
    """A loopback HTTP server; BEHAVE(n) -> (status, seconds to wait before answering) or
    (status, seconds, {header: value}) for the Nth request.

    A wait is cut short when the receiver stops, so a "hanging" answer can be long."""

    def __init__(self, behave=lambda n: (200, 0)):
        self.behave = behave
        self.requests: list[tuple[dict, bytes]] = []
        self.stopped = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status, delay, *more = outer.behave(len(outer.requests))
                outer.stopped.wait(delay)
                try:
                    self.send_response(status)
                    for name, value in (more[0] if more else {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/consent"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, body in self.requests]

    def stop(self):
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fast(app):
    """Short backoff so retries happen within the test. The attempt timeout stays long
    (10 s): an answering receiver never times out however busy the machine; tests of
    timeouts use a receiver that does not answer."""
    app.config.update(CONSENT_WEBHOOK_TIMEOUT=10, CONSENT_WEBHOOK_BACKOFF_BASE=0.01,
                      CONSENT_WEBHOOK_BACKOFF_MAX=0.05, CONSENT_WEBHOOK_MAX_ATTEMPTS=4,
                      CONSENT_WEBHOOK_LEASE_SECONDS=1, CONSENT_WEBHOOK_POLL_SECONDS=0.05)
    return app


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def add_endpoint(site_key, url="http://127.0.0.1:9/none", **interests):
    endpoint, secret = register_endpoint(site_key, url=url, **interests)
    return endpoint.id, secret


def messages(**where) -> list[OutboxMessage]:
    db.session.rollback()
    query = db.select(OutboxMessage).order_by(OutboxMessage.id)
    for key, value in where.items():
        query = query.where(getattr(OutboxMessage, key) == value)
    return list(db.session.execute(query).scalars())


def log_of(message_id) -> list[DeliveryAttempt]:
    db.session.rollback()
    return list(db.session.execute(db.select(DeliveryAttempt).where(
        DeliveryAttempt.message_id == message_id).order_by(DeliveryAttempt.id)).scalars())


def run_worker(**kw) -> dict:
    """One pass of `flask consent deliver`: whatever is due now."""
    return dict(DeliveryWorker(concurrency=kw.pop("concurrency", 2), poll_seconds=0.05,
                               **kw).run())


def drain(timeout: float = 30) -> dict:
    """Run one-shot passes until no message waits for a retry any more; fails after TIMEOUT."""
    stats: dict = {}

    def one_pass():
        for key, value in run_worker().items():
            stats[key] = stats.get(key, 0) + value
        return messages(state="pending") + messages(state="delivering")

    poll(one_pass, lambda waiting: not waiting, timeout=timeout, interval=0.02,
         message=lambda waiting: f"messages still waiting: {[(m.id, m.state) for m in waiting]}")
    return stats
