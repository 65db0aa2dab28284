"""Consent-write throughput vs a bare Flask JSON endpoint, both under gunicorn (2 workers).

    .venv/bin/python bench/write_bench.py [--seconds 10] [--connections 8]
        [--db sqlite|postgresql] [--rounds 1] [--workers 2] [--worker-class sync]
        [--threads 1] [--only consent_write] [--scale 2,4]

Runs wrk (Debian package) on loopback against each server in turn, in the same run, and
prints requests/s, p50/p99 latency and the ratio consent/bare (budget: >= 0.45 on SQLite,
>= 0.30 on PostgreSQL). Every write is a new visitor (random visitor id and device key)
with a random client_event_id. Both
servers get the same gunicorn settings, the same wrk script (the same request bodies)
and a 2 s warm-up. With --rounds N the two are measured alternately N times and the
median of each is reported: on a shared machine a single pair can be skewed by what
else runs meanwhile, so the load average is printed with every measurement, with the machine's CPU shares
during it (from /proc/stat: user, system, idle and steal, the time the hypervisor gave the
virtual machine's CPUs to something else) and the CPU the server's processes (and, on
PostgreSQL, the database's) spent per request, which steal does not change.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_shares, machine_cpu, tree_cpu  # noqa: E402
from tests.support.pg import PgCluster, free_port, wait_for_port  # noqa: E402

# Every request is a new visitor (a random visitor id with its device key, as a browser
# that generated both sends them) with a random client_event_id, and, as the widget sends
# it, the configuration revision its page showed (REVISION, when the bench knows it: the
# event then records that notice, consent.notices).
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
math.randomseed(os.time() + math.floor(os.clock() * 1000000))
local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local function token(len)
  local t = {}
  for i = 1, len do
    local c = math.random(1, 64)
    t[i] = chars:sub(c, c)
  end
  return table.concat(t)
end
local shown = REVISION ~= "" and ('"revision":"' .. REVISION .. '",') or ""
request = function()
  local body = '{"subject":"' .. token(22) .. '","key":"' .. token(32) .. '",' .. shown ..
    '"action":"custom","categories":{"analytics":true,"advertising":false},' ..
    '"page_url":"https://shop.example/products/42","locale":"en",' ..
    '"client_event_id":"' .. token(22) .. '"}'
  return wrk.format(nil, PATH, nil, body)
end
"""


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if not found:
        sys.exit("wrk is needed: apt-get install wrk")
    return found


def gunicorn(module: str, port: int, env: dict, worker_class: str, threads: int,
             workers: int = 2, conf: str | None = None):
    cmd = [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", str(workers),
           "-k", worker_class, "--threads", str(threads), "--log-level", "warning", module]
    if conf:
        cmd[3:3] = ["-c", conf]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    wait_for_port(port, 30)
    time.sleep(0.5)
    return proc


