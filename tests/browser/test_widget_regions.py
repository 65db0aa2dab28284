"""Rules by region in Chromium (issue 18): the region header is set per browser context,
as the CDN in front of the consent server would. An EU visitor gets the opt-in banner; a
California visitor no blocking banner, advertising until "Your Privacy Choices", the IAB
GPP and US Privacy APIs (strings decoded with IAB Tech Lab's @iabgpp/cmpapi)."""
from __future__ import annotations

import gzip
from datetime import timedelta

import pytest

from consent.database import run_write, utcnow
from consent.extensions import db
from consent.policies import publish_policy
from consent.sites import Site
from tests.support.browser import new_context, strict_csp
from tests.support.gpp import iab_decode

from .helpers import (ALL_TAGS, ANALYTICS_TAGS, ADS_TAGS, GPC_ON, banner, cookie_names, ran,
                      settle, wait_ran, wait_recorded, wait_until)

pytestmark = pytest.mark.browser

US_RULES = {"rules": {"EEA": "opt-in", "GB": "opt-in", "CH": "opt-in",
                      "US-PRIVACY-STATES": "opt-out", "US": "notice-only"},
            "default": "opt-in", "gpp_states": ["usca"]}
CALIFORNIA = {"CF-IPCountry": "US", "CF-Region-Code": "CA"}
GERMANY = {"CF-IPCountry": "DE"}

PING = "new Promise(r => __gpp('ping', (d, ok) => r([d, ok])))"
SECTION = "name => new Promise(r => __gpp('getSection', (d, ok) => r([d, ok]), name))"
USP = "new Promise(r => __uspapi('getUSPData', 1, (d, ok) => r([d, ok])))"


@pytest.fixture
def us_env(make_env):
    return make_env(settings={"regions": US_RULES},
                    app_env={"CONSENT_REGION_HEADERS": "cloudflare"})


def visitor(browser, env, headers):
    """A browser context whose requests to the consent server carry HEADERS, as a CDN in
    front of it adds them (not the page: page-set headers would change CORS)."""
    ctx = new_context(browser, locale="en-US")
    ctx.route(env.app_url + "/**", lambda route: route.continue_(
        headers={**route.request.headers, **headers}))
    return ctx


def gpp_of(page) -> tuple[dict, dict]:
    """__gpp('ping') and IAB's decoding of the string it returns, once the region part
    answers (until then the first layer's stub says it is loading)."""
    wait_until(page, "window.__gpp && window.__gpp.region")
    ping, ok = page.evaluate(PING)
    assert ok is True and ping["cmpStatus"] == "loaded" and ping["signalStatus"] == "ready"
    [decoded] = iab_decode([ping["gppString"]])
    assert "error" not in decoded, decoded
    return ping, decoded["sections"]


def test_eu_visitor_gets_the_opt_in_banner_and_nothing_runs(browser, us_env):
    ctx = visitor(browser, us_env, GERMANY)
    urls: list[str] = []
    ctx.on("request", lambda r: urls.append(r.url))
    page = ctx.new_page()
    page.goto(us_env.url())
    banner(page).wait_for()
    settle(page)
    assert ran(page) == []
    assert page.evaluate("typeof __gpp") == "undefined"  # the region part never loaded
    assert urls and not any("consent-region.js" in u for u in urls)
    assert page.locator("[data-cw=choices]").count() == 0
    ctx.close()


