"""Scans are safe: only the site's own pages, no internal addresses for anything else, a
clear error for a page that cannot be loaded or a Chromium that is missing, and input
errors shown next to the field with the input kept."""
from __future__ import annotations

import socket
import urllib.request

import pytest

from consent.database import run_write
from consent.scanner.guard import AddressPolicy, GuardProxy, own_endpoints
from consent.scanner.service import allows_loopback, run_claimed, start_scan_here
from consent.sites import create_site
from tests.support.admin import admin_client, post_form
from tests.support.pg import free_port


def _resolver(table):
    def resolve(host, port, type=None):
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port)) for a in table[host]]
    return resolve


def test_address_policy_allows_internal_addresses_only_for_the_sites_own_origins():
    table = {"shop.example": ["10.0.0.5"], "cdn.example": ["93.184.215.14"],
             "evil.example": ["93.184.215.15", "169.254.169.254"],
             "mapped.example": ["::ffff:10.1.2.3"], "lo.example": ["127.0.0.1"]}
    policy = AddressPolicy(own=own_endpoints(["https://shop.example"]),
                           resolver=_resolver(table))
    assert policy.addresses("shop.example", 443) == [("10.0.0.5", 443)]  # an intranet site
    assert policy.addresses("cdn.example", 443) == [("93.184.215.14", 443)]
    with pytest.raises(PermissionError, match="internal address"):
        policy.addresses("shop.example", 8080)  # the site's host, another port: not its origin
    with pytest.raises(PermissionError, match="internal address"):
        policy.addresses("evil.example", 443)  # one internal answer is enough to refuse
    with pytest.raises(PermissionError, match="internal address"):
        policy.addresses("mapped.example", 443)
    with pytest.raises(PermissionError, match="loopback"):
        policy.addresses("lo.example", 443)
    loopback_ok = AddressPolicy(allow_loopback=True, resolver=_resolver(table))
    assert loopback_ok.addresses("lo.example", 80) == [("127.0.0.1", 80)]
    with pytest.raises(PermissionError, match="internal address"):
        loopback_ok.addresses("evil.example", 443)


def test_guard_proxy_refuses_loopback_outside_development(scan_env):
    """The real proxy, as the scanner's Chromium uses it, in production mode."""
    policy = AddressPolicy(own=own_endpoints(["https://shop.example"]), allow_loopback=False)
    with GuardProxy(policy) as proxy:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy.url}))
        with pytest.raises(urllib.error.HTTPError) as err:
            opener.open(scan_env.site.page("index.html"), timeout=10)
        assert err.value.code == 403
        assert "loopback" in err.value.read().decode()
        assert [(r.host, r.reason.split(" (")[0]) for r in proxy.refusals] == [
            ("127.0.0.1", "127.0.0.1 resolves to a loopback address")]
        assert scan_env.site.site.counts["/index.html"] == 0  # never reached
    with GuardProxy(AddressPolicy(allow_loopback=True)) as proxy:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy.url}))
        assert b"Home" in opener.open(scan_env.site.page("index.html"), timeout=10).read()


def test_loopback_is_scanned_only_in_development_and_testing(app):
    assert allows_loopback()
    app.config["ENV_NAME"] = "production"
    assert not allows_loopback()


def test_urls_off_the_sites_origins_are_refused(app, runner):
    run_write(lambda: create_site("shop", "Shop", allowed_origins=["https://shop.example"]))
    for url, message in (("https://other.example/", "scans visit only the site's own pages"),
                         ("http://shop.example/", "scans visit only the site's own pages"),
                         ("https://user:pw@shop.example/", "carries credentials"),
                         ("file:///etc/passwd", "is not an http(s) URL"),
                         ("javascript:alert(1)", "is not an http(s) URL")):
        result = runner.invoke(args=["consent", "scan", "shop", url])
        assert result.exit_code != 0 and message in result.output, (url, result.output)
    run_write(lambda: create_site("any", "Any", allowed_origins=["*"]))
    result = runner.invoke(args=["consent", "scan", "any"])
    assert result.exit_code != 0 and "list its own origins" in result.output
    result = runner.invoke(args=["consent", "scan", "shop", "--pages", "100000"])
    assert result.exit_code != 0 and "scan between 1 and 50 pages" in result.output


