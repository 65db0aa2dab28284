"""HTTP surfaces: one blueprint per surface, views kept thin."""
from __future__ import annotations


def register_blueprints(app, api) -> None:
    """Attach every surface to the app (API blueprints go through flask-smorest)."""
    from . import demo, pages, server_api, widget_api

    api.register_blueprint(widget_api.blp)
    api.register_blueprint(server_api.blp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(demo.bp)
