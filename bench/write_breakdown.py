"""Where one consent write's time goes, in process (no HTTP, no gunicorn), on SQLite.

    .venv/bin/python bench/write_breakdown.py [--requests 2000] [--rounds 5] [--gap-us 1000]

Complements bench/write_bench.py, which measures requests/s under gunicorn: this one calls
the WSGI apps directly in a loop with the same request body the write bench sends and
prints microseconds per call (the best of ROUNDS rounds) for:

- the bare Flask JSON endpoint (bench/bare_app.py);
- the whole consent write (`POST /api/v1/sites/bench/decisions`);
- its marshmallow validation alone;
- `record_decision` alone (subject, ledger append, projection, listeners, commit);
- of that, the time spent inside the database driver (BEGIN, every statement and fetch,
  COMMIT), timed around each driver call; the rest is the write's own Python.

The last lines estimate the best ratio write_bench.py could report as is and if the
write's database work cost nothing, given the
per-request cost outside the app under gunicorn that write_bench.py measured (pass it
with --outside-us; default 236 us, from the 2026-11-29 run on the 2-core machine).
That estimate assumes the app costs under a server what it costs in a hot loop; the last
measurement shows that it does not: the CPU per call of both apps with GAP_US of idle time
before each call, as a server's worker waits for its next request. Every timed write is
checked to have answered 201 (a refusal, e.g. a 429, would be timed as a cheaper write).
"""
from __future__ import annotations

import argparse
import io
import itertools
import json
import logging
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# As bench/write_bench.py sends it: every request a new visitor (a random visitor id with
# its device key) and a random client_event_id.
BODY = ('{"subject":"%s","key":"%s","action":"custom",'
        '"categories":{"analytics":true,"advertising":false},'
        '"page_url":"https://shop.example/products/42","locale":"en",'
        '"client_event_id":"bench-%s-%d"}')


def visitor() -> tuple[str, str]:
    """A new visitor id and device key, as the widget mints them."""
    return secrets.token_urlsafe(16)[:22], secrets.token_urlsafe(24)[:32]


