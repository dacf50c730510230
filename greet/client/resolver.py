"""Resolving `dns:///host:port` names to endpoints (every A and AAAA address of the name).

`Resolve` is the signature the pool calls; `resolve_dns` (the default) asks the system resolver
(getaddrinfo, so /etc/hosts and the search domains apply, as for any other program).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import TypeAlias

from greet.client.targets import Endpoint

__all__ = ["Resolve", "resolve_dns"]

Resolve: TypeAlias = Callable[[str, int], Awaitable[list[Endpoint]]]
"""`await resolve(host, port)` -> the endpoints the name stands for (OSError if none)."""


async def resolve_dns(host: str, port: int) -> list[Endpoint]:
    """Every address of `host` (IPv4 and IPv6), without duplicates, in resolver order."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    endpoints: dict[Endpoint, None] = {}
    for _family, _type, _proto, _name, address in infos:
        endpoints[Endpoint(str(address[0]), int(address[1]))] = None
    if not endpoints:
        raise OSError(f"{host} has no addresses")
    return list(endpoints)
