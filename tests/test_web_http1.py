"""Connect and gRPC-Web over HTTP/1.1 on the gRPC port (greet.transport._http1, _web), with a raw
HTTP/1.1 client on a real socket: asyncio streams write the bytes, h11 (client side) reads the
answers. Run on both HTTP/2 engines (GREET_HTTP2_ENGINE): the front door and every gRPC call on
the same port share the engine."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import h11
import pytest
from google.rpc.error_details_pb2 import BadRequest
from grpclib.const import Cardinality, Status
from loopback import StartServer, bound_socket
from prometheus_client import CollectorRegistry
from waiting import wait_until

from greet.client import GreetClient
from greet.greeting import Limits
from greet.middleware import CallObserver
from greet.middleware.metrics import ServerMetrics
from greet.server import GreetServer
from greet.server.config import parse_config
from greet.service import GreetService
from greet.transport import ServerCall, TransportConfig, TransportServer
from greet_service import HelloResponse, NamesList

SERVICE = "/greet_service.GreetService/"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    header_list: list[tuple[str, str]] = field(default_factory=list)

    def json(self) -> dict[str, object]:
        value = json.loads(self.body)
        assert isinstance(value, dict)
        return value


class Http1:
    """One raw HTTP/1.1 client connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = h11.Connection(h11.CLIENT)

    @classmethod
    async def connect(cls, server: GreetServer) -> Http1:
        return await cls.connect_to(*server.address)

    @classmethod
    async def connect_to(cls, host: str, port: int) -> Http1:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    def send(self, raw: bytes) -> None:
        self.writer.write(raw)

    async def reply(self, timeout: float = 20.0) -> Reply:
        """The next response, whole (h11 reads it; pipelined ones come one by one)."""
        parser = self.parser
        if parser.our_state is h11.DONE and parser.their_state is h11.DONE:
            parser.start_next_cycle()
        if parser.our_state is h11.IDLE:
            # the request went out raw: tell the parser one was sent
            parser.send(h11.Request(method="POST", target="/", headers=[("host", "x")]))
            parser.send(h11.EndOfMessage())
        reply: Reply | None = None
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
                parser.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                pairs = [(k.decode(), v.decode()) for k, v in event.headers]
                reply = Reply(event.status_code, dict(pairs), header_list=pairs)
            elif isinstance(event, h11.Data):
                assert reply is not None
                reply.body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                assert reply is not None
                return reply
            elif isinstance(event, h11.ConnectionClosed):
                raise AssertionError("connection closed before a response")

    async def closed(self, timeout: float = 20.0) -> bool:
        """True once the server has closed the connection."""
        data = await asyncio.wait_for(self.reader.read(65536), timeout)
        return data == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def post(
    method: str,
    body: bytes,
    content_type: str,
    extra: dict[str, str] | None = None,
    *,
    path: str | None = None,
) -> bytes:
    headers = {
        "Host": "greet",
        "Content-Type": content_type,
        "Content-Length": str(len(body)),
        **(extra or {}),
    }
    head = f"POST {path or SERVICE + method} HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    return head.encode() + b"\r\n" + body


def envelope(body: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(body)) + body


def frames(body: bytes) -> list[tuple[int, bytes]]:
    out = []
    while body:
        flags, length = struct.unpack(">BI", body[:5])
        out.append((flags, body[5 : 5 + length]))
        body = body[5 + length :]
    return out


async def exchange(server: GreetServer, raw: bytes) -> Reply:
    client = await Http1.connect(server)
    try:
        client.send(raw)
        return await client.reply()
    finally:
        await client.close()


# -- Connect ------------------------------------------------------------------------------------


async def test_connect_json_unary(server: GreetServer) -> None:
    reply = await exchange(
        server,
        post("SayHello", b"{}", "application/json", {"Connect-Protocol-Version": "1"}),
    )
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == {"message": "Hello"}


async def test_connect_json_unary_without_a_body_or_version_header(server: GreetServer) -> None:
    reply = await exchange(server, post("SayHello", b"", "application/json"))
    assert (reply.status, reply.json()) == (200, {"message": "Hello"})


