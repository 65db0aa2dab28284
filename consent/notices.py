"""What the visitor was shown: the notice behind each widget and preference-page decision.

A decision names the categories it grants; what those categories were said to be (their
titles, descriptions, services and cookies), the banner's and the dialog's words, the
policy version and its digest, the lifetimes and the GPC rule are the site's
configuration, which the operator edits in place. So each widget decision also records
the SHA-256 of that configuration as the widget had it (`meta.notice`, hashed with the
event and so in the verifiable log), and the configuration itself is kept, unchanged,
under that digest (table `notices`, which the database refuses to update or delete).

Anyone holding a receipt can fetch `GET /api/v1/sites/<site>/notices/<digest>` (public:
it is what every visitor of the site was shown) and check that its SHA-256 is the digest
in the event; the receipt carries the same document, so it also checks offline. The
widget sends the configuration revision it displayed (`revision`); a decision made on a
page loaded before a change is recorded with the notice of that earlier revision when this
server built it, and with none when it cannot tell which one the page showed. The
preference page's form carries its revision the same way, and records the page's own
notice (`surface` "preferences", built by consent.preference_center), as does a guardian's
confirmation page (`surface` "guardian", consent.guardians).
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from .database import UTCDateTime, run_write, utcnow
from .extensions import db
from .ledger.chain import canonical
from .policies import PolicyVersion
from .sites import cache_cleared, fresh_snapshot, site_snapshot
from .widget_config import config_built, widget_config

DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
REVISION_RE = r"^[0-9a-f]{16}$"

# What of the widget's configuration is not notice: how and where the widget works, not
# what it says (cache lifetime, endpoints, cookie attributes, the languages on offer,
# Google Consent Mode's options), and the revision, which names the notice instead.
_NOT_NOTICE = ("ttl", "endpoints", "cookie", "locales", "consentMode", "revision")


class Notice(db.Model):
    """One notice as visitors were shown it, kept under its SHA-256 (append-only)."""

    __tablename__ = "notices"
    __table_args__ = (
        # (the same revision can be built twice with other words, e.g. after an upgrade
        # changed a built-in string: both are kept)
        sa.UniqueConstraint("site_id", "revision", "locale", "region", "digest"),
        sa.Index("ix_notices_site_digest", "site_id", "digest"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    digest: Mapped[str] = mapped_column(sa.String(64))
    # The site's configuration revision, the language and the visitor's region ("" for
    # none) it was built for: how a decision from a page loaded earlier finds it.
    revision: Mapped[str] = mapped_column(sa.String(16))
    locale: Mapped[str] = mapped_column(sa.String(16))
    region: Mapped[str] = mapped_column(sa.String(16), default="")
    # Where it was shown: `widget` (the banner and its dialog), `preferences` (the
    # preference page, consent.preference_center), `guardian` (a guardian's confirmation
    # page, consent.guardians) or `api` (words a site's backend reported, keep_told).
    surface: Mapped[str] = mapped_column(sa.String(16), default="widget",
                                         server_default="widget")
    # The canonical JSON whose SHA-256 is `digest`, byte for byte.
    body: Mapped[str] = mapped_column(sa.Text)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def notice_ddl(dialect: str) -> list[str]:
    """Triggers that make the database refuse UPDATE and DELETE of notices."""
    if dialect == "sqlite":
        return [f"CREATE TRIGGER IF NOT EXISTS notices_no_{op.lower()} BEFORE {op} ON "
                "notices BEGIN SELECT RAISE(ABORT, 'notices are append-only'); END"
                for op in ("UPDATE", "DELETE")]
    if dialect == "postgresql":
        return [
            "CREATE OR REPLACE FUNCTION notices_guard() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'notices are append-only'; END $$ LANGUAGE plpgsql",
            "DROP TRIGGER IF EXISTS notices_append_only ON notices",
            "CREATE TRIGGER notices_append_only BEFORE UPDATE OR DELETE ON notices "
            "FOR EACH ROW EXECUTE FUNCTION notices_guard()",
        ]
    return []


def drop_notice_ddl(dialect: str) -> list[str]:
    """The statements that remove the guard (the migration's downgrade)."""
    if dialect == "sqlite":
        return ["DROP TRIGGER IF EXISTS notices_no_update",
                "DROP TRIGGER IF EXISTS notices_no_delete"]
    if dialect == "postgresql":
        return ["DROP TRIGGER IF EXISTS notices_append_only ON notices",
                # (guards_0001's trigger calls the same function)
                *drop_notice_overwrite_ddl(dialect),
                "DROP FUNCTION IF EXISTS notices_guard()"]
    return []


def notice_overwrite_ddl(dialect: str) -> list[str]:
    """What the UPDATE and DELETE triggers do not see (migration guards_0001). SQLite:
    `INSERT OR REPLACE` removes the row it replaces without firing DELETE triggers (unless
    `recursive_triggers` is on), so an insert that would replace a kept notice is ignored
    instead, as the app's own `ON CONFLICT DO NOTHING` does. PostgreSQL: TRUNCATE fires
    no row triggers, so a statement trigger refuses it."""
    if dialect == "sqlite":
        return ["CREATE TRIGGER IF NOT EXISTS notices_no_replace BEFORE INSERT ON notices "
                "WHEN EXISTS (SELECT 1 FROM notices n WHERE n.id = NEW.id OR ("
                "n.site_id = NEW.site_id AND n.revision = NEW.revision AND n.locale = "
                "NEW.locale AND n.region = NEW.region AND n.digest = NEW.digest)) "
                "BEGIN SELECT RAISE(IGNORE); END"]
    if dialect == "postgresql":
        return ["DROP TRIGGER IF EXISTS notices_no_truncate ON notices",
                "CREATE TRIGGER notices_no_truncate BEFORE TRUNCATE ON notices "
                "FOR EACH STATEMENT EXECUTE FUNCTION notices_guard()"]
    return []


def drop_notice_overwrite_ddl(dialect: str) -> list[str]:
    if dialect == "sqlite":
        return ["DROP TRIGGER IF EXISTS notices_no_replace"]
    if dialect == "postgresql":
        return ["DROP TRIGGER IF EXISTS notices_no_truncate ON notices"]
    return []


@sa.event.listens_for(Notice.__table__, "after_create")
def _install_guard(target, connection, **kw):
    # Runs for db.create_all(); the migrations install the same statements themselves.
    dialect = connection.dialect.name
    for statement in notice_ddl(dialect) + notice_overwrite_ddl(dialect):
        connection.exec_driver_sql(statement)


def notice_text(site_key: str, locale: str, region: str | None) -> str:
    """The notice of SITE_KEY in LOCALE for a visitor from REGION, as canonical JSON: the
    widget's whole configuration (the dialog's details included), less what is not
    notice, and the policy version in force with the SHA-256 of its text."""
    site = site_snapshot(site_key)
    config = widget_config(site_key, locale, details=True, region=region)
    for key in _NOT_NOTICE:
        config.pop(key, None)
    policy = dict(config.get("policy") or {})
    # (the link is the host the page used; the version's own digest names its text)
    policy.pop("url", None)
    if policy.get("version"):
        policy["sha256"] = policy_sha256(site.id, policy["version"])
    config["policy"] = policy
    return canonical(config)


def policy_sha256(site_id: int, label: str) -> str | None:
    """The SHA-256 of the text of policy version LABEL of SITE_ID (what names its words in
    a notice, whatever host the page linked it on)."""
    return db.session.execute(sa.select(PolicyVersion.sha256).where(
        PolicyVersion.site_id == site_id,
        PolicyVersion.label == label)).scalar_one_or_none()


def digest_of(text: str) -> str:
    """The SHA-256 (hex) of a notice's canonical JSON."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Shown:
    """A notice as a decision needs it: its digest, the categories it offered, the policy
    version it showed and its language."""

    # None when only the categories and policy version of the page's revision are known,
    # not its words (see notice_for)
    digest: str | None
    categories: frozenset
    policy: str | None = None
    # the language of the stored notice (for an earlier revision: the page's own)
    locale: str | None = None


# How each surface's notice is built: (site key, locale, region) -> canonical JSON. The
# preference page adds its own (consent.preference_center).
_TEXTS: dict[str, Callable[[str, str, str | None], str]] = {"widget": notice_text}


def add_surface(name: str, text: Callable[[str, str, str | None], str]) -> None:
    """Let decisions made on surface NAME record a notice built by TEXT."""
    _TEXTS[name] = text


# (site key, revision, locale, region, surface) -> Shown, for notices this process stored
# or found; a few hundred entries at most (cleared when it grows).
_known: dict[tuple, Shown] = {}
_known_lock = threading.Lock()


def _shown(text: str, digest: str | None = None, locale: str | None = None) -> Shown:
    doc = json.loads(text)
    return Shown(digest or digest_of(text),
                 frozenset(c["key"] for c in doc.get("categories") or ()),
                 (doc.get("policy") or {}).get("version"), locale)


def _tag(value) -> str | None:
    """A language tag as a page sent it back (the widget's `locale`, the form's `lang`);
    None for anything else. (Compared without regard to case: `pt-BR` is kept as the
    site spells it.)"""
    if not isinstance(value, str) or not 0 < len(value) <= 16:
        return None
    return value.strip().replace("_", "-") or None


def notice_for(site, locale: str, region: str | None, revision: str,
               surface: str = "widget", sent_locale: str | None = None) -> Shown | None:
    """The notice SURFACE (the widget, the preference page) showing REVISION of SITE (a
    snapshot) displayed in LOCALE to a visitor from REGION, storing the current revision's
    notice the first time; None when REVISION is neither the current one nor one stored
    before.

    For an earlier revision, the page was built under that revision's settings, which
    may since have changed: its notice is looked up under the language the page sent
    back (SENT_LOCALE, even one the site no longer offers) and the visitor's own region,
    never re-resolved with today's languages or region rules. When no notice of that
    revision is kept for them, the categories and policy version any notice of the
    revision names are returned with no digest: the choice is then still limited to what
    the page offered, and names no words it cannot prove."""
    if surface != "widget" or not region or "regions" not in (site.settings or {}):
        # (the preference page's words do not depend on the region, nor do the widget's
        # on a site without rules by region). On a site with rules, each region's notice
        # is kept under its own code, opt-in ones too (the same words, so the same
        # digest): a page of an earlier revision is then found under the visitor's own
        # region, never guessed from today's rules.
        region = ""
    if revision != site.revision:
        return _earlier(site, _tag(sent_locale) or locale, region, revision, surface)
    key = (site.key, revision, locale, region, surface)
    shown = _known.get(key)
    if shown is not None:
        return shown
    text = _TEXTS[surface](site.key, locale, region or None)
    # Stored only if the database still has this revision once the words are built: this
    # process's snapshot may be older than another process's edit
    # (CONSENT_SITE_CACHE_SECONDS), and on PostgreSQL each read sees the latest commits,
    # so an edit committed meanwhile would otherwise file its new words under the old
    # revision.
    now = fresh_snapshot(site.key)
    if now.revision != revision:
        return notice_for(now, locale, region or None, revision, surface, sent_locale)
    shown = _shown(text, locale=locale)
    if region and _regional_rows(site.id, revision) >= MAX_REGIONAL:
        # Region codes come from a request header: however many a deployment lets through
        # (docs/regions.md: only a CDN's own), a revision keeps a bounded number of regional
        # notices. Past that, a decision is limited to what the page offered and names no
        # words (none are kept to prove them).
        current_app.logger.warning("site %s revision %s: more than %d regional notices, "
                                   "region %s not kept", site.key, revision, MAX_REGIONAL,
                                   region)
        return Shown(None, shown.categories, shown.policy, locale)
    _store(site.id, shown.digest, revision, locale, region, surface, text)
    _remember(key, shown)
    return shown


# Regional notices kept per site revision, at most: every country and every subdivision
# with rules of its own (the US states, Canada's provinces, ...) in several languages.
MAX_REGIONAL = 2000


def _regional_rows(site_id: int, revision: str) -> int:
    return db.session.execute(sa.select(sa.func.count()).select_from(Notice).where(
        Notice.site_id == site_id, Notice.revision == revision, Notice.region != "")
    ).scalar_one()


def _remember(key: tuple, shown: Shown) -> None:
    with _known_lock:
        if len(_known) > 500:
            _known.clear()
        _known[key] = shown


def _earlier(site, locale: str, region: str, revision: str, surface: str) -> Shown | None:
    """notice_for of an earlier REVISION: the notice stored for LOCALE and REGION (the
    visitor's own), else the categories and policy version of any notice of that
    revision, without a digest."""
    key = (site.key, revision, locale.lower(), region, surface, "earlier")
    shown = _known.get(key)
    if shown is not None:
        return shown
    where = [region]
    if region and not _regional_rows(site.id, revision):
        # No notice of that revision is regional: it was served before the site had rules
        # by region, to everyone alike.
        where.append("")
    for place in where:
        row = db.session.execute(
            sa.select(Notice.digest, Notice.body, Notice.locale).where(
                Notice.site_id == site.id, Notice.revision == revision,
                sa.func.lower(Notice.locale) == locale.lower(), Notice.region == place,
                Notice.surface == surface)
            .order_by(Notice.id.desc()).limit(1)).first()
        if row is not None:
            shown = _shown(row.body, row.digest, row.locale)
            _remember(key, shown)
            return shown
    # Another language, region or surface of the same revision: the same categories and
    # policy version (they do not depend on those), but not these words.
    body = db.session.execute(
        sa.select(Notice.body).where(Notice.site_id == site.id, Notice.revision == revision,
                                     Notice.surface != "api")
        .order_by(Notice.id.desc()).limit(1)).scalar_one_or_none()
    if body is None:
        return None  # (not remembered: this server may build it yet)
    known = _shown(body)
    return Shown(None, known.categories, known.policy, None)


def forget_notices() -> None:
    """Forget the digests this process knows (all sites; another database, in tests)."""
    with _known_lock:
        _known.clear()


def _store(site_id: int, digest: str, revision: str, locale: str, region: str,
           surface: str, text: str) -> None:
    run_write(_insert, site_id, digest, revision, locale, region, surface, text)


def _insert(site_id: int, digest: str, revision: str, locale: str, region: str,
            surface: str, text: str) -> None:
    dialect = db.session.get_bind().dialect.name
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(Notice.__table__)
    db.session.execute(ins.values(
        site_id=site_id, digest=digest, revision=revision, locale=locale, region=region,
        surface=surface, body=text, first_at=utcnow()).on_conflict_do_nothing())


def keep_told(site_id: int, text: str) -> str:
    """Keep the words a site's backend says the person was shown when it reports their
    choice (the server and channel APIs' `shown`: a sign-up box's label, the sentence
    above it), as a notice of surface `api`, and return its digest for the event's
    `meta.notice`. Inside the event's write transaction, so both commit or neither. The
    server cannot know that the person saw them; what it proves is that these are the
    words the site named when it recorded the choice, unchanged since."""
    body = canonical({"surface": "api", "text": text})
    digest = digest_of(body)
    _insert(site_id, digest, "", "", "", "api", body)
    return digest


def get_notice(site_id: int, digest: str) -> str | None:
    """The stored notice of SITE_ID with DIGEST, as the canonical JSON hashed."""
    if not DIGEST_RE.fullmatch(digest or ""):
        return None
    return db.session.execute(sa.select(Notice.body).where(
        Notice.site_id == site_id, Notice.digest == digest).limit(1)).scalar_one_or_none()


def attach_notice(receipt: dict, site_id: int) -> dict:
    """RECEIPT with the notice its event recorded (`notice`), so that it checks offline
    (consent.ledger.receipts.check_receipt)."""
    digest = (receipt["event"].get("meta") or {}).get("notice")
    text = get_notice(site_id, digest) if digest else None
    if text is not None:
        receipt["notice"] = json.loads(text)
    return receipt


def keep_shown(site, locale: str, region: str | None, surface: str = "widget") -> None:
    """Keep the notice of what SURFACE is showing (a widget config being served, the
    preference page being rendered), so that a decision made on it finds it whichever
    process records it; a failure only means such a decision may record no notice, never
    a failed page."""
    try:
        notice_for(site, locale, region, site.revision, surface)
    except Exception:  # noqa: BLE001 - the page is served all the same
        current_app.logger.warning("could not keep the %s notice of site %s revision %s",
                                   surface, site.key, site.revision, exc_info=True)


config_built.append(keep_shown)
cache_cleared.append(forget_notices)


def verify_notices(site_ids=None) -> list:
    """Problems with the notices events name (`flask consent verify`): a notice an event
    recorded that is no longer kept, or one whose text no longer hashes to its digest."""
    from .ledger import ConsentEvent
    from .ledger.verify import SiteProblem
    from .sites import Site

    problems = []
    query = sa.select(Site.id, Site.key).order_by(Site.id)
    if site_ids is not None:
        query = query.where(Site.id.in_(list(site_ids)))
    for site_id, site_key in db.session.execute(query).all():
        named: dict[str, str] = {}  # digest -> the first event naming it
        rows = db.session.execute(
            sa.select(ConsentEvent.event_id, ConsentEvent.meta)
            .where(ConsentEvent.site_id == site_id, ConsentEvent.meta.is_not(None))
            .execution_options(yield_per=2000))
        for event_id, meta in rows:
            digest = meta.get("notice") if isinstance(meta, dict) else None
            if digest and digest not in named:
                named[digest] = event_id
        kept = {}
        for digest, body in db.session.execute(
                sa.select(Notice.digest, Notice.body).where(Notice.site_id == site_id)):
            if digest_of(body) != digest:
                problems.append(SiteProblem(site_key, f"notice {digest[:16]}… no longer "
                                            "hashes to its digest: it was edited", "notice"))
            kept[digest] = True
        for digest, event_id in named.items():
            if digest not in kept:
                problems.append(SiteProblem(site_key, f"event {event_id} names notice "
                                            f"{digest[:16]}…, which is not kept: it was "
                                            "deleted", "notice"))
    return problems
