"""Finding 13: tokens of access, login, unsubscribe and guardian links (and signed k/r parameters)
never reach the access log. Runs the app under gunicorn with gunicorn.conf.py, as `make
run` does, with an access log file, and greps it. Also: gunicorn's own limits sit above
the app's, so an oversized request line or header is answered as problem+json."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from consent.channels import mint_unsubscribe_token
from consent.database import run_write
from consent.guardians import guardian_token
from consent.identity import mint_login_token
from consent.logredact import MARK
from tests.security.sec_fixtures import build_app
from tests.support.pg import free_port, wait_for_port
from tests.support.waits import poll

ROOT = Path(__file__).resolve().parents[2]


def _get(url, headers: dict | None = None) -> tuple[int, str, str]:
    """Send URL (a string: a GET; or a prepared Request) and read the answer."""
    req = url if isinstance(url, urllib.request.Request) else \
        urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, r.headers.get_content_type(), r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get_content_type(), exc.read().decode()


@pytest.fixture
def served(database_url, tmp_path):
    """The app under gunicorn (development mode) with an access log; a site with links."""
    from consent.sites import create_api_key, create_site

    app = build_app("development", database_url)
    with app.app_context():
        run_write(lambda: create_api_key(create_site("shop", "Shop",
                                                     allowed_origins=["https://shop.example"])))
        with app.test_request_context("/"):
            unsubscribe = mint_unsubscribe_token("shop", "email.promotional", "a@example.com")
            login = mint_login_token("shop", "user-1")
            guardian = guardian_token("shop", 1, "0" * 32)
    log = tmp_path / "access.log"
    port = free_port()
    env = dict(os.environ, CONSENT_DATABASE_URL=database_url, CONSENT_ENV="development",
               CONSENT_SITE_CACHE_SECONDS="0", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{port}",
         "-w", "1", "--access-logfile", str(log), "--log-level", "info", "app:app"],
        cwd=ROOT, env=env, start_new_session=True)
    try:
        wait_for_port(port, 30)
        yield {"url": f"http://127.0.0.1:{port}", "log": log, "unsubscribe": unsubscribe.token,
               "login": login.token, "guardian": guardian}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def test_tokens_are_redacted_from_the_access_log(served):
    base = served["url"]
    secrets = {"unsubscribe": served["unsubscribe"], "login": served["login"],
               "guardian": served["guardian"],
               "access": "eyJyIjoxLCJzIjoxfQ.aaaa.bbbbbbbbbbbbbbbbbbbbbbbbbbb",
               "k": "kSECRETkkkkkkkkkkkkk", "r": "rSECRETrrrrrrrrrrrrr"}
    _get(f"{base}/unsubscribe/shop/{secrets['unsubscribe']}")
    _get(f"{base}/preferences/login?site=shop&token={secrets['login']}")
    # the sign-in page's button posts to the same URL (refused here: no CSRF token)
    assert _get(urllib.request.Request(f"{base}/preferences/login?site=shop&token="
                                       f"{secrets['login']}", data=b"x=1"))[0] == 403
    _get(f"{base}/my-data/{secrets['access']}")
    _get(f"{base}/guardian/shop/{secrets['guardian']}")
    _get(f"{base}/my-data/{secrets['access']}/history.json")
    # an SMS gateway's GET callback (Vonage's default): the sender's number and the text
    # are personal data (an outside review found them in the log)
    secrets["msisdn"] = "491511234567"
    _get(f"{base}/api/v1/sites/shop/sms/vonage/inboundTOKEN0123456789?msisdn="
         f"{secrets['msisdn']}&text=STOPPLEASE&messageId=m1&type=text")
    _get(f"{base}/api/v1/sites/shop/sms/vonage?msisdn={secrets['msisdn']}&text=STOPPLEASE")
    _get(f"{base}/preferences?site=shop&k={secrets['k']}&r={secrets['r']}",
         headers={"Referer": f"https://shop.example/x?token={secrets['login']}"})
    status, _, _ = _get(f"{base}/preferences?site=shop")
    assert status == 200
    # gunicorn writes a request's access-log line after sending its answer: wait for the
    # last request's line
    text = poll(lambda: served["log"].read_text(), lambda t: "/preferences?site=shop " in t,
                timeout=20, message="the last request never reached the access log")
    for name, secret in secrets.items():
        assert secret not in text, name
    assert "STOPPLEASE" not in text
    assert text.count(MARK) >= 7
    assert "/preferences?site=shop " in text  # the rest of the line is still there


def test_oversized_request_line_and_header_are_problem_json_under_gunicorn(served):
    base = served["url"]
    status, ctype, body = _get(f"{base}/api/v1/sites/shop/config?x=" + "a" * 5000)
    assert status == 414 and ctype == "application/problem+json"
    assert json.loads(body)["status"] == 414
    status, ctype, body = _get(f"{base}/api/v1/sites/shop/config", headers={"X-Big": "b" * 9000})
    assert status == 431 and ctype == "application/problem+json"
