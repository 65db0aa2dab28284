"""The consent cookie lists every category key of a site: categories per site and key
length are capped so that the worst case stays far under the 4,096 bytes browsers keep
(issue 15), and every way of creating categories refuses more, saying why."""
from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa

from consent.database import run_write
from consent.errors import Invalid
from consent.extensions import db
from consent.policies import publish_policy
from consent.profiles import PROFILES, load_profile
from consent.sites import (CATEGORY_KEY_MAX, MAX_CATEGORIES, Category, CategoryLimit, Site,
                           create_site, get_site, invalidate_site_cache)
from consent.widget_config import (ConsentCookie, format_consent_cookie,
                                   parse_consent_cookie)
from tests.support.admin import post_form, session_csrf
from tests.test_widget_server import set_settings

# 39 custom keys of the longest length allowed, plus essential: the most a site can hold.
WORST_KEYS = [f"c{i:02d}" + "x" * (CATEGORY_KEY_MAX - 3) for i in range(MAX_CATEGORIES - 1)]
# Browsers drop a cookie (name=value) over 4,096 bytes; keep half of that free for
# whatever else the site's domain sets and for formats to come.
ROOM = 2048


def category_count(site_key: str) -> int:
    return db.session.execute(sa.select(sa.func.count()).select_from(Category).join(Site)
                              .where(Site.key == site_key)).scalar()


def test_worst_case_cookie_stays_far_under_4_kb(client):
    run_write(lambda: create_site("worst", "Worst case", allowed_origins=["https://w.example"],
                                  categories=[{"key": "essential"}]
                                  + [{"key": k} for k in WORST_KEYS]))
    label = "v" + "9" * 39  # the longest policy label (policies.LABEL_RE)
    run_write(lambda: publish_policy(get_site("worst").id, label, text="Policy",
                                     material=False))
    invalidate_site_cache()
    set_settings("worst", cookie={"server_set": True})
    # The longest visitor id and device key a decision may carry; half the categories
    # granted, half refused: every key is in the cookie.
    subject, key = "s" * 64, "k" * 64
    r = client.post("/api/v1/sites/worst/decisions", headers={"Origin": "https://w.example"},
                    json={"subject": subject, "key": key, "action": "custom",
                          "source": "preferences", "gpc": True,
                          "categories": {k: i % 2 == 0 for i, k in enumerate(WORST_KEYS)}})
    assert r.status_code == 201, r.get_json()
    name, value = r.headers["Set-Cookie"].split(";")[0].split("=", 1)
    served = parse_consent_cookie(value)
    assert served is not None and len(served.categories) == MAX_CATEGORIES
    assert served.policy_version == label and served.subject == subject
    # The fields the server did not need here at their longest as well (a minor, GPC).
    worst = dataclasses.replace(served, minor=True, gpc=True, source="preferences")
    text = f"{name}={format_consent_cookie(worst)}"
    assert len(text.encode()) <= ROOM, len(text.encode())
    assert parse_consent_cookie(format_consent_cookie(worst)) == worst


def test_the_issues_example_is_refused_by_create_site(app):
    # 100 custom categories with 40-character keys made a 4,216-byte cookie
    too_many = [{"key": "essential"}] + [{"key": f"k{i:03d}"} for i in range(MAX_CATEGORIES)]
    with pytest.raises(CategoryLimit, match=f"at most {MAX_CATEGORIES}"):
        run_write(lambda: create_site("big", "Big", categories=too_many))
    with pytest.raises(CategoryLimit, match=f"1-{CATEGORY_KEY_MAX} lower-case"):
        run_write(lambda: create_site("long", "Long",
                                      categories=[{"key": "x" * (CATEGORY_KEY_MAX + 1)}]))
    assert db.session.execute(sa.select(Site).where(Site.key.in_(["big", "long"]))).first() \
        is None


def cli_categories(n: int) -> list[str]:
    return [arg for i in range(n) for arg in ("--category", f"extra_{i:02d}")]


@pytest.mark.parametrize("args, expected", [
    (cli_categories(MAX_CATEGORIES - 3), f"at most {MAX_CATEGORIES}"),
    (["--category", "y" * (CATEGORY_KEY_MAX + 1)], f"1-{CATEGORY_KEY_MAX} lower-case"),
])
def test_cli_refuses_in_one_line(runner, app, args, expected):
    result = runner.invoke(args=["consent", "create-site", "big", "Big", *args])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and expected in lines[0], \
        result.output
    assert db.session.execute(sa.select(Site).where(Site.key == "big")).first() is None


