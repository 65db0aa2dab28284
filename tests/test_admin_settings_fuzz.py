"""Bad input on the admin's settings forms (Messages and GPC, Cookie and links, Minors,
Widget texts, SMS gateways): every answer is a page, never a 500, and whatever was
saved leaves the site's configuration readable by every surface."""
from __future__ import annotations

import random
import re
import string

FORMS = {
    "/admin/sites/shop/settings/messages": (
        "gpc_categories", "email_promotional", "unsubscribe_scope", "sms_stop", "sms_start",
        "sms_opt_in"),
    "/admin/sites/shop/settings/cookie": (
        "cookie_name", "cookie_domain", "cookie_same_site", "cookie_server_set",
        "public_base_url", "unsubscribe_link_days", "login_session_minutes"),
    "/admin/sites/shop/settings/minors": (
        "age_rule_on", "adult_age", "from_age", "guardian", "ask", "guardian_verification",
        "categories", "channels", "quote"),
    "/admin/sites/shop/texts/en": ("t_title", "t_nt", "t_text", "t_acceptAll"),
    "/admin/sites/shop/texts/de": ("t_title", "t_nt"),
    "/admin/sites/shop/sms-gateways": ("provider", "signing_secret", "signature_method"),
}
VALUES = ("", "0", "-1", "99999999999999999999", "on", "None", "\x00", "a" * 5000, "é✓ 订阅",
          "{version}", "{date} {version}", "<script>alert(1)</script>", "http://",
          "https://x.example/?a=1", " . ", "essential", "analytics", "advertising", "1e3",
          "true", "shop.example", "Lax", "twilio", "vonage", "sha256", "parent", "always",
          "email.promotional", "all_promotional")


def test_random_forms_get_pages_and_leave_a_readable_site(client, site, admin):
    html = admin.get("/admin/sites/shop/settings/messages").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    rnd = random.Random(20261204)
    statuses = set()
    for url, names in FORMS.items():
        for _ in range(120):
            data = {n: rnd.choice(VALUES) for n in names if rnd.random() < 0.8}
            if rnd.random() < 0.2:
                data["extra_" + rnd.choice(string.ascii_lowercase)] = "x"
            r = admin.post(url, data={**data, "csrf_token": token})
            assert r.status_code < 500, (url, data, r.get_data(as_text=True)[:500])
            statuses.add(r.status_code)
    assert {302, 422} <= statuses  # some saved, some refused
    # whatever was saved, every surface still reads the site
    for path in ("/api/v1/sites/shop/config?locale=en", "/api/v1/sites/shop/config?locale=de",
                 "/consent.js?site=shop"):
        assert client.get(path).status_code == 200, path
    for section in ("messages", "cookie", "minors", "texts", "sms", "general"):
        assert admin.get(f"/admin/sites/shop/settings/{section}").status_code == 200
    r = client.post("/api/v1/sites/shop/decisions", json={"action": "accept_all"},
                    headers={"Origin": site["origin"]})
    assert r.status_code == 201, r.get_data(as_text=True)
