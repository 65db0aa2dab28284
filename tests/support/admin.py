"""Admins, their sign-in and their forms, as a browser uses them.

A form is posted the way a browser posts it: the test fetches the page that shows the
form, reads the form's hidden `csrf_token` from the rendered HTML and sends it back. A
template that lost its `csrf_field()` therefore fails the test that uses its form.
"""
from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

from consent import admin_auth
from consent.database import run_write
from consent.decisions import RequestContext, record_decision
from consent.subjects import new_device_key

PASSWORD = "correct horse battery staple"

_FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.S | re.I)
_ATTR = re.compile(r'([\w-]+)\s*=\s*"([^"]*)"')
_INPUT = re.compile(r"<input\b([^>]*)>", re.I)


def forms(page_html: str, page_url: str) -> list[dict]:
    """Every form of PAGE_HTML: method, action (a path, resolved like a browser) and its
    hidden inputs."""
    found = []
    for attrs, body in _FORM.findall(page_html):
        a = {k.lower(): html.unescape(v) for k, v in _ATTR.findall(attrs)}
        action = a.get("action") or urlsplit(page_url).path
        hidden = {}
        for inp in _INPUT.findall(body):
            i = {k.lower(): html.unescape(v) for k, v in _ATTR.findall(inp)}
            if i.get("type", "").lower() == "hidden" and "name" in i:
                hidden[i["name"]] = i.get("value", "")
        found.append({"method": a.get("method", "get").lower(), "action": action,
                      "hidden": hidden})
    return found


def csrf_from_page(client, url: str, page: str | None = None) -> str:
    """The csrf_token of the form that posts to URL, read from the page that shows it:
    PAGE, or else URL itself or the nearest of its parent paths that has such a form."""
    target = urlsplit(url)
    if page:
        candidates = [page]
    else:
        parts = target.path.rstrip("/").split("/")
        candidates = [url] + ["/".join(parts[:n]) for n in range(len(parts) - 1, 2, -1)]
    seen = []
    for candidate in candidates:
        r = client.get(candidate, follow_redirects=True)
        if r.status_code != 200:
            seen.append(f"{candidate}: {r.status_code}")
            continue
        found = forms(r.get_data(as_text=True), candidate)
        for form in found:
            action = urlsplit(form["action"])
            if form["method"] == "post" and action.path == target.path and (
                    not action.query or action.query == target.query):
                assert form["hidden"].get("csrf_token"), \
                    f"the form posting to {url} on {candidate} has no csrf_token field"
                return form["hidden"]["csrf_token"]
        seen.append(f"{candidate}: {[(f['method'], f['action']) for f in found]}")
    raise AssertionError(f"no page shows a form posting to {url}: {seen}")


def session_csrf(client, page: str) -> str:
    """The CSRF token PAGE rendered into its first POST form (every admin page has the
    sign-out form): to forge a post the signed-in user may send but has no form for."""
    r = client.get(page, follow_redirects=True)
    for form in forms(r.get_data(as_text=True), page):
        if form["method"] == "post" and form["hidden"].get("csrf_token"):
            return form["hidden"]["csrf_token"]
    raise AssertionError(f"no POST form with a csrf_token on {page}")


def field_error(page: str, field: str) -> str | None:
    """The error the admin page shows next to FIELD (unescaped), or None."""
    found = re.search(rf'<p class="field-error" id="err-{re.escape(field)}">([^<]*)</p>', page)
    return html.unescape(found.group(1)) if found else None


def post_form(client, url: str, data: dict | None = None, *, page: str | None = None, **kw):
    """Submit the form that posts to URL (on PAGE, or URL or a parent path: see
    csrf_from_page) with DATA and the CSRF token that page rendered."""
    token = csrf_from_page(client, url, page)
    return client.post(url, data={**(data or {}), "csrf_token": token}, **kw)


def make_admin(email: str = "dpo@example.com", scopes=("admin",)) -> str:
    """Create an admin user; returns its e-mail."""
    run_write(lambda: admin_auth.create_admin(email, PASSWORD, scopes=list(scopes)))
    return email


def sign_in(client, email: str, password: str = PASSWORD, **extra):
    """Sign in through the real form (its CSRF token read from the sign-in page)."""
    return post_form(client, "/admin/sign-in", {"email": email, "password": password, **extra})


def admin_client(app, scopes=("admin",), email: str | None = None):
    """A test client signed in as an admin with SCOPES."""
    client = app.test_client()
    email = make_admin(email or f"{'-'.join(s.replace(':', '_') for s in scopes)}@example.com",
                       scopes)
    assert sign_in(client, email).status_code == 302
    return client


def make_token(scopes, site_key: str | None = None) -> str:
    """An admin API token with SCOPES (optionally limited to one site)."""
    from consent.sites import get_site

    def write():
        site_id = get_site(site_key).id if site_key else None
        return admin_auth.create_token("test", list(scopes), site_id=site_id)
    return run_write(write)


def record_choice(site_key: str, action: str = "accept_all", subject: str | None = None,
                  categories: dict | None = None, gpc: bool = False,
                  page_url: str = "https://shop.example/page", ip: str = "203.0.113.77",
                  user_agent: str = "Mozilla/5.0 (TestBrowser)") -> str:
    """Record a decision through the service, as the widget's request would; returns the
    visitor id."""
    data = {"action": action, "page_url": page_url}
    if subject:
        # a visitor id the test names is minted with its key, as the widget does
        data.update(subject=subject, key=KEYS.setdefault(subject, new_device_key()))
    if categories is not None:
        data["categories"] = categories
    result = record_decision(site_key, data, RequestContext(ip=ip, user_agent=user_agent,
                                                            gpc_header=gpc))
    KEYS.setdefault(result.subject_public_id, result.minted_key)
    return result.subject_public_id


KEYS: dict[str, str] = {}  # visitor id -> the device key the server minted for it


def sign_in_page(page, base: str, email: str, password: str = PASSWORD) -> None:
    """Sign in on the admin's sign-in page in a real browser PAGE (app at BASE)."""
    page.goto(f"{base}/admin/sign-in")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()
