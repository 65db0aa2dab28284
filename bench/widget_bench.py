"""Widget budgets measured in real Chromium: bytes before the banner, banner time, returning visits.

    .venv/bin/python bench/widget_bench.py [--runs 30] [--embed site|data-site|no-referer|all]
    .venv/bin/python bench/widget_bench.py --sizes   # bytes per seed profile and a 60-service site

The embeds are measured in the same run, interleaved: `/consent.js?site=KEY` (the site's
config inlined, one request); `/consent.js` with `data-site="KEY"` (the server finds the
site from the Referer and inlines its config too); and the same from a page that sends no
Referer (the shared script, then a config request after it ran: the slow path).

Starts the consent app under gunicorn on a fresh SQLite database (a site with the demo
categories and services) and a static "customer site" on another loopback port, then:

1. bytes: every response from the consent server before the banner is visible on a first
   visit, each gzip -9 compressed, summed (budget 6,000 B), next to brotli (quality 11)
   and what crossed the wire (the app compresses itself: Content-Encoding as served);
2. banner time: on N first visits per embed (interleaved; fresh browser context, cold
   cache), the time from DOMContentLoaded to the banner being inserted, to the start of
   the next frame (requestAnimationFrame: the widget's work, including the layout it forces
   by moving focus, is done; budget 20 ms, median) and to the banner being on screen
   (Element Timing), next to a paragraph the page itself adds at DOMContentLoaded: a
   headless Chromium presents that frame tens of ms later whatever the page does, so the
   on-screen figure is compared with the control rather than with the budget; and the
   same times for a baseline page without the widget, where a small script inserts a
   banner-like element at DOMContentLoaded and focuses it (the page's own first layout
   and frame, which no widget that shows a banner then can avoid), as a ratio;
3. returning visitor: after "Accept all", requests that reach the consent server on the
   next two page views of the same tab (same browser session), counted in gunicorn's
   access log (budget 0); then in the next browser sessions (a new tab: sessionStorage
   is per tab; same cookies, storage and HTTP cache), requests before and after the
   page's load (Resource Timing, access log), without a change (the first check is
   answered 200, later ones 304) and after a withdrawal over the site API (budget: none
   before the load, one after);
4. the way back from the preference center: after a withdrawal of analytics there, the
   time from the click on "Back to <site>" until the widget has the server's answer and
   until the first tag it still allows runs (the withdrawn tag must never run);
5. the dialog on a first visit: the time from the click on "Customise" until the dialog
   is open (its part and the site's details are fetched then; budget 100 ms, median).

`--sizes` measures only the bytes before the banner, for `?site=KEY` and `data-site`, for
every seed profile (consent/profiles) and for a site with 60 services; and, for the sites
with opt-out rules for California (docs/regions.md: the seed profiles with US rules, the
60-service site), the bytes a California visitor (`CF-IPCountry: US`, `CF-Region-Code:
CA`, as a CDN sets them) downloads before the notice at collection and the "Your Privacy
Choices" link are visible: every other request to the consent server is held back until
they are, so only what they need is counted.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_shares, machine_cpu  # noqa: E402
from tests.support.servers import AppServer, StaticSite  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
BUDGET_BYTES, BUDGET_MS, BUDGET_DIALOG_MS = 6000, 20.0, 100.0
EMBEDS = {"site": '<script src="{app}/consent.js?site=shop"></script>',
          "data-site": '<script src="{app}/consent.js" data-site="shop"></script>',
          # a page that sends no Referer: the shared script, then a config request
          "no-referer": '<script src="{app}/consent.js" data-site="shop"'
                        ' referrerpolicy="no-referrer"></script>'}
# The baseline: the same page without the widget, where a script in its place inserts a
# banner-like element at DOMContentLoaded and moves focus into it, as the widget does
# (forcing the page's first layout): what any widget that shows its banner then costs on
# this machine and browser, measured in the same run. Its style is adopted as a
# constructed stylesheet, as the widget's is: a <style> element inserted at
# DOMContentLoaded would hold the page's load event back by a task, after the banner's
# first frame, which the widget's page does not get (docs/widget.md).
BASELINE_EMBED = '<script src="baseline.js"></script>'
BASELINE_JS = """new Promise(r => document.readyState == 'loading'
    ? document.addEventListener('DOMContentLoaded', r) : r()).then(() => {
  const style = new CSSStyleSheet();
  style.replaceSync('.cw-banner{position:fixed;bottom:0;left:0;right:0;padding:1em;'
    + 'background:#fff;color:#111;font:16px/1.4 system-ui,sans-serif}');
  const banner = document.createElement('div');
  banner.className = 'cw-banner';
  banner.setAttribute('role', 'dialog');
  banner.innerHTML = '<p id="cw-bd">We use cookies for analytics and advertising.</p>'
    + '<button type="button">Accept all</button> <button type="button">Reject all</button>';
  document.adoptedStyleSheets = [...document.adoptedStyleSheets, style];
  document.body.append(banner);
  banner.querySelector('button').focus();
});
"""
OTHERS = {"vanilla-cookieconsent 3.1.0": 15513, "Osano cookieconsent 3.1.1 (no categories)": 8113}

PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><title>Shop</title>
{embed}
<script src="probe.js"></script>
</head><body><h1>Shop</h1><p>Some products.</p>{filler}
<script type="text/plain" data-category="analytics" data-src="tag.js"></script>
<script type="text/plain" data-category="advertising" data-src="ads.js"></script>
<button type="button" data-consent-open>Cookie settings</button>
</body></html>
"""
# Records when the banner is inserted, when the next frame starts (requestAnimationFrame)
# and when it is on screen (Element Timing: the frame that painted it was presented).
# For comparison the page itself adds a paragraph at DOMContentLoaded ("control"): nothing
# a script adds then can be on screen sooner than that.
PROBE = """window.shown = {};
new PerformanceObserver(list => {
  for (const e of list.getEntries()) window.shown[e.identifier] = e.renderTime;
}).observe({type: 'element', buffered: true});
document.addEventListener('DOMContentLoaded', () => {
  const p = document.createElement('p');
  p.textContent = 'Added by the page at DOMContentLoaded.';
  p.setAttribute('elementtiming', 'control');
  document.body.prepend(p);  // in view: Element Timing reports only what is painted
});
new MutationObserver((records, observer) => {
  const text = document.querySelector('.cw-banner #cw-bd');
  if (!text) return;
  observer.disconnect();
  text.setAttribute('elementtiming', 'banner');
  window.bannerInserted = performance.now();
  requestAnimationFrame(() => { window.bannerPainted = performance.now(); });
}).observe(document, {childList: true, subtree: true});
"""