async def test_connect_proto_unary(server: GreetServer) -> None:
    reply = await exchange(server, post("SayHello", b"", "application/proto"))
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/proto"
    assert HelloResponse().parse(reply.body).message == "Hello"


async def test_connect_server_stream_json_in_order_with_end_of_stream(server: GreetServer) -> None:
    body = envelope(b'{"names": ["Ann", "Bob", "Cy"]}')
    reply = await exchange(
        server, post("SayHelloServerStreaming", body, "application/connect+json")
    )
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/connect+json"
    got = frames(reply.body)
    assert [json.loads(data) for flags, data in got[:-1]] == [
        {"message": "Hello Ann"},
        {"message": "Hello Bob"},
        {"message": "Hello Cy"},
    ]
    assert got[-1] == (0x02, b"{}")


async def test_connect_server_stream_proto(server: GreetServer) -> None:
    body = envelope(bytes(NamesList(names=["Ann", "Bob"])))
    reply = await exchange(
        server, post("SayHelloServerStreaming", body, "application/connect+proto")
    )
    got = frames(reply.body)
    assert [HelloResponse().parse(data).message for _, data in got[:-1]] == [
        "Hello Ann",
        "Hello Bob",
    ]
    assert got[-1][0] == 0x02


async def test_connect_rich_error_details_in_the_end_of_stream(
    start_server: StartServer,
) -> None:
    server = await start_server(limits=Limits(max_name_chars=3))
    body = envelope(b'{"names": ["Alexandra"]}')
    reply = await exchange(
        server, post("SayHelloServerStreaming", body, "application/connect+json")
    )
    ((flags, data),) = frames(reply.body)
    assert flags == 0x02
    error = json.loads(data)["error"]
    assert error["code"] == "invalid_argument"
    kinds = [detail["type"] for detail in error["details"]]
    assert kinds == ["google.rpc.BadRequest", "google.rpc.ErrorInfo"]
    value = error["details"][0]["value"]
    bad = BadRequest.FromString(base64.b64decode(value + "=" * (-len(value) % 4)))
    assert bad.field_violations[0].field == "names[0]"
    assert error["details"][0]["debug"]["fieldViolations"][0]["field"] == "names[0]"


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (post("SayHello", b"{not json", "application/json"), 400, "invalid_argument"),
        (post("SayHello", b"[1]", "application/json"), 400, "invalid_argument"),
        (post("NoSuchMethod", b"{}", "application/json"), 501, "unimplemented"),
        (
            post("SayHello", b"{}", "application/json", {"Connect-Timeout-Ms": "soon"}),
            400,
            "invalid_argument",
        ),
        (
            post("SayHello", b"{}", "application/json", {"Connect-Protocol-Version": "2"}),
            400,
            "invalid_argument",
        ),
        (
            post("SayHello", b"{}", "application/json", {"Content-Encoding": "br"}),
            501,
            "unimplemented",
        ),
        (
            post("SayHelloClientStreaming", envelope(b"{}"), "application/connect+json"),
            200,
            "unimplemented",
        ),
    ],
    ids=[
        "bad-json",
        "not-an-object",
        "no-method",
        "bad-timeout",
        "version",
        "encoding",
        "h1-client-stream",
    ],
)
async def test_connect_errors_with_http_status_and_the_server_keeps_serving(
    server: GreetServer, raw: bytes, status: int, code: str
) -> None:
    client = await Http1.connect(server)
    client.send(raw)
    reply = await client.reply()
    assert reply.status == status
    if status == 200:  # a streaming call's error is in its end-of-stream message
        ((flags, data),) = frames(reply.body)
        assert flags == 0x02
        assert json.loads(data)["error"]["code"] == code
    else:
        assert reply.headers["content-type"] == "application/json"
        assert reply.json()["code"] == code
        assert reply.json()["message"]
    client.send(post("SayHello", b"{}", "application/json"))  # same connection, next call
    assert (await client.reply()).json() == {"message": "Hello"}
    await client.close()


