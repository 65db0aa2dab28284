"""Real HTTP servers for tests: the app under gunicorn, and static test sites."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
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