def test_california_visitor_runs_ads_until_your_privacy_choices(browser, us_env):
    ctx = visitor(browser, us_env, CALIFORNIA)
    page = ctx.new_page()
    page.goto(us_env.url())
    assert wait_ran(page, 5) == ALL_TAGS  # no decision needed: opt-out rules
    assert banner(page).count() == 0 and page.locator("dialog[open]").count() == 0
    notice = page.locator(".cw-rn")  # notice at collection, not blocking
    assert notice.get_attribute("role") == "region"
    # The GPP string before any choice: notices given, not opted out.
    ping, sections = gpp_of(page)
    assert ping["applicableSections"] == [7, 8] and ping["sectionList"] == [6, 7, 8]
    assert sections["usnat"]["SaleOptOut"] == 2 and sections["usnat"]["SaleOptOutNotice"] == 1
    assert page.evaluate(USP) == [{"version": 1, "uspString": "1YNN"}, True]
    assert "_ads" in cookie_names(ctx)  # the ad tag ran and set its cookie
    # The region part came as its build's versioned URL, by the page's nonce (strict CSP).
    assert page.evaluate("[...document.scripts].some(s => /consent-region\\.js\\?v=[0-9a-f]{12}$/"
                         ".test(s.src))")

    link = page.locator("a[data-cw=choices]").first
    assert link.inner_text().strip() == "Your Privacy Choices"
    assert link.locator("svg").count() == 1  # the opt-out icon
    link.click()
    with page.expect_navigation():  # ads already ran: only a reload stops them
        page.get_by_role("button", name="Opt out of sale, sharing and targeted advertising"
                         ).click()
    [event] = wait_recorded(us_env, 1)
    assert (event.action, event.source, event.categories) == (
        "opt_out", "preferences", {"advertising": False})
    assert event.meta["region"] == "US-CA" and event.meta["rule"] == "opt-out"
    # The second part deleted the ad service's cookie before the reload (site details).
    assert "_ads" not in cookie_names(ctx)
    # After the reload the ads do not run again; analytics still do.
    wait_ran(page, 3)
    settle(page)
    assert ran(page) == ANALYTICS_TAGS
    ping, sections = gpp_of(page)
    usnat = sections["usnat"]
    assert (usnat["SaleOptOut"], usnat["SharingOptOut"], usnat["TargetedAdvertisingOptOut"],
            usnat["Gpc"]) == (1, 1, 1, False)
    assert sections["usca"]["SaleOptOut"] == 1
    assert ping["gppString"] == event.meta["gpp"]  # what the page says is what was recorded
    assert page.evaluate(SECTION, "usnat") == [usnat, True]
    assert page.evaluate("new Promise(r => __gpp('getField', (d, ok) => r([d, ok]), "
                         "'usnat.SaleOptOut'))") == [1, True]
    assert page.evaluate("new Promise(r => __gpp('hasSection', (d, ok) => r([d, ok]), "
                         "'usnat'))") == [True, True]
    assert page.evaluate("new Promise(r => __gpp('hasSection', (d, ok) => r([d, ok]), "
                         "'tcfeuv2'))") == [False, True]
    assert page.evaluate(USP) == [{"version": 1, "uspString": "1YYN"}, True]
    # The site's backend reads the same strings from first-party cookies.
    jar = {c["name"]: c["value"] for c in ctx.cookies()}
    assert jar["gpp"] == event.meta["gpp"] and jar["usprivacy"] == "1YYN"
    assert jar["gpp_sid"] == "6,7,8"
    assert banner(page).count() == 0
    assert len(us_env.events()) == 1
    ctx.close()


def california_with_gpc(browser, env):
    """(context, page) of a California visitor whose browser sends GPC, on the site's page
    once the tags the visitor did not opt out of ran."""
    ctx = visitor(browser, env, CALIFORNIA)
    ctx.add_init_script(GPC_ON)
    page = ctx.new_page()
    page.goto(env.url())
    assert wait_ran(page, 3) == ANALYTICS_TAGS
    return ctx, page


def test_california_visitor_with_gpc_is_opted_out_without_a_click(browser, us_env):
    ctx, page = california_with_gpc(browser, us_env)
    [event] = wait_recorded(us_env, 1)
    assert event.action == "gpc" and event.categories == {"advertising": False}
    assert event.meta["gpc"] is True and event.meta["region"] == "US-CA"
    settle(page)
    assert not set(ADS_TAGS) & set(ran(page))
    assert banner(page).count() == 0
    _, sections = gpp_of(page)
    assert sections["usnat"]["Gpc"] is True and sections["usnat"]["SaleOptOut"] == 1
    assert sections["uspv1"]["OptOutSale"] == "Y"
    # The opt-out view says the signal was honoured; nothing left to opt out of.
    page.locator("a[data-cw=choices]").first.click()
    page.locator("dialog .cw-gpc").wait_for()
    assert page.locator("dialog [data-cw=optOut]").count() == 0
    ctx.close()


