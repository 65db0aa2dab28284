"""The signing key and signed notes: C2SP signed-note and tlog-checkpoint formats, checked
against the reference vectors of Go's golang.org/x/mod/sumdb/note; where the key comes
from (never SECRET_KEY), production refusing to start without it, rotation."""
from __future__ import annotations

import base64
import logging

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consent import create_app
from consent.ledger import notes
from consent.ledger.keys import (parse_public_key, previous_public_keys, public_key_raw,
                                 signing_key)

# golang.org/x/mod/sumdb/note's own test key, text and signature.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = ("If you think cryptography is the answer to your problem,\n"
           "then you don't know what your problem is.\n")
GO_NOTE = GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"


def _go_key() -> Ed25519PrivateKey:
    seed = base64.b64decode(GO_SKEY.split("+", 4)[4])[1:]
    return Ed25519PrivateKey.from_private_bytes(seed)


def test_signing_reproduces_the_reference_note_byte_for_byte():
    key = _go_key()
    assert notes.sign_note(GO_TEXT, "PeterNeumann", key) == GO_NOTE
    assert notes.verifier_key("PeterNeumann", key.public_key().public_bytes_raw()) == GO_VKEY


def test_the_reference_note_opens_with_its_verifier_key_and_nothing_else():
    verifier = notes.parse_verifier_key(GO_VKEY)
    text, signers = notes.open_note(GO_NOTE, [verifier])
    assert text == GO_TEXT and signers == [verifier]
    with pytest.raises(notes.NoteError, match="does not verify"):
        notes.open_note(GO_NOTE.replace("cryptography", "cryptographY"), [verifier])
    other = notes.Verifier("PeterNeumann", Ed25519PrivateKey.generate().public_key()
                           .public_bytes_raw())
    with pytest.raises(notes.NoteError, match="no signature of a known key"):
        notes.open_note(GO_NOTE, [other])
    for bad in (GO_VKEY.replace("c74f20a3", "c74f20a4"), GO_VKEY[:-4], "PeterNeumann+c74f20a3"):
        with pytest.raises(notes.NoteError):
            notes.parse_verifier_key(bad)


def test_malformed_notes_are_refused():
    verifier = notes.parse_verifier_key(GO_VKEY)
    for bad in (GO_TEXT, GO_NOTE.replace("\u2014", "-"), GO_NOTE.rstrip("\n"),
                GO_NOTE.replace("\n\n", "\n"), "x\x01y\n" + GO_NOTE):
        with pytest.raises(notes.NoteError):
            notes.open_note(bad, [verifier])


def test_checkpoints_follow_the_tlog_checkpoint_text_format():
    cp = notes.Checkpoint("consent.example/shop", 20852163, bytes(range(32)),
                          ["time 2026-12-01T00:00:00Z"])
    text = cp.text()
    assert text.split("\n")[:3] == ["consent.example/shop", "20852163",
                                    base64.b64encode(bytes(range(32))).decode()]
    signed = notes.sign_note(text, cp.origin, _go_key())
    back, _ = notes.open_checkpoint(signed, [notes.Verifier(cp.origin, _go_key().public_key()
                                                            .public_bytes_raw())])
    assert (back.origin, back.size, back.root, back.time) == (
        cp.origin, cp.size, cp.root, "2026-12-01T00:00:00Z")
    for bad in ("o\n012\n" + base64.b64encode(bytes(32)).decode() + "\n", "o\n1\nxx\n",
                "o\n1\n", "\n1\n" + base64.b64encode(bytes(32)).decode() + "\n"):
        with pytest.raises(notes.NoteError):
            notes.parse_checkpoint(bad)


def test_the_key_is_never_derived_from_secret_key(tmp_path, database_url):
    keys = []
    for secret in ("a" * 40, "b" * 40):
        app = create_app({"ENV_NAME": "development", "SECRET_KEY": secret,
                          "SQLALCHEMY_DATABASE_URI": database_url, "CONSENT_SIGNING_KEY": "",
                          "CONSENT_SIGNING_KEY_FILE": str(tmp_path / "key.pem")})
        with app.app_context():
            keys.append(public_key_raw())
    assert keys[0] == keys[1]  # same key file, whatever SECRET_KEY says
    assert (tmp_path / "key.pem").stat().st_mode & 0o077 == 0


def test_development_generates_and_keeps_a_key_with_a_warning(tmp_path, database_url, caplog):
    app = create_app({"ENV_NAME": "development", "SQLALCHEMY_DATABASE_URI": database_url,
                      "CONSENT_SIGNING_KEY": "",
                      "CONSENT_SIGNING_KEY_FILE": str(tmp_path / "k" / "signing-key.pem")})
    with app.app_context(), caplog.at_level(logging.WARNING):
        first = public_key_raw()
        assert "generated a signing key" in caplog.text
        assert public_key_raw() == first
    assert (tmp_path / "k" / "signing-key.pem").exists()


def test_production_refuses_to_start_without_a_signing_key():
    base = {"ENV_NAME": "production", "SECRET_KEY": "x" * 48,
            "CONSENT_DATA_KEY": "d" * 44, "CONSENT_PUBLIC_URL": "https://consent.example",
            "SQLALCHEMY_DATABASE_URI": "sqlite://"}
    with pytest.raises(RuntimeError, match="CONSENT_SIGNING_KEY must be set"):
        create_app({**base, "CONSENT_SIGNING_KEY": ""})
    with pytest.raises(RuntimeError, match="CONSENT_SIGNING_KEY cannot be read"):
        create_app({**base, "CONSENT_SIGNING_KEY": "/nonexistent/key.pem"})
    app = create_app({**base, "CONSENT_SIGNING_KEY": GO_SKEY})
    with app.app_context():
        assert public_key_raw() == _go_key().public_key().public_bytes_raw()


def test_previous_keys_are_read_in_every_public_form(app):
    old = _go_key().public_key().public_bytes_raw()
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    app.config["CONSENT_SIGNING_KEY_PREVIOUS"] = (
        f"{GO_VKEY}, ed25519:{base64.b64encode(other).decode()}")
    assert previous_public_keys() == [old, other]
    assert parse_public_key(GO_VKEY) == old
    assert signing_key().public_key().public_bytes_raw() not in previous_public_keys()
