"""HTTP/1.1 framing on the gRPC port (greet.transport._http1 on httptools): HTTP/1.0 clients,
chunked request bodies, requests split byte by byte, a bad request pipelined behind good ones,
HEAD. Raw bytes on a real socket; responses read with h11's client side, or whole up to the
server's close. Run on both HTTP/2 engines (GREET_HTTP2_ENGINE)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from dataclasses import replace

import h11
from loopback import StartServer

from greet.server import GreetServer
from greet.transport import TransportConfig

SAY_HELLO = "/greet_service.GreetService/SayHello"
STREAM = "/greet_service.GreetService/SayHelloServerStreaming"
TIMEOUT = 20.0


def request(
    path: str,
    body: bytes,
    content_type: str,
    *,
    version: str = "1.1",
    method: str = "POST",
    extra: str = "",
) -> bytes:
    head = (
        f"{method} {path} HTTP/{version}\r\nHost: greet\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


def envelope(body: bytes) -> bytes:
    return struct.pack(">BI", 0, len(body)) + body


async def until_closed(reader: asyncio.StreamReader) -> bytes:
    data = b""
    while chunk := await asyncio.wait_for(reader.read(65536), TIMEOUT):
        data += chunk
    return data


async def responses(
    reader: asyncio.StreamReader, count: int, head: bool = False
) -> list[tuple[h11.Response, bytes]]:
    """`count` responses, read by h11 (told a request went out for each)."""
    parser = h11.Connection(h11.CLIENT)
    out: list[tuple[h11.Response, bytes]] = []
    while len(out) < count:
        if parser.our_state is h11.DONE and parser.their_state is h11.DONE:
            parser.start_next_cycle()
        if parser.our_state is h11.IDLE:
            method = "HEAD" if head else "POST"
            parser.send(h11.Request(method=method, target="/", headers=[("host", "x")]))
            parser.send(h11.EndOfMessage())
        response: h11.Response | None = None
        body = b""
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA:
                parser.receive_data(await asyncio.wait_for(reader.read(65536), TIMEOUT))
                continue
            if isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                assert response is not None
                out.append((response, body))
                break
            else:
                raise AssertionError(f"unexpected {event!r}")
    return out


async def connect(server: GreetServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(*server.address)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def test_http10_stream_is_delimited_by_the_close(server: GreetServer) -> None:
    reader, writer = await connect(server)
    body = envelope(json.dumps({"names": ["A", "B"]}).encode())
    writer.write(request(STREAM, body, "application/connect+json", version="1.0"))
    raw = await until_closed(reader)
    await close(writer)
    head, _, payload = raw.partition(b"\r\n\r\n")
    lines = head.decode().lower().split("\r\n")
    assert lines[0].startswith("http/1.1 200")
    assert "transfer-encoding: chunked" not in lines
    assert "connection: close" in lines
    messages = []
    while payload:
        flags, length = struct.unpack(">BI", payload[:5])
        messages.append((flags, payload[5 : 5 + length]))
        payload = payload[5 + length :]
    assert [json.loads(data)["message"] for _, data in messages[:-1]] == ["Hello A", "Hello B"]
    assert messages[-1][0] == 0x02


async def test_http10_keep_alive_serves_a_second_request(server: GreetServer) -> None:
    reader, writer = await connect(server)
    one = request(
        SAY_HELLO, b"{}", "application/json", version="1.0", extra="Connection: keep-alive\r\n"
    )
    writer.write(one)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-length: 19" in head.lower()
    assert await asyncio.wait_for(reader.readexactly(19), TIMEOUT) == b'{"message":"Hello"}'
    writer.write(one)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert head.startswith(b"HTTP/1.1 200")
    await close(writer)


async def test_chunked_request_body(server: GreetServer) -> None:
    reader, writer = await connect(server)
    writer.write(
        f"POST {SAY_HELLO} HTTP/1.1\r\nHost: greet\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n1\r\n}\r\n0\r\n\r\n".encode()
    )
    [(response, body)] = await responses(reader, 1)
    assert response.status_code == 200
    assert json.loads(body) == {"message": "Hello"}
    await close(writer)


async def test_requests_split_byte_by_byte_and_pipelined(server: GreetServer) -> None:
    reader, writer = await connect(server)
    raw = request(SAY_HELLO, b"{}", "application/json") * 3
    for index in range(len(raw)):
        writer.write(raw[index : index + 1])
        await writer.drain()
    got = await responses(reader, 3)
    assert [json.loads(body) for _, body in got] == [{"message": "Hello"}] * 3
    await close(writer)


async def test_many_pipelined_requests_are_all_answered_in_order(server: GreetServer) -> None:
    reader, writer = await connect(server)
    names = [f"n{index}" for index in range(300)]
    writer.write(
        b"".join(
            request(
                STREAM, envelope(json.dumps({"names": [name]}).encode()), "application/connect+json"
            )
            for name in names
        )
    )
    got = await responses(reader, len(names))
    replies = [json.loads(body[5 : 5 + struct.unpack(">I", body[1:5])[0]]) for _, body in got]
    assert [reply["message"] for reply in replies] == [f"Hello {name}" for name in names]
    await close(writer)


async def test_pipelining_past_the_read_ahead_bound_is_answered_in_order(
    start_server: StartServer,
) -> None:
    # read ahead: one header block and one message's worth (here about 2.5 KiB), then the
    # socket waits; 400 requests of about 170 bytes go well past it
    transport = replace(TransportConfig(), max_message_bytes=256, max_header_list_bytes=2048)
    server = await start_server(transport=transport)
    reader, writer = await connect(server)
    names = [f"n{index}" for index in range(400)]
    body = b"".join(
        request(
            STREAM, envelope(json.dumps({"names": [name]}).encode()), "application/connect+json"
        )
        for name in names
    )
    writer.write(body)
    got = await responses(reader, len(names))
    replies = [json.loads(body[5 : 5 + struct.unpack(">I", body[1:5])[0]]) for _, body in got]
    assert [reply["message"] for reply in replies] == [f"Hello {name}" for name in names]
    await close(writer)


async def test_garbage_pipelined_behind_good_requests_is_answered_after_them(
    server: GreetServer,
) -> None:
    reader, writer = await connect(server)
    good = request(SAY_HELLO, b"{}", "application/json")
    writer.write(good + good + b"POST /x HTTP/1.1\r\nno colon in this header\r\n\r\n")
    raw = await until_closed(reader)
    await close(writer)
    assert raw.count(b'{"message":"Hello"}') == 2
    refusal = raw.find(b"HTTP/1.1 400 ")
    assert refusal > raw.rfind(b'{"message":"Hello"}')
    assert b"connection: close" in raw[refusal:].lower()


async def test_head_gets_the_status_without_a_body(server: GreetServer) -> None:
    reader, writer = await connect(server)
    writer.write(request(SAY_HELLO, b"", "application/json", method="HEAD"))
    [(response, body)] = await responses(reader, 1, head=True)
    assert response.status_code == 405
    assert body == b""
    await close(writer)


async def test_connection_close_request_ends_the_connection_after_its_answer(
    server: GreetServer,
) -> None:
    reader, writer = await connect(server)
    writer.write(request(SAY_HELLO, b"{}", "application/json", extra="Connection: close\r\n"))
    raw = await until_closed(reader)
    await close(writer)
    assert raw.startswith(b"HTTP/1.1 200")
    assert b"connection: close" in raw.lower()
    assert raw.endswith(b'{"message":"Hello"}')
