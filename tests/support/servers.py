"""Real HTTP servers for tests: the app under gunicorn, and static test sites."""
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .launcher import Forked, launcher
from .pg import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


class AppServer:
    """The consent app under gunicorn on a free loopback port, in its own process group
    (forked by tests/support/launcher.py; CONSENT_TEST_LAUNCHER=0: a plain subprocess)."""

    def __init__(self, database_url: str, *, workers: int = 2, extra_env: dict | None = None,
                 worker_class: str = "gthread", threads: int = 4):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.shared = False  # the test process's SharedAppServer: not stopped by a test
        env = dict(os.environ)
        env.update({"CONSENT_DATABASE_URL": database_url, "CONSENT_ENV": "testing",
                    "CONSENT_SITE_CACHE_SECONDS": "0", "PYTHONUNBUFFERED": "1"})
        env.update(extra_env or {})
        args = ["-b", f"127.0.0.1:{self.port}", "-w", str(workers), "-k", worker_class,
                "--threads", str(threads), "--graceful-timeout", "2", "--log-level", "warning",
                "app:app"]
        if os.environ.get("CONSENT_TEST_LAUNCHER", "1") == "1":
            # forked from a process that imported the app's modules once (launcher.py)
            self.proc = Forked(launcher().spawn(["gunicorn", *args], env, ROOT))
        else:
            self.proc = subprocess.Popen([sys.executable, "-m", "gunicorn", *args], cwd=ROOT,
                                         env=env, start_new_session=True)
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
        """Stop at once: what the app acknowledged is committed (a graceful stop would only
        wait out the browser's keep-alive connections, seconds per test)."""
        if self.proc.poll() is None:
            self.kill(signal.SIGKILL)

    def client(self) -> "HttpClient":
        """A client of this server with the Flask test client's interface."""
        return HttpClient(self.url)


def _open_connections(port: int) -> int:
    """TCP connections to or from 127.0.0.1:PORT that are still open (either end; not the
    listening socket, not TIME_WAIT: both ends closed)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if state in ("0A", "06", "07"):  # LISTEN, TIME_WAIT, CLOSE
                continue
            if int(local.rsplit(":", 1)[1], 16) == port or int(remote.rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


class SharedAppServer:
    """One gunicorn per test process for the browser and end-to-end tests that need no
    settings of their own: it serves one SQLite file, which every such test starts from
    empty (`fresh`: the migrated template copied into it page by page through SQLite's
    backup API, so the server's open connections read the new content; the signer's
    state kept next to the file is removed with it). Starting a gunicorn per test cost
    ~0.3 s of CPU (the server, its worker, each first request); tests keep their own rows,
    browser context and static site. Tests with settings of their own (`app_env`) start
    their own server on the same file. PostgreSQL runs keep a database and server each."""

    def __init__(self, template: Path, folder: Path):
        self.template = Path(template)
        self.path = Path(folder) / "shared.sqlite3"
        self.url = f"sqlite:///{self.path}"
        self.access_log = Path(folder) / "shared-access.log"
        self.access_log.touch()
        self.server: AppServer | None = None
        shutil.copy(self.template, self.path)

    def fresh(self) -> str:
        """Empty the shared database for the next test (once the server is idle); its URL."""
        if self.server is not None and self.server.proc.poll() is None:
            # a request of the last test still in flight must not land in the next one's
            # database; its browser context is closed by now (at most a few seconds)
            deadline = time.monotonic() + 10
            while _open_connections(self.server.port) and time.monotonic() < deadline:
                time.sleep(0.02)
        shutil.rmtree(f"{self.path}.log-state", ignore_errors=True)
        source = sqlite3.connect(self.template)
        target = sqlite3.connect(self.path, timeout=30)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
        return self.url

    def app(self) -> AppServer:
        """The running server (started on first use, again if it died)."""
        if self.server is None or self.server.proc.poll() is not None:
            self.server = AppServer(self.url, workers=1, threads=4, extra_env={
                "GUNICORN_CMD_ARGS": f"--access-logfile {self.access_log}"})
            self.server.shared = True
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


class HttpAnswer:
    """A `requests` response read the way the tests read a Flask test response."""

    def __init__(self, response):
        self.response = response
        self.status_code = response.status_code
        self.headers = response.headers
        self.text = response.text

    @property
    def mimetype(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip()

    def get_json(self):
        return self.response.json()

    def json(self):
        return self.response.json()

    def get_data(self, as_text: bool = False):
        return self.response.text if as_text else self.response.content


class HttpClient:
    """Real HTTP to BASE_URL with the Flask test client's `get`/`post`/`open` signature,
    so the helpers in tests/support/api.py work against a running server too."""

    def __init__(self, base_url: str):
        import requests

        self.base_url = base_url
        self.session = requests.Session()

    def open(self, path: str, method: str = "GET", *, query_string=None, **kwargs) -> HttpAnswer:
        return HttpAnswer(self.session.request(method, self.base_url + path, params=query_string,
                                               timeout=30, allow_redirects=False, **kwargs))

    def get(self, path: str, **kwargs) -> HttpAnswer:
        return self.open(path, "GET", **kwargs)

    def post(self, path: str, **kwargs) -> HttpAnswer:
        return self.open(path, "POST", **kwargs)


class StaticSite:
    """A plain static file server: the 'customer site' on another origin (with TLS: over
    https, with a self-signed certificate for 127.0.0.1 the browser context must accept)."""

    def __init__(self, directory: Path, *, tls: bool = False):
        handler = lambda *a, **k: SimpleHTTPRequestHandler(*a, directory=str(directory), **k)  # noqa: E731
        SimpleHTTPRequestHandler.log_message = lambda *a, **k: None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        if tls:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self_signed_certificate())
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


_CERTIFICATE: tuple[str, str] | None = None


def self_signed_certificate() -> tuple[str, str]:
    """(certificate file, key file) of a throwaway certificate for 127.0.0.1 and localhost."""
    global _CERTIFICATE
    if _CERTIFICATE is None:
        import datetime
        import ipaddress
        import tempfile

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=7))
                .add_extension(x509.SubjectAlternativeName([
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                    critical=False)
                .sign(key, hashes.SHA256()))
        folder = Path(tempfile.mkdtemp(prefix="consent-tls-"))
        (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (folder / "key.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        _CERTIFICATE = (str(folder / "cert.pem"), str(folder / "key.pem"))
    return _CERTIFICATE
