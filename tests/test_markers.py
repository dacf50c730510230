"""The unit / integration / interop markers (tests/support/kinds.py): what decides them, and the
guard that fails a unit test which opens a socket or starts a process."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys

import grpc
import pytest
from kinds import kind_of, refused_network
from loopback import bound_socket

from greet.greeting import greeting_for


def pure() -> None:
    assert greeting_for("Ann") == "Hello Ann"


async def connects() -> None:
    await asyncio.open_connection("127.0.0.1", 1)


def through_a_helper() -> None:
    asyncio.run(connects())


def binds() -> None:
    bound_socket().close()


def grpcio_client() -> None:
    grpc.insecure_channel("127.0.0.1:1").close()


def grpcio_constants_only() -> None:
    assert grpc.StatusCode.OK.value[0] == 0


@pytest.mark.parametrize(
    ("test", "kind"),
    [
        (pure, "unit"),
        (through_a_helper, "integration"),  # found through the test module's own helper
        (binds, "integration"),  # and through tests/support
        (grpcio_client, "interop"),
        (grpcio_constants_only, "unit"),  # grpcio's names, but no peer to talk to
    ],
)
def test_a_test_is_marked_by_what_it_uses(test: object, kind: str) -> None:
    assert kind_of(test) == kind


def test_fixtures_and_modules_count_too() -> None:
    assert kind_of(pure, fixtures=[binds]) == "integration"
    assert kind_of(pure, module="test_nginx") == "interop"


def test_a_unit_test_that_opens_a_socket_fails_even_when_the_error_is_swallowed() -> None:
    with (
        pytest.raises(pytest.fail.Exception, match=r"opened a socket \(AF_INET6\)"),
        refused_network("tests/test_x.py::test_y"),
        contextlib.suppress(RuntimeError),  # code under test that swallows the error
    ):
        socket.socket(socket.AF_INET6)


def test_a_unit_test_that_starts_a_process_fails() -> None:
    with (
        pytest.raises(pytest.fail.Exception, match="started a process"),
        refused_network("tests/test_x.py::test_y"),
        pytest.raises(RuntimeError, match="is marked unit but started a process"),
    ):
        subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_an_event_loop_still_runs_under_the_guard() -> None:
    """asyncio's loop makes its wake-up socketpair around existing descriptors: allowed."""
    with refused_network("tests/test_x.py::test_y"):
        assert asyncio.run(asyncio.sleep(0, "ran")) == "ran"
