"""GreetServer: one serving process, the grpclib Server with everything mounted on it."""

from __future__ import annotations

import asyncio
import logging
import socket
from types import TracebackType
from typing import cast

from grpclib.server import Server

from greet.greeting import WorkingGreeter
from greet.server.config import ServerConfig
from greet.service import GreetService

__all__ = ["GreetServer", "format_address"]

log = logging.getLogger("greet.server")


def format_address(host: str, port: int) -> str:
    """host:port, with IPv6 hosts in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GreetServer:
    """Builds the service from a ServerConfig and serves it on a socket.

    Use as `async with GreetServer(config) as server:` (binds `config.host:config.port`), or call
    `start(sock=...)` with a socket that is already bound, as tests and worker processes do.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.service = GreetService(
            greeter=WorkingGreeter(work_delay=config.work_delay), limits=config.limits
        )
        self.grpc_server = Server([self.service])
        self._address: tuple[str, int] | None = None

    async def start(self, sock: socket.socket | None = None) -> None:
        """Listen on `sock` if given, else on the configured host and port."""
        if sock is not None:
            await self.grpc_server.start(sock=sock)
        else:
            await self.grpc_server.start(self.config.host, self.config.port)
        listening = cast("asyncio.Server | None", self.grpc_server._server)
        assert listening is not None
        host, port = listening.sockets[0].getsockname()[:2]
        self._address = (host, port)

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually listened on (port 0 resolved)."""
        if self._address is None:
            raise RuntimeError("server is not started")
        return self._address

    @property
    def target(self) -> str:
        """`host:port` for clients."""
        return format_address(*self.address)

    def set_serving(self, serving: bool) -> None:
        """Report SERVING / NOT_SERVING on the health service (filled in by greet.health)."""

    async def stop(self, grace: float | None = None) -> None:
        """Stop listening and close every connection.

        `grace` (default: config.grace) is how long in-flight calls may take to finish.
        """
        self.set_serving(False)
        self.grpc_server.close()
        await self.grpc_server.wait_closed()

    async def __aenter__(self) -> GreetServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
