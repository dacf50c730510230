"""greet's real transport in memory, for tests: what `grpclib.testing.ChannelFor` is for grpclib.

    async with ChannelFor([GreetService()]) as channel:      # a greet.transport.Channel
        reply = await GreetServiceStub(channel).say_hello(NoParam())

    async with MemoryServer(TransportServer([GreetService()])) as server:
        async with GreetClient(server.target, connector=server.connect) as client:
            reply = await client.say_hello()

Nothing is replaced but the socket: the client is a `Channel` that connects through its normal
path (its `connector` says how), its connection a `ClientConnection`; the server is a real
`TransportServer` whose `ServerConnection`s are made by its own `connection_factory`, as its
listening socket would make them; both run the configured HTTP/2 engine (GREET_HTTP2_ENGINE, or
`TransportConfig.engine` and `ChannelConfig.engine`), limits, interceptors, keepalive and drain.
Between the two is a pair of `MemoryTransport`s: what one end writes reaches the other's
`data_received` in a later callback of the event loop (`loop.call_soon`), in order, as bytes
from a socket would; `close()` reaches the other end as an end of file and then ends both
(`connection_lost` on each), `write_eof()` is a half close, `abort()` gives the other end a
ConnectionResetError. No socket is opened and no port is taken: tests on it are `unit` tests.

What it does not model: TLS (`get_extra_info("ssl_object")` is None), partial reads (each write
arrives whole), and a peer that stops reading (the bytes written and not yet delivered are the
write buffer; `pause_writing` comes above its high mark, as from a socket).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Collection, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from greet.transport._client import Channel, ClientConnection
from greet.transport._server import TransportServer
from greet.transport._server_call import Interceptor
from greet.transport.config import ChannelConfig, TransportConfig

if TYPE_CHECKING:
    from grpclib._typing import IServable
    from grpclib.encoding.base import CodecBase, StatusDetailsCodecBase

__all__ = ["ChannelFor", "MemoryServer", "MemoryTransport", "memory_pipe"]

HOST = "in-memory"
"""The host name of in-memory servers (`in-memory:1`) and of their clients' ends."""

_ports = itertools.count(1)


