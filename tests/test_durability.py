"""Concurrency, crashes and a stopped database, through real HTTP under gunicorn.

An event is *acknowledged* when the client received 201 with its event id; every
acknowledged event must be in the ledger afterwards and the ledger must verify.
"""
from __future__ import annotations

import http.client
import json
import signal
import subprocess
import threading
import time

import pytest

from tests.support.db import BACKEND, ledger_ids
from tests.support.servers import AppServer
from tests.support.waits import poll

pytestmark = pytest.mark.slow


def exchange(port: int, site_key: str, body: dict, timeout: float = 60.0):
    """POST a decision; returns (status, json or None, headers). Network errors -> Nones;
    no answer within TIMEOUT -> ("timeout", None, None)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", f"/api/v1/sites/{site_key}/decisions", body=json.dumps(body),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        try:
            return resp.status, json.loads(data), dict(resp.getheaders())
        except ValueError:
            return resp.status, None, dict(resp.getheaders())
    except TimeoutError:
        return "timeout", None, None
    except (OSError, http.client.HTTPException):
        return None, None, None
    finally:
        conn.close()


def post_decision(port: int, site_key: str, body: dict, timeout: float = 60.0):
    """POST a decision; returns (status, json or None). Network errors -> (None, None)."""
    return exchange(port, site_key, body, timeout)[:2]


class Writers:
    """N threads posting decisions until stopped; records what was acknowledged."""

    def __init__(self, port: int, site_key: str, n: int):
        self.port, self.site_key = port, site_key
        self.acked: list[str] = []
        self.acked_by = [0] * n
        self.statuses: dict = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(n)]

    def _run(self, i: int) -> None:
        subject = key = None
        k = 0
        while not self.stop.is_set():
            k += 1
            body = {"action": ("accept_all", "reject_all", "custom")[k % 3],
                    "categories": {"analytics": k % 2 == 0},
                    "client_event_id": f"w{i:02d}-{k:08d}-{time.monotonic_ns()}"}
            if subject:
                body.update(subject=subject, key=key)  # a visitor id needs its device key
            # a busy machine may be slow to answer (a fresh worker's first answer above
            # all): slow is not lost; what was acknowledged must be stored
            status, data = post_decision(self.port, self.site_key, body)
            with self.lock:
                self.statuses[status] = self.statuses.get(status, 0) + 1
                if status == 201 and data:
                    self.acked.append(data["event_id"])
                    self.acked_by[i] += 1
            if status == 201 and data and k % 5:
                subject, key = data["subject"], data.get("key") or key
            elif status is None:
                time.sleep(0.05)

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(90)  # each ends after its request in flight (up to 60 s)


def test_twenty_concurrent_writers(site, database_url):
    server = AppServer(database_url, workers=2)
    try:
        writers = Writers(server.port, site["key"], 20).start()
        # until each of the twenty has had 15 writes acknowledged (so they overlapped)
        poll(lambda: min(writers.acked_by), lambda least: least >= 15, timeout=180,
             interval=0.2, message=lambda _: f"acknowledged per writer: {writers.acked_by}, "
                                             f"statuses: {writers.statuses}")
        writers.finish()
    finally:
        server.stop()
    # no refused connection, no server error (a request still unanswered after 60 s on
    # an overloaded machine is not counted: what matters is that every acknowledged
    # write is stored)
    assert not [s for s in writers.statuses if s is None or s != "timeout" and s >= 500], \
        writers.statuses
    stored = ledger_ids(database_url)
    assert set(writers.acked) <= stored
    assert len(writers.acked) == len(set(writers.acked))


def test_kill_9_mid_write_loses_no_acknowledged_event(site, database_url):
    server = AppServer(database_url, workers=2)
    writers = Writers(server.port, site["key"], 8).start()
    poll(lambda: len(writers.acked), lambda n: n >= 30, timeout=120, interval=0.1,
         message=lambda n: f"only {n} writes acknowledged: {writers.statuses}")
    server.kill(signal.SIGKILL)  # master and workers, mid-transaction
    writers.finish()
    acked = list(writers.acked)
    assert acked
    # A new server on the same database recovers and keeps writing.
    server = AppServer(database_url, workers=1)
    try:
        status, _ = post_decision(server.port, site["key"], {"action": "reject_all"})
        assert status == 201
    finally:
        server.stop()
    assert set(acked) <= ledger_ids(database_url)


def _hold_sqlite_lock(path: str, seconds: float) -> subprocess.Popen:
    """Another process takes SQLite's write lock and keeps it, like a stuck writer."""
    code = (f"import sqlite3,time,sys; c=sqlite3.connect({path!r}, isolation_level=None); "
            f"c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep({seconds})")
    proc = subprocess.Popen(["python3", "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_unavailable_database_answers_503_and_loses_nothing(site, database_url, pg_cluster):
    """PostgreSQL: the server is stopped. SQLite: another process holds the write lock."""
    server = AppServer(database_url, workers=2,
                       extra_env={"CONSENT_SQLITE_BUSY_TIMEOUT": "1"})
    try:
        status, first = post_decision(server.port, site["key"], {"action": "accept_all"})
        assert status == 201
        if BACKEND == "postgresql":
            pg_cluster.stop_server("immediate")
            holder = None
        else:
            holder = _hold_sqlite_lock(database_url.removeprefix("sqlite:///"), 60)
        try:
            outage = [exchange(server.port, site["key"], {"action": "reject_all"})
                      for _ in range(3)]
        finally:
            if holder is not None:
                holder.kill()
                holder.wait()
            else:
                pg_cluster.restart()
        assert [s for s, _, _ in outage] == [503, 503, 503], outage
        assert all(body["status"] == 503 for _, body, _ in outage)
        # ...telling the client when to come back: a whole number of seconds
        assert all(int(headers["Retry-After"]) > 0 for _, _, headers in outage), outage
        status, after = poll(
            lambda: post_decision(server.port, site["key"], {"action": "reject_all"}),
            lambda answer: answer[0] == 201, timeout=120, interval=0.3,
            message=lambda answer: f"the app did not recover: {answer}")
    finally:
        server.stop()
    stored = ledger_ids(database_url)
    assert {first["event_id"], after["event_id"]} <= stored
    assert len(stored) == 2  # nothing half-written during the outage