def test_gpp_listeners_hear_the_opt_out_and_can_be_removed(browser, us_env):
    # A page without ad tags: opting out then needs no reload, so the page keeps listening.
    index = (us_env.root / "index.html").read_text()
    (us_env.root / "no-ads.html").write_text("\n".join(
        line for line in index.splitlines() if 'data-category="advertising"' not in line))
    ctx = visitor(browser, us_env, CALIFORNIA)
    page = ctx.new_page()
    page.goto(us_env.url("no-ads.html"))
    wait_ran(page, 3)
    # (registered at once by the region part's __gpp; calls to the first layer's stub wait
    # for it: test_calls_before_the_region_part_are_answered_once_it_is_here)
    wait_until(page, "window.__gpp && window.__gpp.region")
    ids = page.evaluate("""() => { window.heard = {a: [], b: []}; const ids = [];
      for (const k of ['a', 'b']) __gpp('addEventListener', (e, ok) => {
        if (e.eventName == 'listenerRegistered') ids.push(e.listenerId);
        else heard[k].push([e.eventName, e.data, e.pingData.gppString]); });
      return ids; }""")
    assert len(set(ids)) == 2
    assert page.evaluate(f"new Promise(r => __gpp('removeEventListener', (d, ok) => r([d, ok]), "
                         f"{ids[1]}))") == [True, True]
    page.evaluate("Consent.optOut()")
    wait_until(page, "window.heard && window.heard.a.some(e => e[0] == 'signalStatus')")
    heard = page.evaluate("window.heard")
    assert heard["b"] == []
    names = [e[0] for e in heard["a"]]
    assert "sectionChange" in names and names[-1] == "signalStatus"
    [decoded] = iab_decode([heard["a"][-1][2]])
    assert decoded["sections"]["usnat"]["SaleOptOut"] == 1
    wait_recorded(us_env, 1, "opt_out")
    ctx.close()


def test_framed_vendors_find_the_api_through_the_locator_frames(browser, us_env):
    ctx = visitor(browser, us_env, CALIFORNIA)
    page = ctx.new_page()
    page.goto(us_env.url())
    wait_ran(page, 5)
    frame = page.frame_locator("iframe[title='Store map']")
    frame.locator("body").wait_for()
    child = next(f for f in page.frames if f != page.main_frame and f.url.endswith("frame.html"))
    answer = child.evaluate("""() => new Promise(done => {
      let w = window, found = null;
      while (!found) { try { if (w.frames['__gppLocator']) found = w; } catch (e) {}
        if (w === window.top) break; w = w.parent; }
      const u = window.top.frames['__uspapiLocator'] ? 1 : 0, got = {};
      addEventListener('message', e => {
        const d = typeof e.data == 'string' ? JSON.parse(e.data) : e.data;
        if (d.__gppReturn) got.gpp = d.__gppReturn;
        if (d.__uspapiReturn) got.usp = d.__uspapiReturn;
        if (got.gpp && got.usp) done([!!found, u, got]);
      });
      found.postMessage({__gppCall: {command: 'ping', callId: 'c1', version: '1.1'}}, '*');
      found.postMessage(JSON.stringify({__uspapiCall: {command: 'getUSPData', version: 1,
                                                       callId: 'c2'}}), '*');
    })""")
    located, usp_frame, got = answer
    assert located and usp_frame == 1
    assert got["gpp"]["callId"] == "c1" and got["gpp"]["success"] is True
    assert got["gpp"]["returnValue"]["gppString"].startswith("DBA")
    assert got["usp"] == {"returnValue": {"version": 1, "uspString": "1YNN"}, "success": True,
                          "callId": "c2"}
    ctx.close()


