"""Finding 14: webhook signing secrets and linked-account tokens are encrypted at rest
under CONSENT_DATA_KEY (a copy of the database alone reads none of them); the admin page
says how the secret is kept; the migration encrypts rows written before."""
from __future__ import annotations

import base64
import os
import re

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from consent import create_app
from consent.database import run_write
from consent.decisions import RequestContext, record_decision
from consent.extensions import db
from consent.linked_accounts import authorize, read_token
from consent.outbox import DeliveryWorker, register_endpoint, standard_secret
from consent.secretbox import SecretUnreadable, unseal
from tests.security.sec_fixtures import (DATA_KEY, PROD_SECRET, PUBLIC_URL,  # noqa: F401
                                         mode, mode_app, mode_client, mode_site)
from tests.support.admin import make_admin, session_csrf, sign_in  # noqa: F401
from tests.support.outbox import Receiver

TOKEN = "zoom-access-token-0123456789-secret"


def _raw(sql: str, **params):
    return db.session.execute(sa.text(sql), params).all()


@pytest.mark.parametrize("key", [None, "", "short-key"])
def test_production_refuses_to_start_without_a_data_key(key):
    config = {"ENV_NAME": "production", "SECRET_KEY": PROD_SECRET,
              "CONSENT_PUBLIC_URL": PUBLIC_URL, "SQLALCHEMY_DATABASE_URI": "sqlite://"}
    if key is not None:
        config["CONSENT_DATA_KEY"] = key
    with pytest.raises(RuntimeError, match="CONSENT_DATA_KEY"):
        create_app(config)


def test_webhook_secret_is_encrypted_and_still_signs(mode_app, mode_site, monkeypatch):
    monkeypatch.setenv("CONSENT_WEBHOOK_ALLOW_PRIVATE", "1")
    monkeypatch.setenv("CONSENT_WEBHOOK_ALLOW_HTTP", "1")
    receiver = Receiver()
    try:
        endpoint, secret = register_endpoint(mode_site["key"], url=receiver.url,
                                             categories=["*"])
        stored = _raw("SELECT secret FROM webhook_endpoints")[0][0]
        assert secret not in stored and secret[6:20] not in stored
        assert stored.startswith("enc1:")
        record_decision(mode_site["key"], {"action": "accept_all"},
                        RequestContext(ip="203.0.113.9", user_agent="UA", gpc_header=False))
        assert DeliveryWorker(concurrency=1).run()["delivered"] == 1
    finally:
        receiver.stop()
    # The signature checks out with the clear secret the operator was shown.
    headers, body = receiver.requests[0]
    from standardwebhooks.webhooks import Webhook

    assert Webhook(secret).verify(body, headers)["type"] == "consent.changed"
    # A copy of the database under another key (an attacker's) reads nothing.
    with pytest.raises(SecretUnreadable):
        unseal(stored, "webhook-secret", key="an attacker's guess at the key, 40 chars")


def test_linked_account_token_is_sealed_under_the_data_key(mode_app, mode_site):
    visitor = record_decision(mode_site["key"], {"action": "accept_all"},
                              RequestContext(ip=None, user_agent=None, gpc_header=False)
                              ).subject_public_id
    authorize(mode_site["key"], "zoom", TOKEN, subject=visitor)
    stored = _raw("SELECT token_sealed FROM linked_accounts")[0][0]
    assert TOKEN not in stored and stored.startswith("v2.")
    assert read_token(mode_site["key"], "zoom", subject=visitor) == TOKEN
    # Not under the HMAC key (which a deployment may not keep apart from the database).
    from consent.linked_accounts import Invalid, open_token

    with pytest.raises(Invalid):
        open_token(stored, "x", key_text="some other data key of 40 characters...")


def test_admin_page_says_the_secret_is_encrypted_not_hashed(mode_app, mode_client, mode_site,
                                                            monkeypatch):
    monkeypatch.setenv("CONSENT_WEBHOOK_ALLOW_PRIVATE", "1")
    sign_in(mode_client, make_admin())
    r = mode_client.post(f"/admin/sites/{mode_site['key']}/webhooks",
                         data={"url": "https://crm.example/hook", "categories": "*",
                               "csrf_token": session_csrf(mode_client, f"/admin/sites/{mode_site['key']}/webhooks")})
    html = r.get_data(as_text=True)
    assert r.status_code == 200, html
    assert "only a hash" not in html and "encrypted" in html
    secret = re.search(r'id="secret">(whsec_[^<]+)<', html).group(1)
    assert secret not in _raw("SELECT secret FROM webhook_endpoints")[0][0]


def test_migration_encrypts_rows_written_before(tmp_path):
    """An installation upgraded from before: its clear secrets and HMAC-key sealed tokens
    are encrypted under the data key by `init-db`, and everything still works."""
    from flask_migrate import upgrade

    from consent.linked_accounts import _key
    from consent.sites import invalidate_site_cache

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    app = create_app({"ENV_NAME": "development", "SQLALCHEMY_DATABASE_URI": url,
                      "CONSENT_DATA_KEY": DATA_KEY, "CONSENT_SITE_CACHE_SECONDS": 0})
    invalidate_site_cache()
    with app.app_context():
        # (the revisions the ORM write below needs, all but security_0001 itself)
        for revision in ("0003", "0004", "0005", "0006", "0002", "tlog_0002",
                         "attribution_0001"):
            upgrade(revision=revision)
        from consent.sites import create_site

        run_write(lambda: create_site("old", "Old", allowed_origins=[]))
        visitor = record_decision("old", {"action": "accept_all"},
                                  RequestContext(ip=None, user_agent=None, gpc_header=False)
                                  ).subject_public_id
        site_id, subject_id = _raw("SELECT site_id, id FROM subjects WHERE public_id = :p",
                                   p=visitor)[0]
        aad = f"{site_id}:{subject_id}:zoom"
        nonce = os.urandom(12)
        legacy = base64.urlsafe_b64encode(
            nonce + AESGCM(_key()).encrypt(nonce, TOKEN.encode(), aad.encode())).decode()
        with db.engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO webhook_endpoints (site_id, name, url, categories, channels, "
                "secret, active, created_at, consecutive_failures) VALUES (:s, 'crm', "
                "'https://crm.example/h', '[\"*\"]', '[]', 'whsec_old-clear-secret-0123456789', "
                "1, '2026-01-01 00:00:00', 0)"), {"s": site_id})
            conn.execute(sa.text(
                "INSERT INTO linked_accounts (site_id, subject_id, integration, "
                "token_sealed, authorized_at) VALUES (:s, :p, 'zoom', :t, "
                "'2026-01-01 00:00:00')"), {"t": legacy, "s": site_id, "p": subject_id})
        db.session.remove()
        upgrade(revision="heads")
        secret = _raw("SELECT secret FROM webhook_endpoints")[0][0]
        sealed = _raw("SELECT token_sealed FROM linked_accounts")[0][0]
        assert secret.startswith("enc1:") and "old-clear-secret" not in secret
        # (clients_0002 then stores it in Standard Webhooks form: the same key bytes)
        assert unseal(secret, "webhook-secret") == standard_secret(
            "whsec_old-clear-secret-0123456789")
        assert sealed.startswith("v2.") and sealed != legacy
        from consent.linked_accounts import open_token

        assert open_token(sealed, aad) == TOKEN
        db.session.remove()
        db.engine.dispose()
