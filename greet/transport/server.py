"""TransportServer: a grpclib Server whose connections run on greet's own HTTP/2 layer.

It is a `grpclib.server.Server` (a subclass): it is built from the same servables (generated
service bases, grpclib's health and reflection), `grpclib.events.listen(server, ...)` works on
it, and `start`, `close` and `wait_closed` keep grpclib's meaning. What is greet's: every
accepted connection is a `ServerConnection` on the engine the TransportConfig names, the server
keeps the list of its connections, and `shutdown` drains them the way grpc-go's GracefulStop
does (grpclib's `close` cancels every call at once and never sends GOAWAY):

1. stop accepting; a GOAWAY (last stream id 2^31-1) and a PING on every connection, then the
   final GOAWAY with the real last stream id once the PING comes back;
2. wait for the calls in flight, up to the grace period (or until `hurry()`, a second signal);
3. end what is left with UNAVAILABLE, and close every connection.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl as ssl_module
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from grpclib.const import Handler, Status
from grpclib.encoding.base import CodecBase, StatusDetailsCodecBase
from grpclib.encoding.proto import ProtoStatusDetailsCodec
from grpclib.server import Server

from greet._codec import StrictProtoCodec
from greet.transport.compression import accepted
from greet.transport.config import TransportConfig
from greet.transport.engine import Headers
from greet.transport.events import Listening
from greet.transport.interception import Interceptor
from greet.transport.request_head import RequestHead, Route, read_request_head
from greet.transport.server_connection import ServerConnection

if TYPE_CHECKING:
    from grpclib._typing import IServable

    from greet.transport.server_stream import ServerCall

__all__ = ["TransportServer"]

log = logging.getLogger("greet.server")

BACKLOG = 1024
ROUTE_CACHE = 256  # distinct request header blocks remembered (then forgotten all at once)


class TransportServer(Server):
    """A grpclib Server on greet's transport (see the module docstring)."""

    def __init__(
        self,
        handlers: Collection[IServable],
        *,
        config: TransportConfig | None = None,
        codec: CodecBase | None = None,
        status_details_codec: StatusDetailsCodecBase | None = None,
        interceptors: Sequence[Interceptor] = (),
    ) -> None:
        codec = codec or StrictProtoCodec()
        # grpclib chooses a status details codec only when it also chooses the message codec
        status_details_codec = status_details_codec or ProtoStatusDetailsCodec()
        super().__init__(handlers, codec=codec, status_details_codec=status_details_codec)
        self.transport_config = config or TransportConfig()
        self.interceptors: tuple[Interceptor, ...] = tuple(interceptors)
        self.engine_limits = self.transport_config.engine_limits()
        self.methods: dict[str, Handler] = {}
        for handler in handlers:
            self.methods.update(handler.__mapping__())
        self.codec = codec
        self.status_details_codec: StatusDetailsCodecBase | None = status_details_codec
        self.dispatch = self.__dispatch__
        self.listening = Listening(self.__dispatch__)
        self.connections: set[ServerConnection] = set()
        self._routes: dict[Headers, Route] = {}
        self.listener: asyncio.Server | None = None
        self._hurry = asyncio.Event()
        self._all_closed = asyncio.Event()
        self._all_closed.set()

    def route(self, headers: Headers) -> Route:
        """The Route of a request header block (cached: see greet.transport.request_head)."""
        key = headers if type(headers) is tuple else tuple(headers)
        route = self._routes.get(key)
        if route is None:
            route = self._new_route(read_request_head(key))
            if len(self._routes) >= ROUTE_CACHE:
                self._routes.clear()
            self._routes[key] = route
        return route

    def _new_route(self, head: RequestHead) -> Route:
        config = self.transport_config
        limit = config.max_header_list_bytes
        if head.size > limit:
            message = (
                f"request headers are {head.size} bytes; the limit (--max-header-list-bytes) "
                f"is {limit}"
            )
            return Route(head, None, (Status.RESOURCE_EXHAUSTED, message, b"200"), None)
        if head.method != b"POST":
            return Route(head, None, (Status.UNIMPLEMENTED, "gRPC requests use POST", b"405"), None)
        content_type = head.content_type
        if content_type is None or not content_type.startswith("application/grpc"):
            message = f"invalid gRPC request content-type {content_type!r}"
            return Route(head, None, (Status.INVALID_ARGUMENT, message, b"415"), None)
        handler = self.methods.get(head.path)
        if handler is None:
            message = f"Method not found: {head.path}"
            return Route(head, None, (Status.UNIMPLEMENTED, message, b"200"), None)
        wanted = config.compression
        reply_encoding = None
        if wanted not in (None, "identity") and wanted in accepted(head.accept_encoding):
            reply_encoding = wanted
        route = Route(head, handler, None, reply_encoding)
        route.call_attributes = {
            "route": route,
            "_method_name": head.path,
            "_cardinality": handler.cardinality,
            "_recv_type": handler.request_type,
            "_send_type": handler.reply_type,
            "_codec": self.codec,
            "_status_details_codec": self.status_details_codec,
            "_dispatch": self.dispatch,
            "user_agent": head.user_agent,
            "handler_func": handler.func,
            "reply_encoding": reply_encoding,
            "unary_request": not handler.cardinality.client_streaming,
        }
        return route

    def connection_factory(self) -> ServerConnection:
        self._all_closed.clear()
        return ServerConnection(self)

    def connection_closed(self, connection: ServerConnection) -> None:
        if not self.connections:
            self._all_closed.set()

    async def start(  # type: ignore[override]  # greet listens on a host/port or a socket
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        sock: socket.socket | None = None,
        ssl: ssl_module.SSLContext | None = None,
        reuse_port: bool | None = None,
        backlog: int = BACKLOG,
    ) -> None:
        if self.listener is not None:
            raise RuntimeError("Server is already started")
        loop = asyncio.get_running_loop()
        handshake = self.transport_config.handshake_timeout if ssl else None
        if sock is not None:
            self.listener = await loop.create_server(
                self.connection_factory,
                sock=sock,
                ssl=ssl,
                backlog=backlog,
                ssl_handshake_timeout=handshake,
            )
        else:
            self.listener = await loop.create_server(
                self.connection_factory,
                host,
                port or 0,
                ssl=ssl,
                backlog=backlog,
                reuse_port=reuse_port,
                ssl_handshake_timeout=handshake,
            )

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) listened on."""
        if self.listener is None:
            raise RuntimeError("Server is not started")
        host, port = self.listener.sockets[0].getsockname()[:2]
        return host, port

    def in_flight(self) -> set[asyncio.Task[None]]:
        """The handler tasks still running."""
        return {
            call.task
            for connection in list(self.connections)
            for call in list(connection.calls.values())
            if call.task is not None and not call.task.done()
        }

    def calls(self) -> list[ServerCall]:
        return [call for connection in self.connections for call in connection.calls.values()]

    def stop_accepting(self) -> None:
        if self.listener is not None:
            self.listener.close()

    def hurry(self) -> None:
        """End the grace period now (a second stop signal): what is in flight gets ended."""
        if not self._hurry.is_set():
            log.info("told again to stop: not waiting for the calls in flight")
            self._hurry.set()

    async def shutdown(self, grace: float) -> None:
        """Drain (see the module docstring): returns when every connection is closed."""
        self.stop_accepting()
        connections = list(self.connections)
        for connection in connections:
            connection.begin_drain()
        log.info(
            "draining: stopped accepting connections; GOAWAY sent on %d; %d calls in flight "
            "get up to %gs",
            len(connections),
            len(self.in_flight()),
            grace,
        )
        left = await self._wait_for_calls(grace)
        if left:
            log.info("grace period over: cancelling %d calls", len(left))
        for connection in list(self.connections):
            connection.final_goaway_now()
            connection.end_calls("server stopping")
        await self._wait_for_calls(1.0)  # the ended calls send their UNAVAILABLE trailers
        for connection in list(self.connections):
            connection.close("server stopped")
        if self.listener is not None:
            await self.listener.wait_closed()
        try:
            await asyncio.wait_for(self._all_closed.wait(), 5.0)
        except asyncio.TimeoutError:
            for connection in list(self.connections):
                connection.abort()

    async def _wait_for_calls(self, grace: float) -> set[asyncio.Task[None]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        hurried = loop.create_task(self._hurry.wait())
        try:
            pending = self.in_flight()
            while pending and not hurried.done():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await asyncio.wait(
                    {*pending, hurried}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                pending = self.in_flight()  # also calls that raced the first GOAWAY
        finally:
            hurried.cancel()
        return pending

    def close(self) -> None:
        """grpclib's close: stop accepting and end every call now (no grace)."""
        if self.listener is None:
            raise RuntimeError("Server is not started")
        self.stop_accepting()
        for connection in list(self.connections):
            connection.final_goaway_now()
            connection.end_calls("server closed")
            connection.close("server closed")

    async def wait_closed(self) -> None:
        if self.listener is None:
            raise RuntimeError("Server is not started")
        await self.listener.wait_closed()
        tasks = self.in_flight()
        if tasks:
            await asyncio.wait(tasks)
        await self._all_closed.wait()
