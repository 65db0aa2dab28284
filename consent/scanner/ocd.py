"""The Open Cookie Database (Apache-2.0): what a cookie, storage key or host is, by name.

A snapshot ships in `data/` with its licence and a SOURCE note. `flask consent
ocd-refresh FILE` installs a newer CSV of the same columns into the instance folder,
where it takes precedence over the shipped one (the checkout stays unchanged).

Matching: an exact name first (several entries of one name: the one whose domain fits
the cookie's, else one naming no domain; a plain lower-case word of up to eight letters
such as `lang` or `token`, listed only for other domains, does not match a cookie of the
site's own: it is as likely the site's), then the longest wildcard prefix. Upstream marks a name as a wildcard
when its end varies (`_ga_` for `_ga_XYZ`); a short prefix such as `SR` would also catch
`SRCHD`, so a prefix matches only when it ends with a separator, the rest starts with
one or a digit, or it is at least five characters long. Hosts match an entry's domain
or a parent of it, and take the category most of that domain's entries have.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import shutil
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
SHIPPED = DATA_DIR / "open-cookie-database.csv"
COLUMNS = ("ID", "Platform", "Category", "Cookie / Data Key name", "Domain", "Description",
           "Retention period", "Data Controller", "User Privacy & GDPR Rights Portals",
           "Wildcard match")
# Upstream's categories and the site category each proposes (upstream: "Functional (also
# known as technical, essential or strictly necessary)", "Personalization (also known as
# preferences)", "Marketing (also known as tracking or social media)").
CATEGORY_MAP = {"functional": "essential", "necessary": "essential", "security": "essential",
                "personalization": "functional", "analytics": "analytics",
                "marketing": "advertising"}
_SEPARATORS = "_-.:|"
MAX_FILE_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class Entry:
    """One row of the database."""

    id: str
    platform: str
    category: str           # upstream's word
    name: str
    domain: str
    description: str
    retention: str
    controller: str
    privacy_url: str
    wildcard: bool

    @property
    def proposed_category(self) -> str | None:
        """The site category key this entry proposes."""
        return CATEGORY_MAP.get(self.category.strip().lower())

    def proposal(self, matched_by: str) -> dict:
        """What the scan report stores about a match."""
        return {"ocd_id": self.id, "category": self.proposed_category,
                "ocd_category": self.category, "platform": self.platform,
                "provider": self.controller or self.platform, "purpose": self.description,
                "retention": self.retention, "privacy_url": self.privacy_url,
                "name": self.name, "wildcard": self.wildcard, "matched_by": matched_by}


def _clean_domain(text: str) -> list[str]:
    """Domains named in an entry's Domain cell ("a.com (3rd party) or .b.com")."""
    out = []
    for part in re.split(r"\s+or\s+|,|;", text or ""):
        part = re.sub(r"\(.*?\)", "", part).strip().strip(".").lower()
        if part and re.fullmatch(r"[a-z0-9.-]+\.[a-z]{2,}", part):
            out.append(part)
    return out


class Database:
    """The loaded database with its indexes."""

    def __init__(self, entries: list[Entry], source: str, sha256: str):
        self.entries, self.source, self.sha256 = entries, source, sha256
        self.exact: dict[str, list[Entry]] = {}
        self.prefixes: list[Entry] = []
        hosts: dict[str, list[Entry]] = {}
        for e in entries:
            if e.wildcard:
                self.prefixes.append(e)
            else:
                self.exact.setdefault(e.name, []).append(e)
            for d in _clean_domain(e.domain):
                hosts.setdefault(d, []).append(e)
        self.prefixes.sort(key=lambda e: -len(e.name))
        self.hosts = hosts

    def __len__(self) -> int:
        return len(self.entries)

    def match_name(self, name: str, domain: str | None = None) -> dict | None:
        """The proposal for a cookie or storage key NAME (set for DOMAIN), or None."""
        found = self.exact.get(name)
        entry = found and _by_domain(found, name, domain)
        if entry:
            return entry.proposal("exact")
        for e in self.prefixes:
            if name.startswith(e.name) and name != e.name and _prefix_fits(e.name, name):
                return e.proposal("prefix")
            if name == e.name:
                return e.proposal("exact")
        return None

    def match_host(self, host: str) -> dict | None:
        """The proposal for a third-party HOST (its own or a parent domain's entries)."""
        labels = (host or "").lower().strip(".").split(".")
        for i in range(len(labels) - 1):
            found = self.hosts.get(".".join(labels[i:]))
            if found:
                counts = Counter(e.proposed_category for e in found if e.proposed_category)
                category = counts.most_common(1)[0][0] if counts else None
                best = next((e for e in found if e.proposed_category == category), found[0])
                proposal = best.proposal("host")
                proposal["purpose"] = ""  # the entry describes one cookie, not the host
                proposal["name"] = ".".join(labels[i:])
                return proposal
        return None


