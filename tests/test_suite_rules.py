"""The test suite's own rules: which tests run on PostgreSQL (docs/testing.md)."""
from __future__ import annotations

import os

from tests.conftest import _ROOT, BACKEND_MODULES


def test_every_backend_module_exists():
    # A renamed or moved module would otherwise silently stop running on PostgreSQL.
    missing = [p for p in sorted(BACKEND_MODULES) if not os.path.isfile(os.path.join(_ROOT, p))]
    assert missing == [], f"listed in BACKEND_MODULES but missing: {missing}"


def test_backend_tests_are_selected_by_their_module(request):
    # The marker comes from the module list: this module is not in it, so unmarked.
    assert request.node.get_closest_marker("backend") is None
    assert "tests/test_ledger.py" in BACKEND_MODULES
