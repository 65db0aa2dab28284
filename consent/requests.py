"""Access and erasure requests: legal deadlines, consent history, receipts, erasure.

Deadlines are per site, in `Site.settings["request_deadline"]`: `{"days": 30}` (default),
`{"days": 45}`, or `{"business_days": 10, "holidays": ["2026-12-25", ...]}`.

Erasure is crypto-shredding: an `erase` event is appended (so the ledger records that it
happened and the projection drops the subject), then the subject's identifiers (visitor
id, keyed user reference, per-subject key), the personal details of its events and any
rows other modules keep about it are deleted. Events themselves carry only the random
pseudonym and digests, so every hash, and every earlier export, still verifies.
Modules holding personal data about a subject take part by defining
`erase_subject_addresses(subject_id)` or `erase_subject_data(subject_id)`, or by
registering a function with `on_erase`.
"""
from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import uuid
from datetime import date, datetime, timedelta
from typing import Callable

import sqlalchemy as sa
from urllib.parse import quote

from flask import current_app, has_request_context, url_for
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.orm import Mapped, mapped_column

from .database import UTCDateTime, iso, run_write, utcnow
from .errors import Conflict, DomainError, Forbidden, Invalid
from .extensions import db
from .i18n import localised
from .ledger import ConsentEvent, EventDetails, append_event, read_state
from .sites import ESSENTIAL, NotFound, Site, site_snapshot
from .subjects import Subject, find_subject, find_subject_by_user

KINDS = ("access", "erasure", "opt-out", "correction", "cancellation", "opt-out-sale")
# What each kind asks for, in the words of the policies that name it (receipts, admin).
KIND_TITLES = {
    "access": "Access to the personal data held",
    "erasure": "Deletion of the personal data",
    "opt-out": "Opt-out of promotional messages",
    "correction": "Correction of inaccurate personal data (001 VII.1.1, 002)",
    "cancellation": "Account cancellation (001 VII.1.4): the account is closed and the "
                    "person's data deleted or anonymised",
    "opt-out-sale": "Opt-out of the sale or sharing of personal data (US state laws; "
                    "000 Art. 15)",
}
# US state rules answer an opt-out of sale/sharing within 15 business days at the latest
# (e.g. California's regulations, 11 CCR 7026(f)); a site may set its own.
DEFAULT_SALE_OPT_OUT_DEADLINE = {"business_days": 15}
# How a request reached the site; staff record the ones that came by mail or phone.
VIA = ("web", "email", "phone", "letter", "in_person")
CONTACT_KINDS = ("email", "sms", "user")
# A staff member may backdate a request to when it arrived, not date one in the future.
CLOCK_SKEW = timedelta(minutes=5)
STATUSES = ("open", "completed", "rejected")
DEFAULT_DEADLINE = {"days": 30}
RECEIPT_VERSION = "KI-CR-v1.1.0"
HOOK_MODULES = ("consent.channels", "consent.identity", "consent.outbox")
HOOK_NAMES = ("erase_subject_addresses", "erase_subject_data")
SUPPRESSION_NOTE = ("The person's opt-outs of these channels are kept as suppression "
                    "records (a keyed hash of each address or user id, the channel and the "
                    "time of the opt-out; nothing else), so no promotional message is sent "
                    "to them again unless they opt in anew.")