async def test_wrong_content_type_and_method_get_http_errors(server: GreetServer) -> None:
    client = await Http1.connect(server)
    client.send(post("SayHello", b"{}", "text/plain"))
    reply = await client.reply()
    assert reply.status == 415
    assert "application/json" in reply.headers["accept-post"]
    client.send(post("SayHelloServerStreaming", b"{}", "application/json"))
    assert (await client.reply()).status == 415  # a streaming method takes connect+json
    client.send(post("SayHello", b"{}", "application/json"))
    assert (await client.reply()).status == 200  # the same connection goes on
    client.send(b"GET / HTTP/1.1\r\nHost: greet\r\n\r\n")
    reply = await client.reply()
    assert reply.status == 405
    assert reply.headers["connection"] == "close"  # not a Connect or gRPC-Web client
    assert await client.closed()
    await client.close()


async def test_bad_envelope_gets_the_protocol_error(server: GreetServer) -> None:
    body = envelope(b'{"names": []}', flags=0x07)
    reply = await exchange(
        server, post("SayHelloServerStreaming", body, "application/connect+json")
    )
    ((flags, data),) = frames(reply.body)
    assert flags == 0x02
    assert json.loads(data)["error"]["code"] == "internal"
    truncated = envelope(b'{"names": []}')[:-3]
    reply = await exchange(
        server, post("SayHelloServerStreaming", truncated, "application/connect+json")
    )
    assert json.loads(frames(reply.body)[0][1])["error"]["code"] == "invalid_argument"


async def test_oversized_body_gets_resource_exhausted_then_close(
    start_server: StartServer,
) -> None:
    server = await start_server(transport=server_transport(max_message_bytes=1024))
    body = b'{"x": "' + b"a" * 4000 + b'"}'
    client = await Http1.connect(server)
    client.send(post("SayHello", body, "application/json"))
    reply = await client.reply()
    assert reply.status == 429
    assert reply.json()["code"] == "resource_exhausted"
    assert reply.headers["connection"] == "close"
    assert await client.closed()
    await client.close()
    # a body under the Content-Length bound but over the limit: refused, the connection kept
    client = await Http1.connect(server)
    client.send(post("SayHello", b'{"x": "' + b"a" * 1100 + b'"}', "application/json"))
    assert (await client.reply()).json()["code"] == "resource_exhausted"
    client.send(post("SayHello", b"{}", "application/json"))
    assert (await client.reply()).status == 200
    await client.close()


async def test_oversized_header_block_gets_431(server: GreetServer) -> None:
    client = await Http1.connect(server)
    limit = server.config.transport.max_header_list_bytes
    client.send(post("SayHello", b"{}", "application/json", {"X-Big": "a" * (limit + 10)}))
    reply = await client.reply()
    assert reply.status == 431
    await client.close()
    assert (await exchange(server, post("SayHello", b"{}", "application/json"))).status == 200


async def test_malformed_request_line_gets_400(server: GreetServer) -> None:
    client = await Http1.connect(server)
    client.send(b"POST /x HTTP/1.1\r\nno colon in this header\r\n\r\n")
    reply = await client.reply()
    assert reply.status == 400
    assert await client.closed()
    await client.close()
    assert (await exchange(server, post("SayHello", b"{}", "application/json"))).status == 200


# -- gRPC-Web ---------------------------------------------------------------------------------


def trailer_block(data: bytes) -> dict[str, str]:
    lines = data.decode().split("\r\n")
    return dict(line.split(": ", 1) for line in lines if line)


async def test_grpc_web_unary_and_server_stream(server: GreetServer) -> None:
    client = await Http1.connect(server)
    client.send(post("SayHello", envelope(b""), "application/grpc-web+proto", {"X-Grpc-Web": "1"}))
    reply = await client.reply()
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/grpc-web+proto"
    (f1, message), (f2, trailers) = frames(reply.body)
    assert (f1, HelloResponse().parse(message).message) == (0, "Hello")
    assert f2 == 0x80
    assert trailer_block(trailers) == {"grpc-status": "0"}
    body = envelope(bytes(NamesList(names=["Ann", "Bob"])))
    client.send(post("SayHelloServerStreaming", body, "application/grpc-web"))
    got = frames((await client.reply()).body)
    assert [HelloResponse().parse(data).message for _, data in got[:-1]] == [
        "Hello Ann",
        "Hello Bob",
    ]
    assert got[-1][0] == 0x80
    await client.close()


