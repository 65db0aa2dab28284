"""The OpenAPI document, as the server really answers.

- Errors are RFC 9457 `application/problem+json` (consent.errors.problem): the error
  schema and content type of every documented error status are ProblemSchema's.
- Every operation lists the error statuses it can answer: the ones every request can
  meet (400 bad header or JSON, 414/431 oversized URL or header, 429 rate limit, 503
  database away, 500 as `default`), 404 where a path names something, 401/403 where it
  needs credentials, 413 where it takes a body, 422 where it validates input, plus what
  a view declares itself with `problems(409, ...)`.
- Readable tags instead of blueprint names, and real request/response examples recorded
  from the running server (apidoc_examples.json, written by
  `.venv/bin/python -m tests.support.openapi_scenario --write`).

No view logic lives here; views only add `@problems(...)` where they answer more.
"""
from __future__ import annotations

import http
import json
import threading
from pathlib import Path

import marshmallow as ma
from apispec import BasePlugin
from flask_smorest import Api, Blueprint
from flask_smorest.utils import prepare_response

PROBLEM = "application/problem+json"
EXAMPLES_FILE = Path(__file__).with_name("apidoc_examples.json")

# Blueprint name -> (tag, description)
TAGS = {
    "widget_api": ("Widget", "What the widget calls from visitors' browsers (CORS, no key)."),
    "server_api": ("Consent of a person", "Read and record a visitor's or user's consent "
                   "from the site's backend (site API key)."),
    "channels_api": ("Message channels", "May I send?, suppression lists, one-click "
                     "unsubscribe URLs, addresses, login links (site API key)."),
    "sms": ("SMS", "Inbound SMS (STOP and the other reply words): from Twilio, Vonage and "
            "Plivo with their own credentials and signatures, or from the site's backend."),
    "webhooks_api": ("Webhooks", "Downstream systems told about consent changes (Standard "
                     "Webhooks deliveries); endpoints, delivery log, retries (site API key)."),
    "audit_api": ("Audit and requests", "Access and erasure requests, receipts, policy "
                  "versions, exports (admin API token with scopes)."),
    "log_api": ("Verifiable log", "Signed checkpoints, inclusion and consistency proofs, "
                "per-decision receipts."),
    "linked_accounts_api": ("Linked accounts", "Third-party accounts a person links; tokens "
                            "kept encrypted, deleted on deauthorisation (site API key)."),
    "minors_api": ("Minors and guardians", "Age rules: a person's age, a guardian's "
                   "consent (site API key)."),
    "guardian_api": ("Guardian requests", "A minor's grants waiting for a guardian's "
                     "signed link: the links to deliver, and their answers (site API key)."),
}
# Statuses any request can meet before or around its view.
EVERYWHERE = (400, 414, 429, 431, 503)


class ProblemErrorSchema(ma.Schema):
    """One invalid field: where (JSON pointer into the input) and what is wrong."""

    class Meta:
        unknown = ma.INCLUDE

    pointer = ma.fields.String(required=True, metadata={"example": "#/categories/bogus"})
    detail = ma.fields.String(required=True, metadata={
        "example": "unknown category 'bogus' for site 'shop'"})


class ProblemSchema(ma.Schema):
    """An RFC 9457 problem: what went wrong, per field where input was invalid."""

    class Meta:
        unknown = ma.INCLUDE  # problems may carry extension members (e.g. `missing`)

    type = ma.fields.String(required=True, metadata={"example": "about:blank"})
    title = ma.fields.String(required=True, metadata={"example": "Invalid input"})
    status = ma.fields.Integer(required=True, metadata={"example": 422})
    detail = ma.fields.String(metadata={"example": "Some fields are not valid."})
    errors = ma.fields.List(ma.fields.Nested(ProblemErrorSchema), metadata={
        "description": "Per-field messages (invalid input)"})
    missing = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String(), metadata={
        "description": "What was not found (404), e.g. {\"site\": \"nope\"}"})


def problems(*statuses: int):
    """Document more problem+json answers of a view (409, 410, ...)."""
    return Blueprint.doc(responses={str(s): http.HTTPStatus(s).name for s in statuses})


def _problem_example(status: int) -> dict:
    phrase = http.HTTPStatus(status).phrase
    body = {"type": "about:blank", "title": phrase, "status": status}
    if status == 422:
        body.update(title="Invalid input", detail="Some fields are not valid.",
                    errors=[{"pointer": "#/channel",
                             "detail": "Must be one of: email, sms, push."}])
    elif status == 404:
        body.update(title="Not found", detail="unknown site 'nope'",
                    missing={"site": "nope"})
    elif status == 401:
        body.update(title="Authentication required",
                    detail="send the site's API key as 'Authorization: Bearer <key>'")
    return body


