"""Visit a site's pages in headless Chromium and observe what they store and contact.

Three passes, each in a fresh browser profile that behaves like a visitor's Chrome
(third-party cookies allowed), all traffic through the address guard (guard.py):

- `before`: every page as a first-time visitor sees it, nobody having chosen anything;
  this pass also finds the pages to scan (same-site links, up to the page limit);
- `after_reject`: "Reject all" through the widget's API (`Consent.rejectAll()`) on the
  first page, which is then loaded again, then every other page;
- `after_accept`: the same with `Consent.acceptAll()`.

On each page the crawler records cookies (name, domain, path, lifetime, party, HttpOnly,
Secure, SameSite), localStorage and sessionStorage keys of every frame, and requests to
other sites (host, resource types), each with the page it was first seen on in that pass
and, where known, the response or script that set it (a script's URL comes from the
stack of a `document.cookie` or `Storage.setItem` call, hooked before any page script).

Only names and metadata are kept: no cookie or storage value, no query string, no page
content. The scanner's choices are not recorded in the consent ledger: their POSTs to
`/api/v1/sites/*/decisions` are dropped. Top-level navigations away from the scanned
origins are blocked (a redirect off the site is noted, not followed).

This module knows nothing of the database: `run_crawl` takes a `CrawlTarget` and returns
a `CrawlResult`.
"""
from __future__ import annotations

import json
import os
import queue
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urldefrag, urljoin, urlsplit

from .guard import AddressPolicy, GuardProxy, own_endpoints

PHASES = ("before", "after_reject", "after_accept")
PHASE_LABELS = {"before": "before any choice", "after_reject": "after “Reject all”",
                "after_accept": "after “Accept all”"}
DECISION_PATH = re.compile(r"/api/v1/sites/[^/]+/decisions/?$")
WIDGET_PATH = re.compile(r"(/consent\.js$)|(/api/v1/sites/[^/]+/config$)")
SKIP_EXTENSIONS = re.compile(
    r"\.(pdf|zip|gz|tgz|rar|7z|exe|dmg|msi|apk|jpe?g|png|gif|webp|svg|ico|mp[34]|mov|avi|"
    r"webm|ogg|wav|woff2?|ttf|otf|css|js|json|xml|rss|csv|xlsx?|docx?|pptx?)$", re.I)
SCRIPT_URL = re.compile(r"(https?://[^\s()]+?):\d+:\d+")
# Chrome as a visitor has it: third-party cookies allowed (Playwright's default contexts
# are incognito-like and block them, which would hide exactly what a scan looks for).
PREFERENCES = {"profile": {"cookie_controls_mode": 0, "block_third_party_cookies": False,
                           "default_content_setting_values": {"cookies": 1}}}
CHROMIUM_ARGS = ["--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--no-default-browser-check",
                 "--disable-domain-reliability", "--dns-prefetch-disable",
                 # WebRTC must not reach addresses around the proxy
                 "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
                 "--webrtc-ip-handling-policy=disable_non_proxied_udp"]

