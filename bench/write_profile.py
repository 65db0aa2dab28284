"""Profile the consent write in process: cProfile, or instruction counts under callgrind.

    .venv/bin/python bench/write_profile.py [--target write|bare] [--requests 2000]
        [--warmup 200] [--cprofile] [--sort tottime] [--top 40]
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/cg.out \\
        .venv/bin/python bench/write_profile.py --callgrind --requests 200 --warmup 100
    callgrind_annotate --inclusive=yes /tmp/cg.out | head -60

Calls the WSGI app (app:app, or bench/bare_app.py with --target bare) directly, with an
environ shaped like gunicorn's for the write bench's request (every request a new visitor
with its device key and a random client_event_id), on a fresh SQLite database, with the
background checkpointer and the log integrator off so only the request's own work is
counted. Instruction counts do not depend on what else runs on the machine. With
--callgrind the script switches callgrind's instrumentation on after the warm-up and off
after the measured requests (client requests from a tiny C helper built with gcc and
valgrind/callgrind.h), so the profile's total divided by --requests is the user-space
instructions per request (kernel time, i.e. the WAL writes, is not in it).
"""
from __future__ import annotations

import argparse
import cProfile
import io
import logging
import os
import pstats
import secrets
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BODY = ('{"subject":"%s","key":"%s","action":"custom",'
        '"categories":{"analytics":true,"advertising":false},'
        '"page_url":"https://shop.example/products/42","locale":"en",'
        '"client_event_id":"%s"}')


def body() -> bytes:
    """The write bench's body: a new visitor id, its key and a random client_event_id."""
    return (BODY % (secrets.token_urlsafe(16)[:22], secrets.token_urlsafe(24)[:32],
                    secrets.token_urlsafe(16)[:22])).encode()


def environ(path: str, data: bytes) -> dict:
    """A WSGI environ as gunicorn builds it for wrk's request."""
    return {"REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "",
            "RAW_URI": path, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(data), "CONTENT_LENGTH": str(len(data)),
            "CONTENT_TYPE": "application/json", "HTTP_HOST": "127.0.0.1:8000",
            "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "40000", "SCRIPT_NAME": "",
            "wsgi.errors": sys.stderr, "wsgi.multithread": False,
            "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0)}


def call(app, path: str) -> str:
    """One request; returns the status line."""
    status = []
    out = app(environ(path, body()), lambda s, h, e=None: status.append(s))
    b"".join(out)
    if hasattr(out, "close"):
        out.close()
    return status[0]


_TOGGLE_C = """
#include <valgrind/callgrind.h>
void start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void stop(void) { CALLGRIND_STOP_INSTRUMENTATION; CALLGRIND_DUMP_STATS_AT("measured"); }
void toggle(void) { CALLGRIND_TOGGLE_COLLECT; }
"""


def callgrind_toggle(tmp: Path):
    """(start, stop, toggle): switch callgrind's instrumentation on and off, and its
    collection (toggle), from Python."""
    import ctypes
    import subprocess

    src, lib = tmp / "toggle.c", tmp / "toggle.so"
    src.write_text(_TOGGLE_C)
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    dll = ctypes.CDLL(str(lib))
    return dll.start, dll.stop, dll.toggle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=("write", "bare"), default="write")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--callgrind", action="store_true",
                        help="count only the measured requests (run under valgrind "
                             "--tool=callgrind --instr-atstart=no)")
    parser.add_argument("--lock", action="store_true",
                        help="SQLite: time the writer queue (the write's critical section, "
                             "bench/lock_timing.py); with --callgrind, toggle collection at "
                             "its acquire and release: run valgrind with "
                             "--collect-atstart=no to count only the instructions under "
                             "it, with yes only those outside")
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite",
                        help="postgresql: a throwaway cluster (tests/support/pg.py); the "
                             "counts are then this process's only, not the server's")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="write-profile-"))
    cluster = None
    url = f"sqlite:///{tmp}/bench.sqlite3"
    if args.db == "postgresql":
        from tests.support.pg import PgCluster

        cluster = PgCluster().start()
        cluster.sql("CREATE DATABASE bench")
        url = cluster.url("bench")
    try:
        run(args, tmp, url)
    finally:
        if cluster:
            cluster.stop()