def make_database(path: Path) -> str:
    """A migrated SQLite database with the benchmark site."""
    from flask_migrate import upgrade

    from consent import create_app
    from consent.database import run_write
    from consent.demo_data import DEMO_SERVICES
    from consent.policies import publish_policy
    from consent.sites import create_site

    url = f"sqlite:///{path}"
    app = create_app({"ENV_NAME": "testing", "SQLALCHEMY_DATABASE_URI": url})
    with app.app_context():
        upgrade(revision="heads")

        def write(origin):
            from consent.sites import create_api_key

            site = create_site("shop", "Benchmark shop", allowed_origins=[origin],
                               categories=[{"key": k, "services": v}
                                           for k, v in DEMO_SERVICES.items()])
            publish_policy(site.id, "2026-01", text="Policy", material=True)
            return create_api_key(site)
        return url, app, write


CALIFORNIA = {"CF-IPCountry": "US", "CF-Region-Code": "CA"}


def first_visit_bytes(browser, server_url: str, page_url: str, region: dict | None = None) -> dict:
    """{url: (raw, gzip -9, brotli 11, on the wire, Content-Encoding)} of every response
    from the consent server before the banner is visible, on a cold first visit. With
    REGION (headers a CDN would add), before the notice at collection and the "Your Privacy
    Choices" link are visible: requests but the script's are held until then."""
    import brotli

    ctx = browser.new_context()
    held = []
    if region is not None:
        def route(r):
            if r.request.url.split("?")[0] == server_url + "/consent.js":
                r.continue_(headers={**r.request.headers, **region})
            else:
                held.append(r)
        ctx.route(server_url + "/**", route)
    page = ctx.new_page()
    responses = []
    page.on("response", lambda r: r.url.startswith(server_url) and responses.append(r))
    page.goto(page_url, wait_until="commit")
    if region is None:
        page.locator(".cw-banner").wait_for()
    else:
        page.locator(".cw-rn").wait_for()
        page.locator("a[data-cw=choices]").first.wait_for()
    sizes = {}
    for r in responses:
        body = r.body()
        sizes[r.url.removeprefix(server_url)] = (
            len(body), len(gzip.compress(body, 9)), len(brotli.compress(body, quality=11)),
            r.request.sizes()["responseBodySize"], r.headers.get("content-encoding", "-"))
    for r in held:
        r.abort()
    ctx.close()
    return sizes