def test_notice_only_region_runs_everything_without_a_banner_or_gpp(browser, us_env):
    ctx = visitor(browser, us_env, {"CF-IPCountry": "US", "CF-Region-Code": "WY"})
    page = ctx.new_page()
    page.goto(us_env.url())
    assert wait_ran(page, 5) == ALL_TAGS
    page.locator(".cw-rn").wait_for()
    assert banner(page).count() == 0 and page.locator("a[data-cw=choices]").count() == 0
    ping, _ = page.evaluate(PING)
    assert ping["applicableSections"] == [-1]
    assert page.evaluate(USP)[0]["uspString"] == "1---"
    ctx.close()


def test_an_announced_policy_version_is_told_in_california_until_its_ok(browser, us_env):
    """A material version announced for later is told like the notice at collection, on
    every page view until its OK: a reload before that does not hide it unread."""
    def announce():
        sid = db.session.execute(db.select(Site.id).where(Site.key == us_env.site_key)).scalar_one()
        publish_policy(sid, "2026-02", text="Policy v2", material=True,
                       effective_at=utcnow() + timedelta(days=3))
    run_write(announce)
    ctx = visitor(browser, us_env, CALIFORNIA)
    page = ctx.new_page()
    page.goto(us_env.url())
    told = page.get_by_role("region", name="Privacy policy update")
    told.wait_for()
    assert "takes effect on" in told.inner_text()
    assert wait_ran(page, 5) == ALL_TAGS  # it blocks nothing
    page.reload()
    told.wait_for()
    told.get_by_role("button", name="OK").click()
    assert told.count() == 0
    page.reload()
    assert wait_ran(page, 5) == ALL_TAGS
    page.locator(".cw-rn").first.wait_for()  # the notice at collection still comes
    settle(page)
    assert told.count() == 0
    ctx.close()


def known_minor_in_california(browser, env):
    """A California visitor on a page that says the visitor is a minor (`data-minor`)."""
    page_html = env.root / "index.html"
    page_html.write_text(page_html.read_text().replace(' data-site=', ' data-minor data-site='))
    ctx = visitor(browser, env, CALIFORNIA)
    page = ctx.new_page()
    page.goto(env.url())
    return ctx, page


def test_a_known_minor_in_california_gets_no_advertising_without_opt_in(browser, make_env):
    env = make_env(settings={"regions": US_RULES},
                   app_env={"CONSENT_REGION_HEADERS": "cloudflare"})
    ctx, page = known_minor_in_california(browser, env)
    assert wait_ran(page, 3) == ANALYTICS_TAGS
    settle(page)
    assert not set(ADS_TAGS) & set(ran(page))
    _, sections = gpp_of(page)
    assert sections["usnat"]["SaleOptOut"] == 1 and sections["uspv1"]["OptOutSale"] == "Y"
    ctx.close()


def test_a_known_minor_in_california_runs_nothing_the_age_rule_reserves(browser, make_env):
    # The site's age rule reserves analytics and advertising to a guardian (consent.minors:
    # a minor has them on only with a guardian's consent on record). The opt-out region has
    # analytics on until an opt-out, but not for a known minor with no guardian's consent:
    # nothing was decided, so nothing of it runs (as the preference center shows it).
    env = make_env(settings={"regions": US_RULES, "age_rule": {
        "adult_age": 16, "ask": "when_flagged", "categories": ["analytics", "advertising"]}},
        app_env={"CONSENT_REGION_HEADERS": "cloudflare"})
    ctx, page = known_minor_in_california(browser, env)
    _, sections = gpp_of(page)
    assert sections["usnat"]["SaleOptOut"] == 1
    settle(page)
    assert ran(page) == []
    ctx.close()


# ---------------------------------------------------------------- bytes before the notice

BUDGET = 6000  # bytes gzip -9 before the notice (or banner), every first visit