def run(args, tmp: Path, url: str) -> None:
    """Warm up, then profile or count --requests requests."""
    os.environ.update(CONSENT_DATABASE_URL=url,
                      CONSENT_LOG_STATE_DIR=f"{tmp}/log-state", CONSENT_ENV="development",
                      CONSENT_RATELIMIT_EXEMPT="127.0.0.1",
                      CONSENT_LOG_INTEGRATE_SECONDS="0",
                      CONSENT_SQLITE_CHECKPOINT_SECONDS="100000",
                      # No cache expiry in the measured requests: under valgrind 200
                      # requests take longer than the 5 s site cache, and how often it is
                      # reloaded would depend on the machine's load.
                      CONSENT_SITE_CACHE_SECONDS="100000")
    logging.disable(logging.INFO)
    if args.target == "bare":
        from bench.bare_app import app
        path = "/echo"
    else:
        from app import app
        from consent.database import run_write
        from consent.extensions import db
        from consent.sites import create_site

        with app.app_context():
            # (the models' tables: the same schema as the migrations, tests check that;
            # a fraction of the start-up under valgrind)
            db.create_all()
            run_write(lambda: create_site("bench", "Bench shop",
                                          allowed_origins=["https://shop.example"]))
        path = "/api/v1/sites/bench/decisions"
    for _ in range(args.warmup):
        status = call(app, path)
        assert status.startswith("201"), status
    profile = cProfile.Profile() if args.cprofile else None
    start, stop, toggle = callgrind_toggle(tmp) if args.callgrind else (None, None, None)
    lock_times = None
    if args.lock:
        from bench.lock_timing import install
        lock_times = install(toggle, toggle)
    # (the clocks are read outside what the profiler or callgrind counts)
    # (the bare endpoint touches no database: no backend to read)
    server = server_cpu_reader() if args.db == "postgresql" and args.target == "write" \
        else None
    server_before = server() if server else 0.0
    began, times_began = time.perf_counter(), os.times()
    if profile:
        profile.enable()
    if start:
        start()
    for _ in range(args.requests):
        call(app, path)
    if stop:
        stop()
    if profile:
        profile.disable()
    elapsed, times = time.perf_counter() - began, os.times()
    user, system = times.user - times_began.user, times.system - times_began.system
    server_cpu = server() - server_before if server else None
    if profile:
        stats = pstats.Stats(profile)
        stats.sort_stats(args.sort).print_stats(args.top)
    print(f"{args.requests} requests ({args.target}, {args.db}) in {elapsed:.2f} s: "
          f"{elapsed / args.requests * 1e3:.3f} ms each, one after the other"
          + (" (under the profiler)" if profile or start else ""))
    print(f"CPU a request: this process {(user + system) / args.requests * 1e3:.3f} ms "
          f"(user {user / args.requests * 1e3:.3f}, system {system / args.requests * 1e3:.3f})"
          + (f", its PostgreSQL backend {server_cpu / args.requests * 1e3:.3f} ms"
             if server_cpu is not None else ""))
    if lock_times is not None:
        s = lock_times.summary()
        print(f"writer queue: held {s['writes']} times, {s['held_mean_ms']:.3f} ms each "
              f"(p50 {s['held_p50_ms']:.3f}, p99 {s['held_p99_ms']:.3f}): "
              f"{s['held_s'] / elapsed:.1%} of the requests' wall-clock time; its CPU "
              f"time {s['held_cpu_s'] / s['writes'] * 1e3:.3f} ms each, "
              f"{s['held_cpu_s'] / (user + system):.1%} of the requests' CPU time; "
              f"waited {s['wait_mean_ms']:.3f} ms each (no other writer here)")


def server_cpu_reader():
    """A function giving the CPU seconds used so far by the PostgreSQL backend of this
    thread's hot write connection (consent.database), from /proc (same machine)."""
    from consent import database

    pid = database._hot.held[1].dbapi_connection.info.backend_pid
    ticks = os.sysconf("SC_CLK_TCK")

    def read() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return read


if __name__ == "__main__":
    main()
