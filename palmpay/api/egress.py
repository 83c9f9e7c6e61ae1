"""Outbound requests to caller-chosen URLs (webhooks): only to public internet addresses.

A webhook URL is chosen by an API caller, and the server POSTs to it: without a check, an admin
key (or a stolen one) could make the server call its own loopback services, the cloud metadata
endpoint (169.254.169.254) or hosts of the private network behind it (SSRF).
:func:`resolve_target` parses the URL, resolves its host (every address, IPv4 and IPv6) and
refuses it with :class:`TargetRefused` when *any* address is

- unspecified (``0.0.0.0``, ``::``), loopback, link-local, multicast, private (RFC 1918, ULA,
  CGNAT ``100.64.0.0/10``, documentation and benchmarking ranges), reserved, or otherwise not
  globally routable (:attr:`ipaddress.IPv4Address.is_global`);
- an IPv6 address that embeds such an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, 6to4
  ``2002::/16``, Teredo, NAT64 ``64:ff9b::/96``);

or when the host does not resolve. The check runs at registration *and* before every delivery.
A delivery connects to the address that was checked (:attr:`Target.pinned_url`, with the
original ``Host`` header and, for HTTPS, the original name for SNI and certificate checks), so
a DNS answer that changes between the check and the connection (DNS rebinding) cannot move the
request to an internal address. Redirects are never followed (a 3xx answer is a failed
delivery), so a public host cannot bounce the request inward either.

``allow_private=True`` (``PALMPAY_WEBHOOK_ALLOW_PRIVATE``, development only) skips the address
checks; the host is still resolved and the connection pinned.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["Resolver", "Target", "TargetRefused", "address_problem", "resolve_target",
           "system_resolver"]

log = logging.getLogger(__name__)

#: ``resolver(host, port)`` → the IP addresses (as strings) the host name resolves to.
Resolver = Callable[[str, int], list[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class TargetRefused(ValueError):
    """The URL is malformed, does not resolve, or reaches a non-public address; ``reason``
    says which in words that do not quote the URL."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (:attr:`pinned_url`) and what to tell the server."""

    url: str
    host: str = field(repr=False)
    addresses: tuple[str, ...]
    pinned_url: str = field(repr=False)
    host_header: str = field(repr=False)

    @property
    def extensions(self) -> dict[str, Any]:
        """httpx request extensions: the original name for TLS SNI and certificate checks."""
        is_https = self.url.lower().startswith("https:")
        return {"sni_hostname": self.host} if is_https and not _is_ip(self.host) else {}


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (``getaddrinfo``, TCP), in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _embedded(ip: IPAddress) -> list[IPAddress]:
    """``ip`` and the IPv4 addresses an IPv6 address carries (mapped, 6to4, Teredo, NAT64)."""
    out: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            out.append(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            out.append(ip.sixtofour)
        if ip.teredo is not None:
            out.extend(ip.teredo)
        if ip in _NAT64:
            out.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return out


def address_problem(address: str) -> str | None:
    """Why a connection to ``address`` is refused (``"loopback"``, ``"private"``, ...), or None
    for a public unicast address."""
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return "not an IP address"
    for ip in _embedded(parsed):
        for problem, bad in (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback),
                             ("link-local", ip.is_link_local), ("multicast", ip.is_multicast),
                             ("private", ip.is_private), ("reserved", ip.is_reserved),
                             ("not globally routable", not ip.is_global)):
            if bad:
                return problem
    return None


def resolve_target(url: str, *, allow_private: bool = False,
                   resolver: Resolver = system_resolver) -> Target:
    """Parse ``url`` (http or https), resolve its host and check every address (see the module
    docstring); raises :class:`TargetRefused`."""
    try:
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError, TypeError) as exc:
        raise TargetRefused("the URL is malformed") from exc
    if parsed.scheme not in ("http", "https") or not host:
        raise TargetRefused("the URL needs http:// or https:// and a host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if _is_ip(host):
        addresses = [host]
    else:
        try:
            addresses = resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise TargetRefused("the host does not resolve") from exc
        if not addresses:
            raise TargetRefused("the host does not resolve")
    if not allow_private:
        for address in addresses:
            problem = address_problem(address)
            if problem is not None:
                raise TargetRefused(f"the host is (or resolves to) a {problem} address")
    pinned = parsed.copy_with(host=addresses[0].split("%", 1)[0])
    return Target(url=url, host=host, addresses=tuple(addresses), pinned_url=str(pinned),
                  host_header=parsed.netloc.decode("ascii"))
