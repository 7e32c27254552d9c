import ipaddress
from collections.abc import Callable

import pytest

from nodes.hosts import (
    NEVER_ALLOWED,
    HostRefused,
    check_address,
    check_host,
    classify,
    normalize_host,
    resolve,
)

# Each row is a host and the kind it is refused as, or None where it is allowed.
ADDRESSES: list[tuple[str, str | None]] = [
    # Loopback: the panel's own machine.
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("::1", "loopback"),
    ("[::1]", "loopback"),
    ("::0.0.0.1", "loopback"),
    # Unspecified.
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("::ffff:0.0.0.0", "unspecified"),
    # Link-local, where cloud metadata services answer.
    ("169.254.169.254", "link-local"),
    ("fe80::1", "link-local"),
    # Multicast.
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("ff00::1", "multicast"),
    # Private networks.
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.10", "private"),
    ("100.64.0.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("fec0::1", "private"),
    # Reserved, documentation, benchmarking and other special-purpose ranges.
    ("255.255.255.255", "reserved"),
    ("240.0.0.1", "reserved"),
    ("0.1.2.3", "reserved"),
    ("192.0.0.1", "reserved"),
    ("192.0.2.1", "reserved"),
    ("198.51.100.7", "reserved"),
    ("203.0.113.9", "reserved"),
    ("198.18.0.1", "reserved"),
    ("2001:db8::1", "reserved"),
    # IPv4 carried inside IPv6 is judged by the IPv4 address it carries.
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:7f00:1", "loopback"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:224.0.0.1", "multicast"),
    ("64:ff9b::7f00:1", "loopback"),
    ("64:ff9b::a00:1", "private"),
    ("2002:7f00:1::1", "loopback"),
    ("2002:a00:1::1", "private"),
    ("::127.0.0.1", "loopback"),
    # Public addresses, some right next to the edge of a private range.
    ("8.8.8.8", None),
    ("::ffff:8.8.8.8", None),
    ("64:ff9b::808:808", None),
    ("2002:808:808::1", None),
    ("1.1.1.1", None),
    ("2606:4700:4700::1111", None),
    ("2001:4860:4860::8888", None),
    ("172.15.255.255", None),
    ("172.32.0.1", None),
    ("11.0.0.1", None),
    ("100.63.255.255", None),
    ("100.128.0.1", None),
]

# Each row is a host, the network DAEMON_ALLOWED_NETWORKS holds, and the kind it is
# still refused as, or None where the network lets it through.
ALLOWED_NETWORKS: list[tuple[str, str, str | None]] = [
    ("127.0.0.1", "127.0.0.0/8", None),
    ("::1", "::1/128", None),
    ("10.1.2.3", "10.0.0.0/8", None),
    ("192.168.1.10", "192.168.1.0/24", None),
    ("100.64.0.1", "100.64.0.0/10", None),
    ("fd12:3456::1", "fd00::/8", None),
    ("fec0::1", "fec0::/10", None),
    ("198.51.100.7", "198.51.100.0/24", None),
    ("240.0.0.1", "240.0.0.0/4", None),
    ("2001:db8::1", "2001:db8::/32", None),
    # An IPv6 form of an IPv4 address is judged by the IPv4 address, both ways.
    ("2002:7f00:1::1", "2002::/16", "loopback"),
    ("2002:7f00:1::1", "127.0.0.0/8", None),
    ("::ffff:10.0.0.1", "10.0.0.0/8", None),
    ("::ffff:10.0.0.1", "::ffff:0:0/96", "private"),
    # A network that does not hold the address does not help.
    ("10.1.2.3", "192.168.0.0/16", "private"),
    ("10.1.2.3", "fd00::/8", "private"),
    # Unspecified, multicast and link-local never pass, whatever the setting says.
    ("0.0.0.0", "0.0.0.0/0", "unspecified"),
    ("::", "::/0", "unspecified"),
    ("224.0.0.1", "224.0.0.0/4", "multicast"),
    ("ff02::1", "ff00::/8", "multicast"),
    ("169.254.169.254", "169.254.0.0/16", "link-local"),
    ("169.254.169.254", "0.0.0.0/0", "link-local"),
    ("fe80::1", "fe80::/10", "link-local"),
    ("::ffff:169.254.169.254", "::/0", "link-local"),
]

