"""Command-line side of the verifiable log: `integrate` (cron), `witness` (run it on
another machine), `verify-receipt` (offline), `log-checkpoint`.

The witness and the receipt check need no database: only the server's public key and
what they fetched or were given (docs/audit.md).
"""
from __future__ import annotations

import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import click

from .cli import consent_cli
from .ledger import merkle
from .ledger.notes import NoteError, open_checkpoint, split_note
from .ledger.receipts import _hashes, check_receipt, verifiers_from

USER_AGENT = "consent-manager-witness/1"


class WitnessError(Exception):
    """The witness could not check the log (unreachable, malformed answer, no key)."""


@dataclass
class WitnessResult:
    """What one witness run found."""

    ok: bool
    message: str


def _site_name(origin: str) -> str:
    return origin.rstrip("/").rsplit("/", 1)[-1] or origin


def _fetch(url: str, timeout: float = 20.0) -> str:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.read(1 << 20).decode("utf-8")
    except (urllib.error.URLError, OSError, UnicodeDecodeError) as exc:
        raise WitnessError(f"cannot fetch {url}: {exc}") from None


def _base(url: str) -> str:
    """The log's base URL (…/sites/<site>/log) from it or from its checkpoint URL."""
    url = url.rstrip("/")
    return url[: -len("/checkpoint")] if url.endswith("/checkpoint") else url


def _state_path(state_dir: Path, origin: str) -> Path:
    return state_dir / (re.sub(r"[^A-Za-z0-9._-]", "_", origin) + ".json")


def witness(url: str, state_dir: str, public_key: str | None = None) -> WitnessResult:
    """Fetch the log's checkpoint, check it extends the last one held, keep it."""
    base = _base(url)
    note = _fetch(base + "/checkpoint")
    try:
        origin = split_note(note)[0].split("\n", 1)[0]
    except NoteError as exc:
        raise WitnessError(f"{base}/checkpoint is not a signed checkpoint: {exc}") from None
    site = _site_name(origin)
    folder = Path(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = _state_path(folder, origin)
    held = json.loads(path.read_text()) if path.exists() else None
    key = public_key or (held or {}).get("public_key")
    if not key:
        raise WitnessError(f"site {site}: no public key to check the checkpoint with: pass "
                           "--public-key (the output of `flask consent signing-key`) on the "
                           "first run")
    try:
        checkpoint, _ = open_checkpoint(note, verifiers_from(key, origin))
    except (NoteError, ValueError) as exc:
        return WitnessResult(False, f"site {site}: the checkpoint served at {base} is not "
                                    f"signed by the pinned key: {exc}")
    if checkpoint.origin != origin:
        return WitnessResult(False, f"site {site}: the checkpoint names another log")
    if held is not None:
        old, old_root = int(held["size"]), bytes.fromhex(held["root"])
        seen = held.get("seen_at", "?")
        if held.get("origin") != origin:
            return WitnessResult(False, f"site {site}: the state file holds another log")
        if checkpoint.size < old:
            return WitnessResult(False, f"site {site}: checkpoint {checkpoint.size:,} is not "
                                        f"an extension of {old:,} seen at {seen}: the log "
                                        "was rewound")
        if checkpoint.size == old:
            if checkpoint.root != old_root:
                return WitnessResult(False, f"site {site}: checkpoint {checkpoint.size:,} is "
                                            f"not an extension of {old:,} seen at {seen}: "
                                            "same size, another root (the log was "
                                            "rewritten)")
        else:
            query = urllib.parse.urlencode({"from": old, "to": checkpoint.size})
            try:
                bundle = json.loads(_fetch(f"{base}/consistency?{query}"))
                path_hashes = _hashes(bundle["consistency_path"])
            except (ValueError, KeyError, TypeError) as exc:
                raise WitnessError(f"site {site}: malformed consistency proof: {exc}") \
                    from None
            if not merkle.verify_consistency(old, checkpoint.size, path_hashes, old_root,
                                             checkpoint.root):
                return WitnessResult(False, f"site {site}: checkpoint {checkpoint.size:,} is "
                                            f"not an extension of {old:,} seen at {seen}: "
                                            "the log was rewritten")
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    record = {"origin": origin, "size": checkpoint.size, "root": checkpoint.root.hex(),
              "note": note, "seen_at": now, "url": base, "public_key": key}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)  # atomic: a crash never leaves half a state file
    if held is None:
        return WitnessResult(True, f"site {site}: first checkpoint {checkpoint.size:,} kept")
    return WitnessResult(True, f"site {site}: checkpoint {checkpoint.size:,} extends "
                               f"{int(held['size']):,} seen at {held.get('seen_at')}")


