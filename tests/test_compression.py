"""Message compression (gzip, deflate) both ways, against grpcio, grpc-go and raw HTTP/2 peers,
on the engine the run uses: decompression with the limit on the decompressed size, UNIMPLEMENTED
for an encoding greet does not have, INTERNAL for a flag without an encoding or corrupt data,
compressed replies only when asked for, accepted and big enough."""

from __future__ import annotations

import asyncio
import gzip
import json
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from raw_http2 import RawPeer, data, request_headers
from server_process import ServerProcess

from greet.client import GreetClient
from greet.middleware import Proceed, ServerCall
from greet.server import GreetServer, ServerConfig
from greet.transport import ChannelConfig, TransportConfig
from greet_service import HelloRequest, HelloResponse, MessagesList, NamesList, NoParam

SERVICE = "/greet_service.GreetService/"
OK, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL = 0, 8, 12, 13
LONG = "x" * 3000  # a name whose greeting is over the server's 1,024-byte threshold


def compressed_message(body: bytes, encoding: str = "gzip") -> bytes:
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    return struct.pack(">?I", True, len(packed)) + packed


def replies(payload: bytes, encoding: str | None) -> list[tuple[bool, bytes]]:
    """(compressed?, decoded body) for each gRPC message in a response body."""
    out = []
    pos = 0
    while pos < len(payload):
        flag, length = struct.unpack(">?I", payload[pos : pos + 5])
        body = payload[pos + 5 : pos + 5 + length]
        if flag:
            assert encoding is not None
            body = gzip.decompress(body) if encoding == "gzip" else zlib.decompress(body)
        out.append((flag, body))
        pos += 5 + length
    return out


@pytest.fixture
async def server() -> AsyncIterator[ServerProcess]:
    async with ServerProcess(["--compression", "gzip"]) as process:
        yield process


# -- grpcio ------------------------------------------------------------------------------------


def grpcio_stubs(channel: grpc.aio.Channel) -> dict[str, Any]:
    return {
        "unary": channel.unary_unary(
            SERVICE + "SayHello",
            request_serializer=bytes,
            response_deserializer=HelloResponse.FromString,
        ),
        "server": channel.unary_stream(
            SERVICE + "SayHelloServerStreaming",
            request_serializer=bytes,
            response_deserializer=HelloResponse.FromString,
        ),
        "client": channel.stream_unary(
            SERVICE + "SayHelloClientStreaming",
            request_serializer=bytes,
            response_deserializer=MessagesList.FromString,
        ),
        "bidi": channel.stream_stream(
            SERVICE + "SayHelloBidirectionalStreaming",
            request_serializer=bytes,
            response_deserializer=HelloResponse.FromString,
        ),
    }


async def test_grpcio_gzip_client_in_all_four_call_kinds(server: ServerProcess) -> None:
    names = ["Ann", LONG, "Bob"]
    expected = [f"Hello {name}" for name in names]
    async with grpc.aio.insecure_channel(
        server.target, compression=grpc.Compression.Gzip
    ) as channel:
        stubs = grpcio_stubs(channel)
        assert (await stubs["unary"](NoParam(), timeout=10)).message == "Hello"
        streamed = stubs["server"](NamesList(names=names), timeout=10)
        assert [reply.message async for reply in streamed] == expected
        requests = [HelloRequest(name=name) for name in names]
        listed = await stubs["client"](iter(requests), timeout=10)
        assert listed.messages == expected
        echoed = stubs["bidi"](iter(requests), timeout=10)
        assert [reply.message async for reply in echoed] == expected


async def grpcio_gzip_server() -> tuple[grpc.aio.Server, str]:
    async def say_hello_server_streaming(request: bytes, context: Any) -> AsyncIterator[bytes]:
        for name in NamesList.FromString(request).names:
            yield bytes(HelloResponse(message=f"Hello {name}"))

    handler = grpc.method_handlers_generic_handler(
        "greet_service.GreetService",
        {
            "SayHelloServerStreaming": grpc.unary_stream_rpc_method_handler(
                say_hello_server_streaming
            )
        },
    )
    server = grpc.aio.server(compression=grpc.Compression.Gzip)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")  # grpcio binds and reports the port itself
    await server.start()
    return server, f"127.0.0.1:{port}"


async def test_greet_client_reads_a_grpcio_server_s_gzip_replies() -> None:
    server, target = await grpcio_gzip_server()
    try:
        async with GreetClient(target, timeout=10) as client:
            names = ["Ann", LONG]
            got = [reply.message async for reply in client.say_hello_server_streaming(names)]
        assert got == [f"Hello {name}" for name in names]
    finally:
        await server.stop(None)


