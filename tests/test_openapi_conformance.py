"""The served OpenAPI document says what the server does: every operation is called for real, successfully and with a mistake, and schemathesis checks
each answer against the document (status documented, content type, body schema)."""
from __future__ import annotations

import json
import os

import schemathesis
from schemathesis.checks import (content_type_conformance, response_schema_conformance,
                                 status_code_conformance)

from consent.apidoc import EXAMPLES_FILE
from consent.database import run_write
from consent.ledger.log import integrate
from consent.sites import get_site, invalidate_site_cache
from tests.support.openapi_scenario import (ABSENT, DASSET_ORIGIN, VISITOR, VISITOR_KEY,
                                            examples_from, scenario)
from tests.support.admin import make_token
from tests.test_requests import CONTROLLER

CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
METHODS = ("get", "post", "put", "patch", "delete")


def _operations(spec: dict) -> set[str]:
    return {f"{m.upper()} {p}" for p, ops in spec["paths"].items() for m in ops
            if m in METHODS}


def _drive(app, schema, site, dasset, admin):
    spec = app.test_client().get("/api/v1/openapi.json").get_json()

    def documented(call):
        return spec["paths"][call.path][call.method.lower()]["responses"]

    results = []
    steps = scenario(site, dasset, admin)
    response = None
    while True:
        try:
            call = steps.send(response)
        except StopIteration:
            return results
        if isinstance(call, tuple):  # a step that is not a request
            if call[0] == "set_controller":
                def write():
                    s = get_site(site["key"])
                    s.settings = {**s.settings, "controller": CONTROLLER}
                run_write(write)
                invalidate_site_cache()
            response = None
            continue
        integrate()  # the log's endpoints see every event recorded so far
        op = schema[call.path][call.method]
        kwargs = dict(path_parameters=call.params or {}, query=call.query,
                      headers=dict(call.headers))
        if call.body is not ABSENT:
            kwargs.update(body=call.body, media_type=call.media_type or "application/json")
        case = op.Case(**kwargs)
        response = case.call()
        assert response.status_code == call.expect, (
            call.operation, call.expect, response.status_code, response.text[:300])
        case.validate_response(response, checks=CHECKS)
        # Documented by its own status, not only by `default`.
        assert str(response.status_code) in documented(call), (
            call.operation, response.status_code)
        results.append((call, case, response))


def test_every_operation_conforms(app, site, monkeypatch):
    from consent.profiles import load_profile

    monkeypatch.setenv("CONSENT_WEBHOOK_ALLOW_HTTP", "1")
    loaded = load_profile("device_network", site_key="dasset", origins=[DASSET_ORIGIN])
    dasset = {"key": "dasset", "api_key": loaded.api_key}
    admin = make_token(["admin"])
    r = app.test_client().post(f"/api/v1/sites/{site['key']}/decisions",
                               json={"action": "reject_all", "subject": VISITOR,
                                     "key": VISITOR_KEY})
    assert r.status_code == 201
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    spec = app.test_client().get("/api/v1/openapi.json").get_json()
    results = _drive(app, schema, site, dasset, admin)

    documented = _operations(spec)
    ok = {c.operation for c, _, r in results if 200 <= r.status_code < 300}
    refused = {c.operation for c, _, r in results if r.status_code >= 400}
    assert documented - ok == set(), "operations never answered successfully"
    assert documented - refused == set(), "operations never answered with an error"
    statuses = {r.status_code for _, _, r in results}
    assert {200, 201, 204, 304, 401, 403, 404, 409, 410, 422} <= statuses

    recorded = examples_from(results)
    if os.environ.get("CONSENT_WRITE_EXAMPLES") == "1":
        EXAMPLES_FILE.write_text(json.dumps(recorded, indent=1, sort_keys=True,
                                            ensure_ascii=False) + "\n", encoding="utf-8")
    # The served examples are recorded ones, one for every operation (see test below).
    assert set(recorded) == documented


def _json_schema(node):
    """An OpenAPI 3.0 schema as JSON Schema (`nullable` becomes a null type)."""
    if isinstance(node, list):
        return [_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _json_schema(v) for k, v in node.items() if k not in ("nullable", "example")}
    if node.get("nullable"):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def test_every_operation_shows_real_examples_that_fit_its_schemas(app):
    from jsonschema import Draft7Validator

    spec = app.test_client().get("/api/v1/openapi.json").get_json()
    components = _json_schema(spec["components"])
    missing, wrong = [], []

    def check(where, media_type, media):
        if "example" not in media and "examples" not in media:
            missing.append(where)
            return
        if "json" in media_type or "form" in media_type:
            root = {**_json_schema(media.get("schema") or {}), "components": components}
            for error in Draft7Validator(root).iter_errors(media["example"]):
                wrong.append(f"{where}: {error.message}")

    for op_name in sorted(_operations(spec)):
        method, path = op_name.split(" ", 1)
        op = spec["paths"][path][method.lower()]
        for media_type, media in (op.get("requestBody") or {}).get("content", {}).items():
            check(f"{op_name} request {media_type}", media_type, media)
        for status, response in op["responses"].items():
            if "$ref" in response:
                response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
            for media_type, media in (response.get("content") or {}).items():
                check(f"{op_name} {status} {media_type}", media_type, media)
    assert missing == []
    assert wrong == []
