"""Preference center (issue 4 replaces this placeholder)."""
from __future__ import annotations

from flask import Blueprint, abort

bp = Blueprint("preferences", __name__)


@bp.get("/preferences")
def preferences_page():
    """Preference center."""
    abort(404, "The preference center is not available yet.")
