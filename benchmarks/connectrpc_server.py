"""The comparison web server: GreetService on connectrpc 0.13 (Connect and gRPC-Web) on uvicorn.

What issue 16 measures greet against (benchmarks/web_compare.py), and the stand-in browser peer
the web tests can run against (tests/test_browser.py, tests/test_connect_node.py). connectrpc and
uvicorn are in the `web` dependency group. The google.protobuf message module is generated from
proto/greet.proto with grpcio-tools into a temporary directory when this script starts (as
benchmarks/grpcio_server.py does), so nothing generated is kept in the repository.

    python benchmarks/connectrpc_server.py --port 0 [--cors-allow-origin ORIGIN]... \
        [--max-name-chars N]

It behaves as greet's GreetService: SayHello answers "Hello", the streams "Hello NAME" per name,
and with --max-name-chars a longer name is refused with INVALID_ARGUMENT and greet's rich error
details (google.rpc.BadRequest and ErrorInfo, as greet.error_details builds them). CORS is a small
ASGI wrapper (connectrpc has none): preflights and responses from a listed origin get the allow
headers, any other origin gets none. uvicorn has no ASGI trailers, so gRPC itself is refused;
connectrpc has no `application/grpc-web-text`. It prints `connectrpc server listening on
HOST:PORT` on stderr once it accepts calls, and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import importlib
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping
from pathlib import Path
from types import ModuleType
from typing import Any

PROTO_DIR = Path(__file__).resolve().parent.parent / "proto"
SERVICE = "greet_service.GreetService"

ALLOWED_HEADERS = (
    "content-type, connect-protocol-version, connect-timeout-ms, x-grpc-web, x-user-agent, "
    "authorization, grpc-timeout"
)
EXPOSED_HEADERS = "grpc-status, grpc-message, grpc-status-details-bin"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def generate_messages(out: Path) -> ModuleType:
    """Run grpcio-tools' protoc on greet.proto into `out`; return greet_pb2."""
    from grpc_tools import protoc  # type: ignore[import-untyped]

    code = protoc.main(
        ["grpc_tools.protoc", f"--proto_path={PROTO_DIR}", f"--python_out={out}", "greet.proto"]
    )
    if code != 0:
        raise RuntimeError(f"protoc failed with status {code}")
    sys.path.insert(0, str(out))
    return importlib.import_module("greet_pb2")


