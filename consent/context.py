"""What the web tier knows about a caller, minimised before anything records it.

Its own module so that every service (decisions, channels, identity, minors) can take a
request context without importing one another.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from .ledger import Details

# One IPv4 octet as ipaddress accepts it: 0-255, no leading zero, ASCII digits only.
_OCTET = re.compile(r"25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]", re.ASCII)


@dataclass
class RequestContext:
    """What the web tier knows about the caller, already minimised."""

    ip: str | None = None
    user_agent: str | None = None
    gpc_header: bool = False
    # The visitor's region (consent.regions: `US-CA`, `DE`; None when unknown) and how it
    # was found (header, ip, none). Filled in only where rules by region apply.
    region: str | None = None
    region_source: str = "none"

    def details(self, page_url: str | None) -> Details:
        """The personal details of an event made in this request."""
        return Details(ip_prefix=truncate_ip(self.ip),
                       user_agent=(self.user_agent or None) and self.user_agent[:512],
                       page_url=strip_query(page_url))


def truncate_ip(ip: str | None) -> str | None:
    """IPv4 to its /24, IPv6 to its /48: enough for fraud checks, not a person."""
    if not ip:
        return None
    parts = ip.split(".")
    if len(parts) == 4 and all(_OCTET.fullmatch(p) for p in parts):
        # The common case, without the ipaddress module (a tenth of the cost).
        return f"{parts[0]}.{parts[1]}.{parts[2]}.0/24"
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def strip_query(url: str | None) -> str | None:
    """A page URL without query string or fragment (they often carry personal data)."""
    if not url:
        return None
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))[:2048]
