"""The live page (web/) in a real browser: Debian's Chromium, headless, driven by playwright-core
(web/test/browser.mjs), loads the page from another origin than the server's and calls it with
connect-web (Connect, JSON) and grpc-web's own client (gRPC-Web binary and text).

Checked for each protocol the server speaks: the unary reply; the server-streamed greetings, in
order; a rich error (INVALID_ARGUMENT with its google.rpc.BadRequest field violation, shown by
the page); and that the page served from an origin the server does not list cannot call it (the
CORS preflight fails in the browser).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from web_peers import (
    API_SERVERS,
    CHROMIUM,
    SERVERS_UNDER_TEST,
    built_web,
    run_node_script,
    start_api_server,
    start_page_server,
)

NAMES = ["Alice", "Bob", "Carol", "Dave"]
LONG_NAME = "Bartholomew-the-Third"
LIMIT = 8


@pytest.fixture(scope="module")
def web() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: `nox -s system_packages` installs Debian's chromium",
            pytrace=False,
        )
    try:
        return built_web()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)


# the first run installs web/'s npm packages and builds the page (tests/support/web_peers.py)
@pytest.mark.timeout(600)
@pytest.mark.parametrize("server_name", SERVERS_UNDER_TEST)
async def test_live_page_in_chromium(web: Path, server_name: str) -> None:
    server = API_SERVERS[server_name]
    protocols = sorted(server.protocols)
    async with AsyncExitStack() as stack:
        page = await stack.enter_async_context(start_page_server(web))
        other_page = await stack.enter_async_context(start_page_server(web))
        # only the first page's origin is listed
        api = await stack.enter_async_context(
            start_api_server(server, [page.address], max_name_chars=LIMIT)
        )
        results = await run_node_script(
            web,
            "browser.mjs",
            {
                "chromium": str(CHROMIUM),
                "page": page.address + "/",
                "otherPage": other_page.address + "/",
                "api": "http://" + api.address,
                "protocols": protocols,
                "names": NAMES,
                "longName": LONG_NAME,
            },
        )
    assert sorted(results) == protocols
    for protocol, result in results.items():
        context = f"{protocol}: {result}"
        assert result["unary"]["state"] == "done", context
        assert result["unary"]["reply"] == "Hello", context

        assert result["stream"]["state"] == "done", context
        assert result["stream"]["greetings"] == [f"Hello {name}" for name in NAMES], context

        error = result["error"]
        assert error["state"] == "failed", context
        assert error["greetings"] == [], context  # the names are checked before any greeting
        assert error["status"].startswith("INVALID_ARGUMENT: names[1] is 21 characters"), context
        assert [(v["field"], v["reason"]) for v in error["violations"]] == [
            ("names[1]", "NAME_TOO_LONG")
        ], context
        assert "--max-name-chars" in error["violations"][0]["text"], context

        refused = result["refused"]
        assert refused["state"] == "failed", context
        assert refused["reply"] == "", context
        blocked = [line for line in result["refusedLog"] if "blocked by CORS policy" in line]
        assert blocked, context
        assert all(other_page.address in line for line in blocked), context
