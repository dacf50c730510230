"""Connect and gRPC-Web over HTTP/1.1, byte by byte: a raw HTTP/1.1 peer (tests/support/
raw_http1.py, h11 reading the responses) against the server the web tests run against.

Keep-alive and pipelined requests on one connection, Connect's unary and streamed bodies (the
end-of-stream message, errors with their HTTP status and rich details), gRPC-Web's trailer frame,
and CORS: preflights and responses for a listed origin, nothing for another.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import pytest
from google.rpc.error_details_pb2 import BadRequest, ErrorInfo
from raw_http1 import RawHttp1, envelope, envelopes, request
from web_peers import API_SERVERS, SERVERS_UNDER_TEST, ChildProcess, start_api_server

SERVICE = "/greet_service.GreetService/"
ALLOWED = "http://page.test:8081"
UNLISTED = "http://elsewhere.test:8081"
LIMIT = 8
JSON = [("content-type", "application/json"), ("connect-protocol-version", "1")]
STREAM_JSON = [("content-type", "application/connect+json"), ("connect-protocol-version", "1")]
GRPC_WEB = [("content-type", "application/grpc-web+proto"), ("x-grpc-web", "1")]
HELLO_RESPONSE = b"\n\x05Hello"  # greet_service.HelloResponse(message="Hello")


@pytest.fixture(params=SERVERS_UNDER_TEST)
async def api(request: pytest.FixtureRequest) -> AsyncIterator[ChildProcess]:
    server = API_SERVERS[request.param]
    async with start_api_server(server, [ALLOWED], max_name_chars=LIMIT) as process:
        yield process


async def connect(api: ChildProcess) -> RawHttp1:
    host, _, port = api.address.rpartition(":")
    return await RawHttp1.open(host.strip("[]"), int(port))


def unpadded_base64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


async def test_keep_alive_serves_calls_one_after_another_on_one_connection(
    api: ChildProcess,
) -> None:
    async with await connect(api) as peer:
        for _ in range(3):
            await peer.send(request("POST", SERVICE + "SayHello", JSON, b"{}"))
            reply = await peer.response()
            assert reply.status == 200
            assert reply.header("content-type") == "application/json"
            assert json.loads(reply.body) == {"message": "Hello"}
            assert not peer.server_closed


async def test_pipelined_requests_are_answered_in_order(api: ChildProcess) -> None:
    stream_body = envelope(json.dumps({"names": ["Ann", "Bo"]}).encode())
    both = request("POST", SERVICE + "SayHelloServerStreaming", STREAM_JSON, stream_body)
    both += request("POST", SERVICE + "SayHello", JSON, b"{}")
    async with await connect(api) as peer:
        await peer.send(both, requests=2)
        first, second = await peer.response(), await peer.response()
    assert first.status == 200
    assert first.header("content-type") == "application/connect+json"
    *messages, (end_flags, end) = envelopes(first.body)
    assert [json.loads(m) for _, m in messages] == [
        {"message": "Hello Ann"},
        {"message": "Hello Bo"},
    ]
    assert end_flags == 0x02
    assert "error" not in json.loads(end)
    assert (second.status, json.loads(second.body)) == (200, {"message": "Hello"})


async def test_connect_unary_with_bad_json_is_invalid_argument_with_http_400(
    api: ChildProcess,
) -> None:
    async with await connect(api) as peer:
        await peer.send(request("POST", SERVICE + "SayHello", JSON, b'{"unclosed'))
        reply = await peer.response()
        assert reply.status == 400
        assert reply.header("content-type") == "application/json"
        assert json.loads(reply.body)["code"] == "invalid_argument"
        # the connection still serves the next call
        await peer.send(request("POST", SERVICE + "SayHello", JSON, b"{}"))
        assert json.loads((await peer.response()).body) == {"message": "Hello"}


async def test_a_streamed_error_ends_the_stream_with_its_rich_details(api: ChildProcess) -> None:
    body = envelope(json.dumps({"names": ["Ann", "Bartholomew"]}).encode())
    async with await connect(api) as peer:
        await peer.send(request("POST", SERVICE + "SayHelloServerStreaming", STREAM_JSON, body))
        reply = await peer.response()
    # a streamed reply is 200 whatever its end: the error is in the end-of-stream message, and
    # the names are checked before any greeting
    assert reply.status == 200
    assert reply.header("content-type") == "application/connect+json"
    [(end_flags, end)] = envelopes(reply.body)
    assert end_flags == 0x02
    error = json.loads(end)["error"]
    assert error["code"] == "invalid_argument"
    assert error["message"].startswith("names[1] is 11 characters long")
    details = {detail["type"]: unpadded_base64(detail["value"]) for detail in error["details"]}
    bad_request = BadRequest.FromString(details["google.rpc.BadRequest"])
    assert [(v.field, v.reason) for v in bad_request.field_violations] == [
        ("names[1]", "NAME_TOO_LONG")
    ]
    info = ErrorInfo.FromString(details["google.rpc.ErrorInfo"])
    assert (info.reason, info.metadata["limit"]) == ("NAME_TOO_LONG", str(LIMIT))


async def test_grpc_web_unary_ends_with_its_trailer_frame(api: ChildProcess) -> None:
    async with await connect(api) as peer:
        await peer.send(request("POST", SERVICE + "SayHello", GRPC_WEB, envelope(b"")))
        reply = await peer.response()
    assert reply.status == 200
    assert reply.header(
        "content-type",
    ) in ("application/grpc-web+proto", "application/grpc-web")
    (flags, message), (trailer_flags, trailers) = envelopes(reply.body)
    assert (flags, message) == (0, HELLO_RESPONSE)
    assert trailer_flags == 0x80
    fields = dict(line.split(":", 1) for line in trailers.decode().split("\r\n") if line)
    assert fields["grpc-status"].strip() == "0"


async def test_a_listed_origin_gets_its_preflight_and_response_headers(api: ChildProcess) -> None:
    preflight = [
        ("origin", ALLOWED),
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "content-type,connect-protocol-version"),
    ]
    async with await connect(api) as peer:
        await peer.send(request("OPTIONS", SERVICE + "SayHello", preflight))
        allowed = await peer.response()
        await peer.send(request("POST", SERVICE + "SayHello", [*JSON, ("origin", ALLOWED)], b"{}"))
        call = await peer.response()
    assert 200 <= allowed.status < 300
    assert allowed.header("access-control-allow-origin") == ALLOWED
    assert "POST" in (allowed.header("access-control-allow-methods") or "")
    listed = {h.strip() for h in (allowed.header("access-control-allow-headers") or "").split(",")}
    assert {
        "content-type",
        "connect-protocol-version",
        "connect-timeout-ms",
        "x-grpc-web",
        "x-user-agent",
        "authorization",
        "grpc-timeout",
    } <= {h.lower() for h in listed}
    assert call.header("access-control-allow-origin") == ALLOWED
    exposed = {
        h.strip().lower() for h in (call.header("access-control-expose-headers") or "").split(",")
    }
    assert {"grpc-status", "grpc-message", "grpc-status-details-bin"} <= exposed


async def test_another_origin_gets_no_allow_header(api: ChildProcess) -> None:
    preflight = [("origin", UNLISTED), ("access-control-request-method", "POST")]
    async with await connect(api) as peer:
        await peer.send(request("OPTIONS", SERVICE + "SayHello", preflight))
        refused = await peer.response()
        await peer.send(request("POST", SERVICE + "SayHello", [*JSON, ("origin", UNLISTED)], b"{}"))
        call = await peer.response()
    assert refused.header("access-control-allow-origin") is None
    assert call.header("access-control-allow-origin") is None
