"""Real HTTP servers for tests: the app under gunicorn, and static test sites."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .pg import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


class AppServer:
    """The consent app in a gunicorn subprocess on a free loopback port."""

    def __init__(self, database_url: str, *, workers: int = 2, extra_env: dict | None = None,
                 worker_class: str = "gthread", threads: int = 4):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update({"CONSENT_DATABASE_URL": database_url, "CONSENT_ENV": "testing",
                    "CONSENT_SITE_CACHE_SECONDS": "0", "PYTHONUNBUFFERED": "1"})
        env.update(extra_env or {})
        cmd = [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{self.port}",
               "-w", str(workers), "-k", worker_class, "--threads", str(threads),
               "--graceful-timeout", "2", "--log-level", "warning", "app:app"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
        try:
            wait_for_port(self.port, 30)
        except TimeoutError:
            self.stop()
            raise

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the whole gunicorn process group (master and workers)."""
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=20)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill(signal.SIGTERM)


class StaticSite:
    """A plain static file server: the 'customer site' on another origin."""

    def __init__(self, directory: Path):
        handler = lambda *a, **k: SimpleHTTPRequestHandler(*a, directory=str(directory), **k)  # noqa: E731
        SimpleHTTPRequestHandler.log_message = lambda *a, **k: None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
