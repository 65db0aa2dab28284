"""Audit export benchmark: `flask consent export` vs `sqlite3 -csv` on the same rows.

Budget (DESIGN.md): exporting 1,000,000 events takes at most 2x the time of the sqlite3
command-line shell dumping the same rows as CSV, and peak memory does not grow with the
number of events (compared at 100,000 and 1,000,000).

The ledger is generated with direct bulk inserts that produce a valid hash chain (so the
export also verifies), then integrated into the verifiable log (as the integrator does
behind the writes; timed apart). The export carries the log section (the default), so it
is compared with `sqlite3 -csv` dumping the event rows (the budget) and also the event
rows plus the log rows (the same content). Each export runs in its own process so its
peak RSS is its own; `--verify` also times `python -m consent.audit` on the large export.

    .venv/bin/python bench/export_bench.py [--events 1000000] [--small 100000] [--runs 3]
        [--no-log] [--verify]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SITE = "bench"
STREAMS = 8
SQL = ("SELECT event_id, 'bench', stream, seq, subject, "
       "substr(recorded_at, 1, 10) || 'T' || substr(recorded_at, 12) || 'Z', action, source, "
       "NULLIF(categories, 'null'), NULLIF(channels, 'null'), policy_version, locale, "
       "NULLIF(meta, 'null'), details_digest, idempotency_key, prev_hash, hash "
       "FROM consent_events WHERE site_id = 1 ORDER BY stream, seq")
LOG_SQL = ("SELECT 'log', 'bench', l.log_index, l.stream, l.seq, lower(hex(n.hash)) "
           "FROM log_leaves l JOIN log_nodes n ON n.site_id = l.site_id AND n.level = 0 "
           "AND n.idx = l.log_index WHERE l.site_id = 1 ORDER BY l.log_index")


def _migrate_with_site(url: str) -> None:
    from consent import create_app
    from consent.database import run_write
    from consent.extensions import db
    from consent.sites import create_site

    app = create_app({"ENV_NAME": "testing", "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        from flask_migrate import upgrade

        upgrade(revision="heads")
        run_write(lambda: create_site(SITE, "Benchmark shop"))
        db.engine.dispose()


def generate_events(events: int, heads: dict):
    """EVENTS hash-chained event rows (the same for both backends), each with the log
    nodes integrating it completes (what the integrator would write: its leaf and every
    perfect subtree it closes); HEADS gets each stream's last (seq, hash), and
    heads["log"] the compact range (for the root the checkpoint signs)."""
    from consent.ledger import GENESIS, canonical
    from consent.ledger.merkle import CompactRange, leaf_hash

    rng = random.Random(7)
    heads.update({s: (0, GENESIS) for s in range(STREAMS)})
    compact = heads["log"] = CompactRange()
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    cats = ("essential", "functional", "analytics", "advertising")
    subjects: list[str] = []
    for i in range(events):
        if not subjects or rng.random() < 0.35:
            subjects.append(uuid.UUID(int=rng.getrandbits(128)).hex)
            if len(subjects) > 1000:
                subjects = subjects[-1000:]
        subject = rng.choice(subjects)
        stream = int(subject[:8], 16) % STREAMS
        seq, prev = heads[stream]
        seq += 1
        at = start + timedelta(microseconds=i * 31_000 + rng.randrange(1000))
        action = rng.choice(("accept_all", "reject_all", "custom", "custom", "gpc"))
        if action == "accept_all":
            categories = {k: True for k in cats}
        elif action == "reject_all":
            categories = {k: k == "essential" for k in cats}
        elif action == "gpc":
            categories = {"advertising": False}
        else:
            categories = {k: k == "essential" or rng.random() < 0.5 for k in cats}
        meta = {"gpc": True} if action == "gpc" else None
        digest = "%064x" % rng.getrandbits(256) if rng.random() < 0.8 else None
        event_id = uuid.UUID(int=rng.getrandbits(128)).hex
        iso = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        # The ledger's own hashed fields and chain hash (consent.ledger.hashed_fields and
        # chain_hash, inlined: the entry bytes are also the log leaf)
        entry = (prev + "\n" + canonical({
            "v": 1, "event_id": event_id, "site": SITE, "stream": stream, "seq": seq,
            "subject": subject, "recorded_at": iso, "action": action, "source": "banner",
            "categories": categories, "channels": None, "policy_version": "2026-01",
            "locale": "en", "meta": meta, "details_digest": digest,
            "idempotency_key": None})).encode()
        digest_hash = hashlib.sha256(entry).hexdigest()
        nodes = compact.append(leaf_hash(entry))
        yield (event_id, stream, seq, subject, at.strftime("%Y-%m-%d %H:%M:%S.%f"),
               action, "banner", json.dumps(categories), json.dumps(meta), digest, prev,
               digest_hash), nodes
        heads[stream] = (seq, digest_hash)


def _check_generator() -> None:
    """The generator's hashes are the ledger's (refuse to benchmark a wrong chain)."""
    from consent.ledger import chain_hash, hashed_fields

    heads: dict = {}
    for (event_id, stream, seq, subject, at, action, source, categories, meta, digest,
         prev, value), _nodes in generate_events(20, heads):
        fields = hashed_fields(
            event_id=event_id, site_key=SITE, stream=stream, seq=seq, subject=subject,
            recorded_at=at.replace(" ", "T") + "Z", action=action, source=source,
            categories=json.loads(categories), channels=None, policy_version="2026-01",
            locale="en", meta=json.loads(meta), details_digest=digest,
            idempotency_key=None)
        assert chain_hash(prev, fields) == value, "the bench's chain differs from the ledger's"


def build_database(path: Path, events: int) -> None:
    """A migrated SQLite database with one site, EVENTS hash-chained events and their log
    (leaves, nodes, stream marks; the checkpoint is signed by integrate_database)."""
    _migrate_with_site(f"sqlite:///{path}")
    heads: dict = {}
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    insert = ("INSERT INTO consent_events (event_id, site_id, stream, seq, subject, "
              "recorded_at, action, source, categories, channels, policy_version, locale, "
              "meta, details_digest, idempotency_key, prev_hash, hash) "
              "VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, 'null', '2026-01', 'en', ?, ?, NULL, ?, ?)")
    leaf_sql = "INSERT INTO log_leaves (site_id, log_index, stream, seq) VALUES (1, ?, ?, ?)"
    node_sql = "INSERT INTO log_nodes (site_id, level, idx, hash) VALUES (1, ?, ?, ?)"
    batch, leaves, nodes = [], [], []

    def flush():
        conn.executemany(insert, batch)
        conn.executemany(leaf_sql, leaves)
        conn.executemany(node_sql, nodes)
        batch.clear(), leaves.clear(), nodes.clear()

    for row, made in generate_events(events, heads):
        leaves.append((made[0][1], row[1], row[2]))
        batch.append(row)
        nodes.extend(made)
        if len(batch) >= 50_000:
            flush()
    flush()
    heads.pop("log")
    conn.executemany("INSERT INTO ledger_heads (site_id, stream, seq, hash) VALUES (1, ?, ?, ?)",
                     [(s, q, h) for s, (q, h) in heads.items()])
    conn.executemany("INSERT INTO log_streams (site_id, stream, seq, hash) VALUES (1, ?, ?, ?)",
                     [(s, q, h) for s, (q, h) in heads.items() if q])
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


NULL = "\\N"  # NULL in COPY's text format


def build_pg_database(cluster, name: str, events: int) -> str:
    """A migrated PostgreSQL database NAME with one site, EVENTS events and their log,
    loaded with COPY (one connection a table, so the rows stream through once)."""
    import psycopg

    cluster.sql(f"CREATE DATABASE {name}")
    url = cluster.url(name)
    _migrate_with_site(url)
    heads: dict = {}
    dsn = f"host=127.0.0.1 port={cluster.port} user=postgres dbname={name}"
    with psycopg.connect(dsn) as conn, psycopg.connect(dsn) as leaf_conn, \
            psycopg.connect(dsn) as node_conn:
        with conn.cursor() as cur, cur.copy(
                "COPY consent_events (event_id, site_id, stream, seq, subject, recorded_at, "
                "action, source, categories, channels, policy_version, locale, meta, "
                "details_digest, idempotency_key, prev_hash, hash) FROM STDIN") as copy, \
                leaf_conn.cursor().copy("COPY log_leaves (site_id, log_index, stream, seq) "
                                        "FROM STDIN") as leaf_copy, \
                node_conn.cursor().copy("COPY log_nodes (site_id, level, idx, hash) "
                                        "FROM STDIN") as node_copy:
            # COPY's text format written in blocks (write_row per row costs more than
            # generating the row); no generated value holds a tab, newline or backslash
            lines, leaf_lines, node_lines = [], [], []
            for (event_id, stream, seq, subject, at, action, source, categories, meta,
                 digest, prev, digest_hash), made in generate_events(events, heads):
                lines.append(f"{event_id}\t1\t{stream}\t{seq}\t{subject}\t{at}\t{action}\t"
                             f"{source}\t{categories}\tnull\t2026-01\ten\t{meta}\t"
                             f"{digest or NULL}\t\\N\t{prev}\t{digest_hash}\n")
                leaf_lines.append(f"1\t{made[0][1]}\t{stream}\t{seq}\n")
                node_lines += [f"1\t{level}\t{idx}\t\\\\x{value.hex()}\n"
                               for level, idx, value in made]
                if len(lines) == 20_000:
                    copy.write("".join(lines))
                    leaf_copy.write("".join(leaf_lines))
                    node_copy.write("".join(node_lines))
                    lines, leaf_lines, node_lines = [], [], []
            copy.write("".join(lines))
            leaf_copy.write("".join(leaf_lines))
            node_copy.write("".join(node_lines))
        heads.pop("log")
        for table, rows in (("ledger_heads", list(heads.items())),
                            ("log_streams", [(s, v) for s, v in heads.items() if v[0]])):
            conn.execute(f"INSERT INTO {table} (site_id, stream, seq, hash) "
                         "SELECT 1, s, q, h FROM unnest(%s::int[], %s::int[], %s::text[]) "
                         "AS t(s, q, h)", ([s for s, _ in rows], [q for _, (q, _) in rows],
                                           [h for _, (_, h) in rows]))
        for c in (conn, leaf_conn, node_conn):
            c.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return url


INTEGRATE_CHILD = """
import sys
from consent import create_app
from consent.ledger.log import integrate
app = create_app({"ENV_NAME": "testing", "SQLALCHEMY_DATABASE_URI": sys.argv[1],
                  "CONSENT_LOG_BATCH": 20000})
