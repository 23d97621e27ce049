"""Which URLs a webhook may be sent to (SSRF): https only in production, and never an address on
loopback, link-local, private, shared or reserved ranges. A URL is checked when it is saved and
again, against the addresses its host resolves to, when a drain starts sending to it (a name that
resolved to a public address yesterday may resolve to 10.0.0.1 today: DNS rebinding). The
drain's attempts then connect to the address that was checked, never resolving the name again."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ForbiddenAddress(Exception):
    """The URL may not be called; the message says why, for the client or the attempt's log."""


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n, strict=False) for n in settings.WEBHOOK_ALLOWED_NETWORKS]


def check_address(ip: IPAddress) -> None:
    """Refuse anything but a public unicast address, unless settings allow its network."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in network for network in _allowed_networks()):
        return
    if ip.is_loopback:
        raise ForbiddenAddress(f"{ip} is a loopback address.")
    if ip.is_link_local:
        raise ForbiddenAddress(f"{ip} is a link-local address.")
    if ip.is_private:
        raise ForbiddenAddress(f"{ip} is in a private range.")
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved or not ip.is_global:
        raise ForbiddenAddress(f"{ip} is not a public address.")


def parse(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path with query) of an acceptable URL, or ForbiddenAddress."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ForbiddenAddress(f"Not a valid URL: {exc}.")
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ForbiddenAddress("Use an http(s) URL.")
    if scheme != "https" and settings.WEBHOOK_REQUIRE_HTTPS:
        raise ForbiddenAddress("Use an https URL.")
    if not parts.hostname:
        raise ForbiddenAddress("The URL has no host.")
    if parts.username or parts.password:
        raise ForbiddenAddress("Credentials in the URL are not accepted.")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80), path


class Unresolvable(ForbiddenAddress):
    """The host has no address (now)."""


def resolve(host: str, port: int) -> IPAddress:
    """The address to connect to: every address the host resolves to must be acceptable (so a
    name cannot hide one private address among public ones); the first is used."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        check_address(literal)
        return literal
    if host.lower().rstrip(".") == "localhost" or host.lower().endswith(".localhost"):
        check_address(ipaddress.ip_address("127.0.0.1"))
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Unresolvable(f"{host} does not resolve: {exc}.")
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise Unresolvable(f"{host} does not resolve.")
    for address in addresses:
        check_address(address)
    return addresses[0]


def check_url(url: str) -> None:
    """Refuse a URL a webhook may not be sent to, when a client saves it. A name that does not
    resolve yet is accepted (it is checked again at each attempt)."""
    _scheme, host, port, _path = parse(url)
    with contextlib.suppress(Unresolvable):
        resolve(host, port)
