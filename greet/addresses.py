"""host:port text, with IPv6 hosts in brackets ([::1]:8080), for logs, URLs and targets."""

from __future__ import annotations

__all__ = ["format_address", "format_peer"]


def format_address(host: str, port: int) -> str:
    """`host:port`, or `[host]:port` when the host is an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_peer(address: object) -> str:
    """A socket address (a `getpeername()` tuple) as `host:port`; "unknown" for anything else."""
    if isinstance(address, tuple) and len(address) >= 2:
        return format_address(str(address[0]), int(address[1]))
    return "unknown"