async def test_grpc_web_text(server: GreetServer) -> None:
    body = base64.b64encode(envelope(bytes(NamesList(names=["Ann"]))))
    reply = await exchange(
        server, post("SayHelloServerStreaming", body, "application/grpc-web-text")
    )
    assert reply.headers["content-type"] == "application/grpc-web-text+proto"
    decoded = b"".join(
        base64.b64decode(piece + b"=" * (-len(piece) % 4))
        for piece in reply.body.replace(b"=", b"= ").split()
    )
    got = frames(decoded)
    assert HelloResponse().parse(got[0][1]).message == "Hello Ann"
    assert got[-1][0] == 0x80
    bad = await exchange(server, post("SayHello", b"!!!!", "application/grpc-web-text"))
    assert bad.headers["grpc-status"] == "3"


async def test_grpc_web_error_is_trailers_only_with_status_headers(
    start_server: StartServer,
) -> None:
    server = await start_server(limits=Limits(max_name_chars=3))
    body = envelope(bytes(NamesList(names=["Alexandra"])))
    reply = await exchange(server, post("SayHelloServerStreaming", body, "application/grpc-web"))
    assert reply.status == 200
    assert reply.headers["grpc-status"] == "3"
    assert "grpc-status-details-bin" in reply.headers
    client_stream = await exchange(
        server, post("SayHelloClientStreaming", envelope(b""), "application/grpc-web")
    )
    assert client_stream.headers["grpc-status"] == "12"


# -- one connection, many requests -----------------------------------------------------------


async def test_keep_alive_and_pipelining_answer_in_order(server: GreetServer) -> None:
    client = await Http1.connect(server)
    client.send(post("SayHello", b"{}", "application/json"))
    assert (await client.reply()).json() == {"message": "Hello"}
    names = [["A"], ["B", "C"], ["D"]]
    client.send(
        b"".join(
            post(
                "SayHelloServerStreaming",
                envelope(json.dumps({"names": group}).encode()),
                "application/connect+json",
            )
            for group in names
        )
        + post("SayHello", b"", "application/proto")
    )
    for group in names:
        got = frames((await client.reply()).body)
        assert [json.loads(data)["message"] for _, data in got[:-1]] == [
            f"Hello {name}" for name in group
        ]
    assert HelloResponse().parse((await client.reply()).body).message == "Hello"
    await client.close()


async def test_expect_100_continue_gets_continue_then_the_answer(server: GreetServer) -> None:
    client = await Http1.connect(server)
    head, _, _ = post("SayHello", b"{}", "application/json", {"Expect": "100-continue"}).partition(
        b"\r\n\r\n"
    )
    client.send(head + b"\r\n\r\n")
    interim = await asyncio.wait_for(client.reader.readuntil(b"\r\n\r\n"), 20)
    assert interim.startswith(b"HTTP/1.1 100")
    client.send(b"{}")
    assert (await client.reply()).json() == {"message": "Hello"}
    await client.close()


async def test_grpc_and_http1_on_the_same_port(server: GreetServer) -> None:
    async with GreetClient(server.target) as grpc_client:
        assert (await grpc_client.say_hello()).message == "Hello"
        reply = await exchange(server, post("SayHello", b"{}", "application/json"))
        assert reply.json() == {"message": "Hello"}


# -- CORS ------------------------------------------------------------------------------------


def preflight(origin: str) -> bytes:
    return (
        f"OPTIONS {SERVICE}SayHello HTTP/1.1\r\nHost: greet\r\nOrigin: {origin}\r\n"
        "Access-Control-Request-Method: POST\r\n"
        "Access-Control-Request-Headers: content-type,connect-protocol-version\r\n\r\n"
    ).encode()


