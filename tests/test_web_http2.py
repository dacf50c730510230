"""Connect and gRPC-Web over HTTP/2 (h2c) on the gRPC port, with the raw HTTP/2 peer
(tests/support/raw_http2.py): unary, server, client and bidi streaming, gRPC-Web, CORS
preflights. Run on both engines (GREET_HTTP2_ENGINE)."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field, replace

from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame, PingFrame, RstStreamFrame
from loopback import StartServer
from raw_http2 import RawPeer, data, window_update

from greet.server import GreetServer
from greet.transport import TransportConfig
from greet_service import HelloResponse, NamesList

SERVICE = "/greet_service.GreetService/"


@dataclass
class WebReply:
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    reset: int | None = None


def envelope(body: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(body)) + body


def frames(body: bytes) -> list[tuple[int, bytes]]:
    out = []
    while body:
        flags, length = struct.unpack(">BI", body[:5])
        out.append((flags, body[5 : 5 + length]))
        body = body[5 + length :]
    return out


def head(
    method: str, content_type: str, extra: list[tuple[str, str]] | None = None
) -> list[tuple[str, str]]:
    return [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", SERVICE + method),
        (":authority", "greet"),
        ("content-type", content_type),
        *(extra or []),
    ]


async def reply(peer: RawPeer, stream_id: int) -> WebReply:
    """One stream's web answer: headers, then DATA until END_STREAM (no trailers)."""
    out = WebReply()
    block = b""
    while True:
        frame = await peer.next_frame(20)
        assert frame is not None, "connection closed"
        if isinstance(frame, PingFrame) and "ACK" not in frame.flags:
            peer.write(PingFrame(0, opaque_data=frame.opaque_data, flags=["ACK"]).serialize())
            continue
        if frame.stream_id != stream_id:
            continue
        if isinstance(frame, (HeadersFrame, ContinuationFrame)):
            block += frame.data
            if "END_HEADERS" in frame.flags:
                out.headers = {
                    k.decode(): v.decode() for k, v in peer.decoder.decode(block, raw=True)
                }
                block = b""
            if "END_STREAM" in frame.flags:
                return out
        elif isinstance(frame, DataFrame):
            out.body += frame.data
            if frame.data:
                peer.write(window_update(stream_id, len(frame.data)))
                peer.write(window_update(0, len(frame.data)))
            if "END_STREAM" in frame.flags:
                return out
        elif isinstance(frame, RstStreamFrame):
            out.reset = frame.error_code
            return out


async def call(
    server: GreetServer,
    method: str,
    content_type: str,
    bodies: list[bytes],
    extra: list[tuple[str, str]] | None = None,
) -> WebReply:
    peer = await RawPeer.connect(server.target)
    try:
        stream_id = peer.new_stream()
        peer.write(
            peer.headers(stream_id, head(method, content_type, extra), end_stream=not bodies)
        )
        for index, body in enumerate(bodies):
            peer.write(data(stream_id, body, end_stream=index == len(bodies) - 1))
        return await reply(peer, stream_id)
    finally:
        await peer.close()


async def test_connect_json_unary_over_h2(server: GreetServer) -> None:
    got = await call(server, "SayHello", "application/json", [b"{}"])
    assert got.headers[":status"] == "200"
    assert json.loads(got.body) == {"message": "Hello"}
    empty = await call(server, "SayHello", "application/json", [])
    assert json.loads(empty.body) == {"message": "Hello"}


async def test_connect_error_status_over_h2(server: GreetServer) -> None:
    got = await call(server, "SayHello", "application/json", [b"{nope"])
    assert got.headers[":status"] == "400"
    assert json.loads(got.body)["code"] == "invalid_argument"


async def test_connect_server_stream_over_h2(server: GreetServer) -> None:
    body = envelope(bytes(NamesList(names=["Ann", "Bob"])))
    got = await call(server, "SayHelloServerStreaming", "application/connect+proto", [body])
    parts = frames(got.body)
    assert [HelloResponse().parse(p).message for _, p in parts[:-1]] == ["Hello Ann", "Hello Bob"]
    assert parts[-1] == (0x02, b"{}")


