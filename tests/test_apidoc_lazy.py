"""The OpenAPI document is built on its first read, not by every create_app (consent.apidoc):
the same document, every operation in it, also when threads ask for it at once."""
from __future__ import annotations

import json
import threading

from consent.extensions import api


def _api_rules(app) -> set[str]:
    """The URL rule of every view of a flask-smorest blueprint, as OpenAPI paths."""
    smorest = set(app.extensions["flask-smorest"]["blp_name_to_api"])
    return {_openapi_path(rule.rule) for rule in app.url_map.iter_rules()
            if rule.endpoint.split(".")[0] in smorest}


def _openapi_path(rule: str) -> str:
    out, rest = "", rule
    while "<" in rest:
        head, _, tail = rest.partition("<")
        var, _, rest = tail.partition(">")
        out += head + "{" + var.split(":")[-1] + "}"
    return out + rest


def test_create_app_leaves_the_views_undocumented_until_the_spec_is_read(app, client):
    # nothing documented yet: building the app did not pay for the document
    assert api._spec._paths == {}
    assert api._pending_docs
    first = client.get("/api/v1/openapi.json")
    assert first.status_code == 200
    paths = set(first.get_json()["paths"])
    assert paths == _api_rules(app) and len(paths) >= 20
    assert "adminToken" in first.get_json()["components"]["securitySchemes"]
    # documented once: a second read is the same document, nothing added twice
    again = client.get("/api/v1/openapi.json")
    assert again.get_data() == first.get_data()
    assert api._pending_docs == []


def test_threads_reading_the_spec_at_once_all_get_the_whole_document(app):
    expected_paths = _api_rules(app)
    assert api._pending_docs
    start = threading.Barrier(4)
    results: list[str] = []

    def read():
        start.wait()
        results.append(json.dumps(api.spec.to_dict(), sort_keys=True))

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and len(set(results)) == 1
    assert set(json.loads(results[0])["paths"]) == expected_paths