def test_cli_accepts_the_most_a_site_can_have(runner, app):
    result = runner.invoke(args=["consent", "create-site", "full", "Full",
                                 *cli_categories(MAX_CATEGORIES - 4)])
    assert result.exit_code == 0, result.output
    assert category_count("full") == MAX_CATEGORIES


def test_admin_refuses_a_long_key_and_a_category_too_many(app, site, admin):
    url = f"/admin/sites/{site['key']}/categories"
    page = f"/admin/sites/{site['key']}/settings/categories"
    r = post_form(admin, url, {"key": "z" * (CATEGORY_KEY_MAX + 1), "title": "Z"}, page=page)
    assert r.status_code == 422
    assert f"1-{CATEGORY_KEY_MAX} lower-case letters" in r.get_data(as_text=True)
    before = category_count(site["key"])
    for i in range(MAX_CATEGORIES - before):
        r = post_form(admin, url, {"key": f"extra_{i:02d}", "title": f"Extra {i}"}, page=page)
        assert r.status_code == 302
    assert category_count(site["key"]) == MAX_CATEGORIES
    # the page no longer offers the form and says why
    html = admin.get(page).get_data(as_text=True)
    assert 'id="category-limit"' in html and 'id="new-key"' not in html
    r = admin.post(url, data={"key": "one_more", "title": "One more",
                              "csrf_token": session_csrf(admin, page)})
    assert r.status_code == 422
    assert f"at most {MAX_CATEGORIES}" in r.get_data(as_text=True)
    assert category_count(site["key"]) == MAX_CATEGORIES


@pytest.fixture
def huge_profile(monkeypatch):
    base = PROFILES["device_network"]
    extra = tuple({"key": f"extra_{i:02d}", "titles": {"en": f"Extra {i}"},
                   "descriptions": {"en": "More"}} for i in range(MAX_CATEGORIES))
    profile = dataclasses.replace(base, name="huge", categories=base.categories + extra)
    monkeypatch.setitem(PROFILES, "huge", profile)
    return profile


def test_a_profile_with_too_many_categories_is_refused_before_writing(app, runner,
                                                                       huge_profile):
    with pytest.raises(Invalid, match=f"profile 'huge': .*at most {MAX_CATEGORIES}"):
        load_profile("huge", site_key="huge")
    result = runner.invoke(args=["consent", "load-profile", "huge", "--site-key", "huge"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and f"at most {MAX_CATEGORIES}" in lines[0], result.output
    assert db.session.execute(sa.select(Site).where(Site.key == "huge")).first() is None


def test_every_built_in_profile_fits():
    for profile in PROFILES.values():
        keys = {c["key"] for c in profile.categories}
        assert len(keys) <= MAX_CATEGORIES
        assert all(len(k) <= CATEGORY_KEY_MAX for k in keys)


def test_the_minor_flag_survives_every_cookie_helper():
    cookie = ConsentCookie(subject="m" * 21, categories={"essential": True, "analytics": False},
                           decided_at=1795300000, expires_at=1826836000, source="banner",
                           key="k" * 22, read_token="r" * 22, minor=True)
    value = format_consent_cookie(cookie)
    assert "m=1" in value.split("&")
    assert parse_consent_cookie(value) == cookie
    # the widget's own form (URLSearchParams, m last)
    assert parse_consent_cookie("v=1&s=" + "m" * 21 + "&c=essential&d=&t=1&e=2&src=banner"
                                "&g=0&m=1").minor is True


def test_a_minors_server_set_cookie_carries_m(app, client):
    from tests.test_profiles import ORIGIN

    loaded = load_profile("device_network", site_key="dasset", origins=[ORIGIN])
    assert loaded.created
    set_settings("dasset", cookie={"server_set": True})
    r = client.post("/api/v1/sites/dasset/decisions", headers={"Origin": ORIGIN},
                    json={"action": "accept_all", "age": "minor"})
    assert r.status_code == 201, r.get_json()
    cookie = parse_consent_cookie(r.headers["Set-Cookie"].split(";")[0].split("=", 1)[1])
    assert cookie.minor is True
    adult = client.post("/api/v1/sites/dasset/decisions", headers={"Origin": ORIGIN},
                        json={"action": "accept_all", "age": "adult"})
    assert parse_consent_cookie(
        adult.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]).minor is False
