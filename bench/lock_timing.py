"""Time the SQLite writer queue (consent.database._SQLiteWriterQueue): how long each
write waits for it and how long it holds it. Bench instrumentation, installed only by
bench/write_profile.py --lock and bench/write_bench.py --lock-stats (never by the app).

The queue is the write's critical section on SQLite: BEGIN IMMEDIATE to COMMIT runs
inside it, one writer at a time across all workers. If a write holds it for H seconds,
no number of workers writes more than 1/H times a second.
"""
from __future__ import annotations

import json
import os
import time


class LockTimes:
    """Per-process record: seconds waited in acquire() and held until release() ended."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.holds: list[float] = []
        self.acquired_at = 0.0
        # this thread's CPU time while holding: wall-clock holds also count the time the
        # holder was not running (preempted, or its virtual CPU stolen by the host)
        self.held_cpu = 0.0
        self.acquired_cpu = 0.0

    def summary(self) -> dict:
        def pct(values, p):
            if not values:
                return 0.0
            ordered = sorted(values)
            return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]
        waited = [w for w in self.waits if w > 50e-6]
        return {"writes": len(self.holds), "held_s": sum(self.holds),
                "held_cpu_s": self.held_cpu,
                "held_mean_ms": 1e3 * sum(self.holds) / max(1, len(self.holds)),
                "held_p50_ms": 1e3 * pct(self.holds, 50),
                "held_p99_ms": 1e3 * pct(self.holds, 99),
                "waited_s": sum(self.waits), "waits_over_50us": len(waited),
                "wait_mean_ms": 1e3 * sum(self.waits) / max(1, len(self.waits)),
                "wait_p50_ms": 1e3 * pct(self.waits, 50),
                "wait_p90_ms": 1e3 * pct(self.waits, 90),
                "wait_p99_ms": 1e3 * pct(self.waits, 99)}


def install(on_acquired=None, on_release=None) -> LockTimes:
    """Wrap the writer queue's acquire and release in this process; ON_ACQUIRED and
    ON_RELEASE (e.g. callgrind's collection toggle) run right inside the held span."""
    from consent import database

    times = LockTimes()
    cls = database._SQLiteWriterQueue
    acquire, release = cls.acquire, cls.release
    clock, cpu = time.perf_counter, time.thread_time

    def timed_acquire(self) -> None:
        began = clock()
        acquire(self)
        times.acquired_at = now = clock()
        times.acquired_cpu = cpu()
        times.waits.append(now - began)
        if on_acquired is not None:
            on_acquired()

    def timed_release(self) -> None:
        if on_release is not None:
            on_release()
        try:
            release(self)
        finally:
            times.holds.append(clock() - times.acquired_at)
            times.held_cpu += cpu() - times.acquired_cpu

    cls.acquire, cls.release = timed_acquire, timed_release
    return times


# ---------------------------------------------------------------- gunicorn hooks
# bench/write_bench.py --lock-stats runs the write's server with `-c` this file: the
# app's own gunicorn.conf.py settings plus hooks that time the queue in every worker and
# write each worker's figures (and its requests' time) to $LOCK_STATS_DIR at its exit.

_ROOT_CONF = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "gunicorn.conf.py")
if os.environ.get("LOCK_STATS_DIR"):
    exec(compile(open(_ROOT_CONF).read(), _ROOT_CONF, "exec"))  # noqa: S102
    _worker: dict = {}

    def post_fork(server, worker):  # noqa: D103 - gunicorn hook
        _worker["times"] = install()
        _worker["requests"] = []

    def pre_request(worker, req):  # noqa: D103 - gunicorn hook
        _worker["began"] = time.perf_counter()
        _worker["began_cpu"] = time.thread_time()

    def post_request(worker, req, environ, resp):  # noqa: D103 - gunicorn hook
        _worker["requests"].append(time.perf_counter() - _worker["began"])
        _worker["request_cpu"] = (_worker.get("request_cpu", 0.0) + time.thread_time()
                                  - _worker["began_cpu"])

    def worker_exit(server, worker):  # noqa: D103 - gunicorn hook
        out = _worker["times"].summary()
        requests = _worker["requests"]
        out.update(requests=len(requests), request_s=sum(requests),
                   request_cpu_s=_worker.get("request_cpu", 0.0))
        path = os.path.join(os.environ["LOCK_STATS_DIR"], f"{os.getpid()}.json")
        with open(path, "w") as fh:
            json.dump(out, fh)
