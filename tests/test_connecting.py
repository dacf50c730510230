"""Connecting as grpc-go does, against real peers: a target that accepts TCP and never speaks
HTTP/2 fails a call after one handshake timeout however many attempts it has (the connect is
shared, then the endpoint fails fast while it waits to reconnect); a deadline error says what the
call waited for; mutual TLS without a client certificate says one is needed; a misspelt flag is
named. (Ctrl-C against the same silent peer: tests/test_cli.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import sys
from pathlib import Path
from types import TracebackType

import grpc
import pytest
import trustme
from grpclib.const import Status
from loopback import StartServer, bound_socket
from raw_http2 import settings

from greet.client import ClientCall, GreetClient, PoolOptions, Proceed, RetryPolicy
from greet.errors import RpcError
from greet.tls import client_ssl_context, server_ssl_context
from greet.transport import ChannelConfig

NO_PROBE = PoolOptions(reconnect_initial_backoff=600, reconnect_max_backoff=600)
"""No reconnect of the pool's own while the test runs: each connection the peer sees is a call's."""
FIVE_ATTEMPTS = RetryPolicy(max_attempts=5, initial_backoff=0.01, max_backoff=0.05)


class SilentPeer:
    """A TCP server that accepts connections and never answers; it counts them. `greeting` is
    sent first (HTTP/2 SETTINGS: the handshake completes, and then no call is ever answered)."""

    def __init__(self, greeting: bytes = b"") -> None:
        self.greeting = greeting
        self.accepted = 0
        self.target = ""
        self._writers: list[asyncio.StreamWriter] = []
        self._handlers: list[asyncio.Task[None]] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> SilentPeer:
        sock = bound_socket()
        self.target = f"127.0.0.1:{sock.getsockname()[1]}"
        self._server = await asyncio.start_server(self._accept, sock=sock)
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.append(task)
        if self.greeting:
            writer.write(self.greeting)
        try:
            while await reader.read(65536):  # read what comes, answer nothing, until it goes
                pass
        except ConnectionError:
            pass

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._handlers)
        await self._server.wait_closed()


class KeepCalls:
    """A call interceptor that keeps each call's record (its attempts)."""

    def __init__(self) -> None:
        self.calls: list[ClientCall] = []

    async def intercept(self, call: ClientCall, proceed: Proceed, /) -> None:
        self.calls.append(call)
        await proceed()