def wait_until_answering(url: str, workers: int, timeout: float = 180.0) -> None:
    """Block until WORKERS requests in a row were answered: the master listens long before
    its workers have imported the app, which on a busy machine takes longer than wrk's
    warm-up (every request then times out and the round measures 0 req/s)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    answered = 0
    while answered < workers * 2:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")
        try:
            urllib.request.urlopen(url, timeout=30).read()
            answered += 1
        except urllib.error.HTTPError:
            answered += 1  # any answer means a worker is up
        except OSError:
            answered = 0
            time.sleep(0.2)


def run_wrk(url: str, path: str, seconds: int, connections: int, revision: str = "") -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(f'PATH = "{path}"\nREVISION = "{revision}"\n' + LUA)
        script = fh.name
    out = subprocess.run([ensure_wrk(), "-t", "1", "-c", str(connections), "-d", f"{seconds}s",
                          "--latency", "-s", script, url], capture_output=True, text=True,
                         timeout=seconds + 60).stdout
    os.unlink(script)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def latency(pct: str) -> float:
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    result = {"rps": rps, "p50_ms": latency("50"), "p99_ms": latency("99"),
              "non_2xx": int(errors.group(1)) if errors else 0,
              "socket_errors": sum(int(g) for g in socket.groups()) if socket else 0}
    if result["non_2xx"]:
        # A refusal (a 429 from the rate limits, a 4xx from a changed API) is cheaper than
        # a recorded write: a run with any is not a measurement of the write.
        raise SystemExit(f"{url}{path}: {result['non_2xx']} of the answers were not 2xx, "
                         "so these figures would not measure what they claim (is the "
                         "client's address exempt from the rate limits?)")
    return result


def shown_revision(base: str) -> str:
    """The configuration revision of the bench site, as its widget would send it."""
    with urllib.request.urlopen(f"{base}/api/v1/sites/bench/config?locale=en",
                                timeout=30) as answer:
        return json.loads(answer.read())["revision"]


def prepare_database(url: str) -> None:
    env = dict(os.environ, CONSENT_DATABASE_URL=url, FLASK_APP="app.py")
    flask = [sys.executable, "-m", "flask"]
    subprocess.run(flask + ["consent", "init-db"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    subprocess.run(flask + ["consent", "create-site", "bench", "Bench shop", "--origin",
                            "https://shop.example"], cwd=ROOT, env=env, check=True,
                   capture_output=True)


def load_average() -> str:
    """The 1-minute load average (what else ran on the machine meanwhile)."""
    return f"{os.getloadavg()[0]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-fsync", choices=("on", "off"), default="on",
                        help="postgresql: on (the default) starts the throwaway cluster with "
                             "the server's own settings (fsync, full-page writes), as in "
                             "production; off as the test suite runs it (commits never wait "
                             "for the disk; the figures before 2026-12-03)")
    parser.add_argument("--worker-class", default="sync")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn processes")
    parser.add_argument("--only", choices=("bare_flask", "consent_write", "database_floor"),
                        help="measure one server only (e.g. worker scaling of the write)")
    parser.add_argument("--scale", metavar="N,M",
                        help="worker scaling of the write in one run: gunicorn -w N and -w M "
                             "against the same database, measured alternately; reports "
                             "M's requests/s over N's")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure both servers alternately this many times")
    parser.add_argument("--floor", action="store_true",
                        help="also measure bench/floor_app.py, the bare endpoint plus "
                             "the write's database work (its own database): the most any "
                             "Flask write path recording the same rows could reach")
    parser.add_argument("--lock-stats", action="store_true",
                        help="SQLite: time the writer queue in the write's workers "
                             "(bench/lock_timing.py: how often and how long a write waits "
                             "for it, how long it holds it); reported at the end, over the "
                             "warm-up and all rounds")
    args = parser.parse_args()
    # Before anything of ours runs; during a measurement the load average also counts the
    # bench's own processes (two workers and wrk: about 3 on an otherwise idle machine).
    idle_load = load_average()
    tmp = Path(tempfile.mkdtemp(prefix="consent-bench-"))
    cluster = None
    procs = []
    try:
        if args.db == "postgresql":
            cluster = PgCluster(durable=args.pg_fsync == "on").start()
            cluster.sql("CREATE DATABASE bench")
            url = cluster.url("bench")
        else:
            url = f"sqlite:///{tmp}/bench.sqlite3"
        prepare_database(url)
        # wrk sends thousands of decisions a second from loopback: exempt it from the
        # per-address limit (docs/performance.md has the limiter's own cost). A state
        # directory of its own: the signer's checkpoints belong to this database.
        env = dict(os.environ, CONSENT_DATABASE_URL=url, CONSENT_ENV="development",
                   PYTHONPATH=str(ROOT), CONSENT_RATELIMIT_EXEMPT="127.0.0.1",
                   CONSENT_LOG_STATE_DIR=str(tmp / "log-state"))
        servers = {}
        # the processes whose CPU a round's requests cost: the server's, and the database's
        database_pids = ([int((cluster.data / "postmaster.pid").read_text().split()[0])]
                         if cluster else [])
        write_path = "/api/v1/sites/bench/decisions"
        plan = [("bare_flask", "bench.bare_app:app", "/echo", args.workers),
                ("consent_write", "app:app", write_path, args.workers)]
        floor_url = None
        if args.floor:
            if cluster:
                cluster.sql("CREATE DATABASE floor")
                floor_url = cluster.url("floor")
            else:
                floor_url = f"sqlite:///{tmp}/floor.sqlite3"
            prepare_database(floor_url)
            plan.append(("database_floor", "bench.floor_app:app",
                         "/floor-pg" if cluster else "/floor", args.workers))
        if args.scale:
            counts = [int(n) for n in args.scale.split(",")]
            plan = [(f"consent_write_w{n}", "app:app", write_path, n) for n in counts]
        for name, module, path, workers in plan:
            if args.only and name != args.only:
                continue
            port = free_port()
            conf, server_env = None, env
            if name == "database_floor":
                server_env = dict(env, CONSENT_DATABASE_URL=floor_url)
            if args.lock_stats and module == "app:app":
                conf = str(ROOT / "bench" / "lock_timing.py")
                server_env = dict(env, LOCK_STATS_DIR=str(tmp / "lock-stats"))
                (tmp / "lock-stats").mkdir(exist_ok=True)
            procs.append(gunicorn(module, port, server_env, args.worker_class, args.threads,
                                  workers, conf))
            servers[name] = (f"http://127.0.0.1:{port}", path, procs[-1].pid)
            wait_until_answering(f"http://127.0.0.1:{port}{path}", workers)
        runs: dict[str, list[dict]] = {name: [] for name in servers}
        print(f"database: {args.db}"
              + (f" (fsync {args.pg_fsync})" if args.db == "postgresql" else "")
              + f"; gunicorn -w {args.scale or args.workers} -k {args.worker_class} "
              f"--threads {args.threads}; wrk -c "
              f"{args.connections} -d {args.seconds}s; rounds {args.rounds}; load average "
              f"before the bench {idle_load}")
        # the revision the widget would send (the bare endpoint ignores the field)
        app_urls = [u for n, (u, _p, _pid) in servers.items()
                    if n not in ("bare_flask", "database_floor")]
        revision = shown_revision(app_urls[0]) if app_urls else ""
        for name, (url_, path, _pid) in servers.items():
            run_wrk(url_, path, 2, args.connections, revision)  # warm-up
        for round_ in range(1, args.rounds + 1):
            for name, (url_, path, pid) in servers.items():
                load, cpu, used = load_average(), machine_cpu(), tree_cpu([pid, *database_pids])
                r = run_wrk(url_, path, args.seconds, args.connections, revision)
                r["load_before"], r["load_after"] = load, load_average()
                r["cpu"] = {k: round(v, 1) for k, v in cpu_shares(cpu, machine_cpu()).items()}
                # CPU the server (and the database) spent per answered request: unlike
                # requests/s, it does not depend on how much CPU the host let us have
                requests = r["rps"] * args.seconds
                r["server_cpu_ms"] = round(1000 * (tree_cpu([pid, *database_pids]) - used)
                                           / max(requests, 1), 3)
                runs[name].append(r)
                c = r["cpu"]
                print(f"  round {round_} {name:14s} {r['rps']:9.1f} req/s   p50 "
                      f"{r['p50_ms']:7.2f} ms   p99 {r['p99_ms']:7.2f} ms   non-2xx "
                      f"{r['non_2xx']}   socket errors {r['socket_errors']}   load {r['load_before']} -> "
                      f"{r['load_after']}\n{'':25s}CPU user {c['user']:.0f}% system "
                      f"{c['system']:.0f}% idle {c['idle']:.0f}% steal {c['steal']:.0f}%   "
                      f"server CPU {r['server_cpu_ms']:.3f} ms/request")
        results = {name: median_run(rs) for name, rs in runs.items()}
        for name, r in results.items():
            print(f"{name:14s} {r['rps']:9.1f} req/s   p50 {r['p50_ms']:7.2f} ms   "
                  f"p99 {r['p99_ms']:7.2f} ms   non-2xx {r['non_2xx']}")
        ratio = None
        if args.scale:
            (low, r_low), (high, r_high) = results.items()
            ratio = r_high["rps"] / r_low["rps"]
            print(f"scaling {high} / {low} = {ratio:.2f} (same database, same run)")
        elif "consent_write" in results and "bare_flask" in results:
            ratio = results["consent_write"]["rps"] / results["bare_flask"]["rps"]
            budget = 0.45 if args.db == "sqlite" else 0.30
            print(f"ratio consent_write / bare_flask = {ratio:.2f} (budget >= {budget:.2f})")
            cost = (median(r["server_cpu_ms"] for r in runs["bare_flask"])
                    / median(r["server_cpu_ms"] for r in runs["consent_write"]))
            print(f"server CPU per request, bare_flask / consent_write = {cost:.2f} (medians"
                  " over the rounds; the ratio the write would reach if both ran CPU-bound"
                  " on the same unstolen CPUs, wrk's own CPU aside)")
            if "database_floor" in results:
                floor = results["database_floor"]["rps"] / results["bare_flask"]["rps"]
                floor_cpu = (median(r["server_cpu_ms"] for r in runs["bare_flask"])
                             / median(r["server_cpu_ms"] for r in runs["database_floor"]))
                print(f"ceiling database_floor / bare_flask = {floor:.2f}, by server CPU "
                      f"{floor_cpu:.2f} (the bare endpoint plus the write's database work and "
                      "nothing else: the most a leaner Python path could bring the ratio to)")
        if floor_url:
            print_floor_rows(floor_url)
        print(json.dumps({"db": args.db, "workers": args.workers,
                          "ratio": ratio and round(ratio, 3), **results}))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(20)
        if args.lock_stats:
            print_lock_stats(tmp / "lock-stats")
        if cluster:
            cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def median(values) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def print_lock_stats(folder: Path) -> None:
    """Each write worker's writer-queue figures (bench/lock_timing.py), written at exit."""
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        s = json.loads(path.read_text())
        cpu_ms = s["held_cpu_s"] / max(s["writes"], 1) * 1e3
        print(f"worker {path.stem}: {s['writes']} writes, {s['requests']} requests; held "
              f"{s['held_mean_ms']:.3f} ms a write (p50 {s['held_p50_ms']:.3f}, p99 "
              f"{s['held_p99_ms']:.3f}), {s['held_s'] / max(s['request_s'], 1e-9):.1%} of "
              f"its request time; CPU while holding {cpu_ms:.3f} ms a write, "
              f"{s['held_cpu_s'] / max(s['request_cpu_s'], 1e-9):.1%} "
              f"of its requests' CPU; waited {s['wait_mean_ms']:.3f} ms a write (p50 "
              f"{s['wait_p50_ms']:.3f}, p90 {s['wait_p90_ms']:.3f}, p99 "
              f"{s['wait_p99_ms']:.3f}), over 50 us in "
              f"{s['waits_over_50us'] / max(s['writes'], 1):.0%} of writes, "
              f"{s['waited_s'] / max(s['request_s'], 1e-9):.1%} of its request time")


def print_floor_rows(url: str) -> None:
    """The floor database's row counts: one subject, event, details row and projection
    per answered request, or the floor did not do the write's work."""
    tables = ("subjects", "consent_events", "event_details", "consent_states")
    query = "SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in tables)
    if url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            counts = conn.execute(query).fetchone()
    else:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            counts = conn.execute(query).fetchone()
    print("database_floor rows: " + ", ".join(f"{t} {n}" for t, n in zip(tables, counts)))


def median_run(runs: list[dict]) -> dict:
    """The run with the median requests/s (with all its figures)."""
    return sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]


if __name__ == "__main__":
    main()