# Runs in every frame before the page's own scripts: names what sets a cookie or a
# storage key, with the script URL from the call stack. Deletions are not "setting".
HOOK_JS = r"""
(() => {
  const say = (kind, name) => {
    try {
      const f = window.__consentScanReport;
      if (typeof f === 'function') f(kind, String(name).slice(0, 200), String(new Error().stack || '').slice(0, 4000));
    } catch (e) {}
  };
  try {
    const d = Object.getOwnPropertyDescriptor(Document.prototype, 'cookie');
    Object.defineProperty(Document.prototype, 'cookie', {
      configurable: true, enumerable: d.enumerable,
      get() { return d.get.call(this); },
      set(v) {
        const s = String(v);
        if (!/;\s*max-age\s*=\s*(0|-)/i.test(s) && !/;\s*expires\s*=[^;]*1970/i.test(s))
          say('cookie', s.split(';')[0].split('=')[0].trim());
        return d.set.call(this, v);
      }
    });
  } catch (e) {}
  try {
    const set = Storage.prototype.setItem;
    Storage.prototype.setItem = function (k, v) {
      let kind = 'local_storage';
      try { if (this === window.sessionStorage) kind = 'session_storage'; } catch (e) {}
      say(kind, k);
      return set.call(this, k, v);
    };
  } catch (e) {}
  try {
    if (window.CookieStore && CookieStore.prototype.set) {
      const cs = CookieStore.prototype.set;
      CookieStore.prototype.set = function (a, b) {
        say('cookie', typeof a === 'string' ? a : (a && a.name));
        return cs.apply(this, arguments);
      };
    }
  } catch (e) {}
})();
"""
STORAGE_JS = """() => {
  const keys = (s) => { try { const o = []; for (let i = 0; i < s.length; i++) o.push(s.key(i)); return o; } catch (e) { return null; } };
  let l = null, s = null;
  try { l = keys(window.localStorage); } catch (e) {}
  try { s = keys(window.sessionStorage); } catch (e) {}
  return {origin: location.origin, local: l, session: s};
}"""
WIDGET_READY = "() => !!(window.Consent && typeof window.Consent.rejectAll === 'function')"


class ScanError(Exception):
    """The scan cannot run or cannot reach the site; the message says what to do."""


@dataclass
class CrawlTarget:
    """What to scan and within which limits."""

    start_urls: list[str]
    allowed_origins: list[str]          # the site's origins: nothing else is navigated to
    max_pages: int = 10
    same_origin: bool = False           # crawl only the start URL's origin
    max_seconds: float = 300.0
    page_timeout: float = 20.0
    settle_seconds: float = 3.0         # longest wait for the network to go quiet
    allow_loopback: bool = False        # development and testing only
    consent_origins: list[str] = field(default_factory=list)
    chromium: str | None = None


@dataclass
class Sighting:
    """Where an item was first seen in one pass."""

    page: str
    set_by: str | None = None


@dataclass
class Item:
    """A cookie, storage key or third-party host, across the passes."""

    kind: str                 # cookie | local_storage | session_storage | request
    name: str                 # cookie name, storage key or host
    domain: str               # cookie domain, storage origin's host, or the host
    path: str = ""
    party: str = "first"
    phases: dict[str, Sighting] = field(default_factory=dict)
    attributes: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple:
        return (self.kind, self.name, self.domain, self.path)


@dataclass
class PageResult:
    """One scanned page: reached or not, and what was noticed there."""

    url: str
    status: int | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    widget: bool | None = None


@dataclass
class CrawlResult:
    """Everything a crawl observed."""

    pages: list[PageResult]
    items: list[Item]
    refused: list[dict]
    consent_origins: list[str]
    stopped: str | None = None
    started_at: float = 0.0
    seconds: float = 0.0


def origin_of(url: str) -> str:
    """scheme://host[:port] of URL, lower-case, without a default port."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def storable_url(url: str) -> str:
    """URL as stored: no query string, no fragment, no credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return f"{parts.scheme}://{netloc}{parts.path or '/'}"


def script_of(stack: str) -> str | None:
    """The innermost script URL in a V8 stack (our hook has none), stored form."""
    for match in SCRIPT_URL.finditer(stack or ""):
        return storable_url(match.group(1))
    return None


def site_roots(origins) -> set[str]:
    """Host names whose cookies count as first-party: each origin's host without www."""
    roots = set()
    for origin in origins:
        host = (urlsplit(origin).hostname or "").lower()
        if host:
            roots.add(host[4:] if host.startswith("www.") and host.count(".") > 1 else host)
    return roots


def party_of(domain: str, roots: set[str]) -> str:
    """'first' when DOMAIN is one of the site's hosts, a subdomain or a parent of one."""
    domain = (domain or "").lower().lstrip(".")
    for root in roots:
        if domain == root or domain.endswith("." + root) or root.endswith("." + domain):
            return "first"
    return "third"