def make_app(pb2: ModuleType, max_name_chars: int | None) -> App:
    """connectrpc's ASGI application serving the four calls, on google.protobuf messages."""
    from connectrpc.code import Code
    from connectrpc.compat import google_protobuf_codecs
    from connectrpc.errors import ConnectError, ErrorDetail
    from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType
    from connectrpc.server import ConnectASGIApplication, Endpoint
    from google.rpc.error_details_pb2 import BadRequest, ErrorInfo
    from protobuf.wkt import Any as AnyMessage

    def method(name: str, request: type, reply: type, stream: StreamType) -> MethodInfo[Any, Any]:
        return MethodInfo(
            name=name,
            service_name=SERVICE,
            input=request,
            output=reply,
            idempotency_level=IdempotencyLevel.UNKNOWN,
            stream_type=stream,
        )

    def detail(message: Any) -> ErrorDetail:
        type_url = f"type.googleapis.com/{message.DESCRIPTOR.full_name}"
        return ErrorDetail(AnyMessage(type_url=type_url, value=message.SerializeToString()))

    def check(name: str, field: str) -> None:
        if max_name_chars is None or len(name) <= max_name_chars:
            return
        text = (
            f"{field} is {len(name)} characters long; "
            f"the limit (--max-name-chars) is {max_name_chars}"
        )
        violation = BadRequest.FieldViolation(field=field, description=text, reason="NAME_TOO_LONG")
        info = ErrorInfo(
            reason="NAME_TOO_LONG",
            domain=SERVICE,
            metadata={
                "limit": str(max_name_chars),
                "actual": str(len(name)),
                "flag": "--max-name-chars",
            },
        )
        raise ConnectError(
            Code.INVALID_ARGUMENT,
            text,
            details=[detail(BadRequest(field_violations=[violation])), detail(info)],
        )

    async def say_hello(request: Any, context: Any) -> Any:
        return pb2.HelloResponse(message="Hello")

    async def server_streaming(request: Any, context: Any) -> AsyncIterator[Any]:
        for index, name in enumerate(request.names):  # all checked first, as greet does
            check(name, f"names[{index}]")
        for name in request.names:
            yield pb2.HelloResponse(message=f"Hello {name}")

    async def client_streaming(requests: AsyncIterator[Any], context: Any) -> Any:
        messages = []
        async for request in requests:
            check(request.name, "name")
            messages.append(f"Hello {request.name}")
        return pb2.MessagesList(messages=messages)

    async def bidi_streaming(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async for request in requests:
            check(request.name, "name")
            yield pb2.HelloResponse(message=f"Hello {request.name}")

    endpoints = {
        f"/{SERVICE}/SayHello": Endpoint.unary(
            method("SayHello", pb2.NoParam, pb2.HelloResponse, StreamType.UNARY), say_hello
        ),
        f"/{SERVICE}/SayHelloServerStreaming": Endpoint.server_stream(
            method(
                "SayHelloServerStreaming",
                pb2.NamesList,
                pb2.HelloResponse,
                StreamType.SERVER_STREAM,
            ),
            server_streaming,
        ),
        f"/{SERVICE}/SayHelloClientStreaming": Endpoint.client_stream(
            method(
                "SayHelloClientStreaming",
                pb2.HelloRequest,
                pb2.MessagesList,
                StreamType.CLIENT_STREAM,
            ),
            client_streaming,
        ),
        f"/{SERVICE}/SayHelloBidirectionalStreaming": Endpoint.bidi_stream(
            method(
                "SayHelloBidirectionalStreaming",
                pb2.HelloRequest,
                pb2.HelloResponse,
                StreamType.BIDI_STREAM,
            ),
            bidi_streaming,
        ),
    }

    class GreetApplication(ConnectASGIApplication[object]):
        @property
        def path(self) -> str:
            return f"/{SERVICE}"

    app: App = GreetApplication(
        service=object(),
        endpoints=lambda _service: endpoints,
        codecs=google_protobuf_codecs(),
    )
    return app


def with_cors(app: App, origins: Iterable[str]) -> App:
    """`app` behind CORS for `origins` only: preflights answered here, responses marked."""
    allowed = frozenset(origins)

    async def cors(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        origin = dict(scope["headers"]).get(b"origin", b"").decode("latin-1")
        listed = origin in allowed
        if scope["method"] == "OPTIONS":
            headers = [(b"vary", b"origin")]
            if listed:
                headers += [
                    (b"access-control-allow-origin", origin.encode("latin-1")),
                    (b"access-control-allow-methods", b"POST, GET"),
                    (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
                    (b"access-control-max-age", b"7200"),
                ]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        if not listed:
            await app(scope, receive, send)
            return

        async def marked(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"access-control-allow-origin", origin.encode("latin-1")),
                    (b"access-control-expose-headers", EXPOSED_HEADERS.encode()),
                    (b"vary", b"origin"),
                ]
            await send(message)

        await app(scope, receive, marked)

    return cors


def serve(host: str, port: int, origins: list[str], max_name_chars: int | None) -> None:
    import uvicorn

    with tempfile.TemporaryDirectory() as out:
        pb2 = generate_messages(Path(out))
        app = with_cors(make_app(pb2, max_name_chars), origins)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        bound_host, bound_port = sock.getsockname()[:2]
        address = f"[{bound_host}]:{bound_port}" if ":" in bound_host else f"{host}:{bound_port}"

        class Server(uvicorn.Server):
            async def startup(self, sockets: list[socket.socket] | None = None) -> None:
                await super().startup(sockets)
                print(f"connectrpc server listening on {address}", file=sys.stderr, flush=True)

        # uvicorn's defaults otherwise: its fastest HTTP/1.1 parser and loop when installed
        # (httptools, uvloop: Server.run sets the loop up); no access log, as greet logs none
        config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
        Server(config).run(sockets=[sock])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--cors-allow-origin", action="append", default=[], metavar="ORIGIN")
    parser.add_argument("--max-name-chars", type=int, default=None)
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.cors_allow_origin, args.max_name_chars)


if __name__ == "__main__":
    main()