def us_profiles() -> list[str]:
    """The seed profiles whose rules are opt-out for a California visitor."""
    from consent.profiles import PROFILES
    from consent.regions import jurisdiction

    return sorted(n for n, p in PROFILES.items()
                  if p.region_rules and jurisdiction(p.region_rules, "US-CA") == "opt-out")


def sixty_services() -> list[dict]:
    """60 services with two cookies each, over three categories (as bench/widget_bench.py)."""
    services = [{"name": f"Tool {n}", "provider": f"Vendor {n} Ltd", "purpose":
                 f"Measures how page {n} is used, for the vendor's monthly reports",
                 "cookies": [{"name": f"_tool{n}_id"}, {"pattern": f"^_t{n}_"}]}
                for n in range(60)]
    return [{"key": "essential", "locked": True}] + [
        {"key": k, "services": services[i::3]}
        for i, k in enumerate(("functional", "analytics", "advertising"))]


def path_of(env, url: str) -> str:
    return url.split("?")[0].removeprefix(env.app_url)


def held_visit(browser, env, page_name: str, headers: dict):
    """A first visit whose requests to the consent server, but the script's, are held
    (not answered) until `release()`: what the notice needs must come with the script.
    Returns (page, the script's response, the paths of the held requests, release)."""
    ctx = new_context(browser, locale="en-US")
    held: list = []
    holding = [True]

    def route(r):
        if holding[0] and path_of(env, r.request.url) != "/consent.js":
            held.append(r)
        else:
            r.continue_(headers={**r.request.headers, **headers})
    ctx.route(env.app_url + "/**", route)
    page = ctx.new_page()
    with page.expect_response(lambda r: path_of(env, r.url) == "/consent.js") as script:
        # (the page's load event waits for the held script: do not wait for it)
        page.goto(env.url(page_name), wait_until="commit")
    page.locator(".cw-rn").wait_for()
    page.locator("a[data-cw=choices]").first.wait_for()

    def release():
        holding[0] = False
        for r in held:
            r.continue_(headers={**r.request.headers, **headers})
    return page, script.value, held, release


def strict_page(env, name: str, key: str | None = None, *, ads: bool = True) -> str:
    """A page embedding `/consent.js?site=KEY` under the strict CSP (KEY: default shop),
    without its advertising tags unless ADS (opting out then needs no reload)."""
    html = env.render_text(site_query="&lang=en")
    if key:
        html = html.replace("consent.js?site=shop", f"consent.js?site={key}")
    if not ads:
        html = "\n".join(line for line in html.splitlines()
                         if 'data-category="advertising"' not in line)
    (env.root / name).write_text(html)
    env.serve_with_headers(name, {"Content-Security-Policy": strict_csp(env.app_url)})
    return name


@pytest.mark.parametrize("site", [*us_profiles(), "60 services"])
def test_california_first_visit_is_within_the_budget_before_the_notice(browser, make_env,
                                                                         site, capsys):
    """What a California visitor downloads before the notice and the "Your Privacy
    Choices" link are visible: the opt-out build with its config, nothing else (the
    region part and the details are held until the notice is there), <= 6,000 B gzip."""
    from consent.profiles import load_profile

    assert us_profiles(), "no seed profile with US opt-out rules"
    if site == "60 services":
        env = make_env(settings={"regions": US_RULES}, categories=sixty_services(),
                       app_env={"CONSENT_REGION_HEADERS": "cloudflare"})
        key = None
    else:
        env = make_env(app_env={"CONSENT_REGION_HEADERS": "cloudflare"})
        key = load_profile(site, origins=[env.site.url]).site_key
    page, script, held, release = held_visit(browser, env, strict_page(env, "p.html", key),
                                             CALIFORNIA)
    body = script.body()
    assert b"consent-region.js" in body  # the opt-out build
    size = len(gzip.compress(body, 9))
    with capsys.disabled():
        print(f"\n{site}: US-CA before the notice: /consent.js {size} B gzip -9 "
              f"({script.request.sizes()['responseBodySize']} B on the wire, "
              f"{script.headers.get('content-encoding')})")
    assert size <= BUDGET
    # The notice is up while everything else is still held; only the region part was asked
    # for (after the notice), nothing that could have come before it.
    assert [path_of(env, r.request.url) for r in held] == ["/consent-region.js"]
    assert page.locator(".cw-rn").is_visible() and banner(page).count() == 0
    # Meanwhile tags run (opt-out rules) and __gpp is the stub.
    wait_ran(page, 5)
    ping, ok = page.evaluate(PING)
    assert ok is True and ping["cmpStatus"] == "loading" and ping["signalStatus"] == "not ready"
    release()
    wait_until(page, "window.__gpp.region")  # the region part's __gpp took the stub's place
    ping, sections = gpp_of(page)
    assert sections["usnat"]["SaleOptOut"] == 2
    assert page.locator("a[data-cw=choices] svg").count() >= 1  # the icon, in its place
    page.context.close()


