"""greet's HTTP/2 transport: grpclib's servicer, stub and stream APIs on a layer greet owns.

This module is the package's public face; the modules behind it are private, one concept each:

    _engine.py          the HTTP/2 engine seam (Http2Engine, EngineEvents) and the raw frames
    _engines/           the two engines: nghttp2 (libnghttp2 through ngh2) and h2 (pure Python)
    _connection.py      the connection core both roles share: reads, batched writes,
                        backpressure, acknowledgements, keepalive, abuse limits, closing
    _wire.py            gRPC on the wire: message framing, compression, header blocks
    _server.py          TransportServer and the server role of a connection
    _server_call.py     ServerCall (what handlers get as `stream`), its interceptor chain
    _client.py          Channel and the client role of a connection
    _client_stream.py   ClientStream and how a client call ends badly, as types
    config.py           TransportConfig, KeepalivePolicy, ChannelConfig, ClientKeepalive
    testing.py          (public) the real transport in memory: ChannelFor, MemoryServer
"""

from greet.transport._client import Channel, Connector
from greet.transport._client_stream import (
    ClientStream,
    ConnectionEnded,
    ConnectionLost,
    DeadlineExceeded,
    HandshakeFailed,
    NotProcessed,
    StreamRefused,
    StreamReset,
)
from greet.transport._engine import (
    ENGINE_NAMES,
    EngineName,
    ErrorCode,
    default_engine_name,
    describe_engine,
)
from greet.transport._server import TransportServer
from greet.transport._server_call import Interceptor, Proceed, ServerCall
from greet.transport.config import ChannelConfig, ClientKeepalive, KeepalivePolicy, TransportConfig

__all__ = [
    "ENGINE_NAMES",
    "Channel",
    "ChannelConfig",
    "ClientKeepalive",
    "ClientStream",
    "ConnectionEnded",
    "ConnectionLost",
    "Connector",
    "DeadlineExceeded",
    "EngineName",
    "ErrorCode",
    "HandshakeFailed",
    "Interceptor",
    "KeepalivePolicy",
    "NotProcessed",
    "Proceed",
    "ServerCall",
    "StreamRefused",
    "StreamReset",
    "TransportConfig",
    "TransportServer",
    "default_engine_name",
    "describe_engine",
]
