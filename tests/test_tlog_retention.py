"""A retention purge keeps the log provable: everything purged was integrated and is
covered by a signed checkpoint; receipts of purged events and witnesses holding older
checkpoints still check, and `verify` still passes (and still catches a rewrite)."""
from __future__ import annotations

import json

from consent.database import utcnow
from consent.extensions import db
from consent.ledger import ConsentEvent, LogLeaf
from consent.ledger.log import integrate, latest_checkpoint
from consent.ledger.receipts import build_receipt, check_receipt, consistency_bundle
from consent.retention import purge_events
from consent.sites import site_snapshot
from tests.support.admin import record_choice  # noqa: F401


def test_purged_events_stay_provable(app, runner, site):
    old = [record_choice(site["key"], "accept_all") for _ in range(9)]
    first_events = db.session.execute(db.select(ConsentEvent.event_id).order_by(
        ConsentEvent.id)).scalars().all()
    receipt = build_receipt(site["key"], first_events[0])  # integrates, signs
    cutoff = utcnow()
    # Events the integrator has not seen yet when the purge starts are integrated by it.
    old += [record_choice(site["key"], "reject_all", subject=v) for v in old[:2]]
    late = db.session.execute(db.select(ConsentEvent.event_id).order_by(
        ConsentEvent.id.desc())).scalars().first()
    result = purge_events(site["key"], utcnow())
    assert result.events_removed == 11
    shop = site_snapshot(site["key"])
    assert db.session.execute(db.select(db.func.count()).select_from(LogLeaf)).scalar() >= 11
    new = [record_choice(site["key"], "custom", categories={"analytics": True}) for _ in range(3)]
    integrate()
    verify = runner.invoke(args=["consent", "verify"])
    assert verify.exit_code == 0, verify.output
    key = runner.invoke(args=["consent", "signing-key", "--site", "shop"]).output.strip()
    size = latest_checkpoint(shop.id).size
    later = consistency_bundle(shop, receipt["log"]["tree_size"], size)
    checked = check_receipt(json.loads(json.dumps(receipt)), key, later)
    assert checked.ok, checked.problems
    assert checked.later_size == size > receipt["log"]["tree_size"]
    assert late and cutoff and new


def test_a_rewrite_after_a_purge_is_still_caught(app, runner, site):
    from tests.test_tlog_attack import REBUILD_LOG, as_insider, rechain

    for _ in range(6):
        record_choice(site["key"], "accept_all")
    purge_events(site["key"], utcnow())
    survivors = [record_choice(site["key"], "reject_all") for _ in range(4)]
    integrate()
    target = db.session.execute(db.select(ConsentEvent).where(
        ConsentEvent.action == "reject_all").order_by(ConsentEvent.id)).scalars().first()
    rows = db.session.execute(db.select(ConsentEvent).where(
        ConsentEvent.stream == target.stream).order_by(ConsentEvent.seq)).scalars().all()
    as_insider(rechain(rows, "shop", edit=(target.event_id, {"advertising": True})))
    verify = runner.invoke(args=["consent", "verify"])
    assert verify.exit_code == 1 and "site shop" in verify.output
    assert "rewritten after it was logged" in verify.output
    assert survivors
    assert REBUILD_LOG
