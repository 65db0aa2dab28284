"""create_app does no work that every app of a process repeats for nothing:

- the OpenAPI document is built on its first read (consent.apidoc): the same document,
  every operation in it, also when threads ask for it at once;
- the URL builders werkzeug compiles for each rule are compiled once per process
  (consent._Rule) and build the same URLs as werkzeug's own rules.
"""
from __future__ import annotations

import json
import threading
import uuid

from flask import Flask, url_for
from werkzeug.routing import Map, Rule

from consent import ConsentFlask, create_app
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


_SAMPLES = {"IntegerConverter": 7, "PathConverter": "a b/c%d", "UnicodeConverter": "x y?&z",
            "UUIDConverter": uuid.UUID(int=5), "FloatConverter": 1.5}


def _sample(converter):
    if type(converter).__name__ == "AnyConverter":
        return sorted(converter.items)[0]
    return _SAMPLES[type(converter).__name__]


def test_every_rule_builds_what_werkzeug_own_rule_builds(app, tmp_path):
    other = create_app({"ENV_NAME": "testing", "SERVER_NAME": None,
                        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'other.sqlite3'}"})
    reference = Map(converters=app.url_map.converters)
    theirs = {r.endpoint: r for r in other.url_map.iter_rules()}
    rules = list(app.url_map.iter_rules())
    assert len(rules) >= 100
    for rule in rules:
        plain = Rule(rule.rule, endpoint=rule.endpoint, defaults=rule.defaults,
                     methods=rule.methods)
        plain.bind(reference)
        values = {name: _sample(conv) for name, conv in rule._converters.items()}
        for extra in ({}, {"q": "a b&c", "n": [1, 2]}):
            expected = plain.build({**values, **extra})
            assert rule.build({**values, **extra}) == expected, rule.rule
            # the other app's rule shares the compiled builder and builds the same
            assert theirs[rule.endpoint].build({**values, **extra}) == expected
        assert theirs[rule.endpoint]._build.__func__ is rule._build.__func__


def test_rules_with_defaults_build_as_in_plain_flask():
    # a default for a variable of the rule is baked into werkzeug's builder through the
    # converter: such rules are compiled per app, the others still shared
    def build(flask_class, converter_default: int):
        def view(**kwargs):
            return ""

        app = flask_class(__name__)
        app.add_url_rule("/items/", "items", view, defaults={"page": 1})
        app.add_url_rule("/items/<int:page>", "items", view)
        app.add_url_rule("/at/<int:n>", "at", view, defaults={"n": converter_default})
        with app.test_request_context():
            return [url_for("items"), url_for("items", page=1), url_for("items", page=3),
                    url_for("items", page=2, q="x y"), url_for("at"),
                    url_for("at", n=converter_default, z=1)]

    for default in (4, 9):
        assert build(ConsentFlask, default) == build(Flask, default)
