"""A throwaway PostgreSQL cluster in a temp dir on a free loopback port.

Runs initdb/pg_ctl directly as a normal user; as root (CI), as the `postgres` user via
runuser, on a directory that user owns, because PostgreSQL refuses to run as root.
"""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _find(binary: str) -> str:
    found = shutil.which(binary)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{binary}"), reverse=True):
        return str(candidate)
    raise RuntimeError(f"{binary} not found: install PostgreSQL server binaries")


class PgCluster:
    """Start with start(), get URLs with url(db), stop() removes everything."""

    def __init__(self, durable: bool = False) -> None:
        # durable: the server's own defaults (fsync and full-page writes on), as a
        # production server runs; benchmarks use it, the tests do not (below).
        self.durable = durable
        self.root = Path(tempfile.mkdtemp(prefix="consent-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self.started = False

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = list(args)
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    def start(self) -> "PgCluster":
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run(_find("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--no-locale")
        self._pg_ctl_start()
        return self

    def _pg_ctl_start(self) -> None:
        # fsync off: every test copies a template database (CREATE DATABASE ... TEMPLATE,
        # then DROP), and the fsyncs of those copies were most of a backend test's wait.
        # What the tests crash is processes (gunicorn killed, PostgreSQL stopped
        # "immediate"): a commit's WAL is written to the kernel before the commit returns,
        # fsync or not, so it survives them; only an OS crash would lose it.
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                "-c max_connections=200 -c shared_buffers=64MB")
        if not self.durable:
            opts += " -c fsync=off -c full_page_writes=off"
        self._run(_find("pg_ctl"), "-D", str(self.data), "-o", opts, "-l",
                  str(self.root / "log"), "-w", "-t", "60", "start")
        self.started = True

    def restart(self) -> None:
        self.stop_server()
        self._pg_ctl_start()

    def stop_server(self, mode: str = "fast") -> None:
        if self.started:
            self._run(_find("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop",
                      check=False)
            self.started = False

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{dbname}"

    def sql(self, statement: str, dbname: str = "postgres") -> None:
        """Run one statement with autocommit (CREATE/DROP DATABASE)."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}",
                             autocommit=True) as conn:
            conn.execute(statement)

    def stop(self) -> None:
        self.stop_server("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    """Block until something accepts connections on 127.0.0.1:PORT."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")
