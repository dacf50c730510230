"""host:port text (greet.addresses), and the places that write or read it through there."""

from __future__ import annotations

import re

import pytest

from greet.addresses import bare_host, format_address, format_peer, parse_address
from greet.client import DnsName, Endpoint
from greet.client._pool import parse_target, parse_target_spec
from greet.tls import exposure_warning, is_loopback


@pytest.mark.parametrize(
    ("host", "port", "text"),
    [
        ("127.0.0.1", 8080, "127.0.0.1:8080"),
        ("localhost", 1, "localhost:1"),
        ("::1", 8080, "[::1]:8080"),
        ("fe80::1%eth0", 50051, "[fe80::1%eth0]:50051"),
    ],
)
def test_addresses_round_trip(host: str, port: int, text: str) -> None:
    assert format_address(host, port) == text
    assert parse_address(text) == (host, port)
    assert str(Endpoint(host, port)) == text
    assert parse_target(text) == Endpoint(host, port)


def test_peer_addresses_are_formatted_from_socket_tuples() -> None:
    assert format_peer(("127.0.0.1", 50522)) == "127.0.0.1:50522"
    assert format_peer(("::1", 50522, 0, 0)) == "[::1]:50522"  # AF_INET6 has four fields
    assert format_peer(None) == "unknown"
    assert format_peer("/run/greet.sock", unknown="unknown peer") == "unknown peer"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("::1:8080", "expected host:port"),  # an IPv6 host needs brackets
        ("[::1]8080", "expected [host]:port"),
        ("[::1", "expected [host]:port"),
        ("localhost", "expected host:port"),
        (":8080", "expected host:port with a port 1-65535"),
        ("localhost:0", "expected host:port with a port 1-65535"),
        ("localhost:65536", "expected host:port with a port 1-65535"),
        ("localhost:http", "expected host:port with a port 1-65535"),
        ("[]:8080", "expected host:port with a port 1-65535"),
    ],
)
def test_bad_addresses_say_what_was_expected(text: str, expected: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        parse_address(text)
    with pytest.raises(ValueError, match=f"^bad target {re.escape(repr(text))}: "):
        parse_target(text)


def test_dns_targets_bracket_ipv6_hosts_too() -> None:
    assert parse_target_spec("dns:///[::1]:443") == DnsName("::1", 443)
    assert str(DnsName("::1", 443)) == "dns:///[::1]:443"


def test_bracketed_hosts_are_read_as_the_bare_host() -> None:
    assert bare_host("[::]") == "::"
    assert bare_host("::") == "::"
    assert bare_host("example.com") == "example.com"
    assert is_loopback("[::1]")
    assert is_loopback("::1")
    assert exposure_warning("[::]", tls=False) == exposure_warning("::", tls=False)
    assert "all interfaces" in (exposure_warning("[::]", tls=False) or "")