with app.app_context():
    integrate("bench")
"""


PG_LOG_SQL = ("SELECT 'log', 'bench', l.log_index, l.stream, l.seq, encode(n.hash, 'hex') "
              "FROM log_leaves l JOIN log_nodes n ON n.site_id = l.site_id AND n.level = 0 "
              "AND n.idx = l.log_index WHERE l.site_id = 1 ORDER BY l.log_index")
PG_SQL = ("SELECT event_id, 'bench', stream, seq, subject, "
          "to_char(recorded_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), action, source, "
          "NULLIF(CAST(categories AS TEXT), 'null'), NULLIF(CAST(channels AS TEXT), 'null'), "
          "policy_version, locale, NULLIF(CAST(meta AS TEXT), 'null'), details_digest, "
          "idempotency_key, prev_hash, hash FROM consent_events WHERE site_id = 1 "
          "ORDER BY stream, seq")


def integrate_database(path: Path) -> None:
    """Give every event its log index and sign a checkpoint (what runs behind writes), in
    a child process (this one stays small: children start as a copy of it)."""
    run_child([sys.executable, "-c", INTEGRATE_CHILD, f"sqlite:///{path}"])
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


# Children print their own peak RSS (VmHWM, which starts afresh at exec): the rusage of a
# child also counts the copy of this process it was before exec.
PEAK = ("print([int(l.split()[1]) for l in open('/proc/self/status') "
        "if l.startswith('VmHWM')][0])")
EXPORT_CHILD = """
import sys, time
from consent import create_app
from consent.audit import ExportFilters, write_export
app = create_app({"ENV_NAME": "testing", "SQLALCHEMY_DATABASE_URI": sys.argv[1]})
with app.app_context():
    t = time.perf_counter()
    with open(sys.argv[2], "w", encoding="utf-8", newline="") as fh:
        write_export(fh, ExportFilters(site_key="bench", log=sys.argv[4] == "log"), sys.argv[3])
    print(time.perf_counter() - t)
