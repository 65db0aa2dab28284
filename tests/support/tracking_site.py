"""A customer's site that tracks its visitors the way real tags do, for the scanner tests.

Two loopback origins, different sites to the browser (cookies are per host name):

- the site, http://127.0.0.1:PORT: `index.html` loads the consent widget, an analytics
  script tagged `analytics` that sets a first-party `_ga` cookie from script, and a
  tracking pixel from the ad server that is NOT tagged (it fires before any choice, on
  purpose); `about.html` has an ad iframe tagged `advertising` and a script tagged
  `analytics` that writes a `_hjasCachedUserAttributes` localStorage key (and an unknown
  key that looks like a spreadsheet formula); `private.html`
  tries to reach internal addresses;
- the ad server, http://localhost:PORT: the iframe answers with a third-party `IDE`
  cookie (SameSite=None; Secure: what a third-party cookie needs), the pixel with an
  image. Every request it gets is counted.
"""
from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00"
       b"\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><link rel="icon" href="data:,">
<script src="{app}/consent.js?site={site}"></script>
</head><body>
<h1>{title}</h1>
<nav><a href="index.html">Home</a> <a href="about.html">About</a> <a href="{ads}/elsewhere.html">Partner</a>
<button type="button" data-consent-open>Cookie settings</button></nav>
{body}
</body></html>
"""

INDEX_BODY = """<script type="text/plain" data-category="analytics" data-src="analytics.js"></script>
<img src="{ads}/pixel.gif?ev=pageview" alt="" width="1" height="1">
"""
ABOUT_BODY = """<iframe data-category="advertising" data-src="{ads}/ad-frame.html" title="Advert"></iframe>
<script type="text/plain" data-category="analytics" data-src="heatmap.js"></script>
"""
PRIVATE_BODY = """<img src="http://10.255.255.1/internal.gif" alt="">
<img src="http://169.254.169.254/latest/meta-data/" alt="">
"""

ANALYTICS_JS = ("document.cookie = '_ga=GA1.1.' + Math.floor(Math.random() * 1e9) + "
                "'; Max-Age=63072000; Path=/; SameSite=Lax';\n")
# The second key is unknown to the Open Cookie Database, and a spreadsheet would run it
# as a formula if the CSV report did not escape it.
HEATMAP_JS = ("localStorage.setItem('_hjasCachedUserAttributes', '{}');\n"
              "localStorage.setItem('=HYPERLINK(\"http://evil.example\")', '1');\n")
AD_FRAME = "<!doctype html><title>Ad</title><p>An advert</p>"


class _Server:
    def __init__(self, host: str, routes):
        counts = self.counts = Counter()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path = urlsplit(self.path).path
                counts[path] += 1
                found = routes(path)
                if found is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                content_type, body, headers = found
                data = body.encode() if isinstance(body, str) else body
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class TrackingSite:
    """The site and its ad server (see the module docstring)."""

    def __init__(self, app_url: str, site_key: str = "shop"):
        self.app_url, self.site_key = app_url, site_key
        self.ads = _Server("localhost", self._ad_routes)
        self.site = _Server("127.0.0.1", self._site_routes)
        self.url = self.site.url
        self.origin = self.site.url

    def page(self, name: str = "index.html") -> str:
        return f"{self.url}/{name}"

    def _site_routes(self, path: str):
        pages = {"/": ("Home", INDEX_BODY), "/index.html": ("Home", INDEX_BODY),
                 "/about.html": ("About us", ABOUT_BODY),
                 "/private.html": ("Private", PRIVATE_BODY)}
        if path in pages:
            title, body = pages[path]
            html = PAGE.format(title=title, app=self.app_url, site=self.site_key,
                               ads=self.ads.url, body=body.format(ads=self.ads.url))
            return "text/html; charset=utf-8", html, []
        scripts = {"/analytics.js": ANALYTICS_JS, "/heatmap.js": HEATMAP_JS}
        if path in scripts:
            return "text/javascript", scripts[path], []
        return None

    def _ad_routes(self, path: str):
        if path == "/ad-frame.html":
            return "text/html", AD_FRAME, [
                ("Set-Cookie", "IDE=AHWqTUk; Max-Age=34128000; Path=/; SameSite=None; Secure")]
        if path == "/pixel.gif":
            return "image/gif", GIF, []
        if path == "/elsewhere.html":
            return "text/html", "<!doctype html><title>Elsewhere</title><p>Not the site", []
        return None

    def stop(self) -> None:
        self.site.stop()
        self.ads.stop()
