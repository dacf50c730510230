"""greet's HTTP/2 transport: grpclib's servicer, stub and stream APIs on a layer greet owns.

engine.py             the HTTP/2 engine seam (Http2Engine, EngineEvents) and its choice
engine_nghttp2.py     libnghttp2 through ngh2 (the default where its wheel installs)
engine_h2.py          pure-Python h2 (the fallback)
h2_connection.py      GreetH2Connection: h2's connection with greet's settings and GOAWAY
frames.py             the few raw frames greet writes itself
headers.py            RFC 9113 request header checks (for the h2 engine)
request_head.py       a request's headers read once: method route, deadline, metadata
receiving.py          receive limits: gRPC message framing, size limit first
compression.py        gzip and deflate messages, decompression bounded by the size limit
policy.py             abuse limits: RST_STREAM and SETTINGS token buckets, ping strikes
lifecycle.py          handshake timeout, keepalive, idleness, maximum age
writes.py             write batching: one socket write per event-loop round
events.py             which grpclib server events have listeners
responses.py          the header blocks a server sends: headers, trailers, rejections
server_stream.py      ServerCall (a grpclib.server.Stream)
interception.py       server interceptors: the chain around a handler
call_runner.py        the task that serves a call: handler, interceptors, trailers
eager.py              starting a handler's task eagerly (no event-loop round first)
server_output.py      what a server connection writes: backpressure, trailers, closing
server_connection.py  one server connection: calls, limits, drain
server.py             TransportServer (a grpclib.server.Server): connections, shutdown
client_stream.py      ClientStream (a grpclib.client.Stream)
client_signals.py     what a client stream is told by its connection, and the waits it ends
client_heads.py       a client call's request headers; quick reads of the usual replies
client_connection.py  one client connection: streams, GOAWAY, keepalive, handshake
channel.py            Channel (a grpclib.client.Channel) on the engine of choice
errors.py             how a client stream ends badly, as types
config.py             TransportConfig, KeepalivePolicy, ChannelConfig, ClientKeepalive
"""

from greet.transport.channel import Channel
from greet.transport.config import ChannelConfig, ClientKeepalive, KeepalivePolicy, TransportConfig
from greet.transport.engine import (
    ENGINE_NAMES,
    EngineName,
    default_engine_name,
    describe_engine,
)
from greet.transport.server import TransportServer

__all__ = [
    "ENGINE_NAMES",
    "Channel",
    "ChannelConfig",
    "ClientKeepalive",
    "EngineName",
    "KeepalivePolicy",
    "TransportConfig",
    "TransportServer",
    "default_engine_name",
    "describe_engine",
]
