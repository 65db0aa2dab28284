"""What a guardian's confirmation page says (consent.guardians), kept as a notice.

The page a guardian agrees on is a surface of its own (`guardian`, consent.notices): its
sentences filled in for the site, the title and description of every category and channel
it can name, and the policy version in force. The page is rendered from the site's
current revision and keeps its notice then; its form sends the revision and language
back, and the answer records that notice's digest in the guardian event's `meta.notice`.
"""
from __future__ import annotations

from .channels import CHANNELS
from .extensions import db
from .i18n import catalog, localised, page_strings
from .ledger.chain import canonical
from .minors import age_rule
from .notices import Shown, add_surface, notice_for, policy_sha256
from .sites import Category, SiteSnapshot, at_one_revision, fresh_snapshot

# The page's words before the answer (the two after it are not what was agreed to).
_ASKED = ("page.title", "page.intro", "page.policy", "page.agree", "page.refuse",
          "page.note")


def page_words(site: SiteSnapshot, locale: str) -> dict:
    """What the guardian's page says in LOCALE: its texts filled in (`texts`), and how it
    names each category and channel (`categories`, `channels`: key -> {title,
    description}, in the site's order)."""
    rule = age_rule(site)
    strings = catalog("minors", locale)
    who = strings[f"who.{rule.guardian if rule else 'guardian'}"]
    fill = {"{site}": site.name, "{age}": str(rule.adult_age) if rule else "", "{who}": who,
            "{version}": site.policy_label or ""}
    texts = {}
    for key, text in strings.items():
        # (the policy's line, a link to its archived text, only when a version is in force)
        if key.startswith("page.") and (key != "page.policy" or site.policy_label):
            for mark, value in fill.items():
                text = text.replace(mark, value)
            texts[key] = text
    categories = {c.key: {"title": localised(c.titles, locale, site.default_locale) or c.key,
                          "description": localised(c.descriptions, locale, site.default_locale)}
                  for c in db.session.execute(db.select(Category).where(
                      Category.site_id == site.id).order_by(Category.position, Category.id)
                  ).scalars()}
    pages = page_strings(site, locale)  # (the site's own names, as its preference page)
    channels = {k: {"title": pages.get(f"channel.{k}.title", k),
                    "description": pages.get(f"channel.{k}.description", "")} for k in CHANNELS}
    return {"texts": texts, "categories": categories, "channels": channels}


def guardian_notice_text(site_key: str, locale: str, region: str | None = None) -> str:
    """The guardian's page in LOCALE as a notice (consent.notices, surface `guardian`):
    its words, the title and description of every category and channel it can name (the
    event says which it named), and the policy version in force with the SHA-256 of its
    text."""
    site = fresh_snapshot(site_key)  # (as the page itself: notice_for checks its revision)
    words = page_words(site, locale)
    return canonical({
        "surface": "guardian", "locale": locale,
        "texts": {k: v for k, v in words["texts"].items() if k in _ASKED},
        "categories": [{"key": k, **v} for k, v in words["categories"].items()],
        "channels": [{"key": k, **v} for k, v in words["channels"].items()],
        "policy": {"version": site.policy_label,
                   "sha256": policy_sha256(site.id, site.policy_label)
                   if site.policy_label else None}})


def page_site(site_key: str, locale: str) -> tuple[SiteSnapshot, dict]:
    """The site as the database has it now and the page's words built from it (read
    again if an edit committed in between), so that the revision the form carries names
    the words it shows, whatever this process's cached copy says."""
    return at_one_revision(fresh_snapshot(site_key), lambda site: page_words(site, locale))


def page_notice(site: SiteSnapshot, locale: str, revision: str | None,
                sent_locale: str | None) -> Shown | None:
    """The notice of the guardian's page that REVISION of SITE showed in SENT_LOCALE (the
    form sends both back): its digest (None when no kept notice tells its words: a page
    from before notices were kept, or whose words this server never built) and the
    policy version it named; None for a revision this server never showed."""
    if not revision:
        return None
    return notice_for(site, locale, None, revision, "guardian", sent_locale=sent_locale)


add_surface("guardian", guardian_notice_text)
