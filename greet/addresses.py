"""host:port text, with IPv6 hosts in brackets ([::1]:8080): the one place that writes and reads
it, for logs, URLs, client targets and HTTP/2 `:authority`."""

from __future__ import annotations

__all__ = ["bare_host", "format_address", "format_peer", "parse_address"]


def format_address(host: str, port: int) -> str:
    """`host:port`, or `[host]:port` when the host is an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_peer(address: object, unknown: str = "unknown") -> str:
    """A socket address (a `getpeername()` tuple) as `host:port`; `unknown` for anything else."""
    if isinstance(address, tuple) and len(address) >= 2:
        return format_address(str(address[0]), int(address[1]))
    return unknown


def parse_address(text: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port), the host without brackets.

    ValueError, saying what was expected, for anything else (an IPv6 host without brackets, a
    missing host, a port that is not 1-65535).
    """
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError("expected [host]:port")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError("expected host:port")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError("expected host:port with a port 1-65535")
    return host, int(port_text)


def bare_host(host: str) -> str:
    """`host` without the brackets of a bracketed IPv6 host (`--host [::]` is `::`)."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host