def test_the_scan_form_shows_errors_next_to_the_field_and_keeps_the_input(app):
    run_write(lambda: create_site("shop", "Shop", allowed_origins=["https://shop.example"]))
    admin = admin_client(app)
    typed = "https://shop.example/basket\nhttps://elsewhere.example/x"
    r = post_form(admin, "/admin/sites/shop/scans", {"urls": typed, "pages": "3"})
    assert r.status_code == 422
    page = r.get_data(as_text=True)
    assert 'aria-invalid="true" aria-describedby="err-urls"' in page
    assert "scans visit only the site&#39;s own pages" in page
    assert ">https://shop.example/basket\nhttps://elsewhere.example/x</textarea>" in page
    assert 'value="3"' in page and 'class="admin-nav"' in page  # the normal layout
    r = post_form(admin, "/admin/sites/shop/scans", {"urls": "", "pages": "zero"})
    assert r.status_code == 422 and 'id="err-pages"' in r.get_data(as_text=True)
    assert admin.get("/admin/sites/shop/scans").get_data(as_text=True).count("Scan #") == 0


def test_an_unreachable_site_fails_with_a_clear_error(app):
    origin = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    run_write(lambda: create_site("shop", "Shop", allowed_origins=[origin]))
    scan_id, token = start_scan_here("shop", [], pages=1, same_origin=False, actor="t",
                                     worker="w")
    scan = run_claimed(scan_id, token)
    assert scan.status == "failed"
    assert scan.error == f"could not load {origin}/: connection refused"
    assert scan.findings == []


def test_a_missing_chromium_is_a_clear_error(app, tmp_path, monkeypatch):
    run_write(lambda: create_site("shop", "Shop", allowed_origins=["https://shop.example"]))
    app.config["CONSENT_SCAN_CHROMIUM"] = str(tmp_path / "chromium")
    scan = run_claimed(*start_scan_here("shop", [], pages=1, same_origin=False, actor="t",
                                        worker="w"))
    assert scan.status == "failed" and "is not an executable file" in scan.error
    # none configured and none on PATH (Playwright's own download is absent here too)
    app.config["CONSENT_SCAN_CHROMIUM"] = None
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path / "none"))
    scan = run_claimed(*start_scan_here("shop", [], pages=1, same_origin=False, actor="t",
                                        worker="w"))
    assert scan.status == "failed"
    assert scan.error.startswith("Chromium was not found: install it (Debian/Ubuntu: "
                                 "`apt-get install chromium`")


def test_scans_are_per_site_and_need_their_scopes(app):
    from tests.support.admin import session_csrf
    from tests.support.scans import seed_finished_scan

    for key in ("shop", "blog"):
        run_write(lambda key=key: create_site(key, key.title(),
                                              allowed_origins=[f"https://{key}.example"]))
    scan_id = seed_finished_scan("shop")
    admin = admin_client(app)
    assert admin.get(f"/admin/sites/shop/scans/{scan_id}.json").status_code == 200
    for path in (f"/admin/sites/blog/scans/{scan_id}", f"/admin/sites/blog/scans/{scan_id}.json",
                 f"/admin/sites/blog/scans/{scan_id}.csv"):
        assert admin.get(path).status_code == 404, path
    token = session_csrf(admin, "/admin/sites/blog/scans")
    r = admin.post(f"/admin/sites/blog/scans/{scan_id}/apply",
                   data={"csrf_token": token, "finding-1": "analytics"})
    assert r.status_code == 404
    reader = admin_client(app, ("audit:read",), "reader@example.com")
    assert reader.get(f"/admin/sites/shop/scans/{scan_id}").status_code == 200
    assert "Apply" not in reader.get(f"/admin/sites/shop/scans/{scan_id}").get_data(as_text=True)
    token = session_csrf(reader, "/admin/sites/shop/scans")
    for path, data in (("/admin/sites/shop/scans", {}),
                       (f"/admin/sites/shop/scans/{scan_id}/apply", {"finding-1": "analytics"}),
                       ("/admin/sites/shop/scan-schedule", {"every": "1d"})):
        assert reader.post(path, data={"csrf_token": token, **data}).status_code == 403, path
    # a finding id of another scan or a category the site lacks changes nothing
    r = post_form(admin, f"/admin/sites/shop/scans/{scan_id}/apply",
                  {"finding-999": "analytics"}, page=f"/admin/sites/shop/scans/{scan_id}")
    assert r.status_code == 422 and "has no finding 999" in r.get_data(as_text=True)
    r = post_form(admin, f"/admin/sites/shop/scans/{scan_id}/apply",
                  {"finding-1": "nosuch"}, page=f"/admin/sites/shop/scans/{scan_id}")
    assert r.status_code == 422 and "has no category" in r.get_data(as_text=True)
    from consent.sites import get_site
    assert all(not c.services for c in get_site("shop").categories)
