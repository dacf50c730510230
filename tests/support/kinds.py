"""What marks a test `unit`, `integration` or `interop` (tests/conftest.py applies it to every
test), and the guard that keeps unit tests off sockets and processes.

Each test gets one marker, from what it uses: its own code, the helpers and classes of tests/ it
calls (followed transitively), its fixtures and its parameters.

    interop      talks to a peer that is not greet over a socket (grpcio, grpc-go, a raw HTTP/2
                 peer), or is in INTEROP_MODULES (nginx, Prometheus, h2load)
    integration  otherwise opens a socket or starts a process (a server, the CLI, a supervisor)
    unit         the rest: in process, no sockets and no child processes; `refused_network`
                 enforces it, so a test marked unit by mistake fails and says why

`pytest -m unit` (`nox -s tests -- -m unit`) runs the fast suite. What the guard sees: sockets
and processes made through Python's `socket` and `subprocess` modules (asyncio's included), not
those that C extensions (grpcio, uvloop) make themselves; grpcio use is recognised by name
(NETWORK_ATTRIBUTES) instead.
"""

from __future__ import annotations

import inspect
import socket
import subprocess
import types
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from go_interop import build_go_binaries
from h2.connection import H2Connection
from raw_http1 import RawHttp1
from raw_http2 import RawPeer

from greet.server import GreetServer
from greet.server.run import serve
from greet.server.supervisor import Supervisor

__all__ = ["KINDS", "kind_of", "kind_of_test", "refused_network"]

KINDS = ("unit", "integration", "interop")

TESTS = Path(__file__).resolve().parent.parent

INTEROP_MODULES = frozenset(
    {
        "test_nginx",
        "test_prometheus",
        "test_benchmarks_smoke",
        "test_browser",
        "test_connect_node",
        "test_web_compare_smoke",
    }
)
"""Modules whose every test drives an outside program (nginx, Prometheus, h2load) found on PATH."""

NETWORK_ATTRIBUTES = frozenset(
    {
        "create_connection",
        "create_server",
        "create_subprocess_exec",
        "create_subprocess_shell",
        "open_connection",
        "open_unix_connection",
        "sock_connect",
        "start_server",
        "start_unix_server",
        "add_insecure_port",  # grpcio's server and channels, whose sockets are C-core's own
        "add_secure_port",
        "insecure_channel",
        "secure_channel",
    }
)
"""asyncio (or loop) and grpcio calls that open a socket or start a process."""

NETWORK_OBJECTS: frozenset[object] = frozenset({socket, subprocess, GreetServer, Supervisor, serve})
"""Modules and greet objects whose use opens a socket or starts a process."""

PEER_OBJECTS: frozenset[object] = frozenset(
    {grpc, H2Connection, RawPeer, RawHttp1, build_go_binaries}
)
"""Peers that are not greet: grpcio, h2's connection driven by a test, the raw peer, grpc-go."""


def defined_in_tests(value: object) -> bool:
    try:
        return Path(inspect.getfile(value)).resolve().is_relative_to(TESTS)  # type: ignore[arg-type]
    except (TypeError, OSError):
        return False


class UsedNames:
    """What a test uses: names its code reads and the objects they are, through tests/ code."""

    def __init__(self) -> None:
        self.attributes: set[str] = set()
        self.objects: list[object] = []
        self._seen: set[int] = set()

    def visit(self, value: object) -> None:
        if isinstance(value, types.FunctionType) or hasattr(value, "__wrapped__"):
            value = inspect.unwrap(value)  # type: ignore[arg-type]  # decorated: the code it wraps
        if id(value) in self._seen:
            return
        self._seen.add(id(value))
        self.objects.append(value)
        if isinstance(value, types.FunctionType) and defined_in_tests(value):
            self._code(value.__code__, value.__globals__)
        elif isinstance(value, type) and defined_in_tests(value):
            for member in vars(value).values():
                function = member.fget if isinstance(member, property) else member
                if isinstance(function, staticmethod | classmethod):
                    function = function.__func__
                if isinstance(function, types.FunctionType):
                    self.visit(function)

    def _code(self, code: types.CodeType, namespace: dict[str, Any]) -> None:
        for name in code.co_names:
            self.attributes.add(name)
            if name in namespace:
                self.visit(namespace[name])
        for constant in code.co_consts:
            if isinstance(constant, types.CodeType):
                self._code(constant, namespace)

    def any_of(self, objects: frozenset[object]) -> bool:
        return any(_hashable(value) and value in objects for value in self.objects)


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def kind_of(
    test: object,
    *,
    module: str = "",
    fixtures: Iterable[object] = (),
    params: Iterable[object] = (),
) -> str:
    """The marker for `test` (a test function) in `module`, with its fixtures' functions and its
    parameter values."""
    used = UsedNames()
    for value in (test, *fixtures, *params):
        used.visit(value)
    network = used.any_of(NETWORK_OBJECTS) or bool(used.attributes & NETWORK_ATTRIBUTES)
    if module in INTEROP_MODULES or (network and used.any_of(PEER_OBJECTS)):
        return "interop"
    return "integration" if network else "unit"


def kind_of_test(item: pytest.Function) -> str:
    # pytest's record of the fixture closure (no public accessor): each fixture's function
    fixtures = [defs[-1].func for defs in item._fixtureinfo.name2fixturedefs.values()]
    params = item.callspec.params.values() if hasattr(item, "callspec") else ()
    return kind_of(item.function, module=item.path.stem, fixtures=fixtures, params=params)


class UnitTestOpenedSocket(RuntimeError):
    """A test marked unit opened a socket or started a process."""


@contextmanager
def refused_network(nodeid: str) -> Iterator[None]:
    """Around a unit test's setup and call: creating a socket (other than around an existing
    descriptor, as `socket.socketpair` does for asyncio's event loop) or a child process raises,
    and the test fails even when the code under test swallowed that error."""
    refused: list[str] = []

    def refuse(what: str) -> UnitTestOpenedSocket:
        refused.append(what)
        return UnitTestOpenedSocket(
            f"{nodeid} is marked unit but {what}; tests are marked by what they use: add "
            "what this one uses to NETWORK_OBJECTS or NETWORK_ATTRIBUTES in tests/support/kinds.py"
        )

    class NoNewSocket(socket.socket):
        def __init__(
            self, family: int = -1, type: int = -1, proto: int = -1, fileno: int | None = None
        ) -> None:
            if fileno is None:
                name = socket.AddressFamily(socket.AF_INET if family == -1 else family).name
                raise refuse(f"opened a socket ({name})")
            super().__init__(family, type, proto, fileno)

    class NoProcess(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, args: object, *rest: object, **options: object) -> None:
            raise refuse(f"started a process ({args!r})")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "socket", NoNewSocket)
        patch.setattr(subprocess, "Popen", NoProcess)
        yield
    if refused:
        pytest.fail("; ".join(dict.fromkeys(refused)) + " (a unit test must not)", pytrace=False)