def test_calls_before_the_region_part_are_answered_once_it_is_here(browser, us_env):
    """A vendor asking __gpp / __uspapi (and a framed one, by postMessage) before the region
    part arrived gets the right answers once it has: the stubs queued the calls."""
    page, _, held, release = held_visit(browser, us_env,
                                        strict_page(us_env, "q.html", ads=False), CALIFORNIA)
    page.evaluate("""() => { window.got = {events: []};
      __gpp('addEventListener', (e, ok) => window.got.events.push([e.eventName, e.data,
                                                                   e.pingData.gppString, ok]));
      __gpp('getSection', (d, ok) => { window.got.section = [d, ok]; }, 'usnat');
      __gpp('getField', (d, ok) => { window.got.field = [d, ok]; }, 'usca.SaleOptOut');
      __gpp('hasSection', (d, ok) => { window.got.has = [d, ok]; }, 'usnat');
      __uspapi('getUSPData', 1, (d, ok) => { window.got.usp = [d, ok]; });
      addEventListener('message', e => { if (e.data && e.data.__gppReturn)
        window.got.framed = e.data.__gppReturn; });
      frames['__gppLocator'].parent.postMessage(
        {__gppCall: {command: 'getField', parameter: 'usnat.SaleOptOut', callId: 'f1',
                     version: '1.1'}}, '*'); }""")
    # Nothing answered yet, not even the listener's registration: all queued.
    assert page.evaluate("window.got") == {"events": []}
    assert [path_of(us_env, r.request.url) for r in held] == ["/consent-region.js"]
    release()
    wait_until(page, "window.got.usp && window.got.framed && window.got.events.length > 0")
    got = page.evaluate("window.got")
    usnat = got["section"][0]
    assert got["section"][1] is True and usnat["SaleOptOut"] == 2
    assert usnat["SaleOptOutNotice"] == 1 and usnat["Gpc"] is False
    assert got["field"] == [2, True] and got["has"] == [True, True]
    assert got["usp"] == [{"version": 1, "uspString": "1YNN"}, True]
    assert got["framed"] == {"returnValue": 2, "success": True, "callId": "f1"}
    name, _, string, ok = got["events"][0]
    assert name == "listenerRegistered" and ok is True
    [decoded] = iab_decode([string])
    assert decoded["sections"]["usnat"] == usnat  # IAB's decoding of the string it got
    # The listener registered from the queue hears the opt-out.
    page.evaluate("Consent.optOut()")
    wait_until(page, "window.got.events.some(e => e[0] == 'signalStatus')")
    last = page.evaluate("window.got.events.filter(e => e[0] == 'signalStatus').pop()")
    assert iab_decode([last[2]])[0]["sections"]["usnat"]["SaleOptOut"] == 1
    wait_recorded(us_env, 1, "opt_out")
    assert page.evaluate("window.violations") == []
    page.context.close()