class DataRequest(db.Model):
    """A person's access or erasure request and its legal deadline."""

    __tablename__ = "data_requests"
    __table_args__ = (sa.Index("ix_data_requests_site_status_due", "site_id", "status",
                               "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    # None while the person is not (yet) known here: a request from someone never seen
    # is kept by the keyed hash of how they can be reached, matched later or answered
    # "no data".
    subject_id: Mapped[int | None] = mapped_column(sa.ForeignKey("subjects.id"))
    contact_kind: Mapped[str | None] = mapped_column(sa.String(8))
    contact_ref: Mapped[str | None] = mapped_column(sa.String(64))
    received_via: Mapped[str | None] = mapped_column(sa.String(16))
    # When it was recorded here (received_at is when the site received it).
    recorded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(sa.String(16))
    status: Mapped[str] = mapped_column(sa.String(16), default="open")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deadline_rule: Mapped[str] = mapped_column(sa.String(40))
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Who asked / who acted: "subject", "user:<id>" or "token:<id>" -- never a name.
    requested_by: Mapped[str] = mapped_column(sa.String(40))
    completed_by: Mapped[str | None] = mapped_column(sa.String(40))
    note: Mapped[str | None] = mapped_column(sa.String(500))
    result: Mapped[dict | None] = mapped_column(sa.JSON)

    def overdue(self, now: datetime | None = None) -> bool:
        """An open request past its legal deadline."""
        return self.status == "open" and self.due_at < (now or utcnow())


# ---------------------------------------------------------------- deadlines


def deadline_rule(settings: dict | None) -> dict:
    """A site's deadline rule from its settings, validated (default: 30 days)."""
    rule = (settings or {}).get("request_deadline") or DEFAULT_DEADLINE
    return validate_deadline_rule(rule)


def validate_deadline_rule(rule) -> dict:
    """Check a rule: {"days": N} or {"business_days": N[, "holidays": [...]]}."""
    if not isinstance(rule, dict):
        raise Invalid("a deadline is {\"days\": N} or {\"business_days\": N}",
                      field="request_deadline")
    kinds = [k for k in ("days", "business_days") if k in rule]
    if len(kinds) != 1:
        raise Invalid("give exactly one of days or business_days", field="request_deadline")
    value = rule[kinds[0]]
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 365:
        raise Invalid("the deadline must be 1-365 days", field="request_deadline")
    holidays = rule.get("holidays") or []
    for day in holidays:
        try:
            date.fromisoformat(day)
        except (TypeError, ValueError):
            raise Invalid(f"holiday {day!r} is not a date (YYYY-MM-DD)",
                          field="request_deadline.holidays")
    out = {kinds[0]: value}
    if holidays:
        out["holidays"] = sorted(holidays)
    return out


def kind_deadline(settings: dict | None, kind: str) -> dict:
    """The deadline of a request KIND on a site: `settings.deadlines[kind]` when set, the
    US rule for opt-outs of sale/sharing, else the site's `request_deadline`."""
    own = ((settings or {}).get("deadlines") or {}).get(kind)
    if own:
        return validate_deadline_rule(own)
    if kind == "opt-out-sale":
        return dict(DEFAULT_SALE_OPT_OUT_DEADLINE)
    return deadline_rule(settings)


def describe_rule(rule: dict) -> str:
    """'30 days' or '10 business days'."""
    if "business_days" in rule:
        return f"{rule['business_days']} business days"
    return f"{rule['days']} days"


def due_date(received_at: datetime, rule: dict) -> datetime:
    """When a request received at RECEIVED_AT must be answered under RULE."""
    if "days" in rule:
        return received_at + timedelta(days=rule["days"])
    holidays = {date.fromisoformat(d) for d in rule.get("holidays") or []}
    due, left = received_at, rule["business_days"]
    while left:
        due += timedelta(days=1)
        if due.weekday() < 5 and due.date() not in holidays:
            left -= 1
    return due


# ---------------------------------------------------------------- requests


def _subjects_of(subject: Subject) -> list[Subject]:
    """The subject plus, for a site's known user, every device linked to that account."""
    ids = {subject.id}
    if subject.user_ref is not None:
        ids.update(db.session.execute(db.select(Subject.id).where(
            Subject.site_id == subject.site_id, Subject.user_ref == subject.user_ref)
        ).scalars())
    # consent.identity keeps device -> account links in its own table.
    link = getattr(sys.modules.get("consent.identity"), "SubjectLink", None)
    if link is not None:
        ids.update(db.session.execute(db.select(link.subject_id).where(
            link.account_id.in_(sorted(ids)))).scalars())
    return list(db.session.execute(db.select(Subject).where(Subject.id.in_(sorted(ids)))
                                   .order_by(Subject.id)).scalars())


def find_request_subject(site_key: str, *, subject: str | None = None,
                         user_id: str | None = None) -> Subject:
    """The subject a request is about, by visitor id or by the site's user id."""
    site = site_snapshot(site_key)
    found = None
    if subject:
        found = find_subject(site.id, subject)
    elif user_id:
        found = find_subject_by_user(site.id, site.key, user_id)
    else:
        raise Invalid("name the subject (visitor id) or the site's user id", field="subject")
    if found is None or found.erased_at is not None:
        raise NotFound("subject", (subject or user_id or "")[:64])
    return found


def _contact(site, user_id: str | None, address: str | None,
             channel: str | None) -> tuple[str, str] | None:
    """(kind, keyed hash) of how a person is named, for matching them later."""
    from .subjects import keyed_ref

    if user_id:
        return "user", keyed_ref(site.key, "user", user_id)
    if address:
        from .channels import address_ref

        if channel not in ("email", "sms"):
            raise Invalid("an address needs its channel: email or sms", field="channel")
        return channel, address_ref(site.key, channel, address)
    return None


def _contact_subject(site, kind: str, ref: str) -> Subject | None:
    """The live subject a contact reference names now, or None."""
    if kind == "user":
        found = db.session.execute(db.select(Subject).where(
            Subject.site_id == site.id, Subject.user_ref == ref,
            Subject.erased_at.is_(None)).order_by(Subject.id.desc()).limit(1)
        ).scalar_one_or_none()
        return found
    from .channels import subject_for_ref

    return subject_for_ref(site.id, kind, ref)


def check_received_at(received_at: datetime | None) -> datetime:
    """When a request was received: given by staff (not in the future), or now."""
    now = utcnow()
    if received_at is None:
        return now
    if received_at.tzinfo is None:
        raise Invalid("received_at needs a time zone (e.g. 2026-11-30T09:15:00Z)",
                      field="received_at")
    if received_at > now + CLOCK_SKEW:
        raise Invalid("received_at is in the future", field="received_at")
    if received_at < now - timedelta(days=3 * 365):
        raise Invalid("received_at is more than three years ago", field="received_at")
    return received_at


def open_request(site_key: str, kind: str, *, subject: str | None = None,
                 user_id: str | None = None, address: str | None = None,
                 channel: str | None = None, requested_by: str = "subject",
                 note: str | None = None, received_at: datetime | None = None,
                 via: str | None = None, channels: list[str] | None = None) -> DataRequest:
    """Record a request with its legal deadline, counted from RECEIVED_AT (its receipt).

    The person is named by visitor id, the site's user id or an address; someone the
    product has never seen is accepted (kept by keyed hash, matched later or answered
    "no data"). An `opt-out` (e.g. an e-mail to privacy@) is applied at once.
    """
    if kind not in KINDS:
        raise Invalid(f"kind must be one of {', '.join(KINDS)}", field="kind")
    if via is not None and via not in VIA:
        raise Invalid(f"via must be one of {', '.join(VIA)}", field="via")
    site = site_snapshot(site_key)
    at = check_received_at(received_at)
    if kind == "opt-out":
        return _staff_opt_out(site, subject=subject, user_id=user_id, address=address,
                              channel=channel, channels=channels, requested_by=requested_by,
                              note=note, received_at=at, via=via)
    rule = kind_deadline(site.settings, kind)
    if sum(bool(x) for x in (subject, user_id, address)) != 1:
        raise Invalid("name the person by one of subject (visitor id), user_id or address",
                      field="subject")
    contact = _contact(site, user_id, address, channel)

    def write() -> DataRequest:
        target = None
        if subject:
            target = find_request_subject(site_key, subject=subject)
        else:
            target = _contact_subject(site, *contact)
        req = DataRequest(site_id=site.id, subject_id=target.id if target else None,
                          contact_kind=None if target else contact[0],
                          contact_ref=None if target else contact[1],
                          kind=kind, status="open", received_at=at,
                          due_at=due_date(at, rule), deadline_rule=describe_rule(rule),
                          requested_by=requested_by, received_via=via, recorded_at=utcnow(),
                          note=(note or None) and note[:500])
        db.session.add(req)
        db.session.flush()
        return req

    return run_write(write)


def _staff_opt_out(site, *, subject, user_id, address, channel, channels, requested_by,
                   note, received_at, via) -> DataRequest:
    """An opt-out that reached staff by mail or phone: applied now, dated from receipt."""
    from .channels import CHANNELS, Recipient, ensure_recipient, parse_channel_key
    from .subjects import get_or_create_subject

    if sum(bool(x) for x in (subject, user_id, address)) != 1:
        raise Invalid("name the person by one of subject (visitor id), user_id or address",
                      field="subject")
    if address and channel not in ("email", "sms", "push"):
        raise Invalid("an address needs its channel: email, sms or push", field="channel")
    keys = [parse_channel_key(k, field="channels") for k in (channels or [])]
    if not keys:
        keys = [k for k in CHANNELS if k.endswith(".promotional")
                and (not address or k.startswith(channel + "."))]
    if address and any(not k.startswith(channel + ".") for k in keys):
        raise Invalid(f"a {channel} address can only opt out of {channel} channels",
                      field="channels")
    raw = site.settings.get("opt_out_deadline") or site.settings.get("request_deadline") \
        or DEFAULT_DEADLINE
    rule = validate_deadline_rule(raw)

    def write() -> DataRequest:
        if subject:
            person = get_or_create_subject(site.id, subject)
        else:
            person = ensure_recipient(site, channel if address else None,
                                      Recipient(user_id=user_id, address=address))
        event = append_event(site, person, action="unsubscribe", source="admin",
                             channels={k: False for k in keys},
                             policy_version=site.policy_label,
                             meta={"by": requested_by, "via": via or "email",
                                   "received_at": iso(received_at)})
        req = DataRequest(site_id=site.id, subject_id=person.id, kind="opt-out",
                          status="completed", received_at=received_at,
                          due_at=due_date(received_at, rule), deadline_rule=describe_rule(rule),
                          requested_by=requested_by, received_via=via, recorded_at=utcnow(),
                          completed_at=event.recorded_at, completed_by=requested_by,
                          note=(note or None) and note[:500],
                          result={"event_id": event.event_id, "channels": sorted(keys)})
        db.session.add(req)
        db.session.flush()
        return req

    return run_write(write)


def match_request(req: DataRequest) -> DataRequest:
    """Attach an open request from someone unknown to the person, once they are known."""
    if req.subject_id is not None or req.status != "open" or not req.contact_ref:
        return req
    site = db.session.get(Site, req.site_id)
    found = _contact_subject(site_snapshot(site.key), req.contact_kind, req.contact_ref)
    if found is None:
        return req

    def write():
        row = db.session.get(DataRequest, req.id)
        if row.subject_id is None:
            row.subject_id, row.contact_kind, row.contact_ref = found.id, None, None
        return row

    return run_write(write)


def get_request(site_key: str, request_id: int) -> DataRequest:
    """One request of a site (matched to its person if they became known), or NotFound."""
    site = site_snapshot(site_key)
    req = db.session.get(DataRequest, request_id)
    if req is None or req.site_id != site.id:
        raise NotFound("request", str(request_id))
    return match_request(req)


def list_requests(site_key: str, *, status: str | None = None) -> list[DataRequest]:
    """A site's requests, most urgent first."""
    site = site_snapshot(site_key)
    query = db.select(DataRequest).where(DataRequest.site_id == site.id)
    if status:
        query = query.where(DataRequest.status == status)
    return list(db.session.execute(query.order_by(
        (DataRequest.status != "open"), DataRequest.due_at, DataRequest.id)).scalars())


def open_request_summary(site_id: int) -> dict:
    """Counts of open and overdue requests and the nearest deadline (dashboard)."""
    now = utcnow()
    rows = db.session.execute(db.select(DataRequest).where(
        DataRequest.site_id == site_id, DataRequest.status == "open")
        .order_by(DataRequest.due_at)).scalars().all()
    return {"open": len(rows), "overdue": sum(1 for r in rows if r.due_at < now),
            "next_due": rows[0].due_at if rows else None, "requests": rows[:20]}


def complete_request(site_key: str, request_id: int, actor: str, *,
                     status: str = "completed", note: str | None = None) -> DataRequest:
    """Close a request (an access request answered, or any request rejected)."""
    if status not in ("completed", "rejected"):
        raise Invalid("status must be completed or rejected", field="status")

    get_request(site_key, request_id)  # match a request from someone unknown first

    def write() -> DataRequest:
        req = get_request(site_key, request_id)
        if req.status != "open":
            raise Conflict(f"request {request_id} is already {req.status}")
        if req.kind in ("erasure", "cancellation", "opt-out-sale") and status == "completed" \
                and req.subject_id is not None:
            raise Conflict(f"a {req.kind} request is completed by carrying it out")
        req.status, req.completed_at, req.completed_by = status, utcnow(), actor
        if status == "completed" and req.subject_id is None:
            # Never seen here: the answer is that no data is held about them.
            req.result = {"no_data": True}
        if note:
            req.note = note[:500]
        return req

    return run_write(write)


# ---------------------------------------------------------------- signed links


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="consent-access-v1")


def access_token(req: DataRequest) -> str:
    """A signed token that lets the person read the answer to their access request."""
    return _serializer().dumps({"r": req.id, "s": req.site_id})


def access_link(req: DataRequest) -> str:
    """The signed URL to send to the person (valid CONSENT_ACCESS_LINK_DAYS, default 30)."""
    return url_for("my_data.access_page", token=access_token(req), _external=True)


def link_works(req: DataRequest) -> bool:
    """Whether the signed link of an access request may still be used."""
    # A link answers its request: while it is open, and again after the link itself
    # answered it (the person may reload or download the JSON). A request an operator
    # rejected or closed ends the link at once, whatever its signature says.
    return req.kind == "access" and (
        req.status == "open" or (req.status == "completed" and req.completed_by == "subject"))


def request_from_token(token: str) -> DataRequest:
    """The access request a signed token names; refuses forged or expired tokens."""
    days = int(current_app.config.get("CONSENT_ACCESS_LINK_DAYS", 30))
    try:
        data = _serializer().loads(token, max_age=days * 86400)
    except SignatureExpired:
        raise Forbidden("this link has expired: ask for a new one")
    except BadSignature:
        raise Forbidden("this link is not valid")
    req = db.session.get(DataRequest, int(data.get("r", 0)))
    if req is None or req.site_id != data.get("s") or req.kind != "access":
        raise Forbidden("this link is not valid")
    if not link_works(req):
        raise Forbidden(f"this request was {req.status} by the site: the link no "
                        "longer works")
    return req


def deliver_access(token: str) -> tuple[DataRequest, dict]:
    """The consent history behind a signed link; the first delivery completes the request."""
    req = request_from_token(token)
    subject = request_subject(req)
    if subject is None:
        raise Forbidden("no data is held about this person")
    if subject.erased_at is not None:
        raise Forbidden("this person's data has been erased")
    site = db.session.get(Site, req.site_id)
    report = access_report(site.key, subject)
    if req.status == "open":
        def write():
            row = db.session.get(DataRequest, req.id)
            if row.status == "open":
                row.status, row.completed_at, row.completed_by = "completed", utcnow(), "subject"
        run_write(write)
    return req, report


# ---------------------------------------------------------------- access


def _public_url(endpoint: str, path: str, **values) -> str:
    """The absolute URL of ENDPOINT; in CLI and background use, PATH, which the reader
    resolves against the server's URL."""
    if not has_request_context() and not current_app.config.get("SERVER_NAME"):
        return path
    return url_for(endpoint, **values, _external=True)


def _policy_url(site_key: str, label: str | None) -> str | None:
    if not label:
        return None
    return _public_url("pages.policy_version", f"/sites/{quote(site_key)}/policies/"
                       f"{quote(label)}", site_key=site_key, label=label)


def _notice_url(site_key: str, meta: dict | None) -> str | None:
    """Where anyone reads what the person was shown for a decision (its notice,
    consent.notices), or None."""
    digest = (meta or {}).get("notice") if isinstance(meta, dict) else None
    if not digest:
        return None
    return _public_url("log_api.get_notice_document",
                       f"/api/v1/sites/{quote(site_key)}/notices/{quote(digest)}",
                       site_key=site_key, digest=digest)


def access_report(site_key: str, subject: Subject) -> dict:
    """Everything recorded about a subject (and the same user's other devices), as JSON."""
    from .decisions import state_view

    site = site_snapshot(site_key)
    subjects = _subjects_of(subject)
    events = []
    for subj in subjects:
        rows = db.session.execute(
            sa.select(ConsentEvent.__table__, EventDetails.ip_prefix, EventDetails.user_agent,
                      EventDetails.page_url)
            .select_from(ConsentEvent.__table__.outerjoin(
                EventDetails.__table__, EventDetails.event_id == ConsentEvent.event_id))
            .where(ConsentEvent.site_id == site.id, ConsentEvent.subject == subj.pseudonym)
            .order_by(ConsentEvent.seq)).all()
        for r in rows:
            events.append({
                "event_id": r.event_id, "subject": subj.public_id,
                "recorded_at": iso(r.recorded_at), "action": r.action, "source": r.source,
                "categories": r.categories, "channels": r.channels,
                "policy_version": r.policy_version,
                "policy_url": _policy_url(site.key, r.policy_version), "locale": r.locale,
                "meta": r.meta, "notice_url": _notice_url(site.key, r.meta),
                "details": None if r.ip_prefix is None and r.user_agent is None
                and r.page_url is None else {"ip_prefix": r.ip_prefix,
                                             "user_agent": r.user_agent,
                                             "page_url": r.page_url},
                "stream": r.stream, "seq": r.seq, "prev_hash": r.prev_hash, "hash": r.hash,
            })
    events.sort(key=lambda e: e["recorded_at"])
    primary_state = read_state(site.id, subject.pseudonym)
    return {
        "site": site.key, "site_name": site.name, "generated_at": iso(utcnow()),
        "subject": subject.public_id,
        "devices": [s.public_id for s in subjects],
        "linked_to_user": subject.user_ref is not None,
        "current": state_view(site, primary_state),
        "channels": (primary_state or {}).get("channels", {}),
        "events": events,
    }


# ---------------------------------------------------------------- consent receipts

# The controller's contact details a Kantara receipt must carry (CR v1.1 §4.4): name,
# contact, postal address (a schema.org PostalAddress), e-mail and phone (an RFC 3966
# tel: URI). Kept in Site.settings["controller"], asked for by the admin settings page.
CONTROLLER_FIELDS = ("name", "contact", "email", "phone", "address")
ADDRESS_FIELDS = ("streetAddress", "postalCode", "addressLocality", "addressRegion",
                  "addressCountry")
REQUIRED_ADDRESS = ("streetAddress", "addressLocality", "addressCountry")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s.]+$")
_TEL = re.compile(r"^tel:\+[0-9][0-9().-]*$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


class ReceiptUnavailable(DomainError):
    """A consent receipt cannot be issued until the site's controller is described."""

    status = 409
    title = "Consent receipt unavailable"


def tel_uri(phone: str) -> str:
    """An international phone number as an RFC 3966 global tel: URI, or Invalid."""
    text = (phone or "").strip()
    if text.lower().startswith("tel:"):
        text = text[4:]
    text = re.sub(r"\s+", "-", text.replace("/", "-"))
    if text.startswith("00"):
        text = "+" + text[2:]
    digits = re.sub(r"[^0-9]", "", text)
    uri = "tel:" + text
    if not _TEL.fullmatch(uri) or not 7 <= len(digits) <= 15 or "--" in text:
        raise Invalid("give the phone number in international form, e.g. +49 30 1234567",
                      field="controller_phone")
    return uri


def check_controller(raw: dict) -> dict:
    """Validate and normalise the controller details an admin entered (all optional
    here; the receipt refuses to be issued while a required one is missing)."""
    out: dict = {}
    for key in ("name", "contact", "url", "jurisdiction"):
        value = (raw.get(key) or "").strip()
        if value:
            out[key] = value
    email = (raw.get("email") or "").strip()
    if email:
        if not _EMAIL.fullmatch(email):
            raise Invalid("not an e-mail address", field="controller_email")
        out["email"] = email
    if (raw.get("phone") or "").strip():
        out["phone"] = tel_uri(raw["phone"])
    address = raw.get("address")
    if isinstance(address, dict):
        cleaned = {k: address[k].strip() for k in ADDRESS_FIELDS
                   if isinstance(address.get(k), str) and address[k].strip()}
        if "addressCountry" in cleaned:
            cleaned["addressCountry"] = cleaned["addressCountry"].upper()
            if not _COUNTRY.fullmatch(cleaned["addressCountry"]):
                raise Invalid("the country is a two-letter ISO 3166 code, e.g. DE",
                              field="controller_country")
        if cleaned:
            out["address"] = cleaned
    return out


def missing_controller_details(controller: dict | None) -> list[str]:
    """The controller details a receipt still lacks (empty when it can be issued)."""
    c = controller or {}
    missing = [k for k in ("name", "contact", "email", "phone") if not c.get(k)]
    address = c.get("address")
    if not isinstance(address, dict):
        missing.append("postal address")
    else:
        missing += [f"address {k}" for k in REQUIRED_ADDRESS if not address.get(k)]
    if c.get("phone") and not _TEL.fullmatch(c["phone"]):
        missing.append("phone (as +<country> <number>)")
    return missing


def _postal_address(address: dict) -> dict:
    return {"@type": "PostalAddress", **{k: address[k] for k in ADDRESS_FIELDS
                                         if address.get(k)}}


def consent_receipt(site_key: str, subject: Subject) -> dict:
    """The subject's current consent as a Kantara Consent Receipt v1.1."""
    from .audit import public_key_text
    from .sites import Category

    site = site_snapshot(site_key)
    controller = site.settings.get("controller") or {}
    missing = missing_controller_details(controller)
    if missing:
        raise ReceiptUnavailable(
            "A consent receipt names the data controller and how to reach them, and "
            f"{site.name!r} has not given {', '.join(missing)} yet. An administrator "
            "sets them in the admin: Sites, Settings, Data controller.")
    state = read_state(site.id, subject.pseudonym)
    if state is None:
        raise NotFound("consent", subject.public_id or "")
    categories = db.session.execute(db.select(Category).where(Category.site_id == site.id)
                                    .order_by(Category.position)).scalars().all()
    locale = state.get("locale") or site.default_locale
    days = site.accept_lifetime_days
    purposes = []
    for cat in categories:
        granted = state["categories"].get(cat.key, cat.key == ESSENTIAL)
        if not granted:
            continue
        providers = sorted({s.get("provider") for s in cat.services or [] if s.get("provider")})
        third = [p for p in providers if p != (controller.get("name") or site.name)]
        purpose = {
            "purpose": localised(cat.titles, locale, site.default_locale) or cat.key,
            "purposeCategory": [cat.key],
            # Essential cookies need no opt-in: the person is told (banner, policy) and
            # using the service is the authority, i.e. implicit consent; the others
            # were chosen, explicitly.
            "consentType": "IMPLICIT" if cat.key == ESSENTIAL else "EXPLICIT",
            "piiCategory": ["Online identifiers (cookies)", "Device and browser data"],
            "primaryPurpose": cat.key == ESSENTIAL,
            "termination": ("While the service is used" if cat.key == ESSENTIAL else
                            f"Until withdrawn in the preference center, at the latest "
                            f"{days} days after the choice"),
            "thirdPartyDisclosure": bool(third),
        }
        if third:
            purpose["thirdPartyName"] = ", ".join(third)
        purposes.append(purpose)
    for key, granted in sorted((state.get("channels") or {}).items()):
        if granted:
            purposes.append({
                "purpose": f"Messages: {key.replace(':', ' ')}", "purposeCategory": [key],
                "consentType": "EXPLICIT", "piiCategory": ["Contact details"],
                "primaryPurpose": False, "termination": "Until you unsubscribe",
                "thirdPartyDisclosure": False,
            })
    decided = state.get("decided_at") or state.get("updated_at")
    # The event this receipt stands for, with its log index, inclusion proof and signed
    # checkpoint: `flask consent verify-receipt` checks it offline (docs/audit.md).
    from .ledger.receipts import ReceiptPending, build_receipt
    from .notices import attach_notice

    try:
        # (with what the visitor was shown, for a decision that names it: consent.notices)
        proof = attach_notice(build_receipt(site.key, state["last_event_id"]), site.id)
    except (ReceiptPending, NotFound):
        proof = {"status": "pending"}
    entry = {
        "piiController": controller["name"],
        "onBehalf": False,
        "contact": controller["contact"],
        "address": _postal_address(controller["address"]),
        "email": controller["email"],
        "phone": controller["phone"],
    }
    if controller.get("url"):
        entry["piiControllerUrl"] = controller["url"]
    return {
        "proof": proof,
        "version": RECEIPT_VERSION,
        "jurisdiction": controller.get("jurisdiction") or "EU",
        "consentTimestamp": int(decided.timestamp()),
        "collectionMethod": {"banner": "Cookie banner on the website",
                             "preferences": "Preference center on the website",
                             "api": "The site's own account pages",
                             "gpc": "Global Privacy Control signal of the browser",
                             }.get(state.get("last_source"), str(state.get("last_source"))),
        # The UUID of the event the receipt stands for (a random UUID-4 already).
        "consentReceiptID": str(uuid.UUID(hex=state["last_event_id"])),
        "publicKey": public_key_text(),
        "language": (locale or "en").split("-")[0].lower(),
        "piiPrincipalId": subject.public_id,
        "piiControllers": [entry],
        "policyUrl": (_policy_url(site.key, state.get("policy_version") or site.policy_label)
                      or controller.get("url") or ""),
        "services": [{"service": site.name, "purposes": purposes}],
        "sensitive": False,
        "spiCat": [],
    }


# ---------------------------------------------------------------- erasure

_erase_hooks: list[Callable[[int], None]] = []


def on_erase(fn: Callable[[int], None]) -> Callable[[int], None]:
    """Register FN(subject_id) to delete a module's personal data during an erasure."""
    if fn not in _erase_hooks:
        _erase_hooks.append(fn)
    return fn


def _module_hooks() -> list[Callable[[int], None]]:
    hooks = []
    for name in HOOK_MODULES:
        module = sys.modules.get(name)
        if module is None and importlib.util.find_spec(name) is not None:
            module = importlib.import_module(name)
        found = False
        for attr in HOOK_NAMES:
            fn = getattr(module, attr, None) if module else None
            if callable(fn):
                found = True
                if fn not in hooks and fn not in _erase_hooks:
                    hooks.append(fn)
        address_model = getattr(module, "ChannelAddress", None) if module else None
        if not found and address_model is not None:
            hooks.append(_address_rows_deleter(address_model))
    return hooks


def _address_rows_deleter(model) -> Callable[[int], None]:
    # Until consent.channels defines its own hook: its address rows are keyed HMACs of
    # the person's e-mail/phone/push token, i.e. identifiers, so they go too.
    def delete(subject_id: int) -> None:
        table = model.__table__
        db.session.execute(sa.delete(table).where(table.c.subject_id == subject_id))
    return delete


def _erase_one(site, subject: Subject, actor: str, request_id: int | None) -> dict:
    """Erase one subject inside the current write transaction."""
    meta = {"by": actor}
    if request_id is not None:
        meta["request"] = request_id
    # Opt-outs outlive the erasure: kept as keyed hashes before the addresses go.
    from .channels import keep_suppressions

    kept = keep_suppressions(site, subject)
    if kept:
        meta["suppressed"] = kept
    event = append_event(site, subject, action="erase", source="admin",
                         policy_version=site.policy_label, meta=meta)
    ev = ConsentEvent.__table__
    ids = sa.select(ev.c.event_id).where(ev.c.site_id == site.id,
                                         ev.c.subject == subject.pseudonym)
    removed = db.session.execute(sa.delete(EventDetails.__table__).where(
        EventDetails.__table__.c.event_id.in_(ids))).rowcount
    for hook in _erase_hooks + _module_hooks():
        hook(subject.id)
    subject.public_id = None
    subject.user_ref = None
    subject.secret = None
    subject.erased_at = utcnow()
    return {"event_id": event.event_id, "details_removed": int(removed or 0),
            "suppressed": kept}


def erase_subject(site_key: str, subject_id: int, actor: str,
                  request_id: int | None = None) -> dict:
    """Crypto-shred a subject (and the same user's other devices); returns what was done."""
    site = site_snapshot(site_key)

    def write() -> dict:
        subject = db.session.get(Subject, subject_id)
        if subject is None or subject.site_id != site.id:
            raise NotFound("subject", str(subject_id))
        if subject.erased_at is not None:
            raise Conflict("this subject has already been erased")
        results = [_erase_one(site, s, actor, request_id) for s in _subjects_of(subject)
                   if s.erased_at is None]
        kept = sorted({key for r in results for key in r["suppressed"]})
        return {"erased_subjects": len(results),
                "events": [r["event_id"] for r in results],
                "details_removed": sum(r["details_removed"] for r in results),
                # What the erasure receipt says about opt-outs (docs/audit.md).
                "suppressions_kept": kept,
                "suppression_note": SUPPRESSION_NOTE if kept else None}

    return run_write(write)


def carry_out_erasure(site_key: str, request_id: int, actor: str) -> DataRequest:
    """Carry out an open erasure request and close it."""
    req = get_request(site_key, request_id)
    if req.kind not in ("erasure", "cancellation"):
        raise Conflict("this is not an erasure or account cancellation request")
    if req.status != "open":
        raise Conflict(f"request {request_id} is already {req.status}")
    if req.subject_id is None:
        # Nobody by that name or address is known here: nothing to erase, and the
        # answer says so.
        return complete_request(site_key, request_id, actor)
    result = erase_subject(site_key, req.subject_id, actor, request_id=req.id)

    def write() -> DataRequest:
        row = db.session.get(DataRequest, request_id)
        row.status, row.completed_at, row.completed_by = "completed", utcnow(), actor
        row.result = result
        # Other open requests of the erased person have nothing left to act on.
        for other in db.session.execute(db.select(DataRequest).where(
                DataRequest.subject_id == row.subject_id, DataRequest.status == "open",
                DataRequest.id != row.id)).scalars():
            other.status, other.completed_at, other.completed_by = "completed", utcnow(), actor
            other.note = "closed: the person's data was erased"
        return row

    return run_write(write)


def request_subject(req: DataRequest) -> Subject | None:
    """The subject a request is about (possibly erased; None while not known)."""
    return db.session.get(Subject, req.subject_id) if req.subject_id is not None else None


def subject_label(subject_id: int | None) -> str:
    """How admin pages show a request's subject (visitor id, 'erased' or 'not known')."""
    if subject_id is None:
        return "not known here (yet)"
    subject = db.session.get(Subject, subject_id)
    if subject is None:
        return "unknown"
    return subject.public_id or f"erased ({subject.pseudonym[:8]}…)"


# ---------------------------------------------------------------- opt-out of sale/sharing


def carry_out_sale_opt_out(site_key: str, request_id: int, actor: str) -> DataRequest:
    """Apply an opt-out of sale/sharing: the site's GPC categories (advertising) turn off
    for the person in one `withdraw` event, and the request is completed."""
    from .sites import gpc_categories

    req = get_request(site_key, request_id)
    if req.kind != "opt-out-sale":
        raise Conflict("this is not an opt-out of sale or sharing")
    if req.status != "open":
        raise Conflict(f"request {request_id} is already {req.status}")
    if req.subject_id is None:
        return complete_request(site_key, request_id, actor)
    site = site_snapshot(site_key)

    def write() -> DataRequest:
        row = db.session.get(DataRequest, request_id)
        subject = db.session.get(Subject, row.subject_id)
        keys = {k: False for k in gpc_categories(site) if k in site.category_keys}
        event = append_event(site, subject, action="withdraw", source="admin",
                             categories=keys, policy_version=site.policy_label,
                             meta={"by": actor, "request": row.id,
                                   "opt_out": "sale_sharing"})
        row.status, row.completed_at, row.completed_by = "completed", utcnow(), actor
        row.result = {"event_id": event.event_id, "categories": sorted(keys)}
        return row

    return run_write(write)


def carry_out(site_key: str, request_id: int, actor: str) -> DataRequest:
    """Carry out a request whose answer is an action: erasure and account cancellation
    (crypto-shredding), opt-out of sale/sharing (a withdrawal)."""
    req = get_request(site_key, request_id)
    if req.kind == "opt-out-sale":
        return carry_out_sale_opt_out(site_key, request_id, actor)
    return carry_out_erasure(site_key, request_id, actor)


# ---------------------------------------------------------------- request receipts

REQUEST_RECEIPT = "consent-request-receipt/1"


def request_receipt(site_key: str, request_id: int) -> dict:
    """A signed receipt of a request: what was asked, when it was received, by when it is
    due, where it stands and what was done. Signed with the server's Ed25519 key over
    its canonical JSON, so the person (or an auditor) can check it offline."""
    import json

    from .ledger.keys import public_key_text, sign

    req = get_request(site_key, request_id)
    site = site_snapshot(site_key)
    controller = site.settings.get("controller") or {}
    body = {
        "receipt": REQUEST_RECEIPT, "site": site.key,
        "controller": controller.get("name") or site.name,
        "request": req.id, "kind": req.kind, "what": KIND_TITLES.get(req.kind, req.kind),
        "received_at": iso(req.received_at), "received_via": req.received_via,
        "due_at": iso(req.due_at), "deadline_rule": req.deadline_rule,
        "status": req.status, "overdue": req.overdue(),
        "completed_at": iso(req.completed_at) if req.completed_at else None,
        "known": req.subject_id is not None,
        "result": req.result,
        "issued_at": iso(utcnow()),
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return {**body, "public_key": public_key_text(), "signature": sign(canonical.encode())}


def verify_request_receipt(receipt: dict) -> bool:
    """True when a request receipt is unchanged and signed by the key it names."""
    import base64
    import json

    from .ledger.keys import verify_signature

    body = {k: v for k, v in receipt.items() if k not in ("public_key", "signature")}
    key = str(receipt.get("public_key", ""))
    if not key.startswith("ed25519:"):
        return False
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return verify_signature(base64.b64decode(key[8:]), canonical.encode(),
                            str(receipt.get("signature", "")))