class MemoryTransport(asyncio.Transport):
    """One end of an in-memory connection (made in pairs by `memory_pipe`)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol: asyncio.Protocol,
        *,
        sockname: tuple[str, int],
        peername: tuple[str, int],
    ) -> None:
        super().__init__({"sockname": sockname, "peername": peername, "socket": None})
        self._loop = loop
        self._protocol = protocol
        self._peer: MemoryTransport | None = None
        self._closing = False  # close() or abort(): nothing more is written or read
        self._aborted = False  # what is still on its way is dropped
        self._eof = False  # write_eof(): nothing more is written
        self._lost = False  # connection_lost was called
        self._buffered = 0  # bytes written and not yet delivered
        self._high = 64 * 1024
        self._low = self._high // 4
        self._paused = False

    # -- asyncio.Transport -------------------------------------------------------------------

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._protocol = protocol

    def is_closing(self) -> bool:
        return self._closing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._closing or not data:
            return
        chunk = bytes(data)
        self._buffered += len(chunk)
        self._loop.call_soon(self._deliver, chunk)
        if not self._paused and self._buffered > self._high:
            self._paused = True
            self._protocol.pause_writing()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._eof or self._closing:
            return
        self._eof = True
        self._loop.call_soon(self._deliver_eof)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._loop.call_soon(self._disconnect, None)  # after what is on its way

    def abort(self) -> None:
        if self._lost:
            return
        self._closing = self._aborted = True
        self._loop.call_soon(self._disconnect, ConnectionResetError("the peer aborted"))

    def get_write_buffer_size(self) -> int:
        return self._buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low

    # -- between the two ends ----------------------------------------------------------------

    def _deliver(self, chunk: bytes) -> None:
        self._buffered -= len(chunk)
        peer = self._peer
        if not self._aborted and peer is not None and not peer._closing:
            peer._protocol.data_received(chunk)
        if self._paused and self._buffered <= self._low and not self._lost:
            self._paused = False
            self._protocol.resume_writing()

    def _deliver_eof(self) -> None:
        peer = self._peer
        if self._aborted or peer is None or peer._closing:
            return
        if not peer._protocol.eof_received():
            peer.close()

    def _disconnect(self, peer_error: Exception | None) -> None:
        """Both ends are done: each protocol hears `connection_lost` once; after a close (not
        an abort) the other end first hears the end of file, unless `write_eof` told it so."""
        self._connection_lost(None)
        peer = self._peer
        if peer is None or peer._lost:
            return
        if peer_error is None and not self._eof and not peer._closing:
            peer._protocol.eof_received()  # the connection is gone either way: no half close
        peer._closing = True
        peer._connection_lost(peer_error)

    def _connection_lost(self, error: Exception | None) -> None:
        if not self._lost:
            self._lost = True
            self._protocol.connection_lost(error)


def memory_pipe(
    client: asyncio.Protocol,
    server: asyncio.Protocol,
    *,
    client_address: tuple[str, int],
    server_address: tuple[str, int],
) -> tuple[MemoryTransport, MemoryTransport]:
    """Connect two protocols in memory: the server's `connection_made` first (as accepting
    comes before the client's first write), then the client's. Returns (client end, server
    end)."""
    loop = asyncio.get_running_loop()
    client_end = MemoryTransport(loop, client, sockname=client_address, peername=server_address)
    server_end = MemoryTransport(loop, server, sockname=server_address, peername=client_address)
    client_end._peer, server_end._peer = server_end, client_end
    server.connection_made(server_end)
    client.connection_made(client_end)
    return client_end, server_end


class MemoryServer:
    """A TransportServer that takes its connections in memory instead of from a socket.

    `connect` is a `greet.transport.Connector`: give it to a `Channel` or a `GreetClient`
    (`connector=server.connect`), or take `channel()`. `shutdown(grace)` is the server's graceful
    drain; afterwards, connecting is refused (ConnectionRefusedError) as by a closed port. As an
    async context manager it shuts down with no grace on exit.
    """

    def __init__(self, server: TransportServer) -> None:
        self.server = server
        self.address = (HOST, next(_ports))
        self._clients = itertools.count(1)
        self._stopped = False

    @property
    def target(self) -> str:
        """`in-memory:N`: the address clients are given (no socket has it)."""
        return f"{self.address[0]}:{self.address[1]}"

    async def connect(self, factory: Callable[[], ClientConnection]) -> ClientConnection:
        """A new connection to the server, in memory (the Connector)."""
        if self._stopped:
            raise ConnectionRefusedError(f"{self.target} is shut down")
        client = factory()
        client_address = (f"{HOST}-client", next(self._clients))
        memory_pipe(
            client,
            self.server.connection_factory(),
            client_address=client_address,
            server_address=self.address,
        )
        return client

    def channel(
        self,
        *,
        config: ChannelConfig | None = None,
        codec: CodecBase | None = None,
        status_details_codec: StatusDetailsCodecBase | None = None,
    ) -> Channel:
        """A Channel to this server (close it when done)."""
        host, port = self.address
        return Channel(
            host,
            port,
            config=config,
            codec=codec,
            status_details_codec=status_details_codec,
            connector=self.connect,
        )

    async def shutdown(self, grace: float = 0.0) -> None:
        """Refuse new connections, drain the open ones (TransportServer.shutdown)."""
        self._stopped = True
        await self.server.shutdown(grace)

    async def __aenter__(self) -> MemoryServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()


class ChannelFor:
    """`async with ChannelFor(services) as channel:` a Channel to a TransportServer of
    `services` (generated service bases, grpclib's health and reflection), in memory.

    `config`, `interceptors`, `codec` and `status_details_codec` are the server's
    (TransportServer's); `channel_config` the client's (ChannelConfig). On exit the channel
    closes and the server shuts down. `server` is the MemoryServer while the block runs.
    """

    def __init__(
        self,
        services: Collection[IServable],
        *,
        config: TransportConfig | None = None,
        interceptors: Sequence[Interceptor] = (),
        channel_config: ChannelConfig | None = None,
        codec: CodecBase | None = None,
        status_details_codec: StatusDetailsCodecBase | None = None,
    ) -> None:
        self._services = services
        self._config = config
        self._interceptors = interceptors
        self._channel_config = channel_config
        self._codec = codec
        self._status_details_codec = status_details_codec
        self._server: MemoryServer | None = None
        self._channel: Channel | None = None

    @property
    def server(self) -> MemoryServer:
        if self._server is None:
            raise RuntimeError("ChannelFor's server runs inside its `async with` block")
        return self._server

    async def __aenter__(self) -> Channel:
        transport_server = TransportServer(
            self._services,
            config=self._config,
            interceptors=self._interceptors,
            codec=self._codec,
            status_details_codec=self._status_details_codec,
        )
        self._server = MemoryServer(transport_server)
        self._channel = self._server.channel(
            config=self._channel_config,
            codec=self._codec,
            status_details_codec=self._status_details_codec,
        )
        return self._channel

    async def __aexit__(self, *exc_info: Any) -> None:
        server, channel = self._server, self._channel
        self._server = self._channel = None
        if channel is not None:
            channel.close()
        if server is not None:
            await server.shutdown()
