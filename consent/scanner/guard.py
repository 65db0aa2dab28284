"""The scanner browser's only way out: a forward proxy that decides which addresses it
may reach, and dials the address it checked.

Chromium is started with this proxy for every request, loopback included (Playwright
routes loopback through a configured proxy too). Each connection's host is resolved
once, every address is judged, and the proxy connects to an address it judged, so a
name that resolves elsewhere a moment later (DNS rebinding) gains nothing.

Rules (consent.netguard decides what "public" means, as for webhook receivers):
- the site's own origins (host and port) may be on internal addresses (an intranet site
  is scanned where it lives), but not on loopback or 0.0.0.0 in production;
- everything else must resolve to public addresses only;
- loopback is allowed for everyone only in development and testing (test sites run on
  127.0.0.1); private, link-local (169.254.169.254), shared and other internal addresses
  are refused in every environment.
"""
from __future__ import annotations

import ipaddress
import selectors
import socket
import socketserver
import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .. import netguard

HEAD_LIMIT = 64 * 1024
IDLE_SECONDS = 30.0
_HOP_HEADERS = {"proxy-connection", "proxy-authorization", "connection", "keep-alive",
                "te", "trailer", "upgrade"}


@dataclass(frozen=True)
class Refusal:
    """A connection the guard did not make."""

    host: str
    port: int
    reason: str


@dataclass
class AddressPolicy:
    """Which (host, port) the browser may connect to."""

    own: frozenset = frozenset()          # {(host, port)} of the site's allowed origins
    allow_loopback: bool = False           # development and testing only
    resolver: object = field(default=socket.getaddrinfo, repr=False)

    def addresses(self, host: str, port: int) -> list[tuple]:
        """Socket addresses to dial for HOST:PORT; raises PermissionError with the reason."""
        host = (host or "").strip("[]").lower()
        try:
            infos = self.resolver(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError, OSError):
            raise PermissionError(f"{host} does not resolve") from None
        own = (host, port) in self.own
        out = []
        for info in infos:
            try:
                addr = netguard.parse_address(info[4][0])
            except ValueError:
                raise PermissionError(f"{host} resolves to an unreadable address") from None
            if addr.version == 6 and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped
            local = addr.is_loopback or addr.is_unspecified
            if local and not self.allow_loopback:
                raise PermissionError(f"{host} resolves to a loopback address (scanned only "
                                      "in development and testing)")
            if not (own or netguard.is_public(addr) or (local and self.allow_loopback)):
                raise PermissionError(f"{host} resolves to an internal address (only the "
                                      "site's own origins may be internal)")
            out.append(info[4][:2] if info[0] == socket.AF_INET6 else (str(addr), info[4][1]))
        if not out:
            raise PermissionError(f"{host} has no address")
        return out


def own_endpoints(origins) -> frozenset:
    """{(host, port)} of origins like https://shop.example."""
    out = set()
    for origin in origins:
        parts = urlsplit(origin)
        if parts.hostname:
            out.add((parts.hostname.lower(),
                     parts.port or (443 if parts.scheme == "https" else 80)))
    return frozenset(out)


class GuardProxy:
    """A forward proxy on a loopback port that applies an AddressPolicy."""

    def __init__(self, policy: AddressPolicy):
        self.policy = policy
        self.refusals: list[Refusal] = []
        # (host, port) -> why the connection failed (refused, timed out, ...): the browser
        # only sees the proxy's 502, the scan report says what happened.
        self.unreachable: dict[tuple[str, int], str] = {}
        self.connections = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                proxy._handle(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        name="scan-guard", daemon=True)

    def __enter__(self) -> "GuardProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _refuse(self, client: socket.socket, host: str, port: int, reason: str) -> None:
        with self._lock:
            if not any(r.host == host and r.port == port for r in self.refusals):
                self.refusals.append(Refusal(host, port, reason))
        body = f"refused by the scanner's address guard: {reason}\n".encode()
        client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\n"
                       b"Connection: close\r\nContent-Length: " + str(len(body)).encode()
                       + b"\r\n\r\n" + body)

    def _unreachable(self, client: socket.socket, host: str, port: int, exc: OSError) -> None:
        if isinstance(exc, ConnectionRefusedError):
            reason = "connection refused"
        elif isinstance(exc, (TimeoutError, socket.timeout)):
            reason = "connection timed out"
        else:
            reason = (exc.strerror or str(exc) or "unreachable").lower()
        with self._lock:
            self.unreachable.setdefault((host, port), reason)
        client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n")

    def explain(self, url: str) -> str | None:
        """Why the guard could not connect to URL's host, if it could not."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if (host, port) in self.unreachable:
            return self.unreachable[(host, port)]
        for refusal in self.refusals:
            if (refusal.host, refusal.port) == (host, port):
                return f"refused by the scanner's address guard: {refusal.reason}"
        return None

    def _dial(self, host: str, port: int) -> socket.socket:
        addresses = self.policy.addresses(host, port)
        error: OSError | None = None
        for address in addresses:
            try:
                upstream = socket.create_connection(address, timeout=IDLE_SECONDS)
                with self._lock:
                    self.connections += 1
                return upstream
            except OSError as exc:
                error = exc
        raise error or OSError(f"{host} has no address")

    def _dial_or_answer(self, client: socket.socket, host: str,
                        port: int) -> socket.socket | None:
        """A connection to HOST:PORT, or None once the browser was told why not."""
        try:
            return self._dial(host, port)
        except PermissionError as exc:
            self._refuse(client, host, port, str(exc))
        except OSError as exc:
            self._unreachable(client, host, port, exc)
        return None

    def _handle(self, client: socket.socket) -> None:
        client.settimeout(IDLE_SECONDS)
        try:
            head, rest = _read_head(client)
        except (OSError, ValueError):
            return
        try:
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, version = request_line.split(" ", 2)
        except ValueError:
            client.sendall(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
            return
        if method == "CONNECT":
            host, _, port_text = target.rpartition(":")
            host = host.strip("[]").lower()
            try:
                port = int(port_text)
            except ValueError:
                client.sendall(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
                return
            upstream = self._dial_or_answer(client, host, port)
            if upstream is None:
                return
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                upstream.sendall(rest)
            _relay(client, upstream)
            return
        parts = urlsplit(target)
        if parts.scheme not in ("http", "ws") or not parts.hostname:
            client.sendall(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
            return
        host, port = parts.hostname.lower(), parts.port or 80
        upstream = self._dial_or_answer(client, host, port)
        if upstream is None:
            return
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {path} {version}"]
        lines += [h for h in header_lines
                  if h and h.split(":", 1)[0].strip().lower() not in _HOP_HEADERS]
        # One request per connection: the browser may reuse a proxy connection for
        # another host, which must be checked and dialled on its own.
        lines.append("Connection: close")
        upstream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + rest)
        _relay(client, upstream)


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(8192)
        if not chunk:
            raise ValueError("closed before the request head ended")
        data += chunk
        if len(data) > HEAD_LIMIT:
            raise ValueError("request head too large")
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes or stays idle too long."""
    selector = selectors.DefaultSelector()
    try:
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        while True:
            events = selector.select(IDLE_SECONDS)
            if not events:
                return
            for key, _ in events:
                try:
                    chunk = key.fileobj.recv(65536)
                    if not chunk:
                        return
                    key.data.sendall(chunk)
                except OSError:
                    return
    finally:
        selector.close()
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass


def is_ip_literal(host: str) -> bool:
    """Whether HOST is an IP address rather than a name."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False
