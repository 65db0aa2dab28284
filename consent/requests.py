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
from .ledger import ConsentEvent, EventDetails, append_event, read_state
from .sites import ESSENTIAL, NotFound, Site, site_snapshot
from .subjects import Subject, find_subject, find_subject_by_user

KINDS = ("access", "erasure")
STATUSES = ("open", "completed", "rejected")
DEFAULT_DEADLINE = {"days": 30}
RECEIPT_VERSION = "KI-CR-v1.1.0"
HOOK_MODULES = ("consent.channels", "consent.identity", "consent.outbox")
HOOK_NAMES = ("erase_subject_addresses", "erase_subject_data")


class DataRequest(db.Model):
    """A person's access or erasure request and its legal deadline."""

    __tablename__ = "data_requests"
    __table_args__ = (sa.Index("ix_data_requests_site_status_due", "site_id", "status",
                               "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    subject_id: Mapped[int] = mapped_column(sa.ForeignKey("subjects.id"))
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


def open_request(site_key: str, kind: str, *, subject: str | None = None,
                 user_id: str | None = None, requested_by: str = "subject",
                 note: str | None = None, received_at: datetime | None = None) -> DataRequest:
    """Record a new access or erasure request with its legal deadline."""
    if kind not in KINDS:
        raise Invalid(f"kind must be one of {', '.join(KINDS)}", field="kind")
    site = site_snapshot(site_key)
    rule = deadline_rule(site.settings)

    def write() -> DataRequest:
        target = find_request_subject(site_key, subject=subject, user_id=user_id)
        at = received_at or utcnow()
        req = DataRequest(site_id=site.id, subject_id=target.id, kind=kind, status="open",
                          received_at=at, due_at=due_date(at, rule),
                          deadline_rule=describe_rule(rule), requested_by=requested_by,
                          note=(note or None) and note[:500])
        db.session.add(req)
        db.session.flush()
        return req

    return run_write(write)


def get_request(site_key: str, request_id: int) -> DataRequest:
    """One request of a site, or NotFound."""
    site = site_snapshot(site_key)
    req = db.session.get(DataRequest, request_id)
    if req is None or req.site_id != site.id:
        raise NotFound("request", str(request_id))
    return req


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

    def write() -> DataRequest:
        req = get_request(site_key, request_id)
        if req.status != "open":
            raise Conflict(f"request {request_id} is already {req.status}")
        if req.kind == "erasure" and status == "completed":
            raise Conflict("an erasure request is completed by carrying it out")
        req.status, req.completed_at, req.completed_by = status, utcnow(), actor
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
    subject = db.session.get(Subject, req.subject_id)
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


def _policy_url(site_key: str, label: str | None) -> str | None:
    if not label:
        return None
    if not has_request_context() and not current_app.config.get("SERVER_NAME"):
        # CLI and background use: a path the reader resolves against the server's URL.
        return f"/sites/{quote(site_key)}/policies/{quote(label)}"
    return url_for("pages.policy_version", site_key=site_key, label=label, _external=True)


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
                "meta": r.meta,
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
    if not _TEL.match(uri) or not 7 <= len(digits) <= 15 or "--" in text:
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
        if not _EMAIL.match(email):
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
            if not _COUNTRY.match(cleaned["addressCountry"]):
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
    if c.get("phone") and not _TEL.match(c["phone"]):
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
            "purpose": cat.titles.get(locale) or cat.titles.get("en") or cat.key,
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

    try:
        proof = build_receipt(site.key, state["last_event_id"])
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
    return {"event_id": event.event_id, "details_removed": int(removed or 0)}


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
        return {"erased_subjects": len(results),
                "events": [r["event_id"] for r in results],
                "details_removed": sum(r["details_removed"] for r in results)}

    return run_write(write)


def carry_out_erasure(site_key: str, request_id: int, actor: str) -> DataRequest:
    """Carry out an open erasure request and close it."""
    req = get_request(site_key, request_id)
    if req.kind != "erasure":
        raise Conflict("this is not an erasure request")
    if req.status != "open":
        raise Conflict(f"request {request_id} is already {req.status}")
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


def request_subject(req: DataRequest) -> Subject:
    """The subject a request is about (possibly erased)."""
    return db.session.get(Subject, req.subject_id)


def subject_label(subject_id: int) -> str:
    """How admin pages show a request's subject (visitor id, or 'erased')."""
    subject = db.session.get(Subject, subject_id)
    if subject is None:
        return "unknown"
    return subject.public_id or f"erased ({subject.pseudonym[:8]}…)"
