"""Channel: a grpclib Channel whose connection runs on greet's transport.

    channel = Channel("127.0.0.1", 8080)                  # engine: GREET_HTTP2_ENGINE or default
    stub = GreetServiceStub(channel)                      # betterproto's generated stub works
    reply = await stub.say_hello(NoParam())
    channel.close()

It is a `grpclib.client.Channel` (a subclass), so everything built on grpclib's Channel
(generated stubs, `channel.request(...)`) runs on it; what it adds is the engine choice, client
keepalive, a handshake timeout, typed stream errors (greet.transport.errors) and GOAWAY handling
that lets calls in flight finish (greet.transport.client_connection). One Channel is one
connection to one address at a time; it reconnects for the next call once a connection has gone.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from typing import Any, cast

from grpclib.client import Channel as GrpclibChannel
from grpclib.const import Cardinality
from grpclib.encoding.base import CodecBase, StatusDetailsCodecBase
from grpclib.encoding.proto import ProtoStatusDetailsCodec
from grpclib.metadata import Deadline, _Metadata, _MetadataLike
from grpclib.protocol import Peer
from multidict import MultiDict

from greet._codec import StrictProtoCodec
from greet.addresses import format_address
from greet.transport.client_connection import ClientConnection
from greet.transport.client_stream import ClientStream
from greet.transport.config import ChannelConfig
from greet.transport.events import Listening

__all__ = ["Channel"]


class Channel(GrpclibChannel):
    """One client connection to `host:port` (see the module docstring).

    `ssl`: a client SSLContext for TLS; `server_hostname`: the name to check the server's
    certificate against when it is not `host` (a resolved address, say).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 50051,
        *,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
        config: ChannelConfig | None = None,
        codec: CodecBase | None = None,
        status_details_codec: StatusDetailsCodecBase | None = None,
    ) -> None:
        codec = codec or StrictProtoCodec()
        status_details_codec = status_details_codec or ProtoStatusDetailsCodec()
        super().__init__(
            host, port, ssl=ssl, codec=codec, status_details_codec=status_details_codec
        )
        self.transport_config = config or ChannelConfig()
        self.host = host
        self.port = port
        self.tls = ssl
        self.server_hostname = server_hostname
        self.scheme = b"https" if ssl is not None else b"http"
        self.authority = format_address(host, port).encode("ascii")
        self.codec = codec
        self.status_details_codec: StatusDetailsCodecBase | None = status_details_codec
        self.listening = Listening(self.__dispatch__)
        self.connection: ClientConnection | None = None
        self._connecting: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"Channel({self.host!r}, {self.port!r}, engine={self.transport_config.engine!r})"

    @property
    def target(self) -> str:
        return format_address(self.host, self.port)

    async def __connect__(self) -> ClientConnection:  # type: ignore[override]
        """The open connection, or a new one (with its HTTP/2 handshake done)."""
        connection = self.connection
        if connection is not None and connection.usable:
            return connection
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            connection = self.connection
            if connection is not None and connection.usable:
                return connection
            loop = asyncio.get_running_loop()
            hostname = None
            if self.tls is not None:
                hostname = self.server_hostname or self.host
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: ClientConnection(
                        self.transport_config, tls=self.tls is not None, target=self.target
                    ),
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=hostname,
                ),
                self.transport_config.handshake_timeout,
            )
            await protocol.handshake()
            self.connection = protocol
            return protocol

    def peer_of(self, connection: ClientConnection) -> Peer:
        assert connection._transport is not None
        return Peer(connection._transport)

    def request(
        self,
        name: str,
        cardinality: Cardinality,
        request_type: type[Any],
        reply_type: type[Any],
        *,
        timeout: float | None = None,
        deadline: Deadline | None = None,
        metadata: _MetadataLike | None = None,
    ) -> ClientStream:
        if timeout is not None and deadline is None:
            deadline = Deadline.from_timeout(timeout)
        elif timeout is not None and deadline is not None:
            deadline = min(Deadline.from_timeout(timeout), deadline)
        return ClientStream(
            self,
            name,
            cast(_Metadata, MultiDict(metadata or ())),
            cardinality,
            request_type,
            reply_type,
            codec=self.codec,
            status_details_codec=self.status_details_codec,
            dispatch=self.__dispatch__,
            deadline=deadline,
        )

    def close(self) -> None:
        """Close the connection (calls on it fail with ConnectionLost)."""
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.close()
