"""Verifiable guardian consent: a minor's grants wait until a guardian confirms them.

Seed policy 001 requires "the explicit consent of your guardian", 004 "parental consent".
A box the minor ticks proves neither. On sites whose age rule says
`"guardian_verification": "link"` (the default), ticking "my guardian agrees" in the
widget or the preference center records the choice with the restricted grants
*withheld* (as for a minor alone) and opens a **guardian request**:

1. the event's meta says `awaiting_guardian: true`; a ledger listener writes a
   `guardian_requests` row (what was asked for, the event, an expiry) in the same
   transaction, and a `guardian.requested` webhook to every active endpoint;
2. the product cannot send mail itself: the site's backend reads the request
   (`GET /api/v1/sites/<key>/guardian-requests/<id>`, site API key), which answers the
   signed confirmation link and the guardian's address if the person gave one (kept
   encrypted under CONSENT_DATA_KEY until the request is decided), and delivers it;
3. the guardian opens the link, sees what the minor asked for, and agrees or refuses.
   Agreeing appends one `guardian` event (source `email_link`, meta `guardian: true,
   verified: "link"`, and `notice`: the digest of the words its page showed, kept as a
   notice of surface `guardian`) turning the asked-for keys on; either answer ends the
   link. One answer counts: it claims the request before any event, so two at once (a
   double click, two tabs) record one and the others are refused like a used link.

Until then the person's state says "awaiting guardian" (server API `guardian`, the
preference center). A site that verified the guardian itself records it with
`POST /api/v1/sites/<key>/guardian-consents` as before, which also settles open requests.
Nothing here sends a notification without its event, and the webhook carries no link and
no address: both are credentials or personal data, and outbox rows are readable by anyone
holding the database.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app, has_request_context, url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.orm import Mapped, mapped_column

from . import rawsql
from .channels import set_guardian_hook
from .database import UTCDateTime, iso, run_write, utcnow
from .errors import Conflict, Forbidden, Invalid
from .extensions import db
from .ledger import AppendedEvent, append_event, on_append
from .sites import NotFound, SiteSnapshot, site_snapshot

STATUSES = ("awaiting", "confirmed", "refused", "expired", "settled", "erased")
DEFAULT_LINK_DAYS = 7
ADDRESS_PURPOSE = "guardian-address"
REQUESTED = "guardian.requested"


class GuardianRequest(db.Model):
    """A minor's withheld grants, waiting for a guardian to confirm them."""

    __tablename__ = "guardian_requests"
    __table_args__ = (sa.Index("ix_guardian_requests_site_subject", "site_id", "subject_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    subject_id: Mapped[int] = mapped_column(sa.ForeignKey("subjects.id"))
    # The event that withheld the grants (and announced the request).
    event_id: Mapped[str] = mapped_column(sa.String(32))
    categories: Mapped[list] = mapped_column(sa.JSON, default=list)
    channels: Mapped[list] = mapped_column(sa.JSON, default=list)
    status: Mapped[str] = mapped_column(sa.String(16), default="awaiting")
    # The guardian's address as the person typed it, encrypted; deleted once decided.
    address_sealed: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_event_id: Mapped[str | None] = mapped_column(sa.String(32))


def link_days(site: SiteSnapshot) -> int:
    """How long a guardian link works: age_rule.guardian_link_days or 7."""
    value = (site.settings.get("age_rule") or {}).get("guardian_link_days")
    return value if isinstance(value, int) and 0 < value <= 60 else DEFAULT_LINK_DAYS


def verifies_by_link(rule_settings: dict | None) -> bool:
    """Whether a site's age rule wants guardians verified by a link (the default)."""
    return (rule_settings or {}).get("guardian_verification", "link") == "link"


# ---------------------------------------------------------------- opening a request


@on_append
def _open_request(ev: AppendedEvent) -> None:
    # Runs inside the consent write (raw connection on the widget path): rawsql only.
    meta = ev.meta or {}
    if ev.duplicate or not meta.get("awaiting_guardian") or ev.subject_id is None:
        return
    withheld = meta.get("withheld") or []
    from .channels import CHANNELS

    channels = [k for k in withheld if k in CHANNELS]
    categories = [k for k in withheld if k not in CHANNELS]
    row = rawsql.one("SELECT settings FROM sites WHERE id = :id", {"id": ev.site_id})
    settings = rawsql.from_db_json(row[0]) if row else {}
    days = (settings or {}).get("age_rule", {}).get("guardian_link_days")
    days = days if isinstance(days, int) and 0 < days <= 60 else DEFAULT_LINK_DAYS
    now = utcnow()
    _forget_ended_addresses(ev.site_id, now)
    # An earlier open request of the person is replaced by the new one.
    rawsql.run("UPDATE guardian_requests SET status = 'settled', decided_at = :now, "
               "address_sealed = NULL WHERE site_id = :site AND subject_id = :subject "
               "AND status = 'awaiting'",
               {"now": rawsql.to_db_time(now), "site": ev.site_id, "subject": ev.subject_id})
    rawsql.insert_rows(GuardianRequest.__table__, [{
        "site_id": ev.site_id, "subject_id": ev.subject_id, "event_id": ev.event_id,
        "categories": categories, "channels": channels, "status": "awaiting",
        "created_at": now, "expires_at": now + timedelta(days=days)}])
    request_id = rawsql.one("SELECT max(id) FROM guardian_requests WHERE event_id = :e",
                            {"e": ev.event_id})[0]
    from .outbox import enqueue_site_notice

    # Its own outbox event id: the withholding event may have a consent.changed notice.
    enqueue_site_notice(ev.site_id, REQUESTED, f"grd_{request_id}", f"guardian_{request_id}",
                        ev.subject, {"site": ev.site_key, "guardian_request": {
                            "id": request_id, "categories": categories,
                            "channels": channels, "expires_at": iso(now + timedelta(days=days)),
                            "event_id": ev.event_id}})


def _forget_ended_addresses(site_id: int, now: datetime) -> None:
    """Delete the guardian addresses of SITE_ID's requests that can no longer be answered
    (expired links; the others lose theirs when they end). Raw SQL: also runs inside the
    widget's raw write."""
    rawsql.run("UPDATE guardian_requests SET address_sealed = NULL WHERE site_id = :site "
               "AND address_sealed IS NOT NULL AND (status <> 'awaiting' OR expires_at <= "
               ":now)", {"site": site_id, "now": rawsql.to_db_time(now)})


def attach_address(event_id: str, address: str | None) -> None:
    """Keep the guardian's address the person gave (encrypted) on the request that the
    event EVENT_ID opened; inside the same write transaction."""
    if not address:
        return
    from .channels import normalise_address
    from .secretbox import seal

    value = normalise_address("email", address)
    rawsql.run("UPDATE guardian_requests SET address_sealed = :sealed WHERE event_id = :e "
               "AND status = 'awaiting'", {"sealed": seal(value, ADDRESS_PURPOSE),
                                           "e": event_id})


# ---------------------------------------------------------------- links


def _serializer(site_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"],
                                  salt=f"consent.guardian.v1:{site_key}")


def guardian_token(site_key: str, request_id: int, event_id: str) -> str:
    """The signed token of a request's confirmation link: the request and the event that
    opened it (a row id alone could name another person's request, were it ever reused)."""
    return _serializer(site_key).dumps({"g": request_id, "e": event_id})


def guardian_link(site_key: str, request_id: int, event_id: str) -> str:
    """The absolute confirmation URL to deliver to the guardian."""
    token = guardian_token(site_key, request_id, event_id)
    if has_request_context():
        return url_for("guardian.confirm_page", site_key=site_key, token=token, _external=True)
    base = (current_app.config.get("CONSENT_PUBLIC_URL") or "").rstrip("/")
    return f"{base}/guardian/{site_key}/{token}"


@dataclass
class RequestView:
    """A guardian request as the site's backend and the guardian's page see it."""

    id: int
    site: SiteSnapshot
    subject: str | None
    status: str
    categories: list[str]
    channels: list[str]
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    event_id: str
    decision_event_id: str | None
    address: str | None = None
    url: str | None = None


def _standing(req: GuardianRequest) -> tuple[str, set[str]]:
    """REQ's status now, and while it is awaiting the keys it still asks for (one look at
    the person's ledger)."""
    if req.status != "awaiting":
        return req.status, set()
    if req.expires_at <= utcnow():
        return "expired", set()
    asked = still_asked(req)
    # (every key decided again since: nothing left to confirm)
    return ("awaiting" if asked else "settled"), asked


def _view(site: SiteSnapshot, req: GuardianRequest, *, with_secrets: bool,
          standing: tuple[str, set[str]] | None = None) -> RequestView:
    from .secretbox import unseal
    from .subjects import Subject

    subject = db.session.get(Subject, req.subject_id)
    status = (standing or _standing(req))[0]
    view = RequestView(req.id, site, subject.public_id if subject else None, status,
                       list(req.categories or ()), list(req.channels or ()), req.created_at,
                       req.expires_at, req.decided_at, req.event_id, req.decision_event_id)
    if with_secrets and status == "awaiting":
        view.address = unseal(req.address_sealed, ADDRESS_PURPOSE) if req.address_sealed \
            else None
        view.url = guardian_link(site.key, req.id, req.event_id)
    return view


def get_request(site_key: str, request_id: int) -> RequestView:
    """One request with its link and address (while awaiting), for the site's backend."""
    site = site_snapshot(site_key)
    req = db.session.get(GuardianRequest, request_id)
    if req is None or req.site_id != site.id:
        raise NotFound("guardian request", str(request_id))
    return _view(site, req, with_secrets=True)


def list_requests(site_key: str, status: str | None = None) -> list[RequestView]:
    """A site's guardian requests, newest first (links and addresses of awaiting ones; an
    address of one that can no longer be answered is deleted)."""
    site = site_snapshot(site_key)
    rows = db.session.execute(db.select(GuardianRequest).where(
        GuardianRequest.site_id == site.id).order_by(GuardianRequest.id.desc()).limit(500)
    ).scalars()
    views, ended = [], []
    for row in rows:
        views.append(_view(site, row, with_secrets=True))
        if row.address_sealed is not None and views[-1].status != "awaiting":
            ended.append((row.id, views[-1].status))
    if ended:
        # The site's regular poll: requests nothing can answer any more (expired, or
        # settled because the person decided every key again since) lose the address.
        run_write(_end_requests, ended)
    return [v for v in views if status is None or v.status == status]


def _end_requests(ended: list[tuple[int, str]]) -> None:
    now = utcnow()
    for request_id, status in ended:
        values = {"address_sealed": None}
        if status == "settled":
            values.update(status="settled", decided_at=now)
        db.session.execute(sa.update(GuardianRequest).where(
            GuardianRequest.id == request_id).values(**values))


def _open(site_id: int, subject_id: int) -> tuple[GuardianRequest | None, set[str]]:
    """The person's request still waiting for a guardian and what it still asks for, or
    (None, an empty set)."""
    req = db.session.execute(db.select(GuardianRequest).where(
        GuardianRequest.site_id == site_id, GuardianRequest.subject_id == subject_id,
        GuardianRequest.status == "awaiting").order_by(GuardianRequest.id.desc()).limit(1)
    ).scalar_one_or_none()
    if req is None:
        return None, set()
    status, asked = _standing(req)
    return (req, asked) if status == "awaiting" else (None, set())


def awaiting(site_id: int, subject_id: int) -> GuardianRequest | None:
    """The person's request still waiting for a guardian, or None."""
    return _open(site_id, subject_id)[0]


def guardian_state(site_id: int, subject_id: int) -> dict | None:
    """`{"status": "awaiting", ...}` while a guardian has not answered (server API)."""
    req = awaiting(site_id, subject_id)
    if req is None:
        return None
    return {"status": "awaiting", "request": req.id, "categories": list(req.categories),
            "channels": list(req.channels), "since": iso(req.created_at),
            "expires_at": iso(req.expires_at)}


# ---------------------------------------------------------------- the guardian answers


def _decided_since(req: GuardianRequest) -> set[str]:
    """The asked-for keys the person's ledger decided again after REQ's event (a choice
    made since, an unsubscribe, a withdrawal): the guardian's answer comes too late for
    them, and the later choice stands."""
    from .ledger import ConsentEvent
    from .subjects import Subject

    subject = db.session.get(Subject, req.subject_id)
    if subject is None:
        return set()
    ev = ConsentEvent
    mine = sa.and_(ev.site_id == req.site_id, ev.subject == subject.pseudonym)
    opened = db.session.execute(sa.select(ev.stream, ev.seq).where(
        ev.event_id == req.event_id)).first()
    # (the request's own event purged by retention: whatever was recorded after it opened)
    later = sa.and_(ev.stream == opened.stream, ev.seq > opened.seq) if opened is not None \
        else ev.recorded_at > req.created_at
    asked = set(req.categories or ()) | set(req.channels or ())
    decided = set()
    for categories, channels in db.session.execute(sa.select(ev.categories, ev.channels).where(
            mine, later, ev.action != "carry_forward")):
        decided |= asked & (set(categories or ()) | set(channels or ()))
    return decided


def still_asked(req: GuardianRequest) -> set[str]:
    """The categories and channels REQ asks for that nothing decided since."""
    return (set(req.categories or ()) | set(req.channels or ())) - _decided_since(req)


def _still_asks(site: SiteSnapshot, subject, keys: list[str]) -> bool:
    """Whether SUBJECT's open request still asks for one of KEYS (consent.channels records
    an opt-out of such a key although the channel is already off)."""
    return not _open(site.id, subject.id)[1].isdisjoint(keys)


set_guardian_hook(_still_asks)


def read_token(site_key: str, token: str) -> RequestView:
    """The request a guardian's link names (refuses forged, expired and used links, and
    requests whose every key the person has decided again since, which are settled); the
    view lists only what is still asked for."""
    site = site_snapshot(site_key)
    try:
        data, signed_at = _serializer(site.key).loads(token, max_age=link_days(site) * 86400,
                                                      return_timestamp=True)
    except SignatureExpired:
        raise Forbidden("this link has expired: ask for a new one")
    except BadSignature:
        raise Forbidden("this link is not valid")
    data = data if isinstance(data, dict) else {}
    # (exact types: True is an int to isinstance)
    req = db.session.get(GuardianRequest, data["g"]) if type(data.get("g")) is int \
        and 0 < data["g"] < 2**63 and type(data.get("e", "")) is str else None
    if req is None or req.site_id != site.id:
        raise Forbidden("this link is not valid")
    # The link names the request's own event; one signed before this version names only
    # the row, which must then be older than the link.
    if data.get("e", req.event_id) != req.event_id or \
            "e" not in data and req.created_at.timestamp() > signed_at.timestamp() + 1:
        raise Forbidden("this link is not valid")
    standing = _standing(req)
    view = _view(site, req, with_secrets=False, standing=standing)
    if view.status != "awaiting":
        raise Forbidden(f"this request is {view.status}: the link no longer works")
    asked = standing[1]
    view.categories = [k for k in view.categories if k in asked]
    view.channels = [k for k in view.channels if k in asked]
    return view


def answer(view: RequestView, agree: bool, ctx=None, notice: str | None = None,
           policy: str | None = None) -> tuple[RequestView, AppendedEvent | None]:
    """The guardian agrees (one `guardian` event turning the asked-for keys on) or refuses
    the request VIEW (read_token's: a valid, awaiting link). NOTICE: the digest of the page
    the guardian answered on (consent.guardian_page), recorded in the event's
    `meta.notice`; POLICY, the policy version that page named (by default the one in
    force)."""
    site = view.site

    def write():
        from .subjects import Subject

        # Claim the request first: the conditional UPDATE is the one place two answers
        # at once (a double click, the link open in two tabs) are told apart. On
        # PostgreSQL the second waits on the first's row lock and then matches no row;
        # SQLite runs one writer at a time. Only the winner appends an event.
        now = utcnow()
        claimed = db.session.execute(sa.update(GuardianRequest).where(
            GuardianRequest.id == view.id, GuardianRequest.status == "awaiting",
            GuardianRequest.expires_at > now).values(
                status="confirmed" if agree else "refused", decided_at=now,
                address_sealed=None).execution_options(synchronize_session=False)).rowcount
        req = db.session.get(GuardianRequest, view.id, populate_existing=True)
        if claimed != 1:
            # (answered meanwhile: the same refusal as a link opened after its answer)
            status = "expired" if req is not None and req.status == "awaiting" \
                else getattr(req, "status", "gone")
            raise Forbidden(f"this request is {status}: the link no longer works")
        event = None
        if agree:
            subject = db.session.get(Subject, req.subject_id)
            if subject is None or subject.erased_at is not None:
                raise Conflict("this person's data has been erased")
            # Only what is still asked for: a choice the person made since stands.
            decided = _decided_since(req)
            categories = {k: True for k in req.categories if k not in decided}
            channels = {k: True for k in req.channels if k not in decided}
            if not categories and not channels:
                raise Conflict("the person has changed these choices since they asked")
            event = append_event(
                site, subject, action="guardian", source="email_link",
                categories=categories or None, channels=channels or None,
                policy_version=policy or site.policy_label,
                details=ctx.details(None) if ctx else None,
                meta={"age": "minor", "guardian": True, "verified": "link",
                      "guardian_request": req.id, **({"notice": notice} if notice else {})})
            req.decision_event_id = event.event_id
        # (the claim above set the status and dropped the address: delivered and answered)
        return event

    event = run_write(write)
    db.session.expire_all()
    return get_answered(site, view.id), event


def get_answered(site: SiteSnapshot, request_id: int) -> RequestView:
    """A request after its answer (no link, no address)."""
    return _view(site, db.session.get(GuardianRequest, request_id), with_secrets=False)


def settle_for(site_id: int, subject_id: int) -> None:
    """The site recorded a guardian's consent itself: open requests are settled (inside a
    write transaction)."""
    db.session.execute(sa.update(GuardianRequest).where(
        GuardianRequest.site_id == site_id, GuardianRequest.subject_id == subject_id,
        GuardianRequest.status == "awaiting").values(status="settled", decided_at=utcnow(),
                                                     address_sealed=None))


@on_append
def _forget_requests(event: AppendedEvent) -> None:
    # Erasure: the guardian's address and the requests go with the person.
    if event.action == "erase" and event.subject_id is not None and not event.duplicate:
        # Ended and emptied of the address, not deleted: SQLite would give a deleted last
        # row's id to the next request, which an old link or outbox row still names.
        rawsql.run("UPDATE guardian_requests SET address_sealed = NULL, status = CASE WHEN "
                   "status = 'awaiting' THEN 'erased' ELSE status END, decided_at = "
                   "coalesce(decided_at, :now) WHERE subject_id = :id",
                   {"id": event.subject_id, "now": rawsql.to_db_time(utcnow())})


def check_address(address: str | None) -> str | None:
    """The guardian's e-mail address as given, checked (None when absent)."""
    if address in (None, ""):
        return None
    from .channels import normalise_address

    try:
        return normalise_address("email", address)
    except Invalid:
        raise Invalid("the guardian's e-mail address is not valid", field="guardian_email")
