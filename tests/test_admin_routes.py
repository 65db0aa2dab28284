"""Every admin and audit route refuses unauthenticated and under-scoped callers.

The test walks app.url_map, so a route added later is checked without editing this file.
"""
from __future__ import annotations

from werkzeug.routing import AnyConverter, IntegerConverter

from consent import admin_auth
from consent.admin_auth import ADMIN_PATH_PREFIXES, SCOPES, view_auth
from tests.support.admin import admin_client, make_token, session_csrf
from tests.support.api import bearer

PUBLIC = {"admin.sign_in", "admin.sign_in_post"}


def admin_rules(app):
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(ADMIN_PATH_PREFIXES) and rule.endpoint != "static":
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                yield rule, method


def sample_url(rule, site_key: str) -> str:
    values = {}
    for name, conv in rule._converters.items():
        if isinstance(conv, IntegerConverter):
            values[name] = 1
        elif isinstance(conv, AnyConverter):
            values[name] = sorted(conv.items)[0]
        elif name == "site_key":
            values[name] = site_key
        elif name == "fmt":
            values[name] = "csv"
        else:
            values[name] = "analytics"
    return rule.build(values, append_unknown=False)[1]


def call(client, method: str, url: str, headers=None):
    kwargs = {"headers": headers or {}}
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        # the session's own token, read from a page it rendered (the public sign-in form):
        # the request gets past the CSRF check, so what refuses it is the authorisation
        if not hasattr(client, "csrf"):
            client.csrf = session_csrf(client, "/admin/sign-in")
        kwargs["data"] = {"csrf_token": client.csrf}
    return client.open(url, method=method, **kwargs)


def required(app, rule):
    return view_auth(app.view_functions[rule.endpoint])


def test_every_admin_route_is_marked(app, site):
    rules = list(admin_rules(app))
    assert len(rules) > 30  # the walk really sees the admin and the audit API
    unmarked = [f"{m} {r.rule}" for r, m in rules
                if required(app, r)[0] is None and r.endpoint not in PUBLIC]
    assert unmarked == []
    public = {r.endpoint for r, _ in rules if required(app, r)[0] == "public"}
    assert public == PUBLIC


def test_unauthenticated_callers_are_refused_everywhere(app, site):
    client = app.test_client()
    checked = 0
    for rule, method in admin_rules(app):
        if rule.endpoint in PUBLIC:
            continue
        url = sample_url(rule, site["key"])
        r = call(client, method, url)
        kind, _scope = required(app, rule)
        if kind == "session" and method == "GET":
            assert r.status_code == 302 and "/admin/sign-in" in r.headers["Location"], url
        else:
            assert r.status_code == 401, (method, url, r.status_code)
        # A site API key is not an admin credential either.
        r = call(client, method, url, bearer(site))
        assert r.status_code in (302, 401), (method, url, r.status_code)
        checked += 1
    assert checked > 30


def test_under_scoped_sessions_and_tokens_are_refused(app, site):
    clients, tokens = {}, {}
    checked = 0
    for rule, method in admin_rules(app):
        kind, scope = required(app, rule)
        if kind == "public" or scope is None:
            continue
        others = tuple(s for s in SCOPES if s not in (scope, "admin"))
        url = sample_url(rule, site["key"])
        if kind == "session":
            if scope not in clients:
                clients[scope] = admin_client(app, others, f"no-{scope.replace(':', '_')}@x.io")
            r = call(clients[scope], method, url)
        else:
            if scope not in tokens:
                tokens[scope] = make_token(others)
            r = call(app.test_client(), method, url, bearer(tokens[scope]))
        assert r.status_code == 403, (method, url, r.status_code, scope)
        checked += 1
    assert checked > 30


def test_json_api_ignores_admin_session_cookies(app, site, admin):
    """The token API has no ambient credential (so no CSRF exposure)."""
    r = admin.get(f"/api/v1/audit/sites/{site['key']}/requests")
    assert r.status_code == 401
    assert r.mimetype == "application/problem+json"


def test_token_limited_to_one_site_is_refused_on_another(app, site, other_site):
    token = make_token(["audit:read"], site_key=site["key"])
    client = app.test_client()
    assert client.get(f"/api/v1/audit/sites/{site['key']}/policies",
                      headers=bearer(token)).status_code == 200
    assert client.get(f"/api/v1/audit/sites/{other_site['key']}/policies",
                      headers=bearer(token)).status_code == 403


def test_new_unprotected_admin_route_is_refused_by_the_guard(app, site):
    """A route added under /admin without a decorator is refused even for a full admin."""
    @app.get("/admin/forgotten-report")
    def forgotten_report():
        return "secret figures"

    @app.get("/api/v1/admin/forgotten")
    def forgotten_api():
        return {"secret": True}

    client = admin_client(app, ("admin",), "guard@example.com")
    r = client.get("/admin/forgotten-report")
    assert r.status_code == 403 and b"secret figures" not in r.data
    r = client.get("/api/v1/admin/forgotten", headers=bearer(make_token(["admin"])))
    assert r.status_code == 403


def test_decorator_refuses_unknown_scope(app):
    import pytest

    from consent.errors import Unauthorized

    with pytest.raises(ValueError, match="webhooks:write"):
        admin_auth.admin_required("webhooks:write")
    admin_auth.register_scope("webhooks:write", "Manage webhooks")
    try:
        guarded = admin_auth.admin_required("webhooks:write")(lambda: "ok")
        # once registered, the scope guards a view: marked with it, refused without a session
        assert view_auth(guarded) == ("session", "webhooks:write")
        with app.test_request_context("/admin/hooks", method="POST"):
            with pytest.raises(Unauthorized):
                guarded()
    finally:
        admin_auth.SCOPES.pop("webhooks:write")
