"""Consent-write throughput while downstream webhooks are delivered, refused or hang.

    .venv/bin/python bench/webhook_bench.py [--seconds 4] [--rounds 8] [--db sqlite|postgresql]

Every scenario has its own database and its own gunicorn (2 workers) and delivery
worker, all started before the first round and left running (an idle stack costs
nothing: its worker sleeps until a retry is due). wrk POSTs
decisions that each change a visitor's analytics consent, so with an endpoint registered
every write also writes an outbox row. A `flask consent deliver --forever` worker runs
beside gunicorn, as in production:

  no_endpoint     no webhook registered (the plain consent write)
  receiver_up     a loopback receiver answering 204 at once
  receiver_down   nothing listens on the endpoint's port (connection refused)
  receiver_hangs  the receiver accepts connections and never answers (worker timeouts)

The machine may be shared, so scenarios are measured in short turns, in rotated order,
over several rounds; medians are printed, and ratios are taken within a round (paired)
before the median. Prints requests/s and latency per scenario, the notifications delivered or
queued, and the ratios down/up and hangs/up: the consent request must not feel the
receiver.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.write_bench import gunicorn, run_wrk  # noqa: E402
from tests.support.pg import PgCluster, free_port  # noqa: E402


class Ack(BaseHTTPRequestHandler):
    """A receiver that acknowledges everything at once."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def flask(env: dict, *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "flask", *args], cwd=ROOT, env=env,
                          check=True, capture_output=True, text=True).stdout


def fresh_database(tmp: Path, cluster, name: str) -> str:
    if cluster is not None:
        cluster.sql(f"CREATE DATABASE {name}")
        return cluster.url(name)
    return f"sqlite:///{tmp}/{name}.sqlite3"