def find_chromium(configured: str | None) -> str | None:
    """The Chromium to run: CONFIGURED, else one on PATH (Debian's), else None (then
    Playwright's own download is tried)."""
    if configured:
        if os.path.isfile(configured) and os.access(configured, os.X_OK):
            return configured
        raise ScanError(f"CONSENT_SCAN_CHROMIUM={configured!r} is not an executable file")
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


MISSING_CHROMIUM = ("Chromium was not found: install it (Debian/Ubuntu: `apt-get install "
                    "chromium`; `make install` does this) or set CONSENT_SCAN_CHROMIUM to "
                    "the browser's path")


def _human_error(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"^(Page|Frame|BrowserContext)\.\w+:\s*", "", text)
    match = re.search(r"net::ERR_[A-Z_]+", text)
    if match:
        known = {"net::ERR_CONNECTION_REFUSED": "connection refused",
                 "net::ERR_NAME_NOT_RESOLVED": "the host name does not resolve",
                 "net::ERR_TUNNEL_CONNECTION_FAILED": "refused by the address guard",
                 "net::ERR_CONNECTION_TIMED_OUT": "connection timed out",
                 "net::ERR_CERT_AUTHORITY_INVALID": "its TLS certificate is not trusted",
                 "net::ERR_BLOCKED_BY_CLIENT": "blocked: not one of the site's origins"}
        return f"{known.get(match.group(0), match.group(0))} ({match.group(0)})"
    if "Timeout" in text:
        return "the page did not load in time"
    return text[:300]


