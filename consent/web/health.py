"""`GET /healthz`: whether the database answers, and whether the verifiable log keeps up.

For load balancers and monitors. 503 only when the database does not answer (this
process cannot record anything). A log that stopped growing (no elected integrator, cron
not running, a stream refused by the integrator) does not stop decisions from being
recorded, so it answers 200 with `"status": "log_behind"`: a monitor alerts on that
text, and `flask consent check-log` exits 1 for cron-based alerting. Per-site figures
and counts are in that command's output and on the dashboard, not here (this endpoint
needs no credential).
"""
from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify

from ..database import utcnow
from ..extensions import db
from ..ledger.log import log_backlog

# A plain blueprint, outside the OpenAPI document of the API: monitors call it, not the
# site's code (it takes no input, and its only refusal is the 503 of a database that
# does not answer).
bp = Blueprint("health", __name__)


def log_health() -> dict:
    """The log's figures for /healthz and `flask consent check-log`."""
    backlog = log_backlog()
    limit = float(current_app.config.get("CONSENT_LOG_MAX_LAG_SECONDS", 600.0))
    now = utcnow()
    oldest = min((b.oldest_recorded_at for b in backlog), default=None)
    age = round(max(0.0, (now - oldest).total_seconds()), 3) if oldest else None
    return {"status": "behind" if age is not None and age > limit else "ok",
            "pending_events": sum(b.events for b in backlog),
            "oldest_pending_seconds": age, "max_lag_seconds": limit,
            "sites": [{"site": b.site_key, "pending_events": b.events,
                       "oldest_pending_seconds": round(max(0.0, (
                           now - b.oldest_recorded_at).total_seconds()), 3)}
                      for b in backlog]}


@bp.get("/healthz")
def healthz():
    """Whether this server can record decisions, and whether its log keeps up."""
    try:
        db.session.execute(sa.text("SELECT 1"))
        log = log_health()
        db.session.rollback()
    except sa.exc.SQLAlchemyError as exc:
        current_app.logger.warning("health check: database unavailable: %s",
                                   getattr(exc, "orig", None) or exc)
        db.session.rollback()
        response = jsonify(status="database_unavailable", database="unavailable", log=None)
        response.status_code = 503
        response.headers["Cache-Control"] = "no-store"
        return response
    # (without credentials: no per-site figures, and no event count, which would tell
    # anyone a site's traffic)
    log = {k: v for k, v in log.items() if k not in ("sites", "pending_events")}
    body = {"status": "ok" if log["status"] == "ok" else "log_behind", "database": "ok",
            "log": log}
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response
