"""`flask consent ...` commands for operators and auditors.

Run them with the project's environment: `.venv/bin/flask --app app consent ...`. A
mistake (unknown site, duplicate key, missing directory, bad date...) is one line on
standard error and exit status 1, never a traceback: commands raise
click.ClickException for what they check, and the group turns the domain's own errors
(and file-system errors) into the same one-line form.
"""
from __future__ import annotations

import json
import logging
import os
import sys

import click
from flask import Flask
from flask.cli import AppGroup

from .database import run_write
from .extensions import db

log = logging.getLogger(__name__)


def one_line_error(exc: BaseException) -> str | None:
    """The one-line message of an error an operator can fix, or None for a bug."""
    from sqlalchemy.exc import IntegrityError

    from .errors import DomainError
    from .sites import NotFound

    if isinstance(exc, DomainError):
        return exc.detail
    if isinstance(exc, NotFound):
        return str(exc)
    if isinstance(exc, IntegrityError):
        return ("that already exists (a unique key, name or label is taken): "
                + str(exc.orig).splitlines()[0][:200])
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.strerror or exc}: {exc.filename}"
    if isinstance(exc, (ValueError, OSError)):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


class ConsentGroup(AppGroup):
    """The `consent` command group: operator mistakes become one-line errors."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit,
                click.exceptions.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - reported in one line, not a traceback
            message = one_line_error(exc)
            if message is None:
                if os.environ.get("CONSENT_CLI_TRACEBACK") == "1":
                    raise
                log.debug("command failed", exc_info=True)
                message = (f"unexpected {type(exc).__name__}: "
                           f"{(str(exc).splitlines() or [''])[0][:200]} "
                           "(CONSENT_CLI_TRACEBACK=1 shows the traceback)")
            raise click.ClickException(message) from None


consent_cli = ConsentGroup("consent", help="Consent manager administration "
                                           "(.venv/bin/flask --app app consent ...).")


def register_commands(app: Flask) -> None:
    """Attach the `consent` command group (other modules add their commands to it)."""
    app.cli.add_command(consent_cli)


@consent_cli.command("init-db")
def init_db_command():
    """Create or upgrade the database schema (Alembic migrations)."""
    import sqlalchemy as sa
    from flask import current_app
    from flask_migrate import upgrade

    fresh = not sa.inspect(db.engine).has_table("alembic_version")
    upgrade(revision="heads")
    click.echo("database is at the latest schema")
    if fresh and current_app.config.get("ENV_NAME") == "development":
        # A development database created anew (e.g. instance/consent.sqlite3 deleted): the
        # log signer's memory of the old one would refuse to sign its logs, as it must
        # refuse a rewritten database. Production keeps it: there, only the operator
        # decides that a database was replaced on purpose (docs/audit.md).
        from .ledger.signer_state import set_aside

        aside = set_aside("init-db created a new development database")
        if aside is not None:
            click.echo(f"new database: the log signer's checkpoints of the old one were "
                       f"moved to {aside}")


@consent_cli.command("seed-demo")
@click.option("--key", default="demo", show_default=True)
@click.option("--origin", "origins", multiple=True,
              default=("http://127.0.0.1:5000", "http://localhost:5000"), show_default=True,
              help="Allowed origin (repeatable); added to the demo site if it exists.")
def seed_demo_command(key: str, origins: tuple[str, ...]):
    """Create the demo site (four categories, a policy version), or add origins to it."""
    from .demo_data import seed_demo

    try:
        created, api_key, added = run_write(seed_demo, key, list(origins))
    except ValueError as exc:
        raise click.ClickException(str(exc))
    if created:
        click.echo(f"created site {key!r}; API key (shown once): {api_key}")
    elif added:
        click.echo(f"site {key!r} already exists; added allowed origin(s): {', '.join(added)}")
    else:
        click.echo(f"site {key!r} already exists (its allowed origins include these)")


@consent_cli.command("create-site")
@click.argument("key")
@click.argument("name")
@click.option("--origin", "origins", multiple=True,
              help="Allowed origin, scheme://host[:port] (repeatable).")
@click.option("--category", "categories", multiple=True,
              help="Extra custom category key (repeatable).")
def create_site_command(key, name, origins, categories):
    """Create a site with the standard categories; print its API key, embed code and what
    is still missing."""
    from .readiness import embed_snippet, site_gaps
    from .sites import STANDARD_CATEGORIES, create_api_key, create_site

    from .sites import Site

    def write():
        if db.session.execute(db.select(Site.id).where(Site.key == key)).first():
            raise click.ClickException(f"a site {key!r} already exists; choose another key")
        keys = list(dict.fromkeys(STANDARD_CATEGORIES + tuple(categories)))
        specs = [{"key": k} for k in keys]
        site = create_site(key, name, allowed_origins=list(origins), categories=specs)
        return create_api_key(site), list(site.allowed_origins)

    try:
        token, stored = run_write(write)
    except ValueError as exc:
        raise click.ClickException(str(exc))
    click.echo(f"site {key!r} created; API key (shown once): {token}")
    if stored:
        click.echo(f"allowed origins: {', '.join(stored)}")
    click.echo("\nEmbed on every page, first in <head> (CONSENT_HOST: this server's "
               "address; docs/widget.md):\n")
    click.echo(embed_snippet(key))
    _print_gaps(key, site_gaps(key), heading="\nNext steps")


def _print_gaps(key: str, gaps, heading: str) -> None:
    if not gaps:
        click.echo(f"site {key!r} is ready")
        return
    click.echo(f"{heading} (site {key!r} is not ready):")
    for gap in gaps:
        click.echo(f"- {gap.what}\n  fix: {gap.fix}")
    click.echo(f"Then check again: flask consent check-site {key}")


@consent_cli.command("check-site")
@click.argument("key")
def check_site_command(key):
    """List what a site still lacks (origin, policy, services, cookies); exit 1 until ready."""
    from .readiness import site_gaps
    from .sites import NotFound

    try:
        gaps = site_gaps(key)
    except NotFound as exc:
        raise click.ClickException(str(exc))
    _print_gaps(key, gaps, heading="Missing")
    sys.exit(1 if gaps else 0)


@consent_cli.command("consent-mode")
@click.argument("site_key")
@click.option("--data-layer", default="dataLayer", show_default=True,
              help="The global the page's tag manager reads.")
@click.option("--ads-data-redaction/--no-ads-data-redaction", default=False)
@click.option("--url-passthrough/--no-url-passthrough", default=False)
@click.option("--region", "regions", multiple=True, metavar="'REGIONS: CATEGORIES'",
              help="A region default, e.g. 'US-CA US-VA: analytics advertising' (repeatable).")
def consent_mode_command(site_key, data_layer, ads_data_redaction, url_passthrough, regions):
    """Set a site's Google Consent Mode options (all of them: options not given are reset)."""
    from marshmallow import ValidationError

    from .consent_mode import parse_region_lines, set_consent_mode

    try:
        stored = set_consent_mode(site_key, {
            "data_layer": data_layer, "ads_data_redaction": ads_data_redaction,
            "url_passthrough": url_passthrough,
            "regions": parse_region_lines("\n".join(regions))})
    except ValidationError as exc:
        from .errors import pointer_errors

        first = pointer_errors(exc.messages)[0]
        raise click.ClickException(f"{first['pointer'].lstrip('#/')}: {first['detail']}")
    click.echo(f"site {site_key!r}: consent mode "
               + (json.dumps(stored, sort_keys=True) if stored else "defaults"))


