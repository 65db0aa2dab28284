"""C2SP signed notes with Ed25519 and C2SP tlog-checkpoint bodies (no database, no Flask).

A signed note is a text ending in a newline, a blank line, and signature lines
`— <key name> base64(key ID || signature)`; the key ID is
`SHA-256(key name || 0x0A || 0x01 || public key)[:4]` for Ed25519 (c2sp.org/signed-note).
A checkpoint's text is the log's origin, the tree size in decimal and the base64 root
hash, one per line, then optional extension lines (c2sp.org/tlog-checkpoint); this log
adds one, the time it was signed. Verifier keys are written `<name>+<key ID hex>+<base64
(0x01 || public key)>`, the form Go's golang.org/x/mod/sumdb/note and the witnesses of
the transparency-dev ecosystem read.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (Ed25519PrivateKey,
                                                               Ed25519PublicKey)

ED25519 = 0x01
SIG_PREFIX = "\u2014 "  # em dash, space
MAX_SIGNATURES = 16
_NAME = re.compile(r"^[^\s+]+$")


class NoteError(ValueError):
    """A note that is malformed or carries no valid signature of a known key."""


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte key ID of an Ed25519 key under NAME."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def check_name(name: str) -> str:
    """NAME if it is a valid key name (non-empty, no spaces, no '+')."""
    if not name or not _NAME.fullmatch(name):
        raise NoteError(f"{name!r} is not a valid key name (no spaces or '+')")
    return name


def verifier_key(name: str, public_key: bytes) -> str:
    """The verifier key text `<name>+<hex key ID>+<base64(0x01 || key)>`."""
    check_name(name)
    return (f"{name}+{key_id(name, public_key).hex()}+"
            f"{base64.b64encode(bytes([ED25519]) + public_key).decode()}")


@dataclass(frozen=True)
class Verifier:
    """A known key: its name, its key ID and the raw Ed25519 public key."""

    name: str
    public_key: bytes

    @property
    def id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def text(self) -> str:
        """The verifier key form of this key."""
        return verifier_key(self.name, self.public_key)


def parse_verifier_key(text: str) -> Verifier:
    """A Verifier from `<name>+<hex key ID>+<base64(0x01 || key)>`; NoteError when bad."""
    parts = (text or "").strip().split("+", 2)
    if len(parts) != 3:
        raise NoteError("a verifier key reads <name>+<key id>+<key>")
    name, hex_id, encoded = parts
    check_name(name)
    try:
        raw = base64.b64decode(encoded, validate=True)
        wanted_id = bytes.fromhex(hex_id)
    except (binascii.Error, ValueError):
        raise NoteError("the verifier key is not valid base64/hex") from None
    if len(wanted_id) != 4 or len(raw) != 33 or raw[0] != ED25519:
        raise NoteError("not an Ed25519 verifier key")
    verifier = Verifier(name, raw[1:])
    if verifier.id != wanted_id:
        raise NoteError("the verifier key's ID does not match its name and key")
    return verifier


def sign_note(text: str, name: str, key: Ed25519PrivateKey) -> str:
    """TEXT (ending in a newline) with one Ed25519 signature line by KEY under NAME."""
    _check_text(text)
    check_name(name)
    public = key.public_key().public_bytes_raw()
    signature = key.sign(text.encode("utf-8"))
    blob = base64.b64encode(key_id(name, public) + signature).decode()
    return f"{text}\n{SIG_PREFIX}{name} {blob}\n"


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise NoteError("a note's text ends with a newline")
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise NoteError("a note holds no control characters but newlines")


@dataclass
class Signature:
    """One signature line of a note."""

    name: str
    id: bytes
    signature: bytes


def split_note(note: str) -> tuple[str, list[Signature]]:
    """(text, signature lines) of a signed note, without checking any signature."""
    if not isinstance(note, str):
        raise NoteError("a note is text")
    _check_text(note if note.endswith("\n") else note + "\n")
    cut = note.rfind("\n\n")
    if cut == -1:
        raise NoteError("no blank line before the signatures")
    text, lines = note[:cut + 1], note[cut + 2:]
    if not lines.endswith("\n"):
        raise NoteError("the signature block ends with a newline")
    signatures = []
    for line in lines[:-1].split("\n"):
        if not line.startswith(SIG_PREFIX):
            raise NoteError("a signature line starts with an em dash and a space")
        name, _, blob = line[len(SIG_PREFIX):].partition(" ")
        try:
            raw = base64.b64decode(blob, validate=True)
        except binascii.Error:
            raise NoteError("a signature is not valid base64") from None
        if not name or " " in blob or len(raw) < 5:
            raise NoteError("a signature line reads: em dash, name, base64 signature")
        signatures.append(Signature(name, raw[:4], raw[4:]))
    if not signatures:
        raise NoteError("the note carries no signature")
    if len(signatures) > MAX_SIGNATURES:
        raise NoteError("too many signatures")
    return text, signatures


def open_note(note: str, known: list[Verifier]) -> tuple[str, list[Verifier]]:
    """(text, keys that signed it) when NOTE carries a valid signature of a KNOWN key.

    Signatures of unknown keys are ignored; a known key's signature that fails rejects the
    whole note (c2sp.org/signed-note).
    """
    text, signatures = split_note(note)
    by_key = {(v.name, v.id): v for v in known}
    good = []
    for sig in signatures:
        verifier = by_key.get((sig.name, sig.id))
        if verifier is None:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(verifier.public_key).verify(
                sig.signature, text.encode("utf-8"))
        except (InvalidSignature, ValueError):
            raise NoteError(f"the signature of {sig.name} does not verify: the note was "
                            "altered or signed by another key")
        good.append(verifier)
    if not good:
        names = ", ".join(sorted({s.name for s in signatures}))
        raise NoteError(f"no signature of a known key (signed by: {names})")
    return text, good


# ---------------------------------------------------------------- checkpoints


@dataclass
class Checkpoint:
    """The body of a tlog checkpoint."""

    origin: str
    size: int
    root: bytes
    extensions: list[str] = field(default_factory=list)

    def text(self) -> str:
        """The note text of this checkpoint."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(),
                 *self.extensions]
        return "\n".join(lines) + "\n"

    @property
    def time(self) -> str | None:
        """The signing time this log puts in its extension line, if present."""
        for line in self.extensions:
            if line.startswith("time "):
                return line[5:]
        return None

    @property
    def floor(self) -> str | None:
        """No entry after this checkpoint is dated earlier (but for the clock slack): the
        oldest event left out when it was signed, else its signing time. None for a
        checkpoint signed before this log wrote its `pending` line."""
        for line in self.extensions:
            if line.startswith("pending "):
                return self.time if line == "pending none" else line[8:]
        return None


def parse_checkpoint(text: str) -> Checkpoint:
    """A Checkpoint from a note's text; NoteError when it is not one."""
    lines = text.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise NoteError("a checkpoint has an origin, a size and a root hash, one per line")
    origin, size, root, *extensions = lines[:-1]
    if not origin:
        raise NoteError("a checkpoint's origin is empty")
    if not size.isascii() or not size.isdigit() or (size != "0" and size.startswith("0")):
        raise NoteError(f"{size!r} is not a tree size")
    try:
        raw = base64.b64decode(root, validate=True)
    except binascii.Error:
        raise NoteError("the root hash is not base64") from None
    if len(raw) != 32:
        raise NoteError("the root hash is not 32 bytes")
    if any(not line for line in extensions):
        raise NoteError("a checkpoint's extension lines are not empty")
    return Checkpoint(origin, int(size), raw, extensions)


def open_checkpoint(note: str, known: list[Verifier]) -> tuple[Checkpoint, list[Verifier]]:
    """The checkpoint of a signed note after checking its signature against KNOWN keys."""
    text, signers = open_note(note, known)
    return parse_checkpoint(text), signers