async def test_cors_preflight_allowed_and_denied(start_server: StartServer) -> None:
    server = await start_server(
        transport=server_transport(cors_allow_origin=("http://page.example:8000",))
    )
    client = await Http1.connect(server)
    client.send(preflight("http://page.example:8000"))
    reply = await client.reply()
    assert reply.status == 204
    assert reply.headers["access-control-allow-origin"] == "http://page.example:8000"
    allowed = {h.strip() for h in reply.headers["access-control-allow-headers"].split(",")}
    assert {
        "content-type",
        "connect-protocol-version",
        "connect-timeout-ms",
        "x-grpc-web",
        "x-user-agent",
        "authorization",
        "grpc-timeout",
    } <= allowed
    assert "POST" in reply.headers["access-control-allow-methods"]
    client.send(preflight("http://evil.example"))
    denied = await client.reply()
    assert "access-control-allow-origin" not in denied.headers
    client.send(post("SayHello", b"{}", "application/json", {"Origin": "http://page.example:8000"}))
    reply = await client.reply()
    assert reply.headers["access-control-allow-origin"] == "http://page.example:8000"
    assert "grpc-status-details-bin" in reply.headers["access-control-expose-headers"]
    client.send(post("SayHello", b"{}", "application/json", {"Origin": "http://evil.example"}))
    reply = await client.reply()
    assert reply.status == 200  # the browser, not the server, withholds it from the page
    assert "access-control-allow-origin" not in reply.headers
    await client.close()


def test_cors_origins_from_flags_and_the_variable() -> None:
    flags = parse_config(
        [
            "--cors-allow-origin",
            "http://a.example",
            "--cors-allow-origin",
            "https://b.example:8443",
        ],
        environ={},
    )
    assert flags.transport.cors_allow_origin == ("http://a.example", "https://b.example:8443")
    variable = parse_config([], environ={"GREET_CORS_ALLOW_ORIGIN": "http://a.example, *"})
    assert variable.transport.cors_allow_origin == ("http://a.example", "*")
    assert parse_config([], environ={}).transport.cors_allow_origin == ()
    with pytest.raises(SystemExit):
        parse_config(["--cors-allow-origin", "not an origin"], environ={})


async def test_no_cors_by_default(server: GreetServer) -> None:
    reply = await exchange(server, preflight("http://page.example"))
    assert "access-control-allow-origin" not in reply.headers


def server_transport(**fields: Any) -> TransportConfig:
    return replace(TransportConfig(), **fields)


# -- the same call path: auth, deadlines, cancellation, drain -------------------------------


async def test_bearer_token_from_authorization(start_server: StartServer, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret\n")
    server = await start_server(auth_token_file=tokens)
    refused = await exchange(server, post("SayHello", b"{}", "application/json"))
    assert (refused.status, refused.json()["code"]) == (401, "unauthenticated")
    accepted = await exchange(
        server, post("SayHello", b"{}", "application/json", {"Authorization": "Bearer s3cret"})
    )
    assert accepted.json() == {"message": "Hello"}


async def test_deadline_from_connect_timeout_ms(start_server: StartServer) -> None:
    server = await start_server(work_delay=30.0)
    body = envelope(b'{"names": ["Ann"]}')
    reply = await exchange(
        server,
        post(
            "SayHelloServerStreaming",
            body,
            "application/connect+json",
            {"Connect-Timeout-Ms": "50"},
        ),
    )
    ((_flags, data),) = frames(reply.body)
    assert json.loads(data)["error"]["code"] == "deadline_exceeded"


async def test_client_gone_mid_stream_cancels_the_handler(start_server: StartServer) -> None:
    server = await start_server(work_delay=30.0)
    client = await Http1.connect(server)
    client.send(
        post(
            "SayHelloServerStreaming",
            envelope(b'{"names": ["Ann", "Bob"]}'),
            "application/connect+json",
        )
    )
    await wait_until(lambda: bool(server.drain.in_flight()), "the handler runs")
    client.writer.transport.abort()
    await wait_until(lambda: not server.drain.in_flight(), "the handler was cancelled")


async def test_drain_finishes_the_call_in_flight_with_connection_close(
    start_server: StartServer,
) -> None:
    server = await start_server(work_delay=0.3)
    idle = await Http1.connect(server)
    idle.send(post("SayHello", b"{}", "application/json"))
    await idle.reply()
    busy = await Http1.connect(server)
    busy.send(
        post("SayHelloServerStreaming", envelope(b'{"names": ["Ann"]}'), "application/connect+json")
    )
    await wait_until(lambda: bool(server.drain.in_flight()), "the call runs")
    stopping = asyncio.ensure_future(server.drain.shutdown(grace=30.0))
    assert await idle.closed()  # an idle keep-alive connection closes at once
    reply = await busy.reply()
    assert reply.headers["connection"] == "close"
    got = frames(reply.body)
    assert json.loads(got[0][1]) == {"message": "Hello Ann"}
    assert got[-1] == (0x02, b"{}")
    await stopping
    await idle.close()
    await busy.close()


# -- interceptors and metrics see web calls ---------------------------------------------------


class Seen(CallObserver):
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Cardinality, Status, str | None, int, int]] = []

    def ended(self, call: ServerCall, status: Status) -> None:
        assert call.metadata is not None
        trace = call.metadata.get("x-trace")
        assert trace is None or isinstance(trace, str)
        self.calls.append(
            (
                call.protocol,
                call.method,
                call.kind,
                status,
                trace,
                call.messages_received,
                call.messages_sent,
            )
        )