async def run_client(*args: str) -> tuple[int, str]:
    """`python -m greet.client ARGS`: its exit status and its stderr, once it has exited."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "greet.client",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, err.decode()


# -- a target that never completes the HTTP/2 handshake ------------------------------------------


async def test_five_attempts_against_a_silent_target_open_one_connection() -> None:
    calls = KeepCalls()
    async with SilentPeer() as peer:
        async with GreetClient(
            peer.target,
            retry=FIVE_ATTEMPTS,
            transport=ChannelConfig(handshake_timeout=0.5),
            pool=NO_PROBE,
            interceptors=[calls],
        ) as client:
            with pytest.raises(RpcError) as raised:
                await client.say_hello()
        accepted = peer.accepted
    assert raised.value.status is Status.UNAVAILABLE
    assert f"{peer.target} sent no HTTP/2 settings within 0.5s: not a gRPC server?" in str(
        raised.value
    )
    (call,) = calls.calls
    assert len(call.attempts) == 5  # retried as the policy says ...
    assert accepted == 1  # ... and only the first attempt waited for a handshake


async def test_calls_waiting_for_the_same_connect_share_it_and_its_failure() -> None:
    async with SilentPeer() as peer:
        async with GreetClient(
            peer.target,
            retry=FIVE_ATTEMPTS,
            transport=ChannelConfig(handshake_timeout=0.5),
            pool=NO_PROBE,
        ) as client:
            outcomes = await asyncio.gather(
                *(client.say_hello() for _ in range(4)), return_exceptions=True
            )
        accepted = peer.accepted
    assert all(isinstance(outcome, RpcError) for outcome in outcomes), outcomes
    assert {outcome.status for outcome in outcomes if isinstance(outcome, RpcError)} == {
        Status.UNAVAILABLE
    }
    assert accepted == 1


async def test_the_client_command_fails_a_silent_target_with_unavailable_after_one_handshake() -> (
    None
):
    async with SilentPeer() as peer:
        code, err = await run_client(
            "--target", peer.target, "--handshake-timeout", "2", "--max-attempts", "5", "unary"
        )
        accepted = peer.accepted
    assert code == 1
    assert err.startswith(f"error: UNAVAILABLE: cannot connect to {peer.target}: "), err
    assert "sent no HTTP/2 settings within 2s: not a gRPC server?" in err
    # one connection per attempt would be 5; the pool's probe may have started one more
    assert 1 <= accepted <= 3


# -- what a deadline error says -------------------------------------------------------------------


async def test_a_deadline_while_connecting_says_the_handshake_was_not_complete() -> None:
    async with (
        SilentPeer() as peer,
        GreetClient(peer.target, timeout=0.5, retry=FIVE_ATTEMPTS) as client,
    ):
        with pytest.raises(RpcError) as raised:
            await client.say_hello()
    assert raised.value.status is Status.DEADLINE_EXCEEDED
    assert str(raised.value) == (
        f"DEADLINE_EXCEEDED: deadline exceeded while connecting to {peer.target} "
        "(HTTP/2 handshake not complete)"
    )


async def test_a_deadline_while_the_server_is_silent_says_the_reply_was_awaited() -> None:
    async with (
        SilentPeer(greeting=settings()) as peer,
        GreetClient(peer.target, timeout=0.5, retry=FIVE_ATTEMPTS) as client,
    ):
        with pytest.raises(RpcError) as raised:
            await client.say_hello()
        replies = client.say_hello_server_streaming(["a"])
        with pytest.raises(RpcError) as streaming:
            _ = [reply async for reply in replies]
    for error in (raised.value, streaming.value):
        assert error.status is Status.DEADLINE_EXCEEDED
        assert str(error) == (
            f"DEADLINE_EXCEEDED: deadline exceeded while waiting for the reply from {peer.target}"
        )


async def test_a_deadline_while_the_server_allows_no_stream_says_so() -> None:
    no_streams = settings({0x3: 0})  # SETTINGS_MAX_CONCURRENT_STREAMS = 0
    async with (
        SilentPeer(greeting=no_streams) as peer,
        GreetClient(peer.target, timeout=0.5, retry=FIVE_ATTEMPTS) as client,
    ):
        with pytest.raises(RpcError) as raised:
            await client.say_hello()
    assert str(raised.value) == (
        f"DEADLINE_EXCEEDED: deadline exceeded while waiting for a free stream to {peer.target} "
        "(the server's MAX_CONCURRENT_STREAMS)"
    )


async def test_the_client_command_names_what_the_deadline_cut_short() -> None:
    async with SilentPeer() as peer:
        code, err = await run_client("--target", peer.target, "--timeout", "3", "unary")
    assert code == 1
    assert err == (
        f"error: DEADLINE_EXCEEDED: deadline exceeded while connecting to {peer.target} "
        "(HTTP/2 handshake not complete)\n"
    )


# -- mutual TLS without a client certificate -------------------------------------------------------

NEEDED = "the server requires a client certificate (--tls-cert/--tls-key)"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    server.private_key_pem.write_to_path(str(folder / "server.key"))
    for index, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(str(folder / "server.pem"), append=index > 0)
    return {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}


async def test_greets_mutual_tls_server_tells_a_client_without_a_certificate_it_needs_one(
    start_server: StartServer, pki: dict[str, Path]
) -> None:
    server = await start_server(tls_cert=pki["cert"], tls_key=pki["key"], tls_client_ca=pki["ca"])
    async with GreetClient(server.target, timeout=10, ssl=client_ssl_context(pki["ca"])) as client:
        with pytest.raises(RpcError) as raised:
            await client.say_hello()
    assert raised.value.status is Status.UNAVAILABLE
    assert NEEDED in str(raised.value)  # greet's server sends no alert: "... or did not accept"

    code, err = await run_client("--target", server.target, "--tls-ca", str(pki["ca"]), "unary")
    assert code == 1
    assert err.startswith("error: UNAVAILABLE: "), err
    assert NEEDED in err


async def test_a_grpcio_server_requiring_a_client_certificate_is_named_as_such(
    pki: dict[str, Path],
) -> None:
    server = grpc.aio.server()
    credentials = grpc.ssl_server_credentials(
        [(pki["key"].read_bytes(), pki["cert"].read_bytes())],
        root_certificates=pki["ca"].read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        target = f"127.0.0.1:{port}"
        async with GreetClient(target, timeout=10, ssl=client_ssl_context(pki["ca"])) as client:
            with pytest.raises(RpcError) as raised:
                await client.say_hello()
    finally:
        await server.stop(None)
    assert raised.value.status is Status.UNAVAILABLE
    assert NEEDED in str(raised.value)  # it sends no alert either


def serve_one_tls_handshake(listener: socket.socket, context: ssl.SSLContext) -> None:
    """Accept one connection and run the server's TLS handshake on it with OpenSSL, which sends
    the alert that says why it failed (as Go's crypto/tls and nginx do)."""
    connection, _ = listener.accept()
    with contextlib.suppress(OSError), context.wrap_socket(connection, server_side=True) as tls:
        tls.recv(1)  # TLS 1.3: the client's certificate (or its absence) is read here


async def test_a_server_that_sends_the_certificate_required_alert_is_named_as_such(
    pki: dict[str, Path],
) -> None:
    context = server_ssl_context(pki["cert"], pki["key"], client_ca=pki["ca"])
    with bound_socket() as listener:
        listener.listen()
        target = f"127.0.0.1:{listener.getsockname()[1]}"
        serving = asyncio.create_task(asyncio.to_thread(serve_one_tls_handshake, listener, context))
        async with GreetClient(
            target, timeout=10, ssl=client_ssl_context(pki["ca"]), retry=RetryPolicy(max_attempts=1)
        ) as client:
            with pytest.raises(RpcError) as raised:
                await client.say_hello()
        await serving
    assert raised.value.status is Status.UNAVAILABLE
    assert str(raised.value) == (
        f"UNAVAILABLE: cannot connect to {target}: {target} closed the connection after the TLS "
        f"handshake: {NEEDED}"
    )


# -- a misspelt flag -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "args", "message"),
    [
        (
            "greet.client",
            ["--tagret", "x", "unary"],
            "unknown flag --tagret (did you mean --target?)",
        ),
        ("greet.client", ["unary", "--tagret=x"], "unknown flag --tagret (did you mean --target?)"),
        (
            "greet.client",
            ["bench", "--durration", "1"],
            "unknown flag --durration (did you mean --duration?)",
        ),
        ("greet.server", ["--prot", "5"], "unknown flag --prot (did you mean --port?)"),
    ],
)
async def test_a_misspelt_flag_is_named_as_an_unknown_flag(
    module: str, args: list[str], message: str
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    program = f"python -m {module}"
    assert err.decode() == (
        f"{program}: error: {message}\nTry '{program} --help' for more information.\n"
    )
    assert out == b""
