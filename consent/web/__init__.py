"""HTTP surfaces: one blueprint per surface, views kept thin.

Every module in this package that defines `blp` (a flask-smorest Blueprint, documented in
the OpenAPI spec) or `bp` (a plain Flask Blueprint, HTML pages) is registered.
"""
from __future__ import annotations

import importlib
import pkgutil


def register_blueprints(app, api) -> None:
    """Attach every surface to the app (API blueprints go through flask-smorest)."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "blp"):
            api.register_blueprint(module.blp)
        if hasattr(module, "bp"):
            app.register_blueprint(module.bp)
    # Events recorded in a person's own request carry their region (consent.regions).
    from ..ledger import set_region_hook
    from .common import region_of_event
    set_region_hook(region_of_event)
