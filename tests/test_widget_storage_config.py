"""What the banner's configuration carries for deletion on withdrawal: each service's
storage keys as one regular expression per area that never matches the widget's own
consent: keys; another site's cookies (which a page cannot delete) and always-on
categories' services are left out of the first visit's bytes."""
from __future__ import annotations

import re

from consent.database import run_write
from consent.sites import create_site


def _config(client, key: str) -> dict:
    r = client.get(f"/api/v1/sites/{key}/config?locale=en")
    assert r.status_code == 200
    return {c["key"]: c for c in r.get_json()["categories"]}


def test_storage_keys_become_one_expression_per_area(app, client):
    run_write(lambda: create_site("blog", "Blog", allowed_origins=["https://www.blog.example"],
                                  categories=[
        {"key": "essential", "services": [{"name": "Login", "cookies": [{"name": "sid"}]}]},
        {"key": "analytics", "services": [{"name": "Stats", "cookies": [
            {"name": "_st", "path": "/"}, {"name": "_st_x", "path": "/shop"},
            {"name": "own", "domain": ".blog.example"},
            {"name": "IDE", "domain": ".doubleclick.net"}], "storage": [
            {"name": "st.last(1)", "area": "local"}, {"pattern": "^consent|^st_", "area": "local"},
            {"pattern": "^tab_", "area": "session"}]}]}]))
    cats = _config(client, "blog")
    assert cats["essential"]["services"] == []
    [stats] = cats["analytics"]["services"]
    assert stats["cookies"] == [{"name": "_st"}, {"name": "_st_x", "path": "/shop"},
                                {"name": "own", "domain": ".blog.example"}]
    local = re.compile(stats["storage"]["localStorage"])
    session = re.compile(stats["storage"]["sessionStorage"])
    assert [k for k in ("st.last(1)", "st_a", "stXlast(1)", "st.last(1)x", "consent:cfg:blog:en",
                        "consent", "x_st_a") if local.search(k)] == ["st.last(1)", "st_a", "consent"]
    assert session.search("tab_1") and not session.search("consent:sync:blog")
    assert not session.search("st_a")
    # the dialog's details carry the same rules
    r = client.get("/api/v1/sites/blog/config?locale=en&details=1")
    details = {c["key"]: c for c in r.get_json()["categories"]}
    assert details["analytics"]["services"][0]["storage"] == stats["storage"]


def test_any_origin_keeps_every_cookie(app, client):
    run_write(lambda: create_site("open", "Open", allowed_origins=["*"], categories=[
        {"key": "advertising", "services": [{"name": "Ads", "cookies": [
            {"name": "IDE", "domain": ".doubleclick.net"}]}]}]))
    assert _config(client, "open")["advertising"]["services"] == [
        {"cookies": [{"name": "IDE", "domain": ".doubleclick.net"}]}]
