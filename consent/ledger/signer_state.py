"""What the signer remembers outside the database: the latest checkpoint it signed per log.

C2SP tlog-checkpoint: a log must not sign a checkpoint inconsistent with one it signed
before. The integrator proves every new tree consistent with its last checkpoint before
signing (consent.ledger.log), but if that checkpoint came from the database alone, an
insider who rewrites history and deletes the checkpoint rows would leave it nothing to
compare with, and the server would sign the rewritten log (and blind `flask consent
verify`). So each signing machine also keeps its latest checkpoint per log here, in
CONSENT_LOG_STATE_DIR (default instance/log-state/): one JSON file per log origin,
replaced atomically, only ever moved forward. Several machines each keep their own copy;
each one's copy must still be in the database and the log must extend it.

Written after the transaction that stored the checkpoint commits (a rolled-back
checkpoint would otherwise be one the database never held).
"""
from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from flask import current_app
from sqlalchemy import event
from sqlalchemy.orm import Session

from .notes import (Checkpoint, NoteError, Verifier, open_checkpoint, parse_checkpoint,
                    split_note)

log = logging.getLogger(__name__)

_PENDING = "consent_signed_checkpoints"


class StateError(Exception):
    """The signer's state file of a log cannot be read or does not verify."""


@dataclass
class HeldCheckpoint:
    """The latest checkpoint this signer signed of one log, as kept on its disk."""

    path: Path
    note: str
    checkpoint: Checkpoint

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def when(self) -> str:
        return self.checkpoint.time or "time unknown"


def state_dir() -> Path:
    """Where this signer keeps its checkpoints (CONSENT_LOG_STATE_DIR)."""
    app = current_app._get_current_object()
    configured = app.config.get("CONSENT_LOG_STATE_DIR") or ""
    if configured:
        return Path(configured)
    if app.config.get("ENV_NAME") == "testing":
        return _testing_dir(app)
    return Path(app.instance_path) / "log-state"


def _testing_dir(app) -> Path:
    """Tests make a fresh database per test with the same site keys: each test database
    gets its own state (next to an SQLite file; else a directory for this app)."""
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite:///") and ":memory:" not in uri:
        return Path(uri.removeprefix("sqlite:///") + ".log-state")
    held = app.extensions.get("consent_log_state_dir")
    if held is None:
        held = tempfile.mkdtemp(prefix="consent-log-state-")
        atexit.register(shutil.rmtree, held, True)
        app.extensions["consent_log_state_dir"] = held
    return Path(held)


def set_aside(reason: str) -> Path | None:
    """Move every kept checkpoint to a sibling folder named after now (for a database
    deliberately created anew); returns that folder, or None when nothing was kept."""
    folder = state_dir()
    kept = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not kept:
        return None
    aside = folder.with_name(f"{folder.name}.set-aside-{time.strftime('%Y%m%dT%H%M%S')}")
    aside.mkdir(parents=True, exist_ok=True)
    for path in kept:
        path.rename(aside / path.name)
    (aside / "REASON").write_text(reason + "\n", encoding="utf-8")
    return aside


def state_path(origin: str, folder: Path | None = None) -> Path:
    """The state file of the log ORIGIN (in FOLDER, default `state_dir()`)."""
    folder = state_dir() if folder is None else folder
    return folder / (re.sub(r"[^A-Za-z0-9._-]", "_", origin) + ".json")


def held_note(origin: str) -> tuple[Path, str, int] | None:
    """The signed note kept for ORIGIN and its size (signature unchecked), or None when
    none is kept."""
    path = state_path(origin)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StateError(f"the signer's state file {path} cannot be read ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("note"), str) \
            or record.get("origin") != origin:
        raise StateError(f"the signer's state file {path} is not the record of {origin}")
    try:
        size = parse_checkpoint(split_note(record["note"])[0]).size
    except NoteError as exc:
        raise StateError(f"the signer's state file {path} holds no checkpoint ({exc})") \
            from None
    return path, record["note"], size


def held_checkpoint(origin: str, verifiers: list[Verifier]) -> HeldCheckpoint | None:
    """The checkpoint kept for ORIGIN after checking its signature; None when none is kept."""
    found = held_note(origin)
    if found is None:
        return None
    path, note, _ = found
    try:
        checkpoint, _ = open_checkpoint(note, verifiers)
    except NoteError as exc:
        raise StateError(f"the checkpoint in the signer's state file {path} does not verify "
                         f"({exc})") from None
    if checkpoint.origin != origin:
        raise StateError(f"the signer's state file {path} holds a checkpoint of "
                         f"{checkpoint.origin}")
    return HeldCheckpoint(path, note, checkpoint)


def keep(origin: str, note: str, size: int, folder: Path | None = None) -> None:
    """Record NOTE (a checkpoint of SIZE entries) as the latest one signed of ORIGIN,
    unless a larger one is kept already (another process of this machine signed later)."""
    folder = state_dir() if folder is None else folder
    folder.mkdir(parents=True, exist_ok=True)
    path = state_path(origin, folder)
    lock = os.open(str(path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # processes of this machine take turns
        try:
            current = json.loads(path.read_text(encoding="utf-8"))
            if int(current.get("size", -1)) > size:
                return
        except (FileNotFoundError, ValueError, TypeError, AttributeError):
            pass
        record = {"origin": origin, "size": size, "note": note}
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(record, fh, indent=1)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)  # atomic: a crash leaves the old file or the new one
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a power loss
        finally:
            os.close(dir_fd)
    finally:
        os.close(lock)


def keep_after_commit(session: Session, origin: str, note: str, size: int) -> None:
    """Keep NOTE in the state once SESSION's transaction commits (dropped on rollback)."""
    session.info.setdefault(_PENDING, []).append((state_dir(), origin, note, size))


@event.listens_for(Session, "after_commit")
def _write_kept(session: Session) -> None:
    for folder, origin, note, size in session.info.pop(_PENDING, []):
        try:
            keep(origin, note, size, folder)
        except OSError as exc:
            # The checkpoint is signed and stored; only this signer's own copy is missing,
            # which weakens the next check. Say so loudly rather than failing the commit.
            log.error("could not keep the signed checkpoint of %s (size %s) outside the "
                      "database: %s", origin, size, exc)


@event.listens_for(Session, "after_rollback")
def _drop_kept(session: Session) -> None:
    session.info.pop(_PENDING, None)