""" + PEAK
VERIFY_CHILD = """
import sys
from consent.audit import verify_export_file
report = verify_export_file(sys.argv[1])
print("OK" if report.ok else report.problems[0], report.rows, report.logs)
""" + PEAK


def run_child(cmd: list[str], stdout=None) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in KiB, stdout) of one child process."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=stdout or subprocess.PIPE,
                            stderr=subprocess.PIPE, text=stdout is None)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    out = proc.stdout.read() if stdout is None else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr.read()}")
    return wall, usage.ru_maxrss, out


class Backend:
    """Where the ledgers live and what the export is compared with."""

    name = "sqlite"
    reference = "sqlite3 -csv"

    def __init__(self, work: Path, keep: Path | None):
        self.work, self.keep = work, keep

    def build(self, n: int) -> str:
        """A database of N events integrated into the log; its URL."""
        db_path = (self.keep or self.work) / f"ledger-{n}.sqlite3"
        if self.keep and db_path.exists():
            print(f"reusing {db_path}", flush=True)
            return f"sqlite:///{db_path}"
        db_path.parent.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        build_database(db_path, n)
        print(f"built {n:,} hash-chained events and their log in "
              f"{time.perf_counter() - t:.1f} s (load {load()})", flush=True)
        t = time.perf_counter()
        integrate_database(db_path)
        print(f"signed the log's checkpoint in {time.perf_counter() - t:.1f} s", flush=True)
        return f"sqlite:///{db_path}"

    def references(self, url: str, log: bool) -> dict[str, list[str]]:
        """The reference commands: the event rows (the budget) and, with LOG, the event
        and log rows (the same content as the export)."""
        path = url.removeprefix("sqlite:///")
        out = {"events": ["sqlite3", "-csv", path, SQL]}
        if log:
            out["events+log"] = ["sqlite3", "-csv", path, SQL + "; " + LOG_SQL]
        return out

    def drop(self, url: str) -> None:
        if not self.keep:
            Path(url.removeprefix("sqlite:///")).unlink()

    def stop(self) -> None:
        pass


class Postgres(Backend):
    """A throwaway cluster; the export is compared with `psql \\copy (...) to csv`."""

    name = "postgresql"
    reference = "psql \\copy csv"

    def __init__(self, work: Path, keep: Path | None):
        from tests.support.pg import PgCluster

        super().__init__(work, None)
        self.cluster = PgCluster().start()

    def build(self, n: int) -> str:
        # each database has its own log, so its own signer state
        os.environ["CONSENT_LOG_STATE_DIR"] = str(self.work / f"log-state-{n}")
        t = time.perf_counter()
        url = build_pg_database(self.cluster, f"ledger_{n}", n)
        print(f"built {n:,} hash-chained events and their log in "
              f"{time.perf_counter() - t:.1f} s (load {load()})", flush=True)
        t = time.perf_counter()
        run_child([sys.executable, "-c", INTEGRATE_CHILD, url])
        print(f"signed the log's checkpoint in {time.perf_counter() - t:.1f} s", flush=True)
        return url

    def references(self, url: str, log: bool) -> dict[str, list[str]]:
        from tests.support.pg import _find

        name = url.rsplit("/", 1)[1]
        psql = [_find("psql"), "-X", "-q", "-h", "127.0.0.1", "-p", str(self.cluster.port),
                "-U", "postgres", "-d", name, "-c"]
        target = self.work / "reference-events.csv"
        out = {"events": psql + [f"\\copy ({PG_SQL}) to '{target}' with (format csv)"]}
        if log:
            out["events+log"] = psql + [
                f"\\copy ({PG_SQL}) to '{target}' with (format csv)",
                "-c", f"\\copy ({PG_LOG_SQL}) to '{self.work / 'reference-log.csv'}' "
                "with (format csv)"]
        return out

    def drop(self, url: str) -> None:
        self.cluster.sql(f"DROP DATABASE {url.rsplit('/', 1)[1]}")

    def stop(self) -> None:
        self.cluster.stop()


def measure(backend: Backend, url: str, runs: int, log: bool) -> dict:
    """Best-of-RUNS times of the export (in its own process) and of each reference command
    (one after the other, in the same run), the export's peak RSS and sizes."""
    out_dir = backend.work
    export_file = out_dir / "export.csv"
    times: dict[str, list[float]] = {"export": [], "no-log": []}
    rss = []
    for _ in range(runs):
        for label, cmd in backend.references(url, log).items():
            if backend.name == "sqlite":
                with open(out_dir / f"reference-{label}.csv", "w") as fh:
                    wall, _rss, _ = run_child(cmd, stdout=fh)
            else:
                wall, _rss, _ = run_child(cmd)
            times.setdefault(label, []).append(wall)
        if log:
            # the same export without its log section, for what the section costs
            _wall, _peak, out = run_child([sys.executable, "-c", EXPORT_CHILD, url,
                                           str(out_dir / "no-log.csv"), "csv", "no-log"])
            times["no-log"].append(float(out.strip().splitlines()[-2]))
        _wall, _peak, out = run_child([sys.executable, "-c", EXPORT_CHILD, url,
                                       str(export_file), "csv", "log" if log else "no-log"])
        times["export"].append(float(out.strip().splitlines()[-2]))
        rss.append(int(out.strip().splitlines()[-1]))
    best = {label: min(values) for label, values in times.items() if values}
    return {"best": best, "peak_rss_kib": max(rss),
            "export_bytes": export_file.stat().st_size,
            "reference_bytes": (out_dir / "reference-events.csv").stat().st_size}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite",
                        help="postgresql: a throwaway cluster; compared with psql \\copy")
    parser.add_argument("--verify", action="store_true",
                        help="Also time verify-export on the large export.")
    parser.add_argument("--no-log", dest="log", action="store_false",
                        help="Export without the log section (--no-log).")
    parser.add_argument("--keep", type=Path, help="SQLite: keep the generated databases in "
                        "this directory and reuse them on the next run.")
    args = parser.parse_args()
    _check_generator()
    if args.db == "sqlite" and shutil.which("sqlite3") is None:
        print("sqlite3 command-line shell not found (apt-get install sqlite3)")
        return 2
    work = Path(tempfile.mkdtemp(prefix="consent-export-bench-"))
    backend = (Postgres if args.db == "postgresql" else Backend)(work, args.keep)
    try:
        results = {}
        for n in (args.small, args.events):
            url = backend.build(n)
            results[n] = r = measure(backend, url, args.runs, args.log)
            best = r["best"]
            also = "".join(f", {backend.reference} {label} {best[label]:.2f} s (ratio "
                           f"{best['export'] / best[label]:.2f}x)"
                           for label in best if label not in ("export", "events", "no-log"))
            if "no-log" in best:
                also += f", export --no-log {best['no-log']:.2f} s"
            print(f"{n:>9,} events: export {best['export']:.2f} s, {backend.reference} "
                  f"{best['events']:.2f} s, ratio {best['export'] / best['events']:.2f}x{also}, "
                  f"peak RSS {r['peak_rss_kib'] / 1024:.1f} MiB, "
                  f"{r['export_bytes'] / 1e6:.0f} MB vs {r['reference_bytes'] / 1e6:.0f} MB "
                  f"(load {load()})", flush=True)
            if n == args.events and args.verify:
                wall, _peak, out = run_child([sys.executable, "-c", VERIFY_CHILD,
                                              str(work / "export.csv")])
                lines = out.strip().splitlines()
                print(f"verify-export: {lines[0]} in {wall:.1f} s, peak RSS "
                      f"{int(lines[-1]) / 1024:.1f} MiB (load {load()})", flush=True)
            backend.drop(url)
        big, small = results[args.events], results[args.small]
        ratio = big["best"]["export"] / big["best"]["events"]
        growth = big["peak_rss_kib"] / small["peak_rss_kib"]
        print(f"RESULT export/{backend.reference} = {ratio:.2f}x at {args.events:,} events "
              f"(budget <= 2x): {'PASS' if ratio <= 2 else 'FAIL'}")
        print(f"RESULT peak RSS {small['peak_rss_kib'] / 1024:.1f} MiB at {args.small:,} vs "
              f"{big['peak_rss_kib'] / 1024:.1f} MiB at {args.events:,} ({growth:.2f}x; "
              f"budget: flat): {'PASS' if growth <= 1.15 else 'FAIL'}")
        return 0
    finally:
        backend.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