async def test_connect_client_streaming_over_h2(server: GreetServer) -> None:
    bodies = [envelope(json.dumps({"name": name}).encode()) for name in ("Ann", "Bob")]
    got = await call(server, "SayHelloClientStreaming", "application/connect+json", bodies)
    parts = frames(got.body)
    assert json.loads(parts[0][1]) == {"messages": ["Hello Ann", "Hello Bob"]}
    assert parts[-1] == (0x02, b"{}")


async def test_connect_bidi_over_h2_replies_as_requests_arrive(server: GreetServer) -> None:
    peer = await RawPeer.connect(server.target)
    stream_id = peer.new_stream()
    peer.write(
        peer.headers(stream_id, head("SayHelloBidirectionalStreaming", "application/connect+json"))
    )
    peer.write(data(stream_id, envelope(b'{"name": "Ann"}')))
    first = b""
    while len(first) < 5 or len(first) < 5 + struct.unpack(">I", first[1:5])[0]:
        frame = await peer.next_frame(20)
        assert frame is not None
        if isinstance(frame, DataFrame) and frame.stream_id == stream_id:
            first += frame.data
    assert json.loads(frames(first)[0][1]) == {"message": "Hello Ann"}  # before the request ends
    peer.write(data(stream_id, envelope(b'{"name": "Bob"}'), end_stream=True))
    rest = await reply(peer, stream_id)
    parts = frames(rest.body)
    assert json.loads(parts[0][1]) == {"message": "Hello Bob"}
    assert parts[-1][0] == 0x02
    await peer.close()


async def test_grpc_web_over_h2(server: GreetServer) -> None:
    got = await call(server, "SayHello", "application/grpc-web+proto", [envelope(b"")])
    (_f1, message), (f2, trailers) = frames(got.body)
    assert HelloResponse().parse(message).message == "Hello"
    assert (f2, trailers) == (0x80, b"grpc-status: 0\r\n")
    refused = await call(server, "SayHelloClientStreaming", "application/grpc-web", [envelope(b"")])
    assert refused.headers["grpc-status"] == "12"


async def test_cors_preflight_over_h2(server: GreetServer) -> None:
    peer = await RawPeer.connect(server.target)
    stream_id = peer.new_stream()
    headers = [
        (":method", "OPTIONS"),
        (":scheme", "http"),
        (":path", SERVICE + "SayHello"),
        (":authority", "greet"),
        ("origin", "http://page.example"),
        ("access-control-request-method", "POST"),
    ]
    peer.write(peer.headers(stream_id, headers, end_stream=True))
    got = await reply(peer, stream_id)
    assert "access-control-allow-origin" not in got.headers  # no --cors-allow-origin
    await peer.close()


async def test_grpc_still_answers_wrong_content_type_the_grpc_way(server: GreetServer) -> None:
    peer = await RawPeer.connect(server.target)
    stream_id = peer.request("SayHello", b"")
    answer = await peer.response(stream_id)
    assert answer.grpc_status == 0
    await peer.close()


async def test_get_over_h2_gets_405_without_connection_headers(server: GreetServer) -> None:
    peer = await RawPeer.connect(server.target)
    stream_id = peer.new_stream()
    request = [(k, "GET" if k == ":method" else v) for k, v in head("SayHello", "application/json")]
    peer.write(peer.headers(stream_id, request, end_stream=True))
    got = await reply(peer, stream_id)
    assert got.headers[":status"] == "405"
    assert "connection" not in got.headers
    follow = peer.new_stream()
    peer.write(peer.headers(follow, head("SayHello", "application/json"), end_stream=True))
    assert json.loads((await reply(peer, follow)).body) == {"message": "Hello"}
    await peer.close()


async def test_oversized_connect_body_over_h2(start_server: StartServer) -> None:
    server = await start_server(transport=replace(TransportConfig(), max_message_bytes=1024))
    got = await call(server, "SayHello", "application/json", [b"{" + b" " * 2000 + b"}"])
    assert got.headers[":status"] == "429"
    assert json.loads(got.body)["code"] == "resource_exhausted"
    assert json.loads((await call(server, "SayHello", "application/json", [b"{}"])).body) == {
        "message": "Hello"
    }
