"""A minimal receiver of the consent manager's webhooks (Python standard library only).

    CONSENT_WEBHOOK_SECRET=whsec_... python examples/webhook_receiver.py 8000
"""
import hashlib
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE = 300  # seconds: an older (or future) timestamp is a replay


def verify(secret: str, timestamp: str, signature: str, body: bytes, now=None) -> bool:
    """True if SIGNATURE is the sender's HMAC-SHA256 of "<timestamp>." + body, and fresh."""
    if not timestamp.isdigit() or abs((now or time.time()) - int(timestamp)) > TOLERANCE:
        return False
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest("v1=" + mac.hexdigest(), signature)


class Receiver(BaseHTTPRequestHandler):
    secret = os.environ.get("CONSENT_WEBHOOK_SECRET", "")
    seen: set = set()  # idempotency keys handled; use a table with a UNIQUE key in production
    lock = threading.Lock()

    def handle_notification(self, note: dict) -> None:
        """Your part: stop processing, delete the person's data, update the CRM..."""
        if note["type"] == "policy.published":  # tell your users before it takes effect
            print(note["type"], note["policy"]["version"], note["policy"]["effective_at"],
                  flush=True)
            return
        print(note["type"], note["subject"], note["changes"], note["state"], flush=True)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not verify(self.secret, self.headers.get("X-Consent-Timestamp", ""),
                      self.headers.get("X-Consent-Signature", ""), body):
            return self.answer(401)
        key = self.headers.get("Idempotency-Key", "")
        with self.lock:  # a retry may arrive while the first delivery is still handled
            if key not in self.seen:
                self.handle_notification(json.loads(body))
                self.seen.add(key)
        self.answer(204)  # 2xx = acknowledged; anything else is retried later

    def answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    ThreadingHTTPServer(("127.0.0.1", port), Receiver).serve_forever()
