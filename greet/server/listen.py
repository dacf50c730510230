"""Listening sockets: `--host ::` accepts IPv4 clients as well as IPv6 ones.

asyncio (and uvloop) set IPV6_V6ONLY on every IPv6 socket they bind themselves, so
`loop.create_server(host="::")` refuses IPv4 clients: on an IPv4 network (most Kubernetes
clusters, `docker run -p`) nothing could reach a server on `::`, the kubelet's probes included.
For the IPv6 wildcard greet binds one dual-stack socket itself (as Go's net.Listen, and so
grpc-go, do) and hands it to the server; every other host is left to asyncio. The `--workers N`
sockets (greet.server.supervisor) are dual-stack already: Python's own sockets keep the
kernel's default (net.ipv6.bindv6only=0).
"""

from __future__ import annotations

import socket

from greet.addresses import bare_host

__all__ = ["IPV6_WILDCARD", "dual_stack_socket"]

IPV6_WILDCARD = "::"


def dual_stack_socket(host: str, port: int) -> socket.socket | None:
    """A listening socket on every IPv6 and IPv4 address for `host` "::" (or "[::]"); None
    otherwise.

    None too where the system cannot accept both on one socket; the caller then binds `host`
    as asyncio does.
    """
    if bare_host(host) != IPV6_WILDCARD or not socket.has_dualstack_ipv6():
        return None
    return socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