def environ(path: str, body: bytes) -> dict:
    return {"REQUEST_METHOD": "POST", "PATH_INFO": path, "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": "application/json", "REMOTE_ADDR": "10.1.2.3",
            "HTTP_USER_AGENT": "wrk", "wsgi.errors": sys.stderr, "wsgi.multithread": False,
            "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0)}


def call(app, path: str, body: bytes) -> str:
    status = []
    out = app(environ(path, body), lambda s, h, e=None: status.append(s))
    b"".join(out)
    if hasattr(out, "close"):
        out.close()
    return status[0]


def cpu_us(fn, n: int, rounds: int, gap: float) -> float:
    """CPU time of this thread per call of FN (the best of ROUNDS rounds of N calls), with
    GAP seconds of sleep before each call: what the call costs when it does not run in a
    hot loop (the sleep's own CPU is not counted)."""
    best = float("inf")
    for _ in range(rounds):
        spent = 0.0
        for _ in range(n):
            time.sleep(gap)
            start = time.thread_time()
            fn()
            spent += time.thread_time() - start
        best = min(best, spent / n * 1e6)
    return best


def best_us(fn, n: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


class _Timed:
    """Wraps a DBAPI connection or cursor and adds the time spent in its calls to SPENT."""

    spent = 0.0

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def _timed(self, name, *args):
        start = time.perf_counter()
        try:
            return getattr(self._inner, name)(*args)
        finally:
            _Timed.spent += time.perf_counter() - start

    def execute(self, *args):
        result = self._timed("execute", *args)
        return _Timed(result) if result is not None else None

    def cursor(self):
        return _Timed(self._inner.cursor())

    def fetchone(self):
        return self._timed("fetchone")

    def fetchall(self):
        return self._timed("fetchall")

    def commit(self):
        return self._timed("commit")


class _TimedFairy:
    """The pooled connection, with its DBAPI connection wrapped in _Timed."""

    def __init__(self, fairy):
        self._fairy = fairy
        self.dbapi_connection = _Timed(fairy.dbapi_connection)

    def __getattr__(self, name):
        return getattr(self._fairy, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--outside-us", type=float, default=236.0,
                        help="per-request worker CPU outside the app under gunicorn")
    parser.add_argument("--gap-us", type=float, default=1000.0,
                        help="idle time before each call in the last measurement, as a "
                             "server's worker waits for its next request (0: none)")
    args = parser.parse_args()
    logging.getLogger("alembic").setLevel(logging.WARNING)

    tmp = Path(tempfile.mkdtemp(prefix="write-breakdown-"))
    os.environ["CONSENT_DATABASE_URL"] = f"sqlite:///{tmp}/bench.sqlite3"
    os.environ["CONSENT_LOG_STATE_DIR"] = f"{tmp}/log-state"  # this database's signer state
    # As write_bench.py runs the server: the bench's one client address is not rate
    # limited (otherwise most calls would time a 429), and no log integrator thread.
    os.environ["CONSENT_RATELIMIT_EXEMPT"] = "10.1.2.3"
    os.environ["CONSENT_LOG_INTEGRATE_SECONDS"] = "0"
    from flask_migrate import upgrade

    from app import app
    from bench.bare_app import app as bare
    from consent.database import run_write
    from consent.decisions import RequestContext, record_decision
    from consent.sites import create_site
    from consent.web.widget_api import _DECISION_SCHEMA
    import consent.database as database

    logging.disable(logging.INFO)  # alembic's migration lines
    with app.app_context():
        upgrade(revision="heads")
        run_write(lambda: create_site("bench", "Bench shop",
                                      allowed_origins=["https://shop.example"]))
    seq = itertools.count()
    path = "/api/v1/sites/bench/decisions"

    def body(tag: str) -> bytes:
        return (BODY % (*visitor(), tag, next(seq))).encode()

    payload = json.loads(body("v"))
    ctx = RequestContext(ip="10.1.2.3", user_agent="wrk")

    def direct(tag: str):
        data = dict(_DECISION_SCHEMA.load(payload))
        data["subject"], data["key"] = visitor()
        data["client_event_id"] = f"bench-{tag}-{next(seq)}"
        return record_decision("bench", data, ctx)

    def write(tag: str) -> None:
        # Every call must record: a refusal (429, 4xx) is cheaper and would be timed.
        status = call(app, path, body(tag))
        if not status.startswith("201"):
            raise SystemExit(f"the consent write answered {status}, not 201")

    write("w")
    n, r = args.requests, args.rounds
    logging.disable(logging.NOTSET)
    figures = {
        "bare Flask JSON endpoint": best_us(lambda: call(bare, "/echo", body("b")), n, r),
        "consent write, whole request": best_us(lambda: write("c"), n, r),
        "  marshmallow validation": best_us(lambda: _DECISION_SCHEMA.load(payload), n, r),
    }
    with app.test_request_context("/", method="POST"):
        figures["  record_decision (+ validation)"] = best_us(lambda: direct("d"), n, r)

        real_hot = database._hot_connection
        database._hot_connection = lambda engine: _TimedFairy(real_hot(engine))
        try:
            _Timed.spent = 0.0
            start = time.perf_counter()
            for _ in range(n):
                direct("e")
            elapsed = time.perf_counter() - start
        finally:
            database._hot_connection = real_hot
        # one timed run (not the best of several; the wrappers add a little)
        figures["  record_decision, timed run"] = elapsed / n * 1e6
        figures["    of which in the database driver"] = _Timed.spent / n * 1e6
        figures["    of which the write's own Python"] = (elapsed - _Timed.spent) / n * 1e6

    print(f"in process, best of {r} rounds of {n} calls, microseconds per call:")
    for name, us in figures.items():
        print(f"  {name:<48} {us:8.1f}")
    bare_us = figures["bare Flask JSON endpoint"]
    whole = figures["consent write, whole request"]
    sql = figures["    of which in the database driver"]
    out = args.outside_us
    print(f"database work of a write: ~{sql:.0f} us; everything else beyond bare Flask:"
          f" ~{whole - sql - bare_us:.0f} us")
    print(f"with {out:.0f} us per request outside the app (gunicorn, sockets), the ratio is"
          f" at most:")
    print(f"  as is                        {(out + bare_us) / (out + whole):.2f}")
    print(f"  with free database work      {(out + bare_us) / (out + whole - sql):.2f}")
    print(f"  for 0.45 the write may take  {(out + bare_us) / 0.45 - out:.0f} us in process"
          f" (the SQLite budget)")
    # The estimate above assumes the app costs under a server what it costs in a hot loop.
    # A worker idles between requests (waiting for the next one), and on this machine a
    # call after an idle gap costs more CPU, the larger call more (its code and data are
    # no longer in the caches).
    gap = args.gap_us / 1e6
    if gap > 0:
        calls = min(n, 1000)  # the gaps make a round slow
        bare_gap = cpu_us(lambda: call(bare, "/echo", body("g")), calls, r, gap)
        whole_gap = cpu_us(lambda: write("h"), calls, r, gap)
        print(f"with {args.gap_us:.0f} us idle before each call, CPU per call (best of {r}"
              f" rounds of {calls}): bare {bare_gap:.1f} us (+{bare_gap - bare_us:.0f}),"
              f" write {whole_gap:.1f} us (+{whole_gap - whole:.0f})")
        print(f"  ratio at most, as is         {(out + bare_gap) / (out + whole_gap):.2f}")


if __name__ == "__main__":
    main()