SYNTAX_REFUSED: list[tuple[str, str]] = [
    ("https://node.example.com", "scheme"),
    ("node.example.com/path", "path"),
    ("node.example.com:8080", "port"),
    ("[::1]:8080", "port"),
    ("under_score.example.com", "DNS name"),
    ("-bad.example.com", "DNS name"),
    ("bad-.example.com", "DNS name"),
    ("node..example.com", "DNS name"),
    ("a" * 64 + ".com", "DNS name"),
    (".".join(["a" * 63] * 4), "DNS name"),
    ("", "DNS name"),
    ("   ", "DNS name"),
    ("1.2.3", "DNS name"),
    ("999.1.1.1", "DNS name"),
]

SYNTAX_ACCEPTED: list[tuple[str, str]] = [
    ("Node1.Example.COM.", "node1.example.com"),
    ("  node1.example.com  ", "node1.example.com"),
    ("localhost", "localhost"),
    ("a" * 63 + ".com", "a" * 63 + ".com"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("[2001:db8::1]", "2001:db8::1"),
    ("2001:0db8:0000::1", "2001:db8::1"),
    ("::FFFF:7F00:1", "::ffff:127.0.0.1"),
    ("10.0.0.1", "10.0.0.1"),
]


def answers(*addresses: str) -> Callable[[str], list[str]]:
    """A resolver that gives the same answer for every name."""
    return lambda host: list(addresses)


def no_resolver(host: str) -> list[str]:
    raise AssertionError(f"{host} should not have been resolved")


def assert_refused(error: HostRefused, kind: str, host: str | None = None) -> None:
    message = str(error)
    assert kind in message
    if host is not None:
        assert host in message
    # Only the kinds that DAEMON_ALLOWED_NETWORKS can let through point to it.
    if kind in NEVER_ALLOWED:
        assert "DAEMON_ALLOWED_NETWORKS" not in message
    else:
        assert "DAEMON_ALLOWED_NETWORKS" in message


class TestHosts:
    @pytest.mark.parametrize(("host", "kind"), ADDRESSES)
    def test_it_allows_public_addresses_and_refuses_the_rest(
        self, host: str, kind: str | None
    ) -> None:
        ip = ipaddress.ip_address(normalize_host(host))
        if kind is None:
            assert check_host(host, allowed=[], resolver=no_resolver) == [ip]
        else:
            with pytest.raises(HostRefused) as refused:
                check_host(host, allowed=[], resolver=no_resolver)
            assert_refused(refused.value, kind, str(ip))

    @pytest.mark.parametrize(("host", "kind"), ADDRESSES)
    def test_it_classifies_each_address(self, host: str, kind: str | None) -> None:
        assert classify(ipaddress.ip_address(normalize_host(host))) == kind

    @pytest.mark.parametrize(("host", "network", "kind"), ALLOWED_NETWORKS)
    def test_it_lets_allowed_networks_through_except_where_no_daemon_can_live(
        self, host: str, network: str, kind: str | None
    ) -> None:
        allowed = [ipaddress.ip_network(network)]
        if kind is None:
            ip = ipaddress.ip_address(normalize_host(host))
            assert check_host(host, allowed=allowed) == [ip]
        else:
            with pytest.raises(HostRefused) as refused:
                check_host(host, allowed=allowed)
            assert_refused(refused.value, kind)

    def test_it_reads_allowed_networks_from_the_settings(self, settings) -> None:
        settings.DAEMON_ALLOWED_NETWORKS = [ipaddress.ip_network("10.0.0.0/8")]
        assert check_host("10.1.2.3") == [ipaddress.ip_address("10.1.2.3")]
        assert check_host("8.8.8.8") == [ipaddress.ip_address("8.8.8.8")]
        with pytest.raises(HostRefused, match="private"):
            check_host("192.168.1.10")
        with pytest.raises(HostRefused, match="loopback"):
            check_host("127.0.0.1")

    def test_it_prefers_an_explicit_allowed_list_to_the_settings(
        self, settings
    ) -> None:
        settings.DAEMON_ALLOWED_NETWORKS = [ipaddress.ip_network("10.0.0.0/8")]
        with pytest.raises(HostRefused, match="private"):
            check_host("10.1.2.3", allowed=[])

    def test_it_never_lets_link_local_through_from_the_settings(self, settings) -> None:
        settings.DAEMON_ALLOWED_NETWORKS = [ipaddress.ip_network("169.254.0.0/16")]
        with pytest.raises(HostRefused, match="link-local"):
            check_host("169.254.169.254")

    def test_it_checks_a_single_address(self, settings) -> None:
        settings.DAEMON_ALLOWED_NETWORKS = []
        assert check_address(ipaddress.ip_address("8.8.8.8")) is None
        with pytest.raises(HostRefused) as refused:
            check_address(ipaddress.ip_address("10.1.2.3"))
        assert_refused(refused.value, "private", "10.1.2.3")
        # The message suggests the /24 around the address as the network to add.
        assert "10.1.2.0/24" in str(refused.value)

    @pytest.mark.parametrize(
        "addresses",
        [
            ["8.8.8.8", "10.0.0.1"],
            ["10.0.0.1", "8.8.8.8"],
            ["1.1.1.1", "2606:4700:4700::1111", "::1"],
            ["2001:4860:4860::8888", "169.254.169.254"],
        ],
    )
    def test_it_refuses_a_name_when_any_of_its_addresses_is_refused(
        self, addresses: list[str]
    ) -> None:
        with pytest.raises(HostRefused) as refused:
            check_host("node1.example.com", allowed=[], resolver=answers(*addresses))
        assert "node1.example.com resolves to" in str(refused.value)

    def test_it_names_the_host_and_the_refused_address(self) -> None:
        resolver = answers("8.8.8.8", "10.0.0.1")
        with pytest.raises(HostRefused) as refused:
            check_host("node1.example.com", allowed=[], resolver=resolver)
        assert_refused(refused.value, "private", "node1.example.com")
        assert "10.0.0.1" in str(refused.value)
        assert "8.8.8.8" not in str(refused.value)

    def test_it_returns_every_public_address_once_in_resolver_order(self) -> None:
        resolver = answers(
            "8.8.8.8", "2606:4700:4700::1111", "1.1.1.1", "8.8.8.8", "1.1.1.1"
        )
        addresses = check_host("node1.example.com", allowed=[], resolver=resolver)
        assert addresses == [
            ipaddress.ip_address("8.8.8.8"),
            ipaddress.ip_address("2606:4700:4700::1111"),
            ipaddress.ip_address("1.1.1.1"),
        ]

    def test_it_returns_allowed_private_addresses_with_public_ones(self) -> None:
        addresses = check_host(
            "node1.example.com",
            allowed=[ipaddress.ip_network("10.0.0.0/8")],
            resolver=answers("8.8.8.8", "10.0.0.1"),
        )
        assert addresses == [
            ipaddress.ip_address("8.8.8.8"),
            ipaddress.ip_address("10.0.0.1"),
        ]

    def test_it_refuses_a_scoped_link_local_answer(self) -> None:
        resolver = answers("8.8.8.8", "fe80::1%eth0")
        with pytest.raises(HostRefused) as refused:
            check_host("node1.example.com", allowed=[], resolver=resolver)
        assert_refused(refused.value, "link-local", "node1.example.com")

    def test_it_refuses_a_name_without_addresses(self) -> None:
        with pytest.raises(HostRefused, match="node1.example.com resolves to no"):
            check_host("node1.example.com", allowed=[], resolver=answers())

    def test_it_resolves_the_normalized_name(self) -> None:
        asked: list[str] = []

        def resolver(host: str) -> list[str]:
            asked.append(host)
            return ["8.8.8.8"]

        check_host("  Node1.Example.COM. ", allowed=[], resolver=resolver)
        assert asked == ["node1.example.com"]

    def test_it_does_not_resolve_an_address(self) -> None:
        addresses = check_host("[2606:4700:4700::1111]", resolver=no_resolver)
        assert addresses == [ipaddress.ip_address("2606:4700:4700::1111")]

    def test_it_refuses_localhost_through_the_real_resolver(self) -> None:
        with pytest.raises(HostRefused) as refused:
            check_host("localhost", allowed=[])
        assert_refused(refused.value, "loopback", "localhost resolves to")

    def test_it_refuses_a_name_that_does_not_resolve(self) -> None:
        with pytest.raises(HostRefused, match="does not resolve"):
            check_host("no-such-host.invalid", allowed=[])
        with pytest.raises(HostRefused, match="no-such-host.invalid"):
            resolve("no-such-host.invalid")

    def test_it_resolves_with_the_system_resolver(self) -> None:
        assert "127.0.0.1" in resolve("localhost")

    @pytest.mark.parametrize(("value", "fragment"), SYNTAX_REFUSED)
    def test_it_refuses_malformed_hosts(self, value: str, fragment: str) -> None:
        with pytest.raises(HostRefused, match=fragment):
            normalize_host(value)
        with pytest.raises(HostRefused, match=fragment):
            check_host(value, allowed=[], resolver=no_resolver)

    @pytest.mark.parametrize(("value", "expected"), SYNTAX_ACCEPTED)
    def test_it_normalizes_hosts(self, value: str, expected: str) -> None:
        assert normalize_host(value) == expected
