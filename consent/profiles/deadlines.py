"""Opt-out deadlines: an opt-out applies at once, and its legal deadline is recorded.

Some policies allow time to process an opt-out ("it may take up to ten (10) business days",
seed 004). This product applies every opt-out in the event itself; for sites whose
settings carry `opt_out_deadline` (a consent.requests rule), each opt-out from a message
channel is also recorded as an `opt-out` request, completed at the moment of the event,
with the deadline it had -- so the admin's Requests page shows that it was met.
"""
from __future__ import annotations

from .. import rawsql
from ..ledger import AppendedEvent, on_append

KIND = "opt-out"

_INSERT = (
    "INSERT INTO data_requests (site_id, subject_id, kind, status, received_at, due_at, "
    "deadline_rule, completed_at, requested_by, completed_by, note, result) VALUES "
    "(:site_id, :subject_id, :kind, 'completed', :at, :due, :rule, :at, 'subject', "
    "'system', :note, :result)")


def _opted_out(ev: AppendedEvent, defaults: dict) -> dict[str, bool]:
    """Channels this event opts out of: an explicit unsubscribe, or turning off a channel
    that was on (by an earlier choice or by the site's default)."""
    before = (ev.previous_state or {}).get("channels") or {}
    out = {}
    for key, value in (ev.channels or {}).items():
        was_on = before[key] if key in before else defaults.get(key) is True
        if value is False and (ev.action == "unsubscribe" or was_on is True):
            out[key] = False
    return out


@on_append
def record_opt_out_deadline(ev: AppendedEvent) -> None:
    """Write the completed opt-out request of a channel opt-out (sites with the setting)."""
    if ev.duplicate or ev.subject_id is None or False not in (ev.channels or {}).values():
        return
    if (ev.meta or {}).get("received_at"):
        return  # recorded by staff: consent.requests writes its request, dated from receipt
    row = rawsql.one("SELECT settings FROM sites WHERE id = :id", {"id": ev.site_id})
    settings = rawsql.from_db_json(row[0]) if row else None
    raw_rule = (settings or {}).get("opt_out_deadline") if isinstance(settings, dict) else None
    if not raw_rule:
        return
    channels = _opted_out(ev, settings.get("channel_defaults") or {})
    if not channels:
        return
    from ..requests import describe_rule, due_date, validate_deadline_rule

    rule = validate_deadline_rule(raw_rule)
    rawsql.run(_INSERT, {
        "site_id": ev.site_id, "subject_id": ev.subject_id, "kind": KIND,
        "at": rawsql.to_db_time(ev.recorded_at),
        "due": rawsql.to_db_time(due_date(ev.recorded_at, rule)),
        "rule": describe_rule(rule),
        "note": f"applied at once ({ev.action} via {ev.source})",
        "result": rawsql.to_db_json({"event_id": ev.event_id, "channels": channels})})