def test_a_later_page_view_takes_the_strings_from_this_browser(browser, us_env):
    """The GPP strings and the view's texts are kept per site revision, region and
    language: with the HTTP cache emptied, a later page view still asks for no config."""
    ctx = visitor(browser, us_env, CALIFORNIA)
    page = ctx.new_page()
    page.goto(us_env.url())
    gpp_of(page)
    settle(page)
    assert any("/config?" in line and "details=1" in line for line in us_env.server_requests())
    seen = len(us_env.server_requests())
    ctx.new_cdp_session(page).send("Network.clearBrowserCache")
    page.reload()
    ping, sections = gpp_of(page)
    assert sections["usnat"]["SaleOptOut"] == 2 and ping["gppString"].startswith("DBA")
    settle(page)
    later = us_env.server_requests()[seen:]
    assert any("consent-region.js" in line for line in later)  # the cache was emptied
    assert not any("/config" in line for line in later), later
    ctx.close()


def test_a_california_gpc_visitors_next_session_keeps_what_they_never_declined(browser, us_env):
    # GPC opts out of sale/sharing only. The next browser session's check with the server
    # must not turn off what the visitor never decided (the server's view says false for
    # an undecided category; an opt-out region's widget has it on) nor reload the page.
    ctx, page = california_with_gpc(browser, us_env)
    wait_recorded(us_env, 1)
    wait_until(page, "document.cookie.includes('&r=')")  # the recording's answer is in
    settle(page)
    loads: list[str] = []
    second = ctx.new_page()  # a new tab: sessionStorage is per tab, so the check runs
    second.on("load", lambda p: loads.append(p.url))
    with second.expect_response(lambda r: "/me/" in r.url):
        second.goto(us_env.url())
    assert wait_ran(second, 3) == ANALYTICS_TAGS
    settle(second)
    assert len(loads) == 1, loads  # no reload
    categories = second.evaluate("Consent.get().categories")
    assert categories["analytics"] is True and categories["functional"] is True
    assert categories["advertising"] is False
    assert len(us_env.events()) == 1
    ctx.close()


def test_an_opt_out_made_elsewhere_turns_off_only_what_it_decided(browser, us_env):
    # A California visitor whose browser sends GPC has the region's defaults but for
    # sale/sharing (functional and analytics on, never decided). The site's backend then
    # records an opt-out of sale/sharing for the same person (one category, a newer event
    # than this browser's). At the next browser session the check adopts what that event
    # decided and nothing else: the server's map says false for the undecided categories
    # too, which must not turn them off (nor reload the page: nothing that ran goes off).
    import requests

    from consent.database import run_write
    from consent.sites import create_api_key, get_site

    ctx, page = california_with_gpc(browser, us_env)
    [own] = wait_recorded(us_env, 1)
    wait_until(page, "document.cookie.includes('&r=')")  # the recording's answer is in
    settle(page)
    subject = page.evaluate("Consent.get().subject")
    token = run_write(lambda: create_api_key(get_site("shop")))
    r = requests.post(f"{us_env.app_url}/api/v1/sites/shop/subjects/{subject}/events",
                      json={"action": "withdraw", "categories": {"advertising": False}},
                      headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 201, r.text
    assert r.json()["consent"]["decided"] == ["advertising"]
    loads: list[str] = []
    second = ctx.new_page()  # a new tab: sessionStorage is per tab, so the check runs
    second.on("load", lambda p: loads.append(p.url))
    with second.expect_response(lambda r: "/me/" in r.url) as checked:
        second.goto(us_env.url())
    view = checked.value.json()
    assert view["eventId"] != own.event_id and view["decided"] == ["advertising"]
    assert view["categories"]["functional"] is False  # (undecided: false in the map)
    settle(second)
    assert len(loads) == 1, loads  # no reload
    assert wait_ran(second, 3) == ANALYTICS_TAGS
    wait_until(second, f"Consent.get().eventId == '{view['eventId']}'")  # adopted
    categories = second.evaluate("Consent.get().categories")
    assert categories == {"essential": True, "functional": True, "analytics": True,
                          "advertising": False}
    assert not set(ADS_TAGS) & set(ran(second))
    _, sections = gpp_of(second)
    assert sections["usnat"]["SaleOptOut"] == 1
    assert len(us_env.events()) == 2
    ctx.close()
