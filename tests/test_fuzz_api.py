"""Bad input from schemathesis (generated from our own OpenAPI spec) and hypothesis.

Whatever arrives, the answer is never a 5xx and the ledger still verifies afterwards.
"""
from __future__ import annotations

import json

import schemathesis
from hypothesis import HealthCheck, given, settings, strategies as st
from schemathesis.checks import not_a_server_error

from consent.ledger import verify_ledger


def test_api_never_answers_5xx(app, site):
    """Every operation of the OpenAPI spec, fed cases generated from its own schema."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 5
    seen: dict[str, set[int]] = {}
    for operation in operations:
        # 10 cases an operation (was 20; docs/testing.md): every operation is still called,
        # and the generation, more than half of this test's CPU, is halved
        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        @given(case=operation.as_strategy(), real_site=st.booleans())
        def call(case, real_site):
            # Half of the cases reach the real site with a valid key, so deeper code runs.
            if real_site and "site_key" in (case.path_parameters or {}):
                case.path_parameters["site_key"] = site["key"]
                case.headers = {**(case.headers or {}),
                                "Authorization": f"Bearer {site['api_key']}"}
            # (a Flask test client calls from 127.0.0.1, which the testing config exempts
            # from rate limits; schemathesis' own werkzeug client sends no address at all)
            response = case.call(session=app.test_client())
            seen.setdefault(operation.label, set()).add(response.status_code)
            case.validate_response(response, checks=[not_a_server_error])
            assert response.status_code < 500

        call()
    # every operation was called, and the generated cases got past validation somewhere
    assert set(seen) == {operation.label for operation in operations}
    assert any(code < 400 for codes in seen.values() for code in codes), seen
    report = verify_ledger()
    assert report.ok, [str(p) for p in report.problems]


def test_ledger_verifies_after_fuzzing(app, client, site):
    """A compact hypothesis run on the decisions endpoint, then verify the ledger."""

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda children: st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=10), children, max_size=4),
        max_leaves=12)
    bodies = st.fixed_dictionaries(
        {}, optional={"action": st.sampled_from(["accept_all", "reject_all", "custom", "gpc",
                                                 "x"]) | json_values,
                      "categories": st.dictionaries(st.sampled_from(
                          ["essential", "functional", "analytics", "advertising", "zz"]),
                          st.booleans() | json_values, max_size=5) | json_values,
                      "subject": st.text(max_size=70) | json_values,
                      "page_url": st.text(max_size=50) | json_values,
                      "policy_version": json_values, "locale": json_values,
                      "client_event_id": json_values, "gpc": json_values})

    statuses = set()

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=bodies | json_values)
    def post_anything(body):
        r = client.post(f"/api/v1/sites/{site['key']}/decisions", data=json.dumps(body),
                        content_type="application/json")
        statuses.add(r.status_code)
        assert r.status_code < 500, r.get_data(as_text=True)
        if r.status_code >= 400:
            assert r.mimetype == "application/problem+json"

    post_anything()
    assert any(s >= 400 for s in statuses)
    report = verify_ledger()
    assert report.ok, [str(p) for p in report.problems]
