"""Finding 9: rate limits per client address, per API key (and per address for wrong
keys), per admin account, and on sign-in per (account, address) and per address -- with
429 problem+json and Retry-After, no account lock, and the same answers for unknown
accounts. Limits are configured small here so that counts, not timing, decide."""
from __future__ import annotations

import re

import pytest
from limits import parse_many

import config as config_module
from tests.security.sec_fixtures import (PUBLIC_URL, base_url, build_app,  # noqa: F401
                                         client_for, mode, mode_site)
from tests.support.admin import PASSWORD, make_admin, session_csrf  # noqa: F401

OTHER = {"REMOTE_ADDR": "198.51.100.77"}


@pytest.fixture
def limited(mode, database_url):
    """An app of MODE with small limits."""
    app = build_app(mode, database_url,
                    CONSENT_RATELIMIT_PUBLIC="20 per hour",
                    CONSENT_RATELIMIT_API_KEY="10 per hour",
                    CONSENT_RATELIMIT_BAD_KEY="5 per hour",
                    CONSENT_RATELIMIT_ADMIN="15 per hour",
                    CONSENT_RATELIMIT_SIGN_IN_ACCOUNT="3 per hour",
                    CONSENT_RATELIMIT_SIGN_IN_ADDRESS="5 per hour")
    with app.app_context():
        yield app
        from consent.extensions import db

        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def mode_app(limited):  # the site fixture builds on it
    return limited


def _assert_429(r):
    assert r.status_code == 429, (r.status_code, r.get_data(as_text=True)[:200])
    assert int(r.headers["Retry-After"]) > 0
    if r.mimetype != "text/html":
        assert r.mimetype == "application/problem+json"
        assert r.get_json()["status"] == 429


def test_defaults_are_generous_but_finite():
    settings = config_module.config_for("production")
    # 300 anonymous decisions in 2 s from one address are too many; a busy backend's
    # few hundred calls a second are not.
    for name, low, high in (("CONSENT_RATELIMIT_PUBLIC", 50, 149),
                            ("CONSENT_RATELIMIT_API_KEY", 200, 1000)):
        per_second = [item for item in parse_many(getattr(settings, name))
                      if item.GRANULARITY.name == "second"]
        assert per_second and low <= per_second[0].amount <= high, name


def test_anonymous_decisions_per_address(limited, mode, mode_site):
    client = client_for(limited, mode)
    url = f"/api/v1/sites/{mode_site['key']}/decisions"
    codes = [client.post(url, json={"action": "reject_all"}).status_code for _ in range(20)]
    assert codes == [201] * 20
    _assert_429(client.post(url, json={"action": "reject_all"}))
    _assert_429(client.get(f"/api/v1/sites/{mode_site['key']}/config"))
    r = client.post(url, json={"action": "reject_all"}, environ_base=OTHER)
    assert r.status_code == 201  # another address has its own count


def test_wrong_api_keys_are_throttled_per_address(limited, mode, mode_site):
    client = client_for(limited, mode)
    url = f"/api/v1/sites/{mode_site['key']}/subjects/v_nobody"
    for i in range(5):
        r = client.get(url, headers={"Authorization": f"Bearer ck_guess_{i}"})
        assert r.status_code == 401
    _assert_429(client.get(url, headers={"Authorization": "Bearer ck_guess_x"}))
    r = client.get(url, headers={"Authorization": f"Bearer {mode_site['api_key']}"},
                   environ_base=OTHER)
    assert r.status_code in (200, 404)  # the real key elsewhere is not affected


def test_each_api_key_has_its_own_budget(limited, mode, mode_site):
    client = client_for(limited, mode)
    headers = {"Authorization": f"Bearer {mode_site['api_key']}"}
    url = f"/api/v1/sites/{mode_site['key']}/subjects/v_nobody"
    for _ in range(10):
        assert client.get(url, headers=headers).status_code == 404
    _assert_429(client.get(url, headers=headers, environ_base=OTHER))  # per key, any address


def _sign_in(client, email, password, environ=None):
    token = session_csrf(client, "/admin/sign-in")
    return client.post("/admin/sign-in", data={"email": email, "password": password,
                                               "csrf_token": token},
                       environ_base=environ or {})


def test_sign_in_throttle_reveals_no_account_and_locks_nobody_out(limited, mode):
    email = make_admin("dpo@example.com")
    attacker = client_for(limited, mode)
    answers = {}
    for who, addr in ((email, "203.0.113.1"), ("nobody@example.com", "203.0.113.2")):
        env = {"REMOTE_ADDR": addr}
        seq = [_sign_in(attacker, who, "wrong password", env).status_code for _ in range(3)]
        last = _sign_in(attacker, who, PASSWORD if who == email else "x", env)
        seq.append(last.status_code)
        page = re.sub(r"\d+ seconds", "N seconds", last.get_data(as_text=True))
        answers[who] = (seq, page.replace(who, "EMAIL"))
        _assert_429(last)
    assert answers[email][0] == answers["nobody@example.com"][0] == [401, 401, 401, 429]
    assert answers[email][1] == answers["nobody@example.com"][1]
    # The admin, from their own address, signs in at once: no lock-out.
    admin = client_for(limited, mode)
    assert _sign_in(admin, email, PASSWORD, OTHER).status_code == 302


def test_sign_in_throttle_per_address_across_accounts(limited, mode):
    client = client_for(limited, mode)
    for i in range(5):
        assert _sign_in(client, f"guess{i}@example.com", "wrong").status_code == 401
    _assert_429(_sign_in(client, "guess9@example.com", "wrong"))


def test_admin_pages_per_account(limited, mode):
    first, second = client_for(limited, mode), client_for(limited, mode)
    assert _sign_in(first, make_admin("a@example.com"), PASSWORD).status_code == 302
    assert _sign_in(second, make_admin("b@example.com"), PASSWORD).status_code == 302
    for _ in range(15):
        assert first.get("/admin/users").status_code == 200
    _assert_429(first.get("/admin/users"))
    assert second.get("/admin/users").status_code == 200


# A made-up `Authorization: Bearer` header is not a credential where none is taken: it
# must not move a request out of its own bucket (an outside review found it switched off
# the sign-in and the per-address limits).
MADE_UP = {"Authorization": "Bearer made-up-token"}


def test_a_made_up_bearer_header_does_not_lift_the_sign_in_limits(limited, mode):
    email = make_admin("dpo2@example.com")
    client = client_for(limited, mode)

    def sign_in(password):
        token = session_csrf(client, "/admin/sign-in")
        return client.post("/admin/sign-in", headers=MADE_UP, data={
            "email": email, "password": password, "csrf_token": token})

    assert [sign_in("wrong").status_code for _ in range(3)] == [401, 401, 401]
    _assert_429(sign_in(PASSWORD))  # the account's limit from this address holds


def test_a_made_up_bearer_header_does_not_lift_the_per_address_limit(limited, mode,
                                                                     mode_site):
    client = client_for(limited, mode)
    url = f"/api/v1/sites/{mode_site['key']}/decisions"
    codes = [client.post(url, json={"action": "reject_all"}, headers=MADE_UP).status_code
             for _ in range(20)]
    assert codes == [201] * 20
    _assert_429(client.post(url, json={"action": "reject_all"}, headers=MADE_UP))
    _assert_429(client.get(f"/api/v1/sites/{mode_site['key']}/config", headers=MADE_UP))
