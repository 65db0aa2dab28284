"""Every form of the admin carries the session's CSRF token, read from the rendered pages.

The walk visits every admin page the URL map has (with a record of each kind in the
database, so that lists show their row forms), so a template that loses its
`csrf_field()` fails here even when no other test submits that form.
"""
from __future__ import annotations

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import AnyConverter, IntegerConverter

from consent.admin_auth import ADMIN_PATH_PREFIXES, view_auth
from consent.outbox import DeliveryWorker, register_endpoint
from consent.requests import open_request
from tests.support.admin import forms, make_token, record_choice
from tests.support.scans import seed_finished_scan


def seed_one_of_each(app, site) -> None:
    """A request, a token, a webhook endpoint with a dead letter: every list has a row."""
    visitor = record_choice(site["key"], "accept_all")
    open_request(site["key"], "access", subject=visitor)   # request 1
    open_request(site["key"], "erasure", subject=visitor)  # request 2: its page can erase
    make_token(["audit:read"])
    app.config.update(CONSENT_WEBHOOK_MAX_ATTEMPTS=1)
    register_endpoint(site["key"], url="http://127.0.0.1:9/closed", categories=["*"])
    record_choice(site["key"], "reject_all")
    DeliveryWorker(concurrency=1, poll_seconds=0.05).run()
    seed_finished_scan(site["key"])


def sample_url(rule, site_key: str) -> str:
    values = {}
    for name, conv in rule._converters.items():
        if isinstance(conv, IntegerConverter):
            values[name] = 1
        elif isinstance(conv, AnyConverter):
            values[name] = sorted(conv.items)[0]
        else:
            values[name] = {"site_key": site_key, "fmt": "csv"}.get(name, "analytics")
    return rule.build(values, append_unknown=False)[1]


def test_every_admin_form_carries_the_sessions_csrf_token(app, site, admin, clock):
    clock.advance(days=-2)  # an old event, so the purge's confirmation page has its form
    record_choice(site["key"], "accept_all")
    clock.advance(days=2)
    seed_one_of_each(app, site)
    pages = [sample_url(rule, site["key"]) for rule in app.url_map.iter_rules()
             if rule.rule.startswith(ADMIN_PATH_PREFIXES) and "GET" in rule.methods
             and not rule.rule.startswith("/api/")]
    pages.append(f"/admin/sites/{site['key']}/requests/2")
    pages.append(f"/admin/sites/{site['key']}/settings/categories")
    pages.append(f"/admin/sites/{site['key']}/settings/consent-mode")
    pages.append(f"/admin/sites/{site['key']}/purge/confirm?before="
                 f"{clock.now().date().isoformat()}")
    pages.append(f"/admin/sites/{site['key']}/settings/regions")
    pages.append(f"/admin/sites/{site['key']}/settings/texts")
    pages.append(f"/admin/sites/{site['key']}/settings/sms")
    from consent.sms_gateways import register_gateway

    register_gateway(site["key"], "twilio")  # (its removal has a confirmation page)
    pages.append(f"/admin/sites/{site['key']}/sms-gateways/twilio/remove")
    adapter = app.url_map.bind("localhost")
    tokens, posted_to = set(), {}
    for url in pages:
        r = admin.get(url)
        if r.status_code != 200 or r.mimetype != "text/html":
            continue
        for form in forms(r.get_data(as_text=True), url):
            if form["method"] != "post":
                continue
            token = form["hidden"].get("csrf_token")
            assert token, f"{url}: the form posting to {form['action']} has no csrf_token"
            tokens.add(token)
            try:
                endpoint, _ = adapter.match(form["action"].split("?")[0], method="POST")
            except (NotFound, MethodNotAllowed):
                raise AssertionError(f"{url}: a form posts to {form['action']}, no such route")
            posted_to.setdefault(endpoint, url)
    assert len(tokens) == 1, "one token per session, on every page"
    # every admin action done through a form was seen with its form
    actions = {rule.endpoint for rule in app.url_map.iter_rules()
               if rule.rule.startswith(ADMIN_PATH_PREFIXES) and "POST" in rule.methods
               and view_auth(app.view_functions[rule.endpoint])[0] in ("session", "public")}
    assert actions - set(posted_to) == set()
    # and the token is the one the server checks: it ends this session, a wrong one does not
    assert admin.post("/admin/sign-out", data={"csrf_token": "forged"}).status_code == 403
    r = admin.post("/admin/sign-out", data={"csrf_token": tokens.pop()})
    assert r.status_code == 302