@consent_cli.command("region-rules")
@click.argument("site_key")
@click.option("--rule", "rules", multiple=True, metavar="'REGIONS: RULE'",
              help="e.g. 'EEA GB CH: opt-in' or 'US: opt-out' (repeatable; most specific "
                   "key wins: US-CA, then US-PRIVACY-STATES, then US, then EU/EEA).")
@click.option("--default", "default", default="opt-in", show_default=True,
              type=click.Choice(["opt-in", "opt-out", "notice-only"]),
              help="The rule for regions without one and for unknown regions.")
@click.option("--sensitive", multiple=True, metavar="CATEGORY",
              help="A category that stays opt-in in opt-out regions (repeatable).")
@click.option("--gpp-state", "gpp_states", multiple=True, type=click.Choice(["usca"]),
              help="A GPP state section sent besides usnat to visitors of that state.")
def region_rules_command(site_key, rules, default, sensitive, gpp_states):
    """Set a site's rules by region (all of them: options not given are reset)."""
    from marshmallow import ValidationError

    from .errors import DomainError, pointer_errors
    from flask import current_app

    from .regions import parse_rule_lines, set_region_rules, subdivision_warning
    from .sites import NotFound

    try:
        stored = set_region_rules(site_key, {
            "rules": parse_rule_lines("\n".join(rules)), "default": default,
            "sensitive": list(sensitive), "gpp_states": list(gpp_states)})
    except ValidationError as exc:
        first = pointer_errors(exc.messages)[0]
        raise click.ClickException(f"{first['pointer'].lstrip('#/')}: {first['detail']}")
    except (DomainError, NotFound) as exc:
        raise click.ClickException(str(exc))
    click.echo(f"site {site_key!r}: region rules "
               + (json.dumps(stored, sort_keys=True) if stored else "none (opt-in everywhere)"))
    warning = subdivision_warning({"regions": stored},
                                  current_app.config.get("CONSENT_REGION_HEADERS", ""))
    if warning:
        click.echo(f"warning: {warning}", err=True)


@consent_cli.command("create-api-key")
@click.argument("site_key")
@click.option("--name", default="default")
def create_api_key_command(site_key, name):
    """Issue another API key for a site."""
    from .sites import NotFound, create_api_key, get_site

    try:
        token = run_write(lambda: create_api_key(get_site(site_key), name))
    except NotFound as exc:
        raise click.ClickException(str(exc))
    click.echo(token)


@consent_cli.command("publish-policy")
@click.argument("site_key")
@click.argument("label")
@click.option("--text-file", type=click.File("r", encoding="utf-8"))
@click.option("--url")
@click.option("--material/--not-material", default=False,
              help="A material change makes every visitor's widget ask again.")
@click.option("--summary")
def publish_policy_command(site_key, label, text_file, url, material, summary):
    """Publish a new policy version of a site."""
    from .policies import publish_policy
    from .sites import NotFound, get_site

    from .policies import PolicyVersion

    text = text_file.read() if text_file else None

    def write():
        site = get_site(site_key)
        if db.session.execute(db.select(PolicyVersion.id).where(
                PolicyVersion.site_id == site.id, PolicyVersion.label == label)).first():
            raise click.ClickException(f"site {site_key!r} already has a policy version "
                                       f"{label!r}; publish the change under a new label")
        return publish_policy(site.id, label, text=text, url=url, material=material,
                              summary=summary)

    try:
        version = run_write(write)
    except (NotFound, ValueError) as exc:
        raise click.ClickException(str(exc))
    click.echo(f"published {version.label} (sha256 {version.sha256})")


@consent_cli.command("rebuild-state")
def rebuild_state_command():
    """Rebuild current consent state from the ledger and report differences found."""
    from .ledger import rebuild_states

    states, differences = run_write(rebuild_states)
    click.echo(f"rebuilt {states} subject states from the ledger; "
               f"{differences} differed from the stored projection")