@consent_cli.command("witness")
@click.argument("url")
@click.option("--state", "state_dir", required=True, type=click.Path(file_okay=False),
              help="Directory where the witness keeps the checkpoints it has seen.")
@click.option("--public-key", help="The log's key (`flask consent signing-key`); needed on "
              "the first run, kept in the state afterwards.")
def witness_command(url, state_dir, public_key):
    """Check that a site's log only grows (no database needed); exit 1 when rewritten."""
    try:
        result = witness(url, state_dir, public_key)
    except WitnessError as exc:
        click.echo(f"CANNOT CHECK: {exc}", err=True)
        sys.exit(2)
    if result.ok:
        click.echo(f"OK: {result.message}")
        sys.exit(0)
    click.echo(f"BAD: {result.message}", err=True)
    sys.exit(1)


def _load_json(path: str, what: str) -> dict | str:
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise click.ClickException(f"{what} is not valid JSON: {exc}")
    return text


@consent_cli.command("verify-receipt")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--public-key", required=True, help="The log's key (`flask consent "
              "signing-key`): ed25519:<base64>, a verifier key or a PEM file.")
@click.option("--checkpoint", "later", type=click.Path(exists=True, dir_okay=False),
              help="A later checkpoint with its consistency proof (the JSON of "
              "GET …/log/consistency?from=<receipt size>), to show the event is still there.")
def verify_receipt_command(file, public_key, later):
    """Check a receipt offline: the event, its log entry and the signed checkpoint."""
    receipt = _load_json(file, "the receipt")
    if not isinstance(receipt, dict):
        raise click.ClickException("the receipt is not a JSON object")
    result = check_receipt(receipt, public_key,
                           _load_json(later, "the checkpoint") if later else None)
    if result.ok and result.undecided:
        click.echo(f"CANNOT CHECK: {result.undecided} (the receipt itself is good: "
                   f"{result.summary()})", err=True)
        sys.exit(2)
    if result.ok:
        click.echo(f"OK: {result.summary()}")
        sys.exit(0)
    click.echo(f"BAD: {result.summary()}", err=True)
    sys.exit(1)


@consent_cli.command("integrate")
@click.option("--site", "site_key", help="Only this site.")
def integrate_command(site_key):
    """Give new events their log indexes and sign checkpoints (run from cron, or let the
    web processes do it every CONSENT_LOG_INTEGRATE_SECONDS)."""
    from .ledger.log import integrate
    from .sites import NotFound

    try:
        passes = integrate(site_key)
    except NotFound as exc:
        raise click.ClickException(str(exc))
    sizes: dict[str, tuple[int, int]] = {}
    refused = []
    for p in passes:
        added, _ = sizes.get(p.site_key, (0, 0))
        sizes[p.site_key] = (added + p.added, p.size)
        refused += p.refused or []
    for key, (added, size) in sizes.items():
        click.echo(f"site {key}: {added} events integrated; the log has {size:,} entries")
    if not sizes:
        click.echo("nothing to integrate")
    for why in refused:
        click.echo(f"REFUSED: {why}", err=True)
    sys.exit(1 if refused else 0)


@consent_cli.command("check-log")
def check_log_command():
    """Exit 1 when the log is behind: its oldest missing event is older than
    CONSENT_LOG_MAX_LAG_SECONDS (integration stopped; for cron-based alerting)."""
    from .ledger.log import log_health

    health = log_health()
    for site in health["sites"]:
        click.echo(f"site {site['site']}: {site['pending_events']} events not yet in the "
                   f"log, the oldest recorded {site['oldest_pending_seconds']:.0f} s ago")
    if health["status"] == "ok":
        click.echo(f"log ok (limit {health['max_lag_seconds']:.0f} s)")
        sys.exit(0)
    click.echo(f"LOG BEHIND: the oldest event not in the log was recorded "
               f"{health['oldest_pending_seconds']:.0f} s ago (limit "
               f"{health['max_lag_seconds']:.0f} s). Is an integrator running "
               "(CONSENT_LOG_INTEGRATE_SECONDS, or `flask consent integrate` from cron)? "
               "Did it refuse a stream (`flask consent integrate` says why)?", err=True)
    sys.exit(1)


@consent_cli.command("log-checkpoint")
@click.option("--site", "site_key", required=True)
def log_checkpoint_command(site_key):
    """Print a site's latest signed checkpoint (to hand to an auditor)."""
    from .ledger.serving import LogNotSigned, checkpoint_note
    from .sites import NotFound

    try:
        click.echo(checkpoint_note(site_key), nl=False)
    except NotFound as exc:
        raise click.ClickException(str(exc))
    except LogNotSigned as exc:
        raise click.ClickException(exc.detail)