class Scenario:
    """A database with (or without) an endpoint, and the receiver behind that endpoint."""

    def __init__(self, name: str, tmp: Path, cluster):
        self.name = name
        url = fresh_database(tmp, cluster, name)
        self.env = dict(os.environ, CONSENT_DATABASE_URL=url, CONSENT_ENV="development",
                        FLASK_APP="app.py", PYTHONPATH=str(ROOT),
                        # wrk's thousands of decisions a second from loopback (as
                        # write_bench.py): not refused by the per-address limit.
                        CONSENT_RATELIMIT_EXEMPT="127.0.0.1",
                        CONSENT_LOG_STATE_DIR=str(tmp / f"{name}-log-state"),
                        # Retry a refused receiver every second or so: a busier worker
                        # than the production default (10 s), to make the test harder.
                        CONSENT_WEBHOOK_BACKOFF_BASE="1", CONSENT_WEBHOOK_TIMEOUT="2")
        flask(self.env, "consent", "init-db")
        flask(self.env, "consent", "create-site", "bench", "Bench shop", "--origin",
              "https://shop.example")
        self.receiver, self.hang_socket = None, None
        if name == "receiver_up":
            self.receiver = ThreadingHTTPServer(("127.0.0.1", 0), Ack)
            threading.Thread(target=self.receiver.serve_forever, daemon=True).start()
            hook = f"http://127.0.0.1:{self.receiver.server_address[1]}/hook"
        elif name == "receiver_hangs":
            self.hang_socket = socket.socket()
            self.hang_socket.bind(("127.0.0.1", 0))
            self.hang_socket.listen(4096)  # the kernel accepts; nobody ever answers
            hook = f"http://127.0.0.1:{self.hang_socket.getsockname()[1]}/hook"
        else:
            hook = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
        if name != "no_endpoint":
            flask(self.env, "consent", "add-webhook", "bench", hook, "--category", "analytics")

    def start(self, args) -> None:
        """gunicorn and a delivery worker, kept running for every round."""
        self.worker = subprocess.Popen([sys.executable, "-m", "flask", "consent", "deliver",
                                        "--forever"], cwd=ROOT, env=self.env,
                                       start_new_session=True, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        port = free_port()
        self.server = gunicorn("app:app", port, self.env, args.worker_class, args.threads)
        self.base = f"http://127.0.0.1:{port}"
        run_wrk(self.base, "/api/v1/sites/bench/decisions", 1, args.connections)  # warm-up

    def measure(self, args) -> dict:
        """wrk against this scenario's gunicorn while its delivery worker runs."""
        result = run_wrk(self.base, "/api/v1/sites/bench/decisions", args.seconds,
                         args.connections)
        self.wait_for_backlog()
        return result

    def wait_for_backlog(self, limit: float = 60) -> None:
        """Let the worker send what is due, so it does not disturb the next scenario."""
        import sqlalchemy as sa

        engine = sa.create_engine(self.env["CONSENT_DATABASE_URL"])
        deadline = time.monotonic() + limit
        try:
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    due = conn.execute(sa.text(
                        "SELECT count(*) FROM outbox_messages WHERE state = 'pending' "
                        "AND next_attempt_at <= :now"),
                        {"now": datetime.now(timezone.utc).replace(tzinfo=None)}).scalar()
                if not due:
                    return
                time.sleep(0.2)
        finally:
            engine.dispose()

    def stop(self) -> None:
        for proc in (getattr(self, "server", None), getattr(self, "worker", None)):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(30)

    def outbox(self) -> str:
        return flask(self.env, "consent", "outbox-status", "--site", "bench").strip()

    def close(self) -> None:
        self.stop()
        if self.receiver:
            self.receiver.shutdown()
            self.receiver.server_close()
        if self.hang_socket:
            self.hang_socket.close()


NAMES = ("no_endpoint", "receiver_up", "receiver_down", "receiver_hangs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=8,
                        help="Each round measures every scenario (order rotated); the "
                             "medians are reported, and ratios are paired within a round.")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--worker-class", default="sync")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="consent-webhook-bench-"))
    cluster = PgCluster().start() if args.db == "postgresql" else None
    scenarios = {}
    runs: dict[str, list[dict]] = {name: [] for name in NAMES}
    try:
        scenarios = {name: Scenario(name, tmp, cluster) for name in NAMES}
        for s in scenarios.values():
            s.start(args)
        for round_no in range(args.rounds):
            order = NAMES[round_no % len(NAMES):] + NAMES[:round_no % len(NAMES)]
            for name in order:
                runs[name].append(scenarios[name].measure(args))
        for s in scenarios.values():
            s.stop()
        outbox = {name: s.outbox() for name, s in scenarios.items()}
    finally:
        for s in scenarios.values():
            s.close()
        if cluster:
            cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    def median_of(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    def paired(a: str, b: str) -> float:
        return statistics.median(x["rps"] / y["rps"] for x, y in zip(runs[a], runs[b]))

    print(f"database: {args.db}; gunicorn -w 2 -k {args.worker_class}; wrk -c "
          f"{args.connections} -d {args.seconds}s x {args.rounds} rounds; one "
          "`flask consent deliver --forever` beside gunicorn")
    for name in NAMES:
        rps = ", ".join(f"{r['rps']:.0f}" for r in runs[name])
        print(f"{name:15s} median {median_of(name, 'rps'):7.1f} req/s  (rounds: {rps})  "
              f"p50 {median_of(name, 'p50_ms'):6.2f} ms  p99 {median_of(name, 'p99_ms'):7.2f} ms"
              f"  non-2xx {sum(r['non_2xx'] for r in runs[name])}")
        print(f"{'':15s} outbox after all rounds: {outbox[name]}")
    down, hangs, up = (paired("receiver_down", "receiver_up"),
                       paired("receiver_hangs", "receiver_up"),
                       paired("receiver_up", "no_endpoint"))
    print(f"ratio receiver_down / receiver_up  = {down:.2f}  (median of paired rounds)")
    print(f"ratio receiver_hangs / receiver_up = {hangs:.2f}")
    print(f"ratio receiver_up / no_endpoint    = {up:.2f}  (outbox row + a busy worker)")
    print(json.dumps({"db": args.db, "down_over_up": round(down, 3),
                      "hangs_over_up": round(hangs, 3), "up_over_none": round(up, 3),
                      "median_rps": {n: median_of(n, "rps") for n in NAMES}}))


if __name__ == "__main__":
    main()
