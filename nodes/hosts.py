"""The policy for where the panel may connect to a daemon.

A node's host is checked when the node is saved and again at every connection, on
every address the name resolves to, so that a host cannot be turned into a way to
reach the panel's own machine, its private network or a cloud metadata service.

Addresses in `settings.DAEMON_ALLOWED_NETWORKS` pass even when they are loopback,
private or reserved. Unspecified, multicast and link-local addresses never pass: no
daemon can live there, and link-local is where cloud metadata services answer.
"""

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], list[str]]

PRIVATE_NETWORKS = [
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT, private in practice
        "fc00::/7",
        "fec0::/10",  # the deprecated site-local range
    )
]
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")

NEVER_ALLOWED = ("unspecified", "multicast", "link-local")
DESCRIPTIONS = {
    "unspecified": "an unspecified address",
    "multicast": "a multicast address",
    "link-local": "a link-local address (where cloud metadata services answer)",
    "loopback": "a loopback address (the panel's own machine)",
    "private": "a private address",
    "reserved": "a reserved or special-purpose address",
}
HOST_NAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)"
    r"(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


class HostRefused(ValueError):
    """The host is malformed, does not resolve, or leads where daemons may not be."""


def normalize_host(value: str) -> str:
    """Return the host as it is stored: a lowercase name or a compressed address."""
    host = value.strip()
    if "://" in host:
        raise HostRefused(
            "Enter the host without a scheme: node1.example.com, not "
            "https://node1.example.com. The protocol is a field of its own."
        )
    if host.startswith("[") and host.endswith("]"):
        try:
            return str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            raise HostRefused(
                "Only an IPv6 address goes inside brackets, such as [2001:db8::1]."
            ) from None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if "/" in host:
        raise HostRefused("Enter the host alone, without a path.")
    if ":" in host:
        raise HostRefused(
            "Enter the host without a port: the daemon port is a field of its own."
        )
    host = host.rstrip(".").lower()
    if not HOST_NAME.match(host) or host.replace(".", "").isdigit():
        raise HostRefused(
            "Enter an IP address or a DNS name made of letters, digits, hyphens "
            "and dots, such as node1.example.com."
        )
    return host


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address that an IPv6 address carries, where it carries one."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip in NAT64_PREFIX or (ip in IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def classify(ip: IPAddress) -> str | None:
    """Name the kind of a non-public address; None for a public one.

    An IPv6 address that carries an IPv4 one is judged by the IPv4 address.
    """
    ip = embedded_ipv4(ip) or ip
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if ip.is_link_local:
        return "link-local"
    if ip.is_loopback:
        return "loopback"
    if any(ip in network for network in PRIVATE_NETWORKS):
        return "private"
    if ip.is_reserved or not ip.is_global:
        return "reserved"
    return None


def refusal(ip: IPAddress, allowed: Iterable[Network] | None = None) -> str | None:
    """Why the panel may not connect to this address; None when it may."""
    kind = classify(ip)
    if kind is None:
        return None
    inner = embedded_ipv4(ip)
    subject = inner or ip
    shown = f"{ip} (that is {inner})" if inner else str(ip)
    if kind in NEVER_ALLOWED:
        return f"{shown} is {DESCRIPTIONS[kind]}; a daemon cannot live there."
    if allowed is None:
        allowed = settings.DAEMON_ALLOWED_NETWORKS
    if any(subject.version == n.version and subject in n for n in allowed):
        return None
    prefix = 24 if subject.version == 4 else 64
    network = ipaddress.ip_network(f"{subject}/{prefix}", strict=False)
    return (
        f"{shown} is {DESCRIPTIONS[kind]}. To run daemons there, add its network "
        f"to the DAEMON_ALLOWED_NETWORKS setting (for example {network})."
    )


def check_address(ip: IPAddress, allowed: Iterable[Network] | None = None) -> None:
    reason = refusal(ip, allowed)
    if reason is not None:
        raise HostRefused(reason)


def resolve(host: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise HostRefused(f"{host} does not resolve: {e}.") from None
    return [info[4][0] for info in infos]


def check_host(
    host: str,
    allowed: Iterable[Network] | None = None,
    resolver: Resolver = resolve,
) -> list[IPAddress]:
    """Resolve a host, check every address, and return them in resolver order.

    The caller that connects must connect to one of the returned addresses, never
    resolve the name again, or a second answer could lead elsewhere.
    """
    host = normalize_host(host)
    try:
        candidates = [ipaddress.ip_address(host)]
    except ValueError:
        # A scoped IPv6 answer ("fe80::1%eth0") loses its scope, not its kind.
        candidates = [ipaddress.ip_address(a.split("%")[0]) for a in resolver(host)]
    if not candidates:
        raise HostRefused(f"{host} resolves to no address.")
    addresses: list[IPAddress] = []
    for ip in candidates:
        reason = refusal(ip, allowed)
        if reason is not None and str(ip) == host:
            raise HostRefused(reason)
        if reason is not None:
            raise HostRefused(f"{host} resolves to {ip}, which is refused: {reason}")
        if ip not in addresses:
            addresses.append(ip)
    return addresses
