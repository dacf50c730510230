"""connect-node (@connectrpc/connect-node, run by web/test/connect_node.mjs) calls the server
over Connect (JSON and binary) and gRPC-Web, on HTTP/1.1 and, where the server speaks it without
TLS, HTTP/2: the unary reply, the server-streamed greetings in order, and a rich error's details
(google.rpc.BadRequest and ErrorInfo, as greet.error_details builds them)."""

from __future__ import annotations

from pathlib import Path

import pytest
from web_peers import API_SERVERS, SERVERS_UNDER_TEST, built_web, run_node_script, start_api_server

NAMES = ["Alice", "Bob", "Carol"]
LONG_NAME = "Bartholomew-the-Third"
LIMIT = 8


@pytest.fixture(scope="module")
def web() -> Path:
    try:
        return built_web()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)


def transports(protocols: frozenset[str], http2: bool) -> list[dict[str, object]]:
    """connect-node's transports for what a server speaks (connect-node has no grpc-web-text)."""
    chosen: list[dict[str, object]] = []
    for version in ("1.1", "2") if http2 else ("1.1",):
        if "connect" in protocols:
            for binary in (False, True):
                name = f"connect-{'proto' if binary else 'json'}-http{version}"
                chosen.append(
                    {"name": name, "protocol": "connect", "httpVersion": version, "binary": binary}
                )
        if "grpc-web" in protocols:
            chosen.append(
                {
                    "name": f"grpc-web-http{version}",
                    "protocol": "grpc-web",
                    "httpVersion": version,
                    "binary": True,
                }
            )
    return chosen


# the first run installs web/'s npm packages and builds the page (tests/support/web_peers.py)
@pytest.mark.timeout(600)
@pytest.mark.parametrize("server_name", SERVERS_UNDER_TEST)
async def test_connect_node_calls(web: Path, server_name: str) -> None:
    server = API_SERVERS[server_name]
    wanted = transports(server.protocols, server.http2)
    async with start_api_server(server, max_name_chars=LIMIT) as api:
        results = await run_node_script(
            web,
            "connect_node.mjs",
            {
                "baseUrl": "http://" + api.address,
                "transports": wanted,
                "names": NAMES,
                "longName": LONG_NAME,
            },
        )
    assert sorted(results) == sorted(str(spec["name"]) for spec in wanted)
    description = f"names[1] is 21 characters long; the limit (--max-name-chars) is {LIMIT}"
    for name, result in results.items():
        context = f"{name}: {result}"
        assert result["unary"] == {"value": "Hello"}, context
        assert result["stream"] == {"value": [f"Hello {n}" for n in NAMES]}, context
        error = result["error"]
        assert error["received"] == [], context  # the names are checked before any greeting
        assert error["error"]["code"] == "InvalidArgument", context
        assert error["error"]["message"] == description, context
        assert error["error"]["badRequest"] == [
            {"field": "names[1]", "reason": "NAME_TOO_LONG", "description": description}
        ], context
        assert error["error"]["errorInfo"] == [
            {
                "reason": "NAME_TOO_LONG",
                "domain": "greet_service.GreetService",
                "metadata": {"limit": str(LIMIT), "actual": "21", "flag": "--max-name-chars"},
            }
        ], context