# A name this plain ("lang", "token", "uid") is any site's own as often as the vendor's.
_GENERIC_NAME = re.compile(r"[a-z]{1,8}")


def _by_domain(entries: list[Entry], name: str, domain: str | None) -> Entry | None:
    """The entry of NAME for a cookie set for DOMAIN: one whose domain fits, else one
    that names no domain; else, for a plain word, none (a site's own `lang` cookie is not
    LinkedIn's), and for a distinctive name the first (`_fbp`, listed for facebook.com,
    is set on the site's own domain by the pixel)."""
    if not domain:
        return entries[0]
    domain = domain.lower().lstrip(".")
    for e in entries:
        if any(domain == d or domain.endswith("." + d) for d in _clean_domain(e.domain)):
            return e
    for e in entries:
        if not _clean_domain(e.domain):
            return e
    return None if _GENERIC_NAME.fullmatch(name) else entries[0]


def _prefix_fits(prefix: str, name: str) -> bool:
    rest = name[len(prefix):]
    return (prefix[-1] in _SEPARATORS or rest[0] in _SEPARATORS or rest[0].isdigit()
            or len(prefix) >= 5)


def parse(data: bytes, source: str) -> Database:
    """A database from CSV bytes; ValueError names what is wrong."""
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError("the file is not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise ValueError(f"not an Open Cookie Database CSV: missing column(s) "
                         f"{', '.join(missing)}")
    entries = []
    try:
        for line, row in enumerate(reader, start=2):
            name = (row["Cookie / Data Key name"] or "").strip()
            if not name:
                continue
            wildcard = (row["Wildcard match"] or "0").strip()
            if wildcard not in ("0", "1"):
                raise ValueError(f"line {line}: 'Wildcard match' is {wildcard!r}, not 0 or 1")
            entries.append(Entry(
                id=(row["ID"] or "").strip(), platform=(row["Platform"] or "").strip(),
                category=(row["Category"] or "").strip(), name=name,
                domain=(row["Domain"] or "").strip(),
                description=(row["Description"] or "").strip(),
                retention=(row["Retention period"] or "").strip(),
                controller=(row["Data Controller"] or "").strip(),
                privacy_url=(row["User Privacy & GDPR Rights Portals"] or "").strip(),
                wildcard=wildcard == "1"))
    except csv.Error as exc:
        raise ValueError(f"not a readable CSV: {exc}") from None
    if len(entries) < 100:
        raise ValueError(f"only {len(entries)} entries: refusing to replace the database "
                         "with a file this small")
    return Database(entries, source, hashlib.sha256(data).hexdigest())


_loaded: dict[str, Database] = {}
_lock = threading.Lock()


def current_path(installed: str | os.PathLike) -> Path:
    """The file in use: INSTALLED (where `ocd-refresh` puts one) if it exists, else the
    shipped snapshot."""
    installed = Path(installed)
    return installed if installed.is_file() else SHIPPED


def load(installed: str | os.PathLike) -> Database:
    """The database in use (cached per file and modification time)."""
    path = current_path(installed)
    stat = path.stat()
    key = f"{path}:{stat.st_mtime_ns}:{stat.st_size}"
    with _lock:
        if key not in _loaded:
            _loaded.clear()
            source = "shipped snapshot" if path == SHIPPED else f"installed {path}"
            _loaded[key] = parse(path.read_bytes(), source)
        return _loaded[key]


def refresh(installed: str | os.PathLike, data: bytes, origin: str) -> Database:
    """Check DATA and install it at INSTALLED as the database in use; returns it."""
    database = parse(data, f"installed from {origin}")
    target = Path(installed)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp.write(data)
        tmp.flush()
        os.fsync(tmp.fileno())
    os.replace(tmp.name, target)
    note = target.with_suffix(".SOURCE.md")
    note.write_text(
        f"Open Cookie Database installed by `flask consent ocd-refresh` from {origin}\n"
        f"sha256 {database.sha256}, {len(database)} entries. Licence: Apache-2.0 "
        f"({(DATA_DIR / 'LICENSE').name} in consent/scanner/data/).\n", encoding="utf-8")
    shutil.copyfile(DATA_DIR / "LICENSE", target.parent / "open-cookie-database.LICENSE")
    with _lock:
        _loaded.clear()
    return database
