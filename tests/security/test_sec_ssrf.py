"""Finding 6: in production webhooks reach only globally routable addresses, in every
spelling of an internal address, and the delivery log is no port-scanning oracle."""
from __future__ import annotations

import socket
import threading

import pytest

from consent.extensions import db
from consent.netguard import is_public
from consent.outbox import (GENERIC_NETWORK_ERROR, DeliveryWorker, DownstreamEndpoint,
                            OutboxMessage)
from tests.security.sec_fixtures import mode, mode_app, mode_client, mode_site  # noqa: F401
from tests.support.admin import make_admin, session_csrf, sign_in  # noqa: F401

INTERNAL = [
    "100.64.0.1", "100.100.100.200", "100.127.255.254",        # shared address space (CGN)
    "10.0.0.1", "172.16.0.1", "192.168.1.1", "127.0.0.1", "0.0.0.0",
    "169.254.169.254", "192.0.0.170", "198.18.0.1", "224.0.0.1", "240.0.0.1",
    "255.255.255.255",
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1",
    "fec0::1", "fec0:1:2:3::4",                                  # site-local
    "2002:a00:1::1", "2002:6464:64c8::1", "2002:808:808::1",     # 6to4 (relay decides)
    "::ffff:10.0.0.1", "::ffff:127.0.0.1", "::ffff:100.100.100.200",  # IPv4-mapped
    "::10.0.0.1", "::127.0.0.1",                                 # IPv4-compatible
    "64:ff9b::a00:1", "64:ff9b::6464:64c8", "64:ff9b::7f00:1",   # NAT64 of internal ones
    "64:ff9b:1::a00:1",                                          # local-use NAT64
    "2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2",           # Teredo
    "2001:db8::1", "100::1", "ff02::1",
]
PUBLIC = ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8",
          "64:ff9b::808:808", "2a00:1450:4001::200e"]


@pytest.mark.parametrize("address", INTERNAL)
def test_internal_addresses_are_not_public(address):
    assert not is_public(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address):
    assert is_public(address)


def _url(address: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"https://{host}/hook"


@pytest.mark.parametrize("address", ["100.100.100.200", "100.64.0.1", "2002:a00:1::1",
                                     "fec0::1", "::ffff:10.0.0.1", "64:ff9b::a00:1",
                                     "2001::1"])
def test_production_refuses_to_register_internal_receivers(mode_app, mode_client, mode_site,
                                                           monkeypatch, address):
    monkeypatch.delenv("CONSENT_WEBHOOK_ALLOW_PRIVATE", raising=False)
    r = mode_client.post(f"/api/v1/sites/{mode_site['key']}/webhooks/endpoints",
                         json={"url": _url(address), "categories": ["analytics"]},
                         headers={"Authorization": f"Bearer {mode_site['api_key']}"})
    if mode_app.config["ENV_NAME"] == "production":
        assert r.status_code == 422, r.get_data(as_text=True)
        assert r.get_json()["errors"][0]["pointer"] == "#/url"
        assert db.session.execute(db.select(DownstreamEndpoint)).first() is None
    elif r.status_code != 201:  # development: the guard is off (the page says so)
        assert "Not a valid URL" in r.get_data(as_text=True)  # marshmallow's own syntax


def test_admin_webhooks_page_says_whether_the_guard_is_on(mode_app, mode_client, mode_site):
    sign_in(mode_client, make_admin())
    html = mode_client.get(f"/admin/sites/{mode_site['key']}/webhooks").get_data(as_text=True)
    if mode_app.config["ENV_NAME"] == "production":
        assert "public internet addresses" in html and "guard is off" not in html
    else:
        assert "The address guard is off" in html


class _Listener:
    """A local TCP port that answers in plain HTTP/1.0 garbage (not TLS)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
            conn.close()

    def close(self):
        self.sock.close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_production_delivery_log_does_not_tell_open_from_closed_ports(
        mode_app, mode_client, mode_site, monkeypatch):
    """With internal receivers allowed, an attacker holding a site key could still
    probe ports through the error texts: in production they are all one text."""
    monkeypatch.setenv("CONSENT_WEBHOOK_ALLOW_PRIVATE", "1")
    listener = _Listener()
    try:
        headers = {"Authorization": f"Bearer {mode_site['api_key']}"}
        for port in (listener.port, _closed_port()):
            r = mode_client.post(f"/api/v1/sites/{mode_site['key']}/webhooks/endpoints",
                                 json={"url": f"https://127.0.0.1:{port}/x",
                                       "categories": ["analytics"]}, headers=headers)
            assert r.status_code == 201, r.get_data(as_text=True)
        r = mode_client.post(f"/api/v1/sites/{mode_site['key']}/decisions",
                             json={"action": "accept_all"})
        assert r.status_code == 201
        stats = DeliveryWorker(concurrency=2).run()
        assert stats["network_error"] == 2
    finally:
        listener.close()
    db.session.rollback()
    errors = [m.last_error for m in db.session.execute(db.select(OutboxMessage)).scalars()]
    assert len(errors) == 2
    if mode_app.config["ENV_NAME"] == "production":
        assert errors == [GENERIC_NETWORK_ERROR, GENERIC_NETWORK_ERROR]
    else:
        assert errors[0] != errors[1]  # development shows the cause
