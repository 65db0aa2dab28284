"""Following a login link as a person does: open it, then press its button.

Opening a login link spends nothing (mail scanners and link previews fetch links before
the person does); the page's button, a CSRF-checked POST to the same URL, spends it.
"""
from __future__ import annotations

import re

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def follow(client, path: str):
    """With Flask's test CLIENT: open PATH and press Continue. Returns the POST's response
    (a 303 to the preference page), or the GET's when it is not the sign-in page."""
    page = client.get(path)
    if page.status_code != 200:
        return page
    return client.post(path, data={"csrf_token": CSRF.search(
        page.get_data(as_text=True)).group(1)})


def follow_http(session, url: str):
    """The same with a requests SESSION against a served URL; follows the redirect."""
    page = session.get(url, timeout=30)
    if page.status_code != 200:
        return page
    return session.post(url, data={"csrf_token": CSRF.search(page.text).group(1)}, timeout=30)


def follow_in_browser(page, url: str) -> None:
    """In a Playwright PAGE: open URL and press Continue; waits for the preference page."""
    page.goto(url)
    page.locator("#continue").click()
    page.wait_for_url("**/preferences?site=*")
