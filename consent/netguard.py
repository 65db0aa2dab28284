"""Which network addresses the server may call on behalf of a site (webhook receivers).

Only globally routable unicast addresses pass. `ipaddress.is_global` alone is not enough:
on Python 3.11 it calls site-local IPv6 (fec0::/10), IPv4 multicast and some transition
prefixes global, and an IPv6 form can carry an internal IPv4 address (IPv4-mapped
::ffff:10.0.0.1, IPv4-compatible ::10.0.0.1, NAT64 64:ff9b::10.0.0.1, 6to4 2002:0a00:0001::,
Teredo 2001:0::/32). Those forms are judged by the IPv4 address they carry, or refused
where a relay decides where the packet goes.
"""
from __future__ import annotations

import ipaddress

# IPv6 prefixes refused outright: 6to4 and Teredo (a relay picks the IPv4 host), local-use
# NAT64, IPv4-compatible (deprecated), discard-only, documentation, site-local,
# ORCHID/benchmarking blocks under 2001::/23 are not global either.
_REFUSED_V6 = tuple(ipaddress.ip_network(n) for n in (
    "2002::/16", "2001::/32", "64:ff9b:1::/48", "::/96", "100::/64", "2001:db8::/32",
    "fec0::/10", "2001:2::/48", "2001:10::/28", "2001:20::/28"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# IPv4 blocks that are_global misses or that name no single host.
_REFUSED_V4 = tuple(ipaddress.ip_network(n) for n in (
    "100.64.0.0/10", "192.0.0.0/24", "192.88.99.0/24", "198.18.0.0/15", "224.0.0.0/4",
    "240.0.0.0/4", "0.0.0.0/8"))


def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address from getaddrinfo (an IPv6 zone suffix such as %eth0 is dropped)."""
    return ipaddress.ip_address(text.split("%", 1)[0])


def is_public(address) -> bool:
    """True when ADDRESS (text or ip_address) is a globally routable unicast address."""
    addr = parse_address(address) if isinstance(address, str) else address
    if addr.version == 6:
        if addr.ipv4_mapped is not None:
            return is_public(addr.ipv4_mapped)
        if addr in _NAT64:
            return is_public(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
        if any(addr in net for net in _REFUSED_V6) or addr.is_site_local:
            return False
    elif any(addr in net for net in _REFUSED_V4):
        return False
    return (addr.is_global and not addr.is_private and not addr.is_loopback
            and not addr.is_link_local and not addr.is_multicast and not addr.is_reserved
            and not addr.is_unspecified)


def first_internal(infos) -> str | None:
    """The first address among getaddrinfo results that is not public, or None."""
    for info in infos:
        try:
            if not is_public(info[4][0]):
                return info[4][0]
        except ValueError:
            return str(info[4][0])
    return None