class Crawl:
    """One crawl: the passes, their observations, the limits."""

    def __init__(self, target: CrawlTarget, progress: Callable[[dict], None] | None = None):
        self.target = target
        self.progress = progress or (lambda info: None)
        self.roots = site_roots(target.allowed_origins)
        self.allowed = {origin_of(o) for o in target.allowed_origins if o != "*"}
        self.consent_origins = {origin_of(o) for o in target.consent_origins}
        # Without a configured public URL the consent server is recognised by its paths
        # (development and tests); with one, only that origin is the consent manager.
        self.detect_consent = not self.consent_origins
        self.items: dict[tuple, Item] = {}
        self.pages: list[PageResult] = []
        self.stopped: str | None = None
        self.phase = "before"
        self.current_page = ""
        self.setters: dict[tuple, str] = {}
        self.proxy: GuardProxy | None = None
        self.started = time.monotonic()
        self.deadline = self.started + target.max_seconds

    # ------------------------------------------------------------ limits and urls

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def crawlable(self, url: str, start_origin: str) -> bool:
        """Whether URL may be visited: http(s), on the site's origins, not a file."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or parts.username or parts.password:
            return False
        origin = origin_of(url)
        if self.target.same_origin:
            return origin == start_origin
        return origin in self.allowed

    # ------------------------------------------------------------ recording

    def _item(self, kind: str, name: str, domain: str, path: str = "", party: str = "first",
              set_by: str | None = None, **attributes) -> Item:
        key = (kind, name, domain, path)
        item = self.items.get(key)
        if item is None:
            item = self.items[key] = Item(kind, name, domain, path, party)
        if self.phase not in item.phases:
            item.phases[self.phase] = Sighting(storable_url(self.current_page), set_by)
        elif set_by and not item.phases[self.phase].set_by:
            item.phases[self.phase].set_by = set_by
        for k, v in attributes.items():
            if k == "types":
                item.attributes["types"] = sorted(set(item.attributes.get("types", [])) | v)
            elif v is not None:
                item.attributes.setdefault(k, v)
        return item

    def _on_request(self, request) -> None:
        url = request.url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            return
        origin = origin_of(url)
        if self.detect_consent and WIDGET_PATH.search(parts.path):
            self.consent_origins.add(origin)
        try:
            if request.is_navigation_request() and request.frame.parent_frame is None \
                    and origin not in self.allowed:
                return  # blocked by _route: never contacted
        except Exception:  # noqa: BLE001 - a service worker's request has no frame
            pass
        host = parts.hostname.lower()
        if party_of(host, self.roots) == "first":
            return
        self._item("request", host, host, party="third", types={request.resource_type},
                   set_by=f"request {storable_url(url)} ({request.resource_type})",
                   example=storable_url(url))

    def _on_response(self, response) -> None:
        try:
            values = response.header_values("set-cookie")
        except Exception:  # noqa: BLE001 - a response gone with its page
            return
        for value in values:
            for line in value.split("\n"):
                name = line.split(";", 1)[0].split("=", 1)[0].strip()
                if not name or re.search(r";\s*max-age\s*=\s*(0|-)", line, re.I):
                    continue
                host = (urlsplit(response.url).hostname or "").lower()
                self.setters.setdefault((self.phase, "cookie", name, host),
                                        f"the response of {storable_url(response.url)}")

    def _on_script_report(self, source, kind, name, stack) -> None:
        if kind not in ("cookie", "local_storage", "session_storage") or not name:
            return
        try:
            host = (urlsplit(source["frame"].url).hostname or "").lower()
        except Exception:  # noqa: BLE001
            host = ""
        script = script_of(stack)
        self.setters.setdefault((self.phase, kind, str(name)[:200], host),
                                f"script {script}" if script else "a script")

    def _setter(self, kind: str, name: str, domain: str) -> str | None:
        """What set NAME: in this pass if seen in it, else in an earlier moment."""
        domain = domain.lstrip(".")
        found = [(phase, value) for (phase, k, n, host), value in self.setters.items()
                 if k == kind and n == name and (
                     host == domain or host.endswith("." + domain) or not host)]
        for phase, value in found:
            if phase == self.phase:
                return value
        return found[0][1] if found else None

    def _snapshot(self, context, page) -> None:
        now = time.time()
        for c in context.cookies():
            domain = c["domain"].lower()
            lifetime = None if c.get("expires", -1) in (-1, None) else \
                max(0, int(c["expires"] - now))
            self._item("cookie", c["name"], domain.lstrip("."), c.get("path") or "/",
                       party=party_of(domain, self.roots),
                       set_by=self._setter("cookie", c["name"], domain),
                       lifetime_seconds=lifetime, http_only=bool(c.get("httpOnly")),
                       secure=bool(c.get("secure")), same_site=c.get("sameSite"),
                       host_only=not domain.startswith("."))
        for frame in page.frames:
            try:
                found = frame.evaluate(STORAGE_JS)
            except Exception:  # noqa: BLE001 - a frame that went away or forbids it
                continue
            host = (urlsplit(found.get("origin") or "").hostname or "").lower()
            if not host:
                continue
            for kind, keys in (("local_storage", found.get("local")),
                               ("session_storage", found.get("session"))):
                for key in keys or ():
                    self._item(kind, str(key)[:200], host, party=party_of(host, self.roots),
                               set_by=self._setter(kind, str(key)[:200], host))

    # ------------------------------------------------------------ browser

    def _route(self, route, request) -> None:
        try:
            if request.method == "POST" and DECISION_PATH.search(urlsplit(request.url).path):
                route.abort("blockedbyclient")  # the scanner's choices are not consent
                return
            if request.is_navigation_request() and request.frame.parent_frame is None:
                url = request.url
                if origin_of(url) not in self.allowed:
                    if self.pages:
                        self.pages[-1].notes.append(
                            f"tried to leave the site for {storable_url(url)}: not followed")
                    route.abort("blockedbyclient")
                    return
            route.continue_()
        except Exception:  # noqa: BLE001 - the page closed meanwhile
            pass

    def _open(self, playwright, proxy: GuardProxy, chromium: str | None):
        profile = tempfile.mkdtemp(prefix="consent-scan-")
        os.makedirs(os.path.join(profile, "Default"))
        with open(os.path.join(profile, "Default", "Preferences"), "w") as fh:
            json.dump(PREFERENCES, fh)
        args = list(CHROMIUM_ARGS)
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to sandbox as root
        try:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=chromium, headless=True, args=args,
                proxy={"server": proxy.url}, handle_sigint=False, handle_sigterm=False,
                handle_sighup=False)
        except Exception as exc:  # noqa: BLE001
            shutil.rmtree(profile, ignore_errors=True)
            text = str(exc)
            if "Executable doesn't exist" in text or "ENOENT" in text or \
                    "spawn" in text and "ENOENT" in text:
                raise ScanError(MISSING_CHROMIUM) from None
            raise ScanError(f"Chromium did not start: {_human_error(exc)}") from None
        user_agent = context.pages[0].evaluate("navigator.userAgent") if context.pages else ""
        if "HeadlessChrome" in user_agent:
            # What a visitor's Chrome sends: some sites serve headless browsers otherwise.
            context.set_extra_http_headers({"User-Agent": user_agent.replace(
                "HeadlessChrome", "Chrome")})
        context.add_init_script(HOOK_JS)
        context.expose_binding("__consentScanReport", self._on_script_report)
        context.route("**/*", self._route)
        context.on("request", self._on_request)
        context.on("response", self._on_response)
        return context, profile

    def _settle(self, page) -> None:
        try:
            page.wait_for_load_state("networkidle", timeout=max(
                100, min(self.target.settle_seconds, self.remaining()) * 1000))
        except Exception:  # noqa: BLE001 - a page that never goes quiet: take it as it is
            pass

    def _visit(self, page, url: str, result: PageResult | None) -> bool:
        """Load URL; False (with the reason on RESULT) when it could not be loaded."""
        timeout = min(self.target.page_timeout, max(0.5, self.remaining()))
        self.current_page = url
        try:
            response = page.goto(url, wait_until="load", timeout=timeout * 1000)
        except Exception as exc:  # noqa: BLE001
            if result is not None and not result.error:
                why = self.proxy.explain(url) if self.proxy else None
                result.error = why or _human_error(exc)
            return False
        if result is not None and response is not None:
            result.status = response.status
            if response.status >= 400 and not result.error:
                result.error = f"answered HTTP {response.status}"
        self._settle(page)
        return True

    def _choose(self, page, result: PageResult) -> bool:
        try:
            page.wait_for_function(WIDGET_READY, timeout=min(5000, max(
                100, self.remaining() * 1000)))
        except Exception:  # noqa: BLE001
            result.widget = False
            result.notes.append("no consent widget found (window.Consent): the choices "
                                "could not be made on this page")
            return False
        result.widget = True
        action = "rejectAll" if self.phase == "after_reject" else "acceptAll"
        try:
            page.evaluate(f"() => {{ try {{ window.Consent.{action}(); }} catch (e) {{}} }}")
        except Exception as exc:  # noqa: BLE001
            result.notes.append(f"the widget's {action}() failed: {_human_error(exc)}")
            return False
        self._settle(page)
        return True

    def _links(self, page, start_origin: str) -> list[str]:
        try:
            hrefs = page.eval_on_selector_all(
                "a[href]:not([download])", "els => els.map(e => e.href).slice(0, 2000)")
        except Exception:  # noqa: BLE001
            return []
        out = []
        for href in hrefs:
            url = urldefrag(urljoin(page.url, href))[0]
            if self.crawlable(url, start_origin) and not SKIP_EXTENSIONS.search(
                    urlsplit(url).path):
                out.append(url)
        return out

    def run(self) -> CrawlResult:
        """Run the three passes; returns what they saw."""
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            raise ScanError("the scanner needs Playwright: `pip install -r requirements.txt`"
                            ) from None
        chromium = find_chromium(self.target.chromium)
        policy = AddressPolicy(own=own_endpoints(self.target.allowed_origins),
                               allow_loopback=self.target.allow_loopback)
        started = time.time()
        with GuardProxy(policy) as proxy, sync_playwright() as pw:
            self.proxy = proxy
            if chromium is None and not os.path.exists(pw.chromium.executable_path):
                raise ScanError(MISSING_CHROMIUM)
            for phase in PHASES:
                if self.remaining() <= 0:
                    self.stopped = self.stopped or "time limit reached"
                    break
                self.phase = phase
                self._pass(pw, proxy, chromium)
                if phase == "before" and not any(p.error is None for p in self.pages):
                    first = self.pages[0] if self.pages else None
                    raise ScanError(f"could not load {first.url}: {first.error}" if first
                                    else "no page could be loaded")
            refused = [r.__dict__ for r in proxy.refusals]
        items = []
        for item in self.items.values():
            item.phases = {p: s for p, s in item.phases.items() if p in PHASES}
            if item.phases:
                items.append(item)
        return CrawlResult(pages=self.pages, items=items, refused=refused,
                           consent_origins=sorted(self.consent_origins), stopped=self.stopped,
                           started_at=started, seconds=time.monotonic() - self.started)

    def _pass(self, pw, proxy: GuardProxy, chromium: str | None) -> None:
        context, profile = self._open(pw, proxy, chromium)
        try:
            page = context.pages[0] if context.pages else context.new_page()
            if self.phase == "before":
                self._discover(page)
                return
            pages = [p for p in self.pages if p.error is None]
            for i, result in enumerate(pages):
                if self.remaining() <= 0:
                    self.stopped = "time limit reached"
                    return
                self.progress({"phase": self.phase, "done": i, "total": len(pages),
                               "page": storable_url(result.url)})
                phase = self.phase
                if i == 0:
                    # What happens before the click was seen by the `before` pass already;
                    # it is kept apart so that it is not counted as following the choice.
                    self.phase = f"{phase}:pre"
                loaded = self._visit(page, result.url, None)
                self.phase = phase
                if not loaded:
                    result.notes.append(f"could not be loaded again {PHASE_LABELS[self.phase]}")
                    continue
                if i == 0:
                    if not self._choose(page, result):
                        return  # without a choice this pass would repeat `before`
                    # the page as it loads under the choice
                    self._visit(page, result.url, None)
                self._snapshot(context, page)
            self.progress({"phase": self.phase, "done": len(pages), "total": len(pages)})
        finally:
            try:
                context.close()
            finally:
                shutil.rmtree(profile, ignore_errors=True)

    def _discover(self, page) -> None:
        queue = list(dict.fromkeys(urldefrag(u)[0] for u in self.target.start_urls))
        seen = set(queue)
        while queue and len(self.pages) < self.target.max_pages:
            if self.remaining() <= 0:
                self.stopped = "time limit reached"
                return
            url = queue.pop(0)
            result = PageResult(url=url)
            self.pages.append(result)
            self.progress({"phase": "before", "done": len(self.pages) - 1,
                           "total": min(self.target.max_pages, len(self.pages) + len(queue)),
                           "page": storable_url(url)})
            if not self._visit(page, url, result):
                continue
            if origin_of(page.url) not in self.allowed:
                result.error = f"left the site for {storable_url(page.url)}"
                continue
            self._snapshot(page.context, page)
            for link in self._links(page, origin_of(url)):
                if link not in seen and len(seen) < self.target.max_pages * 20:
                    seen.add(link)
                    queue.append(link)
        if queue and len(self.pages) >= self.target.max_pages:
            self.stopped = f"page limit ({self.target.max_pages}) reached"
        self.progress({"phase": "before", "done": len(self.pages), "total": len(self.pages)})


def run_crawl(target: CrawlTarget, progress: Callable[[dict], None] | None = None
              ) -> CrawlResult:
    """Crawl TARGET (see the module docstring); ScanError when it cannot run at all."""
    # Playwright's sync API refuses a thread whose asyncio loop runs (a process that
    # drives another browser, an app embedding the scanner): the crawl gets a thread of
    # its own, and its progress is reported from this one (which holds the app context).
    events: queue.Queue = queue.Queue()
    box: dict = {}

    def work() -> None:
        try:
            box["result"] = Crawl(target, events.put).run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc
        finally:
            events.put(None)

    thread = threading.Thread(target=work, name="scan-crawl", daemon=True)
    thread.start()
    while (info := events.get()) is not None:
        if progress:
            progress(info)
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]