def sixty_services() -> list[dict]:
    """60 services with two cookies each, spread over three categories."""
    return [{"name": f"Tool {n}", "provider": f"Vendor {n} Ltd", "purpose":
             f"Measures how page {n} is used, for the vendor's monthly reports",
             "cookies": [{"name": f"_tool{n}_id"}, {"pattern": f"^_t{n}_"}]} for n in range(60)]


def sizes_main(args) -> int:
    """Bytes before the banner for every seed profile and a 60-service site."""
    from flask_migrate import upgrade
    from playwright.sync_api import sync_playwright

    from consent import create_app
    from consent.database import run_write
    from consent.policies import publish_policy
    from consent.profiles import PROFILES, load_profile
    from consent.sites import create_site

    work = Path(tempfile.mkdtemp(prefix="widget-sizes-"))
    names = [*sorted(PROFILES), "60 services"]
    # one origin per site: the data-site embed finds its site from the page's origin
    statics = {}
    for n, name in enumerate(names):
        (work / f"site{n}").mkdir()
        statics[name] = StaticSite(work / f"site{n}")
    url = f"sqlite:///{work / 'sizes.sqlite3'}"
    app = create_app({"ENV_NAME": "testing", "SQLALCHEMY_DATABASE_URI": url})
    keys = {}
    with app.app_context():
        upgrade(revision="heads")
        for name in sorted(PROFILES):
            keys[name] = load_profile(name, origins=[statics[name].url]).site_key
        services = sixty_services()

        def write():
            # (rules by region change nothing for opt-in visitors: measured both ways)
            site = create_site("sixty", "Sixty services",
                               allowed_origins=[statics["60 services"].url],
                               categories=[{"key": k, "services": services[i::3]} for i, k in
                                           enumerate(("functional", "analytics", "advertising"))],
                               settings={"regions": {
                                   "rules": {"EEA": "opt-in", "US-PRIVACY-STATES": "opt-out",
                                             "US": "notice-only"},
                                   "default": "opt-in", "gpp_states": ["usca"]}})
            publish_policy(site.id, "2026-01", text="Policy", material=True)
        run_write(write)
        keys["60 services"] = "sixty"
        from consent.regions import jurisdiction
        california = {n for n, p in PROFILES.items() if p.region_rules
                      and jurisdiction(p.region_rules, "US-CA") == "opt-out"} | {"60 services"}
    server = AppServer(url, workers=2, extra_env={
        "CONSENT_ENV": "development", "SECRET_KEY": secrets.token_urlsafe(48),
        "CONSENT_DATA_KEY": secrets.token_urlsafe(48),
        "CONSENT_LOG_STATE_DIR": str(work / "log-state"), "CONSENT_REGION_HEADERS": "cloudflare"})
    rows = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            for name, key in keys.items():
                static = statics[name]
                for embed in ("site", "data-site"):
                    page = work / f"site{names.index(name)}" / f"{embed}.html"
                    page.write_text(PAGE.format(lang=args.lang, filler="", embed=EMBEDS[embed]
                                                .format(app=server.url).replace("shop", key)))
                    sizes = first_visit_bytes(browser, server.url, f"{static.url}/{page.name}")
                    rows.append((name, embed, sizes))
                    if name in california:  # the same page, for a California visitor
                        sizes = first_visit_bytes(browser, server.url,
                                                  f"{static.url}/{page.name}", CALIFORNIA)
                        rows.append((name, embed + " US-CA", sizes))
            version = browser.version
            browser.close()
    finally:
        server.stop()
        for static in statics.values():
            static.stop()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"Chromium {version}, page language {args.lang!r}, {os.cpu_count()} CPUs, load average"
          f" {load}; bytes from the consent server before the banner (US-CA: before the"
          " notice), summed over responses")
    print(f"{'site':<20} {'embed':<16} {'responses':>9} {'raw':>7} {'gzip -9':>8} {'brotli':>7}"
          f" {'wire':>6}  encoding")
    ok = True
    for name, embed, sizes in rows:
        raw, gz, br, wire = (sum(v[i] for v in sizes.values()) for i in range(4))
        codings = ",".join(sorted({v[4] for v in sizes.values()}))
        ok = ok and gz <= BUDGET_BYTES
        print(f"{name:<20} {embed:<16} {len(sizes):>9} {raw:>7} {gz:>8} {br:>7} {wire:>6}  {codings}"
              f"{'' if gz <= BUDGET_BYTES else '  OVER'}")
    print(f"budget {BUDGET_BYTES} B gzip -9: {'OK' if ok else 'OVER'}")
    print(json.dumps({f"{n}/{e}": {u: v[:4] for u, v in s.items()} for n, e, s in rows}),
          file=sys.stderr)
    return 0 if ok else 1


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="first visits to time")
    parser.add_argument("--lang", default="en", help="page language (en, de, fr, es)")
    parser.add_argument("--page-kb", type=int, default=0,
                        help="add this many KB of product listing to the page (a real page"
                             " takes longer to parse than the bare one)")
    parser.add_argument("--embed", choices=[*EMBEDS, "all"], default="all")
    parser.add_argument("--sizes", action="store_true",
                        help="only the bytes before the banner, per seed profile and for a"
                             " site with 60 services")
    args = parser.parse_args()
    if args.sizes:
        return sizes_main(args)

    import logging
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="widget-bench-"))
    site_dir = work / "site"
    site_dir.mkdir()
    static = StaticSite(site_dir)
    url, app, write = make_database(work / "bench.sqlite3")
    with app.app_context():
        from consent.database import run_write
        api_key = run_write(write, static.url)
    log = work / "access.log"
    # Deployed settings where they matter here: the per-process site cache is on, as in
    # production. (Production mode itself needs an https public URL, which a loopback
    # bench cannot serve; its other differences do not touch the widget's requests.)
    server = AppServer(url, workers=2, extra_env={
        "GUNICORN_CMD_ARGS": f"--access-logfile {log}", "CONSENT_ENV": "development",
        "SECRET_KEY": secrets.token_urlsafe(48), "CONSENT_SITE_CACHE_SECONDS": "5",
        "CONSENT_DATA_KEY": secrets.token_urlsafe(48),
        "CONSENT_RATELIMIT_EXEMPT": "127.0.0.1",
        "CONSENT_LOG_STATE_DIR": str(work / "log-state"), "CONSENT_REGION_HEADERS": "cloudflare"})
    item = ('<li class="product"><a href="/p/{n}"><img alt="" width="120" height="90">'
            '<h3>Product {n}</h3></a><p>A useful thing, in three colours.</p>'
            '<p class="price">{n}.99 EUR</p><button type="button">Add to basket</button></li>\n')
    filler = "".join(item.format(n=n) for n in range(args.page_kb * 1024 // len(item) + 1)) \
        if args.page_kb else ""
    embeds = list(EMBEDS) if args.embed == "all" else [args.embed]
    for embed in embeds:
        (site_dir / f"{embed}.html").write_text(PAGE.format(
            lang=args.lang, embed=EMBEDS[embed].format(app=server.url), filler=f"<ul>{filler}</ul>"))
    (site_dir / "baseline.html").write_text(PAGE.format(
        lang=args.lang, embed=BASELINE_EMBED, filler=f"<ul>{filler}</ul>"))
    (site_dir / "baseline.js").write_text(BASELINE_JS)
    (site_dir / "probe.js").write_text("window.ran = 0;\n")
    (site_dir / "tag.js").write_text("window.ran += 1;\n")
    (site_dir / "ads.js").write_text("window.adsAt = performance.now();\n")
    results = {}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            version = browser.version
            urls = {embed: f"{static.url}/{embed}.html" for embed in embeds}
            urls["baseline"] = f"{static.url}/baseline.html"
            times = {embed: ([], [], [], []) for embed in urls}
            cpu = machine_cpu()
            for _ in range(args.runs):  # interleaved, so background load hits every embed alike
                for embed in urls:
                    for series, value in zip(times[embed], first_visit(browser, urls[embed])):
                        series.append(value)
            shares = cpu_shares(cpu, machine_cpu())
            for embed in embeds:
                results[embed] = (*measure(browser, server, log, urls[embed], api_key),
                                  *times[embed])
            browser.close()
    finally:
        server.stop()
        static.stop()

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"Chromium {version}, {args.runs} cold first visits per embed, page language "
          f"{args.lang!r}, page {len((site_dir / f'{embeds[0]}.html').read_bytes()) // 1024} KB, "
          f"{os.cpu_count()} CPUs, load average {load} (other work slows every figure below)")
    print("CPU during the timed visits: " + ", ".join(f"{k} {v:.0f}%" for k, v in shares.items())
          + " (steal: CPU time the host gave to other machines while this one had work)")
    ok = True
    for embed in embeds:
        ok = report(embed, *results[embed], baseline=times["baseline"]) and ok
    return 0 if ok else 1


def first_visit(browser, page_url: str) -> tuple[float, float, float, float]:
    """ms from DOMContentLoaded to the banner inserted, the next frame, the banner on
    screen and the page's own control paragraph on screen; cold cache."""
    ctx = browser.new_context()
    page = ctx.new_page()
    page.add_init_script(PROBE)
    page.goto(page_url)
    page.wait_for_function("window.bannerPainted !== undefined && window.shown.banner > 0"
                           " && window.shown.control > 0")
    dcl, *marks = page.evaluate("""() => [
        performance.getEntriesByType('navigation')[0].domContentLoadedEventStart,
        window.bannerInserted, window.bannerPainted, window.shown.banner,
        window.shown.control]""")
    ctx.close()
    return tuple(max(0.0, mark - dcl) for mark in marks)


def measure(browser, server, log: Path, page_url: str, api_key: str):
    """Bytes before the banner on a first visit; requests of returning visits; the way back
    from the preference center."""
    # 1. bytes before the banner
    sizes = first_visit_bytes(browser, server.url, page_url)

    # 3. returning visitor
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(page_url)
    page.get_by_role("button", name="Accept all").click()
    # recorded (the answer's read token is in the cookie), so no retry follows
    page.wait_for_function("window.ran === 1 && document.cookie.includes('&r=')")
    page.wait_for_timeout(500)
    before = len(log.read_text().splitlines())
    for _ in range(2):
        page.goto(page_url)
        page.wait_for_function("window.ran === 1")
        page.wait_for_timeout(500)
    returning = len(log.read_text().splitlines()) - before
    sessions = [next_session(ctx, log, page_url) for _ in range(2)]  # no change
    subject = next(c["value"] for c in ctx.cookies() if c["name"] == "consent"
                   ).split("s=", 1)[1].split("&", 1)[0]
    import requests
    withdrawn = requests.post(f"{server.url}/api/v1/sites/shop/subjects/{subject}/events",
                              json={"action": "withdraw", "categories": {"analytics": False}},
                              headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
    assert withdrawn.status_code == 201, withdrawn.text
    for _ in range(100):  # gunicorn writes the access line just after the answer
        if "/events " in log.read_text().splitlines()[-1]:
            break
        time.sleep(0.05)
    sessions.append(next_session(ctx, log, page_url, changed=True))
    ctx.close()
    return sizes, returning, sessions, way_back(browser, page_url), dialog_times(browser, page_url)


def dialog_times(browser, page_url: str, runs: int = 10) -> list[float]:
    """ms from the click on "Customise" to the open dialog, on cold first visits."""
    out = []
    for _ in range(runs):
        ctx = browser.new_context()
        page = ctx.new_page()
        page.goto(page_url)
        page.get_by_role("button", name="Customise").wait_for()
        page.evaluate("""() => {
            document.addEventListener('click', () => { window.clickAt = performance.now(); }, true);
            new MutationObserver((r, o) => {
              const d = document.querySelector('dialog.cw-prefs[open]');
              if (d) { o.disconnect(); window.openAt = performance.now(); }
            }).observe(document.body, {childList: true, subtree: true, attributes: true});
        }""")
        page.get_by_role("button", name="Customise").click()
        page.wait_for_function("window.openAt !== undefined")
        out.append(page.evaluate("window.openAt - window.clickAt"))
        ctx.close()
    return out


# Notes every fetch of the page with the document's readyState at that moment, in
# sessionStorage so the list survives the widget's reload of the page.
FETCH_PROBE = """(() => {
  const real = window.fetch;
  window.fetch = function (url) {
    const seen = JSON.parse(sessionStorage.getItem('benchFetch') || '[]');
    seen.push([String(url), document.readyState]);
    sessionStorage.setItem('benchFetch', JSON.stringify(seen));
    return real.apply(this, arguments);
  };
})();"""


def next_session(ctx, log: Path, page_url: str, changed: bool = False) -> dict:
    """Requests of the first page view of a new browser session (a new tab): how many
    reached the server before the page's load, how many after it (the access log has them
    all; the page's fetches after its load event are the "after" ones)."""
    before_log = len(log.read_text().splitlines())
    page = ctx.new_page()
    page.add_init_script(FETCH_PROBE)
    page.goto(page_url)
    # the check runs after the load; with a change the page reloads once (the tag had run)
    page.wait_for_timeout(1500)
    if changed:
        page.wait_for_function("() => window.Consent && Consent.get()"
                               " && Consent.get().categories.analytics === false")
        page.wait_for_timeout(500)
    nav = page.evaluate("performance.getEntriesByType('navigation')[0].type")
    fetches = page.evaluate("JSON.parse(sessionStorage.getItem('benchFetch') || '[]')")
    page.close()
    lines = log.read_text().splitlines()[before_log:]
    after = sum(1 for _url, state in fetches if state == "complete")
    statuses = [line.split('" ')[1].split(" ")[0] for line in lines if '" ' in line]
    # after a withdrawal the widget also asks for the site's details (the cookies of the
    # withdrawn category, which the first layer does not carry), once
    details = sum(1 for line in lines if "details=1" in line)
    return {"before": len(lines) - after, "after": after, "requests": len(lines),
            "statuses": statuses, "changed": changed, "type": nav, "details": details}


def way_back(browser, page_url: str, runs: int = 5) -> list[dict]:
    """ms from the click on "Back to <site>" (after withdrawing analytics on the preference
    center) until the widget has the server's answer and until the allowed tag ran."""
    out = []
    for _ in range(runs):
        ctx = browser.new_context()
        page = ctx.new_page()
        page.goto(page_url)
        page.get_by_role("button", name="Accept all").click()
        page.wait_for_function("window.ran === 1 && document.cookie.includes('&r=')")
        page.locator("[data-consent-open]").click()
        page.get_by_role("link", name="All privacy settings").click()
        page.wait_for_url("**/preferences?site=shop*")
        page.locator("#category-analytics").uncheck()
        page.locator("#save").click()
        page.wait_for_url("**saved=*")
        clicked = time.time() * 1000
        page.get_by_role("link", name="Back to Benchmark shop").click()
        page.wait_for_url(page_url)
        page.wait_for_function("window.adsAt !== undefined")
        figures = page.evaluate("""() => {
            const me = performance.getEntriesByType('resource').find(e => e.name.includes('/me/'));
            const nav = performance.getEntriesByType('navigation')[0];
            return {origin: performance.timeOrigin, answered: me ? me.responseEnd : null,
                    ads: window.adsAt, dcl: nav.domContentLoadedEventStart, ran: window.ran};
        }""")
        gap = figures["origin"] - clicked  # click -> the new page's navigation start
        out.append({"answered": gap + figures["answered"], "tag": gap + figures["ads"],
                    "dcl": gap + figures["dcl"], "analytics_ran": figures["ran"]})
        ctx.close()
    return out


def print_times(name: str, values: list[float]) -> None:
    """One line of times (ms): min, median, p90, max."""
    print(f"   {name:<22} min {min(values):6.1f}   median {statistics.median(values):6.1f}"
          f"   p90 {percentile(values, 90):6.1f}   max {max(values):6.1f}")


def report(embed: str, sizes: dict, returning: int, sessions: list, back: list, dialog: list,
           inserted: list, painted: list, shown: list, control: list,
           baseline: tuple) -> bool:
    """Print one embed's figures; True when all are within budget."""
    total = sum(v[1] for v in sizes.values())
    print(f"\n=== embed: {EMBEDS[embed].format(app='')}")
    print("\n1. Downloaded from the consent server before the banner shows:")
    for u, (raw, gz, br, wire, coding) in sorted(sizes.items()):
        print(f"   {u:<45} {raw:>6} B raw  {gz:>6} B gzip -9  {br:>6} B brotli"
              f"  {wire:>6} B on the wire ({coding})")
    print(f"   {'total':<45} {'':>6}          {total:>6} B gzip   budget {BUDGET_BYTES} B:"
          f" {'OK' if total <= BUDGET_BYTES else 'OVER'}")
    for name, size in OTHERS.items():
        print(f"   for comparison, {name}: {size} B ({total / size:.0%} of it)")
    print("\n2. Banner after DOMContentLoaded (ms):")
    for name, values in (("inserted", inserted), ("next frame starts", painted),
                         ("on screen", shown), ("page's own (control)", control)):
        print_times(name, values)
    same = sum(1 for s, c in zip(shown, control) if s <= c + 0.5)
    print(f"   on screen in the same frame as the page's own DOMContentLoaded content:"
          f" {same} of {len(shown)} visits")
    med = statistics.median(painted)
    print(f"   budget {BUDGET_MS:.0f} ms (median, banner built and laid out before the next frame):"
          f" {'OK' if med <= BUDGET_MS else 'OVER'}")
    print("   baseline, the same page without the widget: a banner-like element inserted and"
          " focused at DOMContentLoaded (same run, interleaved):")
    for name, values in (("inserted", baseline[0]), ("next frame starts", baseline[1])):
        print_times(name, values)
    base = statistics.median(baseline[1])
    print(f"   next frame starts, widget / baseline: {med / base:.2f} x"
          f" ({med - base:+.1f} ms, medians)")
    print(f"\n3. Returning visitor: {returning} request(s) reached the consent server on 2 page"
          f" views of the same session (budget 0: {'OK' if returning == 0 else 'OVER'})")
    sessions_ok = True
    for n, s in enumerate(sessions, 1):
        extra = s["details"] if s["changed"] else 0
        ok = s["before"] == 0 and s["after"] - extra == 1 and s["requests"] - extra == 1
        sessions_ok = sessions_ok and ok
        what = "after a withdrawal over the API" if s["changed"] else "no change"
        print(f"   next browser session {n} ({what}): {s['before']} request(s) before the load,"
              f" {s['after']} after (HTTP {', '.join(s['statuses'])}"
              f"{'; one is the details, for the cookies to delete' if extra else ''});"
              f" then the page was {'reloaded' if s['type'] == 'reload' else 'not reloaded'}"
              f" (budget 0 before, 1 check after: {'OK' if ok else 'OVER'})")
    print("\n4. Back from the preference center after withdrawing analytics"
          f" ({len(back)} runs; ms from the click on 'Back to <site>'):")
    for b in back:
        b["check"] = b["answered"] - b["dcl"]
    for name, key in (("DOMContentLoaded", "dcl"), ("server's answer in", "answered"),
                      ("first allowed tag ran", "tag"), ("(answer - DOMContentLoaded)", "check")):
        values = [b[key] for b in back]
        print(f"   {name:<22} min {min(values):6.1f}   median {statistics.median(values):6.1f}"
              f"   max {max(values):6.1f}")
    never = all(b["analytics_ran"] == 0 for b in back)
    print(f"   the withdrawn analytics tag ran: {'never' if never else 'YES (FAIL)'}")
    dmed = statistics.median(dialog)
    print(f"\n5. First visit, click on 'Customise' to the open dialog ({len(dialog)} runs, ms):"
          f" min {min(dialog):.1f}   median {dmed:.1f}   max {max(dialog):.1f}"
          f"   budget {BUDGET_DIALOG_MS:.0f} ms: {'OK' if dmed <= BUDGET_DIALOG_MS else 'OVER'}")
    return total <= BUDGET_BYTES and med <= BUDGET_MS and returning == 0 and sessions_ok \
        and never and dmed <= BUDGET_DIALOG_MS


if __name__ == "__main__":
    sys.exit(main())
