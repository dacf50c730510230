"""Parsing `host:port` targets."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Endpoint", "parse_target", "parse_targets"]


@dataclass(frozen=True, order=True)
class Endpoint:
    """One server address."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_target(target: str) -> Endpoint:
    """`host:port` or `[v6]:port` -> Endpoint; ValueError on anything else."""
    text = target.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"bad target {target!r}: expected [host]:port")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise ValueError(f"bad target {target!r}: expected host:port")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad target {target!r}: expected host:port with a port 1-65535")
    return Endpoint(host, int(port_text))


def parse_targets(targets: str) -> list[Endpoint]:
    """A comma-separated list of targets."""
    return [parse_target(part) for part in targets.split(",") if part.strip()]
