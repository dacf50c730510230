"""In-process servers on loopback sockets that are bound before a server takes them over (no
port number is reused after a close)."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from greet.server import GreetServer

__all__ = ["StartServer", "bound_socket"]

StartServer: TypeAlias = "Callable[..., Awaitable[GreetServer]]"
"""The `start_server` test fixture: start a GreetServer with config overrides."""


def bound_socket(host: str = "127.0.0.1") -> socket.socket:
    """A socket bound to a free port that stays ours until a server takes it over."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock
