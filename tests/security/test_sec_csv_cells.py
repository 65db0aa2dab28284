"""Finding 11: no CSV cell the product writes starts like a spreadsheet formula, and an
export holding such values still verifies (the verifier reads the original values back)."""
from __future__ import annotations

import csv
import io

import pytest

from consent.audit import ExportFilters, verify_export_file, write_export
from consent.csvcells import TRIGGERS, escape_cell, read_row, unescape_cell
from consent.decisions import RequestContext, record_decision
from consent.outbox import register_endpoint
from tests.security.sec_fixtures import mode, mode_app, mode_client, mode_site  # noqa: F401
from tests.support.admin import make_token  # noqa: F401
from tests.support.api import bearer

EVIL_NAME = "=cmd|'/C calc'!A0"
EVIL_KEY = "-1-1-1-1-1+cmd"  # a client_event_id may start with '-'


def _cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def _assert_no_formula(text: str) -> None:
    for row in _cells(text):
        for cell in row:
            assert not cell or cell[0] not in TRIGGERS, (cell, row)


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1", "'=1",
                                   "''@x", "'", "plain", "it's", "", "a=b"])
def test_escape_is_reversible_and_neutral(value):
    written = escape_cell(value)
    assert unescape_cell(written) == value
    assert not written or written[0] not in TRIGGERS


def test_audit_export_neutralises_formulas_and_still_verifies(mode_app, mode_site, tmp_path,
                                                              monkeypatch):
    # (Production checks the receiver's address; this test is about the name only.)
    monkeypatch.setenv("CONSENT_WEBHOOK_ALLOW_PRIVATE", "1")
    register_endpoint(mode_site["key"], url="https://198.51.100.7/hook", name=EVIL_NAME,
                      categories=["*"])
    record_decision(mode_site["key"], {"action": "accept_all", "client_event_id": EVIL_KEY,
                                       "page_url": "https://shop.example/=x"},
                    RequestContext(ip="203.0.113.9", user_agent="UA", gpc_header=False))
    path = tmp_path / "export.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        write_export(fh, ExportFilters(site_key=mode_site["key"]), "csv")
    text = path.read_text(encoding="utf-8")
    _assert_no_formula(text)
    lines = text.splitlines()
    assert any(EVIL_KEY in read_row(line) for line in lines[1:-1]
               if not line.startswith("delivery,"))
    assert any(EVIL_NAME in read_row(line) for line in lines if line.startswith("delivery,"))
    report = verify_export_file(str(path))
    assert report.ok, [str(p) for p in report.problems]
    assert report.rows == 1


def test_export_download_over_http_has_no_formula_cells(mode_app, mode_client, mode_site):
    record_decision(mode_site["key"], {"action": "reject_all", "client_event_id": EVIL_KEY},
                    RequestContext(ip="203.0.113.9", user_agent="UA", gpc_header=False))
    token = make_token(["audit:export"])
    r = mode_client.get(f"/api/v1/audit/sites/{mode_site['key']}/export?format=csv",
                        headers=bearer(token))
    assert r.status_code == 200
    text = r.get_data(as_text=True)
    assert "'" + EVIL_KEY in text
    _assert_no_formula(text)
