"""Inbound SMS: reply keywords (per locale and per site) applied to promotional SMS.

A reply that is exactly an opt-out word (STOP, STOPALL, 退订, ...) turns
`sms.promotional` off for the number that sent it; an opt-in word (START, UNSTOP, YES)
turns it back on, but only where the site enables opt-in by SMS (a reply of YES to an
appointment reminder must not sign anyone up for offers). Which words count:

- the English set every carrier and gateway knows (CTIA, Twilio and Telnyx defaults),
  always, because gateways act on them whatever the site's language;
- the set of each language the site is configured for (`Site.locales`);
- the site's own words, `Site.settings["sms_keywords"]`.

Gateways (Twilio, Vonage, Plivo) reach this through consent.sms_gateways; a site's
own backend can post the same messages with its API key.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from .channels import address_ref, subject_for_address, unsubscribe_keys
from .database import run_write
from .decisions import RequestContext
from .errors import Invalid
from .ledger import AppendedEvent, append_event
from .sites import SiteSnapshot, site_snapshot
from .subjects import keyed_ref

# Opt-out words every site understands: the CTIA list and the gateways' defaults
# (Twilio: STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT; Telnyx adds
# STOP ALL and OPT OUT).
STOP_WORDS = ("STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT",
              "REVOKE", "OPT OUT", "OPTOUT")
START_WORDS = ("START", "UNSTOP", "YES")
# The usual replies in the other languages a site may run in, matched only on sites
# configured for that language. (zh: "回复TD退订" is the convention of Chinese senders.)
LOCALE_STOP_WORDS = {
    "zh": ("TD", "T", "退订", "取消订阅", "退訂"),
    "de": ("STOPP", "ABMELDEN", "ABBESTELLEN"),
    "fr": ("ARRET", "ARRÊT", "DESABONNER", "DÉSABONNER", "DESINSCRIRE", "DÉSINSCRIRE"),
    "es": ("BAJA", "PARAR", "ALTO", "CANCELAR"),
}
LOCALE_START_WORDS = {
    "zh": ("订阅", "訂閱"),
    "de": ("ANMELDEN",),
    "fr": ("ABONNER",),
    "es": ("ALTA",),
}
MAX_WORD = 40
MAX_WORDS = 50
# A full stop or exclamation mark after the word still means the word ("Stop.").
_TRAILING = re.compile(r"[\s.!。！]+$")


def normalise_reply(text: str | None) -> str:
    """The form replies and keywords are compared in: NFKC (full-width letters become
    ASCII), upper case, runs of whitespace as one space, trailing . and ! dropped."""
    folded = unicodedata.normalize("NFKC", text or "").upper()
    return _TRAILING.sub("", " ".join(folded.split()))


def _languages(site: SiteSnapshot) -> set[str]:
    tags = set(site.locales or ()) | {site.default_locale or "en"}
    return {t.split("-")[0].split("_")[0].lower() for t in tags if isinstance(t, str)}


def _site_words(site: SiteSnapshot, kind: str) -> list[str]:
    conf = site.settings.get("sms_keywords")
    words = conf.get(kind) if isinstance(conf, dict) else None
    return [w for w in words if isinstance(w, str)] if isinstance(words, list) else []


def opt_in_enabled(site: SiteSnapshot) -> bool:
    """Whether opt-in words re-subscribe on this site (`sms_keywords.opt_in`, default off)."""
    conf = site.settings.get("sms_keywords")
    return isinstance(conf, dict) and conf.get("opt_in") is True


@dataclass(frozen=True)
class Keywords:
    """The reply words one site acts on, in normalised form."""

    stop: frozenset[str]
    start: frozenset[str]

    def match(self, body: str | None) -> str | None:
        """'stop', 'start' or None for an inbound text (the whole text must be the word)."""
        reply = normalise_reply(body)
        if not reply:
            return None
        if reply in self.stop:
            return "stop"
        if reply in self.start:
            return "start"
        return None


def site_keywords(site: SiteSnapshot) -> Keywords:
    """The opt-out and opt-in words of SITE: built-in, its languages', its own."""
    languages = _languages(site)
    stop = list(STOP_WORDS) + _site_words(site, "stop")
    start = list(START_WORDS) + _site_words(site, "start")
    for lang in sorted(languages):
        stop += LOCALE_STOP_WORDS.get(lang, ())
        start += LOCALE_START_WORDS.get(lang, ())
    stop_set = frozenset(filter(None, map(normalise_reply, stop)))
    # A word a site lists for both is an opt-out (the safe reading).
    start_set = frozenset(filter(None, map(normalise_reply, start))) - stop_set
    return Keywords(stop_set, start_set if opt_in_enabled(site) else frozenset())