async def test_interceptors_and_metrics_see_each_protocol() -> None:
    registry = CollectorRegistry()
    seen = Seen()
    metrics = ServerMetrics(registry)
    grpc_server = TransportServer([GreetService()], interceptors=[metrics, seen])
    await grpc_server.start(sock=bound_socket())
    try:
        host, port = grpc_server.address
        client = await Http1.connect_to(host, port)
        client.send(post("SayHello", b"{}", "application/json", {"X-Trace": "abc"}))
        await client.reply()
        client.send(
            post(
                "SayHelloServerStreaming",
                envelope(bytes(NamesList(names=["A", "B"]))),
                "application/grpc-web",
            )
        )
        await client.reply()
        await client.close()
        async with GreetClient(f"{host}:{port}") as grpc_client:
            await grpc_client.say_hello()
        await wait_until(lambda: len(seen.calls) == 3, "three calls observed")
        assert seen.calls == [
            ("connect", SERVICE + "SayHello", Cardinality.UNARY_UNARY, Status.OK, "abc", 1, 1),
            (
                "grpc-web",
                SERVICE + "SayHelloServerStreaming",
                Cardinality.UNARY_STREAM,
                Status.OK,
                None,
                1,
                2,
            ),
            ("grpc", SERVICE + "SayHello", Cardinality.UNARY_UNARY, Status.OK, None, 1, 1),
        ]

        def started(protocol: str, method: str) -> float | None:
            return registry.get_sample_value(
                "greet_server_protocol_started_total",
                {
                    "protocol": protocol,
                    "grpc_service": "greet_service.GreetService",
                    "grpc_method": method,
                },
            )

        assert started("connect", "SayHello") == 1
        assert started("grpc", "SayHello") == 1
        assert started("grpc-web", "SayHelloServerStreaming") == 1
    finally:
        grpc_server.close()
        await grpc_server.wait_closed()


async def test_shutdown_closes_sockets_that_sent_nothing_yet(start_server: StartServer) -> None:
    server = await start_server()
    host, port = server.address
    reader, writer = await asyncio.open_connection(host, port)
    await wait_until(lambda: server.drain.undecided == 1, "accepted, no protocol yet")
    await server.drain.shutdown(grace=30.0)
    assert await asyncio.wait_for(reader.read(), 20) == b""
    writer.close()


async def test_grace_over_ends_an_http1_call_with_unavailable(start_server: StartServer) -> None:
    server = await start_server(work_delay=60.0)
    client = await Http1.connect(server)
    client.send(
        post("SayHelloServerStreaming", envelope(b'{"names": ["A"]}'), "application/connect+json")
    )
    await wait_until(lambda: bool(server.drain.in_flight()), "the call runs")
    stopping = asyncio.ensure_future(server.drain.shutdown(grace=0.05))
    reply = await client.reply()
    ((_, data),) = frames(reply.body)
    assert json.loads(data)["error"]["code"] == "unavailable"
    await stopping
    await client.close()


async def test_a_long_server_stream_arrives_whole_and_in_order(server: GreetServer) -> None:
    names = [f"name{index}" for index in range(5000)]
    body = envelope(json.dumps({"names": names}).encode())
    reply = await exchange(
        server, post("SayHelloServerStreaming", body, "application/connect+json")
    )
    got = frames(reply.body)
    assert [json.loads(data)["message"] for _, data in got[:-1]] == [f"Hello {n}" for n in names]
    assert got[-1] == (0x02, b"{}")
