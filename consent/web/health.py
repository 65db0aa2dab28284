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

from ..extensions import db
from ..ledger.log import log_health

# A plain blueprint, outside the OpenAPI document of the API: monitors call it, not the
# site's code (it takes no input, and its only refusal is the 503 of a database that
# does not answer).
bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Whether this server can record decisions, and whether its log keeps up."""
    try:
        log = log_health()  # (its query is the database check too)
        body, status = {"status": "ok" if log["status"] == "ok" else "log_behind",
                        "database": "ok",
                        # (without credentials: no per-site figures, and no event count,
                        # which would tell anyone a site's traffic)
                        "log": {k: v for k, v in log.items()
                                if k not in ("sites", "pending_events")}}, 200
    except sa.exc.SQLAlchemyError as exc:
        current_app.logger.warning("health check: database unavailable: %s",
                                   getattr(exc, "orig", None) or exc)
        body, status = {"status": "database_unavailable", "database": "unavailable",
                        "log": None}, 503
    db.session.rollback()
    response = jsonify(body)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response
