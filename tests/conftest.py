"""Shared fixtures: servers on real loopback sockets, bound before they are handed over, or on
greet's transport in memory; and the one place that marks every test `unit`, `integration` or
`interop` (by tests/support/kinds.py)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, AsyncExitStack, nullcontext
from pathlib import Path

import pytest
from go_interop import GoBinaries, build_go_binaries
from kinds import kind_of_test, refused_network
from loopback import StartServer, bound_socket

from greet.client import GreetClient
from greet.server import GreetServer, ServerConfig
from greet.service import GreetService
from greet.transport import TransportServer
from greet.transport.testing import MemoryServer

# The test group installs greet[otel], and tracing's default exporter (otlp) would send every
# test server's spans to a collector that is not there (as would a developer's own OTEL_* set-up):
# tracing is off unless a test turns it on (tests/test_tracing.py). The server and client
# processes the tests start inherit this.
os.environ["OTEL_TRACES_EXPORTER"] = "none"


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """Start in-process GreetServers with a given config; all are stopped after the test."""
    async with AsyncExitStack() as stack:

        async def start(config: ServerConfig | None = None, **overrides: object) -> GreetServer:
            server = GreetServer(config or ServerConfig(**overrides))  # type: ignore[arg-type]
            await server.start(sock=bound_socket())
            stack.push_async_callback(server.stop)
            return server

        yield start


@pytest.fixture
async def server(start_server: StartServer) -> GreetServer:
    """A GreetServer with the default config on a loopback socket."""
    return await start_server()


@pytest.fixture
async def client(server: GreetServer) -> AsyncIterator[GreetClient]:
    """A GreetClient connected to `server`."""
    async with GreetClient(server.target, timeout=30) as greet_client:
        yield greet_client


@pytest.fixture
async def memory_server() -> AsyncIterator[MemoryServer]:
    """GreetService on greet's transport in memory (greet.transport.testing), no socket: give
    clients `connector=memory_server.connect` and `memory_server.target`."""
    async with MemoryServer(TransportServer([GreetService()])) as server:
        yield server


@pytest.fixture(scope="session")
def go_binaries(tmp_path_factory: pytest.TempPathFactory) -> GoBinaries:
    """The Go client and server, built once per session (about 15 s cold, 1 s with Go's
    cache)."""
    try:
        return build_go_binaries(tmp_path_factory.mktemp("go"))
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture
def go_client_binary(go_binaries: GoBinaries) -> Path:
    return go_binaries.client


# --- Markers: unit, integration, interop (tests/support/kinds.py) ---------------------------------


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test unit, integration or interop by what it uses (see tests/support/kinds.py);
    here and nowhere else."""
    for item in items:
        if isinstance(item, pytest.Function):
            item.add_marker(kind_of_test(item))


def unit_guard(item: pytest.Item) -> AbstractContextManager[None]:
    unit = item.get_closest_marker("unit") is not None
    return refused_network(item.nodeid) if unit else nullcontext()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """A unit test's fixtures too, module- and session-scoped ones included, open nothing."""
    with unit_guard(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with unit_guard(item):
        return (yield)
