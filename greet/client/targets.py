"""Parsing targets: `host:port`, `[v6]:port`, and `dns:///host:port` names to resolve."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from greet.addresses import format_address, parse_address

__all__ = [
    "DNS_SCHEME",
    "DnsName",
    "Endpoint",
    "Target",
    "parse_target",
    "parse_target_spec",
    "parse_targets",
]

DNS_SCHEME = "dns:///"


@dataclass(frozen=True, order=True)
class Endpoint:
    """One server address."""

    host: str
    port: int

    def __str__(self) -> str:
        return format_address(self.host, self.port)


@dataclass(frozen=True, order=True)
class DnsName:
    """`dns:///host:port`: every address the name resolves to (A and AAAA), re-resolved."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{DNS_SCHEME}{Endpoint(self.host, self.port)}"


Target: TypeAlias = "Endpoint | DnsName"


def parse_target(target: str) -> Endpoint:
    """`host:port` or `[v6]:port` -> Endpoint; ValueError on anything else."""
    try:
        host, port = parse_address(target.strip())
    except ValueError as error:
        raise ValueError(f"bad target {target!r}: {error}") from None
    return Endpoint(host, port)


def parse_target_spec(target: str) -> Target:
    """`host:port`, `[v6]:port` or `dns:///host:port`; ValueError on anything else."""
    text = target.strip()
    if text.startswith("dns:"):
        if not text.startswith(DNS_SCHEME):
            raise ValueError(
                f"bad target {target!r}: expected dns:///host:port (no DNS server authority)"
            )
        endpoint = parse_target(text[len(DNS_SCHEME) :])
        return DnsName(endpoint.host, endpoint.port)
    return parse_target(text)


def parse_targets(targets: str | Sequence[str]) -> list[Target]:
    """Targets given as a comma-separated string or as a list (`dns:///` names allowed); empty
    entries are skipped, anything else that is not a target is a ValueError."""
    names = targets.split(",") if isinstance(targets, str) else list(targets)
    return [parse_target_spec(name) for name in names if name.strip()]
