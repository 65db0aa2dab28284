"""The demo page: what a site embedding the widget looks like."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template, send_from_directory

bp = Blueprint("demo", __name__)


@bp.get("/")
def index():
    """A demo shop page with the widget and tagged scripts, for the `demo` site."""
    return render_template("demo.html", site_key=current_app.config.get("DEMO_SITE_KEY", "demo"))


@bp.get("/consent.js")
def widget_script():
    """The widget script (cacheable: it is the same for every site)."""
    response = send_from_directory(current_app.static_folder, "consent.js", max_age=3600)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response