# -- grpc-go -----------------------------------------------------------------------------------


async def run_go(binary: Path, target: str, *args: str) -> list[dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        str(binary), "-addr", target, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines()]


async def test_grpc_go_gzip_client_both_ways(server: ServerProcess, go_client_binary: Path) -> None:
    lines = await run_go(go_client_binary, server.target, "-compress", "gzip", "Ann", LONG)
    messages = [line["message"] for line in lines]
    assert messages == [
        "Hello",
        "Hello Ann", f"Hello {LONG}",  # server stream
        "Hello Ann", f"Hello {LONG}",  # client stream
        "Hello Ann", f"Hello {LONG}",  # bidi
    ]  # fmt: skip


# -- greet's client ----------------------------------------------------------------------------


class RequestEncodings:
    """A server interceptor noting each call's grpc-encoding (how its client compressed)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []

    async def intercept(self, call: ServerCall, proceed: Proceed) -> None:
        self.seen.append((call.method.rsplit("/", 1)[1], call.encoding))
        await proceed()


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_greet_client_compresses_its_requests(encoding: str) -> None:
    recorder = RequestEncodings()
    config = ServerConfig(port=0, transport=TransportConfig(compression=encoding))
    async with GreetServer(config, interceptors=[recorder]) as server:
        async with GreetClient(server.target, timeout=10, compression=encoding) as client:
            names = ["Ann", LONG]
            reply = await client.say_hello_client_streaming(names)
            assert reply.messages == [f"Hello {name}" for name in names]
            echoed = [r.message async for r in client.say_hello_bidirectional_streaming(names)]
            assert echoed == [f"Hello {name}" for name in names]
        async with GreetClient(server.target, timeout=10) as plain:
            assert (await plain.say_hello()).message == "Hello"
    assert recorder.seen == [
        ("SayHelloClientStreaming", encoding),
        ("SayHelloBidirectionalStreaming", encoding),
        ("SayHello", None),
    ]


def test_greet_client_compression_is_checked() -> None:
    with pytest.raises(ValueError, match="compression is one of deflate, gzip"):
        GreetClient("127.0.0.1:1", compression="brotli")
    with pytest.raises(ValueError, match="disagree"):
        GreetClient(
            "127.0.0.1:1", compression="gzip", transport=ChannelConfig(compression="deflate")
        )


# -- raw HTTP/2: what goes over the wire --------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_replies_are_compressed_when_accepted_and_big_enough(
    encoding: str, tmp_path: Path
) -> None:
    async with ServerProcess(["--compression", encoding]) as process:
        peer = await RawPeer.connect(process.target)
        stream_id = peer.request(
            "SayHelloServerStreaming",
            bytes(NamesList(names=["Ann", LONG])),
            extra=[("grpc-accept-encoding", f"{encoding},identity")],
        )
        response = await peer.response(stream_id)
        assert response.headers["grpc-encoding"] == encoding
        assert response.grpc_status == OK
        got = replies(response.data, encoding)
        assert [(flag, HelloResponse.FromString(body).message) for flag, body in got] == [
            (False, "Hello Ann"),  # under the threshold: sent as it is
            (True, f"Hello {LONG}"),
        ]
        plain = peer.request("SayHelloServerStreaming", bytes(NamesList(names=[LONG])))
        response = await peer.response(plain)  # this client accepts no compression
        assert "grpc-encoding" not in response.headers
        assert [flag for flag, _ in replies(response.data, None)] == [False]
        await peer.close()


async def raw_call(target: str, method: str, message: bytes, extra: list[tuple[str, str]]) -> Any:
    peer = await RawPeer.connect(target)
    stream_id = peer.new_stream()
    peer.write(peer.headers(stream_id, request_headers(method, extra=extra)))
    for start in range(0, len(message), 16384):  # frames within the default frame size
        last = start + 16384 >= len(message)
        peer.write(data(stream_id, message[start : start + 16384], end_stream=last))
    response = await peer.response(stream_id)
    after = peer.request("SayHello")  # the connection goes on serving
    assert (await peer.response(after)).grpc_status == OK
    await peer.close()
    return response


async def test_each_request_encoding_is_decoded(server: ServerProcess) -> None:
    for encoding in ("gzip", "deflate"):
        body = bytes(NamesList(names=["Ann"]))
        response = await raw_call(
            server.target,
            "SayHelloServerStreaming",
            compressed_message(body, encoding),
            [("grpc-encoding", encoding)],
        )
        assert response.grpc_status == OK
        assert HelloResponse.FromString(response.data[5:]).message == "Hello Ann"


async def test_an_unsupported_encoding_is_unimplemented_and_says_what_is(
    server: ServerProcess,
) -> None:
    response = await raw_call(
        server.target,
        "SayHelloServerStreaming",
        compressed_message(bytes(NamesList(names=["Ann"]))),
        [("grpc-encoding", "snappy")],
    )
    assert response.grpc_status == UNIMPLEMENTED
    accepted = {part.strip() for part in response.headers["grpc-accept-encoding"].split(",")}
    assert {"gzip", "deflate", "identity"} <= accepted


async def test_the_compressed_flag_without_grpc_encoding_is_internal(
    server: ServerProcess,
) -> None:
    response = await raw_call(
        server.target, "SayHelloServerStreaming", compressed_message(bytes(NamesList())), []
    )
    assert response.grpc_status == INTERNAL
    assert "without grpc-encoding" in response.grpc_message


async def test_corrupt_gzip_is_internal_never_unknown(server: ServerProcess) -> None:
    junk = struct.pack(">?I", True, 12) + b"not gzip at all"[:12]
    response = await raw_call(
        server.target, "SayHelloServerStreaming", junk, [("grpc-encoding", "gzip")]
    )
    assert response.grpc_status == INTERNAL
    truncated = compressed_message(bytes(NamesList(names=["Ann"] * 100)))[:-8]
    truncated = truncated[:1] + struct.pack(">I", len(truncated) - 5) + truncated[5:]
    response = await raw_call(
        server.target, "SayHelloServerStreaming", truncated, [("grpc-encoding", "gzip")]
    )
    assert response.grpc_status == INTERNAL


def bomb(size: int) -> bytes:
    """A gzip member of about size/1032 bytes that inflates to `size` zero bytes (and is cut
    short there). Built by hand in one dynamic-Huffman DEFLATE block (RFC 1951): literal 0, then
    copies of 258 bytes at distance 1, each copy two bits (length code 285 and distance code 0,
    one bit apiece), so four copies a zero byte."""
    bits: list[int] = []

    def put(value: int, count: int) -> None:  # header fields and extra bits: LSB first
        bits.extend((value >> i) & 1 for i in range(count))

    def code(value: int, count: int) -> None:  # Huffman codes: MSB first
        bits.extend((value >> i) & 1 for i in reversed(range(count)))

    put(1, 1)  # the last block
    put(2, 2)  # dynamic Huffman codes
    put(286 - 257, 5)  # 286 literal/length codes
    put(1 - 1, 5)  # one distance code
    put(19 - 4, 4)  # all 19 code-length code lengths follow
    lengths = {18: 1, 1: 2, 2: 2}  # the code-length alphabet used: 18 (zeros), lengths 1 and 2
    for symbol in (16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15):
        put(lengths.get(symbol, 0), 3)
    codes = {18: (0b0, 1), 1: (0b10, 2), 2: (0b11, 2)}
    for symbol, extra in (
        (2, None),  # literal 0: length 2
        (18, 138 - 11),  # literals 1-138: unused
        (18, 117 - 11),  # literals 139-255: unused
        (2, None),  # 256, end of block: length 2
        (18, 28 - 11),  # length codes 257-284: unused
        (1, None),  # length code 285 (258 bytes): length 1
        (1, None),  # distance code 0 (distance 1): length 1
    ):
        code(*codes[symbol])
        if extra is not None:
            put(extra, 7)
    code(0b10, 2)  # the literal 0
    while len(bits) % 8:  # copies until the stream is byte aligned
        code(0, 1)
        code(0, 1)
    head = bytes(
        sum(bit << j for j, bit in enumerate(bits[i : i + 8])) for i in range(0, len(bits), 8)
    )
    gzip_header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return gzip_header + head + bytes(size // 258 // 4)


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_a_decompression_bomb_is_resource_exhausted_at_the_limit(
    server: ServerProcess,
) -> None:
    packed = bomb(1 << 30)  # 1 GiB of zeros in about 1 MB
    assert len(packed) < 1100 << 10
    before = rss(server.pid)
    response = await raw_call(
        server.target,
        "SayHelloClientStreaming",
        struct.pack(">?I", True, len(packed)) + packed,
        [("grpc-encoding", "gzip")],
    )
    assert response.grpc_status == RESOURCE_EXHAUSTED
    assert "decompressed" in response.grpc_message
    assert rss(server.pid) - before < 64 << 20  # never more than the 4 MiB limit, not 1 GiB


def test_the_gzip_bomb_is_what_it_says() -> None:
    inflater = zlib.decompressobj(wbits=31)
    out = inflater.decompress(bomb(1 << 30), 64 << 20)
    assert out == bytes(64 << 20)
    assert len(inflater.unconsumed_tail) > 900_000  # and there is (much) more to come