class _DocPlugin(BasePlugin):
    """Adds the error statuses, readable tags and recorded examples to each operation."""

    def __init__(self):
        self.examples: dict | None = None

    def _examples(self) -> dict:
        if self.examples is None:
            try:
                self.examples = json.loads(EXAMPLES_FILE.read_text(encoding="utf-8"))
            except FileNotFoundError:
                self.examples = {}
        return self.examples

    def operation_helper(self, path=None, operations=None, **kwargs):
        for method, op in (operations or {}).items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            tags = [TAGS.get(t, (t,))[0] for t in op.get("tags", [])]
            if "/sms/" in (path or ""):
                tags = [TAGS["sms"][0]]
            op["tags"] = tags
            responses = op.setdefault("responses", {})
            wanted = set(EVERYWHERE)
            if "{" in (path or ""):
                wanted.add(404)
            if op.get("security"):
                wanted |= {401, 403}
            if op.get("requestBody") or method in ("post", "put", "patch"):
                wanted.add(413)
            for status in sorted(wanted):
                responses.setdefault(str(status), http.HTTPStatus(status).name)
            responses.setdefault("default", "DEFAULT_ERROR")
            recorded = self._examples().get(f"{method.upper()} {path}")
            if recorded:
                _add_examples(op, recorded)


def _add_examples(op: dict, recorded: dict) -> None:
    for param in op.get("parameters", []):
        if isinstance(param, dict) and param.get("in") == "query" and \
                param.get("name") in (recorded.get("query") or {}):
            param.setdefault("example", recorded["query"][param["name"]])
    body = recorded.get("request")
    content = (op.get("requestBody") or {}).get("content") or {}
    if body is not None:
        for media in content.values():
            media.setdefault("example", body)
    responses = {str(k): v for k, v in op.get("responses", {}).items()}
    for status, example in (recorded.get("responses") or {}).items():
        response = responses.get(status)
        if isinstance(response, dict):
            for media in (response.get("content") or {}).values():
                media.setdefault("example", example)


class ConsentApi(Api):
    """flask-smorest's Api, documenting errors as the problem+json they are."""

    ERROR_SCHEMA = ProblemSchema

    def __init__(self, *args, **kwargs):
        self.doc_plugin = _DocPlugin()
        # Documenting the views is most of what building an app costs (~0.1 s of CPU for
        # ~60 operations), and only the spec's readers need it (openapi.json, the CLI):
        # it is queued here and done on the first read of `spec`, in the same order.
        self._pending_docs: list = []
        self._doc_lock = threading.RLock()
        self._documenting_thread: int | None = None
        self._building = False
        spec_kwargs = dict(kwargs.pop("spec_kwargs", None) or {})
        spec_kwargs.setdefault("extra_plugins", [self.doc_plugin])
        super().__init__(*args, spec_kwargs=spec_kwargs, **kwargs)

    def init_app(self, app, *, spec_kwargs=None):
        """Initialise for APP (the spec's defaults are queued, like the views)."""
        self._building = True
        try:
            super().init_app(app, spec_kwargs=spec_kwargs)
        finally:
            self._building = False

    @property
    def spec(self):
        """The app's APISpec, with every registered blueprint's views documented."""
        if (self._pending_docs and not self._building
                and self._documenting_thread != threading.get_ident()):
            with self._doc_lock:
                if self._pending_docs:
                    self._document_pending()
        return self._spec

    @spec.setter
    def spec(self, value) -> None:
        # flask-smorest builds a new spec in each init_app: what was queued was another app's
        self._spec = value
        self._pending_docs = []

    def _document_pending(self) -> None:
        self._documenting_thread = threading.get_ident()
        try:
            for step in self._pending_docs:
                step()
            self._pending_docs = []
        finally:
            self._documenting_thread = None

    def _register_responses(self):
        self._pending_docs.append(self._register_problem_responses)

    def _register_etag_headers(self):
        self._pending_docs.append(super()._register_etag_headers)

    def _register_pagination_header(self):
        self._pending_docs.append(super()._register_pagination_header)

    def _register_problem_responses(self) -> None:
        for status in http.HTTPStatus:
            response = {"description": status.phrase}
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
                response["example"] = _problem_example(status)
            prepare_response(response, self.spec, PROBLEM)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "Unexpected error (500), problem+json like every error",
                    "schema": self.ERROR_SCHEMA,
                    "example": {"type": "about:blank", "title": "Internal server error",
                                "status": 500, "detail": "Something went wrong on our "
                                "side; nothing was recorded."}}
        prepare_response(response, self.spec, PROBLEM)
        self.spec.components.response("DEFAULT_ERROR", response, lazy=True)

    def register_blueprint(self, blp, *, parameters=None, **options):
        """Register BLP on the app now; document its views with their readable tag later."""
        name = options.get("name", blp.name)
        app = self._app
        app.extensions["flask-smorest"]["blp_name_to_api"][name] = self
        # a blueprint's own registration hooks may add components (a security scheme):
        # they get the spec as it is, without documenting what is queued (so does init_app)
        self._building = True
        try:
            app.register_blueprint(blp, **options)
        finally:
            self._building = False
        self._pending_docs.append(
            lambda: self._document_blueprint(blp, app, name, parameters))

    def _document_blueprint(self, blp, app, name, parameters) -> None:
        spec = self._spec
        blp.register_views_in_doc(self, app, spec, name=name, parameters=parameters)
        spec.tag({"name": name, "description": blp.description})
        for tag in self.spec._tags:  # (apispec keeps the tag list privately)
            if tag.get("name") in TAGS:
                tag["name"], tag["description"] = TAGS[tag["name"]]
        if blp.name == "channels_api" and not any(
                t.get("name") == TAGS["sms"][0] for t in self.spec._tags):
            self.spec.tag({"name": TAGS["sms"][0], "description": TAGS["sms"][1]})