def check_keyword_settings(value) -> dict:
    """Validate `Site.settings["sms_keywords"]`; the cleaned value or Invalid."""
    if not isinstance(value, dict):
        raise Invalid("sms_keywords must be an object {stop, start, opt_in}",
                      field="sms_keywords")
    unknown = set(value) - {"stop", "start", "opt_in"}
    if unknown:
        raise Invalid(f"unknown sms_keywords field {sorted(unknown)[0]!r}; use stop, start, "
                      "opt_in", field="sms_keywords")
    out: dict = {}
    for kind in ("stop", "start"):
        words = value.get(kind, [])
        if not isinstance(words, list) or len(words) > MAX_WORDS or not all(
                isinstance(w, str) and 0 < len(normalise_reply(w)) <= MAX_WORD for w in words):
            raise Invalid(f"sms_keywords.{kind} must be a list of up to {MAX_WORDS} words "
                          f"of 1-{MAX_WORD} characters", field=f"sms_keywords.{kind}")
        if words:
            out[kind] = [w.strip() for w in words]
    if "opt_in" in value:
        if not isinstance(value["opt_in"], bool):
            raise Invalid("sms_keywords.opt_in must be true or false",
                          field="sms_keywords.opt_in")
        out["opt_in"] = value["opt_in"]
    return out


@dataclass
class SmsResult:
    """What an inbound SMS did: opted_out, opted_in or ignored."""

    result: str
    event: AppendedEvent | None
    keyword: str | None = None


def sms_inbound(site_key: str, sender: str, body: str, ctx: RequestContext,
                message_id: str | None = None, *, gateway: str | None = None) -> SmsResult:
    """Apply an opt-out or opt-in reply to promotional SMS (one event with source sms)."""
    site = site_snapshot(site_key)
    try:
        ref = address_ref(site.key, "sms", sender)
    except Invalid as exc:
        raise Invalid(exc.detail, field="from") from None
    keyword = site_keywords(site).match(body)
    if keyword is None:
        return SmsResult("ignored", None)
    allowed = keyword == "start"
    idem = None
    if message_id:
        # A gateway's message id names one message of one sender: scoped to the sender
        # (and, in the ledger, to the person), so another number's id never swallows it.
        idem = "sms:" + keyed_ref(site.key, "sms-message", f"{ref}\x00{message_id}")[:56]
    meta = {"keyword": normalise_reply(body)[:20]}
    if gateway:
        meta["gateway"] = gateway
    # STOP has the scope of any unsubscribe; START answers only for text messages.
    chosen = {"sms.promotional": True} if allowed else \
        {k: False for k in unsubscribe_keys(site, "sms.promotional")}

    def write():
        subject = subject_for_address(site, "sms", ref)
        return append_event(site, subject, action="resubscribe" if allowed else "unsubscribe",
                            source="sms", channels=chosen,
                            policy_version=site.policy_label, details=ctx.details(None),
                            meta=meta, idempotency_key=idem)

    event = run_write(write)
    # A replayed message id records nothing: answer with what its first delivery did.
    recorded = bool((event.channels or {}).get("sms.promotional")) if event.duplicate \
        else allowed
    return SmsResult("opted_in" if recorded else "opted_out", event, keyword)
