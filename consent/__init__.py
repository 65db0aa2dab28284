"""A self-hosted consent and cookie preference manager."""
from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, send_from_directory
from flask.sessions import SecureCookieSessionInterface
from werkzeug.routing import Rule

import config as config_module

from .extensions import api, db, migrate

ROOT = Path(__file__).resolve().parent.parent


class _Rule(Rule):
    """A URL rule whose URL builders are compiled once per process, not once per app."""

    # werkzeug writes, parses and compiles two Python functions per rule (~60% of what
    # create_app costs, ~150 rules): a function of the rule's text alone, which takes the
    # rule as its first argument, so every app built in a process (tests build one per
    # test) can share it.
    _builders: dict = {}

    def _compile_builder(self, append_unknown: bool = True):
        defaults = self.defaults or {}
        if any(dynamic and part in defaults for dynamic, part in self._trace):
            # a default baked into the builder by its converter: not the rule's text alone
            return super()._compile_builder(append_unknown)
        key = (self.rule, tuple(self._trace), tuple(defaults), append_unknown)
        try:
            return self._builders[key]
        except KeyError:
            builder = self._builders[key] = super()._compile_builder(append_unknown)
            return builder


class ConsentFlask(Flask):
    """Flask, with `ensure_sync` deciding once per function instead of once per call, and
    URL builders compiled once per process."""

    url_rule_class = _Rule

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._sync: dict = {}

    def ensure_sync(self, func):
        # Flask asks inspect.iscoroutinefunction for every hook and the view on every
        # request (16 times a consent write); the answer never changes for a function.
        try:
            return self._sync[func]
        except KeyError:
            if len(self._sync) >= 512:
                # per-request callables (after_this_request closures) must not pile up
                self._sync.clear()
            sync = self._sync[func] = super().ensure_sync(func)
            return sync
        except TypeError:  # an unhashable callable
            return super().ensure_sync(func)


def create_app(config: str | dict | None = None) -> Flask:
    """Build the application. CONFIG: an environment name, or a dict of overrides."""
    app = ConsentFlask(__name__, static_folder=str(ROOT / "static"),
                template_folder=str(ROOT / "templates"), instance_path=str(ROOT / "instance"))
    overrides = config if isinstance(config, dict) else {}
    env_name = config if isinstance(config, str) else overrides.get("ENV_NAME")
    app.config.from_object(config_module.config_for(env_name))
    app.config.update(overrides)
    _check_secrets(app)
    # A mistyped trusted region header would silently send every visitor the default rule.
    from .regions import parse_header_setting

    parse_header_setting(app.config.get("CONSENT_REGION_HEADERS", ""))
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite:///") and ":memory:" not in uri:
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    app.config.setdefault("OPENAPI_SWAGGER_UI_PATH", "docs")
    app.config.setdefault("OPENAPI_SWAGGER_UI_URL", "/api/v1/docs-assets/")

    from . import models  # noqa: F401  (registers every table on the metadata)
    from .database import install_engine_hooks

    db.init_app(app)
    with app.app_context():
        install_engine_hooks(db.engine, app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True,
                     compare_type=True)
    api.init_app(app)

    from .web import register_blueprints
    register_blueprints(app, api)

    from .errors import register_error_handlers
    register_error_handlers(app)

    from .cli import register_commands
    register_commands(app)

    from . import csrf
    csrf.init_app(app)

    from .ledger.log import start_integrator

    @app.before_request
    def _integrator():
        # The log's integrator thread starts with the first request of each process
        # (not at import: CLI commands and forked workers would inherit a dead thread).
        start_integrator(app)
    from . import hardening
    hardening.init_app(app)
    from .logredact import install as redact_logs
    # The development server logs request lines; the app's own lines may quote URLs.
    redact_logs("werkzeug", "consent", "flask.app", "gunicorn.error")
    app.session_interface = _ApiAwareSessionInterface()

    docs_assets = Path(__import__("flask_swagger_ui").__file__).parent / "dist"

    @app.get("/api/v1/docs-assets/<path:name>")
    def docs_assets_file(name: str):
        """Swagger UI files, served locally so the docs page works offline."""
        return send_from_directory(docs_assets, name, max_age=86400)

    from . import ratelimit
    app.extensions["consent_limiter"] = ratelimit.init_app(app)
    return app


class _ApiAwareSessionInterface(SecureCookieSessionInterface):
    """No cookie session on the JSON API: it authenticates by key or token, never by an
    ambient cookie, and skipping the session keeps the hot consent write lean."""

    def open_session(self, app, request):
        if request.path.startswith("/api/"):
            return self.null_session_class()
        return super().open_session(app, request)


def _check_secrets(app: Flask) -> None:
    """Production refuses to start with a missing, default or short secret."""
    from .secretbox import check_config

    if app.config.get("ENV_NAME") != "production":
        check_config(app.config)
        return
    secret = app.config.get("SECRET_KEY") or ""
    if secret == config_module.DEFAULT_SECRET or len(secret) < 32:
        raise RuntimeError("SECRET_KEY must be set to a random value of at least 32 "
                           "characters in production (e.g. `python -c 'import secrets; "
                           "print(secrets.token_urlsafe(48))'`)")
    if os.environ.get("CONSENT_HMAC_KEY") is not None and len(app.config["CONSENT_HMAC_KEY"]) < 32:
        raise RuntimeError("CONSENT_HMAC_KEY, when set, must be at least 32 characters")
    check_config(app.config)
    # Checkpoints and exports are signed with a key of their own, never derived from
    # SECRET_KEY (docs/audit.md); a bad key stops start-up rather than the first export.
    if not (app.config.get("CONSENT_SIGNING_KEY") or "").strip():
        raise RuntimeError("CONSENT_SIGNING_KEY must be set in production: a PEM file of an "
                           "Ed25519 private key or 64 hex digits (see docs/audit.md)")
    from .ledger.keys import _seed_from_text

    try:
        _seed_from_text(app.config["CONSENT_SIGNING_KEY"])
    except (OSError, ValueError, RuntimeError) as exc:
        raise RuntimeError(f"CONSENT_SIGNING_KEY cannot be read: {exc}") from None
