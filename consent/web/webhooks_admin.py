"""Admin page of a site's downstream webhooks: endpoints, their health, the delivery log,
dead-letter retries. Reading needs `audit:read`; changing needs `sites:write`."""
from __future__ import annotations

import marshmallow as ma
from flask import Blueprint, flash, redirect, render_template, request, url_for
from marshmallow import validate

from ..admin_auth import admin_required
from ..csrf import protect
from ..outbox import (STATES, attempts_of, get_message, list_endpoints, list_messages,
                      message_counts, refuses_internal, register_endpoint, retry_dead,
                      set_endpoint_active)
from ..sites import site_snapshot
from ..validation import Lines, StrictSchema
from .admin_forms import errors_on

bp = protect(Blueprint("webhooks_admin", __name__, url_prefix="/admin"))

PAGE = 50


@bp.after_request
def _no_store(response):
    # The page shows signing-secret prefixes and delivery errors: keep it out of caches.
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


class EndpointForm(StrictSchema):
    """The "add an endpoint" form (categories come as repeated checkboxes)."""

    csrf_token = ma.fields.String(load_only=True)
    name = ma.fields.String(validate=validate.Length(max=100))
    url = ma.fields.Url(required=True, schemes={"http", "https"}, require_tld=False,
                        validate=validate.Length(max=2048))
    categories = ma.fields.List(ma.fields.String(validate=validate.Length(1, 40)))
    channels = Lines()


class CsrfOnly(StrictSchema):
    csrf_token = ma.fields.String(load_only=True)


class LogQuery(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    state = ma.fields.String(validate=validate.OneOf(STATES))
    before = ma.fields.Integer(validate=validate.Range(min=1))


@bp.get("/sites/<site_key>/webhooks")
@admin_required("audit:read")
def webhooks(site_key: str, *, values=None, errors=None, status=200):
    """Endpoints with health and counts, and the latest notifications."""
    site = site_snapshot(site_key)
    query = LogQuery().load({k: v for k, v in request.args.items() if v})
    log = list_messages(site_key, state=query.get("state"), before_id=query.get("before"),
                        limit=PAGE)
    endpoints = list_endpoints(site_key)
    return render_template(
        "admin/webhooks.html", site=site, endpoints=endpoints, log=log,
        names={e.id: e.name for e in endpoints}, counts=message_counts(site.id),
        counts_of=lambda e: message_counts(site.id, e.id), states=STATES,
        state=query.get("state"), next_before=log[-1].id if len(log) == PAGE else None,
        guard_on=refuses_internal(), values=values or {}, errors=errors or {},
        category_options=[(k, k) for k in site.category_keys]), status


@bp.get("/sites/<site_key>/webhooks/deliveries/<int:message_id>")
@admin_required("audit:read")
def delivery(site_key: str, message_id: int):
    """One notification: its body and every attempt."""
    site = site_snapshot(site_key)
    message = get_message(site_key, message_id)
    return render_template("admin/webhook_delivery.html", site=site, message=message,
                           attempts=attempts_of(message.id))


@bp.post("/sites/<site_key>/webhooks")
@admin_required("sites:write")
@errors_on(webhooks, lists=("categories",))
def add_endpoint(site_key: str):
    """Register an endpoint and show its signing secret once."""
    form = request.form.to_dict()
    form["categories"] = request.form.getlist("categories")
    data = EndpointForm().load(form)
    data.pop("csrf_token", None)
    _endpoint, secret = register_endpoint(site_key, url=data["url"],
                                          name=data.get("name") or None,
                                          categories=data.get("categories") or [],
                                          channels=data.get("channels") or [])
    return render_template("admin/secret.html", site=site_snapshot(site_key),
                           title="Signing secret of the new endpoint", secret=secret,
                           stored="encrypted",
                           back=url_for("webhooks_admin.webhooks", site_key=site_key))


@bp.post("/sites/<site_key>/webhooks/<int:endpoint_id>/<any(disable,enable):action>")
@admin_required("sites:write")
def switch_endpoint(site_key: str, endpoint_id: int, action: str):
    """Disable or enable an endpoint."""
    CsrfOnly().load(request.form.to_dict())
    endpoint = set_endpoint_active(site_key, endpoint_id, action == "enable")
    flash(f"Endpoint {endpoint.name} enabled: new notifications go to it." if endpoint.active
          else f"Endpoint {endpoint.name} disabled: its unsent notifications are dead letters "
          "(Enable, then Retry, sends them).", "success")
    return redirect(url_for("webhooks_admin.webhooks", site_key=site_key))


@bp.post("/sites/<site_key>/webhooks/<int:endpoint_id>/retry")
@admin_required("sites:write")
def retry_endpoint(site_key: str, endpoint_id: int):
    """Requeue every dead letter of an endpoint."""
    CsrfOnly().load(request.form.to_dict())
    count = retry_dead(site_key, endpoint_id=endpoint_id, actor=_actor())
    flash(f"{count} dead letter(s) queued again.", "success")
    return redirect(url_for("webhooks_admin.webhooks", site_key=site_key))


@bp.post("/sites/<site_key>/webhooks/deliveries/<int:message_id>/retry")
@admin_required("sites:write")
def retry_delivery(site_key: str, message_id: int):
    """Requeue one dead letter."""
    CsrfOnly().load(request.form.to_dict())
    count = retry_dead(site_key, message_id=message_id, actor=_actor())
    flash(f"Notification #{message_id} queued again." if count
          else f"Notification #{message_id} was not a dead letter: nothing queued.",
          "success" if count else "info")
    return redirect(url_for("webhooks_admin.delivery", site_key=site_key,
                            message_id=message_id))


def _actor() -> str:
    from ..admin_auth import current_principal

    principal = current_principal()
    return f"admin {principal.actor}" if principal else "admin"
