"""Finding 7's fuzz pass: every operation of the OpenAPI spec, driven by hypothesis with
hostile values -- lone UTF-16 surrogates (in JSON escapes, and as invalid UTF-8 in URLs
and forms), JSON nested thousands deep, huge and non-finite numbers -- in development
and production mode. No answer is a 5xx, every error is problem+json, and the ledger
still verifies."""
from __future__ import annotations

import json
import re
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings, strategies as st

from consent.ledger import verify_ledger
from tests.security.sec_fixtures import mode, mode_app, mode_client, mode_site  # noqa: F401
from tests.support.admin import make_token, record_choice  # noqa: F401

METHODS = ("get", "post", "put", "patch", "delete")
SURROGATES = ["\ud800", "a\udfffb", "\udbff\udbff", "x\ud83d", "\ude00y"]


def _operations(spec: dict) -> list[tuple[str, str, dict]]:
    return [(method, path, op) for path, ops in spec["paths"].items()
            for method, op in ops.items() if method in METHODS]


def _resolve(spec: dict, schema: dict | None) -> dict:
    seen = 0
    while schema and "$ref" in schema and seen < 10:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"].get(name, {})
        seen += 1
    return schema or {}


def _deep(depth: int, kind: str) -> str:
    return ("[" * depth + "]" * depth) if kind == "list" else (
        '{"a":' * depth + "1" + "}" * depth)


poison_text = st.one_of(
    st.sampled_from(SURROGATES),
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=8), st.sampled_from(SURROGATES),
              st.text(max_size=8)),
    st.text(max_size=30),
    st.sampled_from(["", " ", "0", "-1", "null", "https://[::1", "0001-01-01T00:00:00+14:00",
                     "9999-12-31T23:59:59-14:00", "=cmd|'/C calc'!A0", "x" * 300]))
huge_number = st.sampled_from([10 ** 30, -(10 ** 30), 2 ** 63, 2 ** 64, -(2 ** 63) - 1,
                               10 ** 1000, 1e308, -1e308, 5e-324, float("inf"),
                               float("-inf"), float("nan"), 0, -1])
leaf = st.one_of(st.none(), st.booleans(), poison_text, huge_number,
                 st.integers(-5, 5))
json_value = st.recursive(leaf, lambda kids: st.lists(kids, max_size=3)
                          | st.dictionaries(poison_text, kids, max_size=3), max_leaves=8)


def _url_text(value) -> str:
    # A path or query value; surrogates go out as the invalid UTF-8 they would be.
    return quote(str(value).encode("utf-8", "surrogatepass"), safe="")


@st.composite
def requests_for(draw, spec, operations, site_key, tokens, subject):
    method, path, op = draw(st.sampled_from(operations))
    params = re.findall(r"{(\w+)}", path)
    url = path
    for name in params:
        real = {"site_key": site_key, "subject_id": subject, "user_id": "u-1",
                "request_id": 1, "endpoint_id": 1, "message_id": 1}.get(name, "x")
        value = draw(st.one_of(st.just(real), poison_text, huge_number))
        url = url.replace("{" + name + "}", _url_text(value) or "x")
    query = []
    for p in op.get("parameters", []):
        if p.get("in") == "query" and draw(st.booleans()):
            query.append(f"{p['name']}={_url_text(draw(st.one_of(poison_text, huge_number)))}")
    if query:
        url += "?" + "&".join(query)
    headers = {}
    auth = draw(st.sampled_from(tokens + [None]))
    if auth:
        headers["Authorization"] = f"Bearer {auth}"
    body = None
    content = (op.get("requestBody") or {}).get("content") or {}
    if "application/json" in content:
        schema = _resolve(spec, content["application/json"].get("schema"))
        names = sorted((schema.get("properties") or {}).keys())
        shape = draw(st.sampled_from(["fields", "fields", "deep", "value"]))
        if shape == "deep":
            body = _deep(draw(st.sampled_from([64, 3000, 9000])),
                         draw(st.sampled_from(["list", "object"])))
        elif shape == "value":
            body = json.dumps(draw(json_value))
        else:
            fields = draw(st.dictionaries(st.sampled_from(names or ["x"]), json_value,
                                          max_size=max(1, len(names))))
            body = json.dumps(fields)  # (ensure_ascii: surrogates become \\udXXX escapes)
        headers["Content-Type"] = draw(st.sampled_from(["application/json", "text/plain"]))
    elif "application/x-www-form-urlencoded" in content:
        fields = draw(st.dictionaries(st.sampled_from(["From", "To", "Body", "MessageSid",
                                                       "msisdn", "text", "x"]),
                                      st.one_of(poison_text, huge_number), max_size=4))
        body = "&".join(f"{k}={_url_text(v)}" for k, v in fields.items())
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    return method.upper(), url, headers, body


def test_no_operation_answers_5xx_to_hostile_input(mode_app, mode_client, mode_site):
    spec = mode_client.get("/api/v1/openapi.json").get_json()
    operations = _operations(spec)
    assert len(operations) >= 30
    subject = record_choice(mode_site["key"], "accept_all")
    tokens = [mode_site["api_key"], make_token(["admin"])]
    seen: dict[str, set[int]] = {}

    @settings(max_examples=250, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(req=requests_for(spec, operations, mode_site["key"], tokens, subject))
    def call(req):
        method, url, headers, body = req
        r = mode_client.open(url, method=method, headers=headers, data=body)
        seen.setdefault(url.split("?")[0], set()).add(r.status_code)
        assert r.status_code < 500, (method, url, body and body[:200],
                                     r.get_data(as_text=True)[:300])
        if r.status_code >= 400:
            assert r.mimetype == "application/problem+json", (method, url, r.mimetype)

    call()
    assert any(code >= 400 for codes in seen.values() for code in codes)
    report = verify_ledger()
    assert report.ok, [str(p) for p in report.problems]
