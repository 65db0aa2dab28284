"""A minimal receiver of the consent manager's webhooks, verified with the maintained
Standard Webhooks library (`pip install standardwebhooks`).

    CONSENT_WEBHOOK_SECRET=whsec_... python examples/webhook_receiver.py 8000

The library checks `webhook-signature` over "webhook-id.webhook-timestamp.body" and
refuses timestamps more than 5 minutes off. The signed `webhook-id` is the notification
id, the same on every retry: it is what this receiver de-duplicates on.
"""
import json
import os
import sqlite3
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class SeenIds:
    """Notification ids already handled, kept in SQLite so a restart does not forget."""

    def __init__(self, path: str = ":memory:"):
        self.db = sqlite3.connect(path, check_same_thread=False)
        self.db.execute("CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY)")
        self.lock = threading.Lock()

    def first_time(self, msg_id: str) -> bool:
        """Record MSG_ID; True the first time it is seen."""
        with self.lock, self.db:
            return self.db.execute("INSERT OR IGNORE INTO seen VALUES (?)",
                                   (msg_id,)).rowcount == 1


class Receiver(BaseHTTPRequestHandler):
    secret = os.environ.get("CONSENT_WEBHOOK_SECRET", "")
    seen = SeenIds(os.environ.get("CONSENT_WEBHOOK_SEEN_DB", ":memory:"))

    def handle_notification(self, note: dict) -> None:
        """Your part: stop processing, delete the person's data, update the CRM..."""
        if note["type"] == "policy.published":  # tell your users before it takes effect
            print(note["type"], note["policy"]["version"], note["policy"]["effective_at"],
                  flush=True)
            return
        print(note["type"], note["subject"], note["changes"], note["state"], flush=True)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            note = Webhook(self.secret).verify(body, dict(self.headers))
        except (WebhookVerificationError, ValueError):
            return self.answer(401)  # forged, altered, stale, or not ours
        # A retry of a handled notification is acknowledged without handling it again.
        # (If handling fails, forget the id and answer 500 so that it is retried.)
        msg_id = self.headers["webhook-id"]
        if self.seen.first_time(msg_id):
            try:
                self.handle_notification(note)
            except Exception:
                with self.seen.lock, self.seen.db:
                    self.seen.db.execute("DELETE FROM seen WHERE id = ?", (msg_id,))
                return self.answer(500)
        self.answer(204)  # 2xx = acknowledged; anything else is retried later

    def answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    ThreadingHTTPServer(("127.0.0.1", port), Receiver).serve_forever()
