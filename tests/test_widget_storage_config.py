"""What the widget deletes on withdrawal besides cookies: each service's storage keys, as
one regular expression per area that never matches the widget's own consent: keys. They
come with the site's details (the second part loads them to delete; the first layer
carries no services at all)."""
from __future__ import annotations

import re

from consent.database import run_write
from consent.sites import create_site


def _config(client, key: str, details: bool) -> dict:
    r = client.get(f"/api/v1/sites/{key}/config?locale=en" + ("&details=1" if details else ""))
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
    assert all("services" not in c for c in _config(client, "blog", False).values())
    [stats] = _config(client, "blog", True)["analytics"]["services"]
    local = re.compile(stats["storage"]["localStorage"])
    session = re.compile(stats["storage"]["sessionStorage"])
    assert [k for k in ("st.last(1)", "st_a", "stXlast(1)", "st.last(1)x", "consent:cfg:blog:en",
                        "consent", "x_st_a") if local.search(k)] == ["st.last(1)", "st_a", "consent"]
    assert session.search("tab_1") and not session.search("consent:sync:blog")
    assert not session.search("st_a")
