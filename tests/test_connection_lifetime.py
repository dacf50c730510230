"""Connection management as grpc-go's keepalive package has it, against grpcio, grpc-go and raw
HTTP/2 peers: server keepalive pings and their timeout, maximum idleness and age (a graceful
GOAWAY that clients follow to a new connection), the ping enforcement policy, and the client
side (GreetClient keepalive, its handshake timeout, a plaintext client meeting TLS).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import trustme
from grpcio_calls import say_hello as grpcio_say_hello
from hyperframe.frame import GoAwayFrame, PingFrame
from loopback import bound_socket
from raw_http2 import RawPeer, settings
from server_process import ServerProcess

from greet.client import GreetClient, RpcError
from greet.transport import ChannelConfig, ClientKeepalive
from greet_service import NoParam

ENHANCE_YOUR_CALM = 0xB


async def test_server_pings_a_quiet_client_and_drops_one_that_does_not_answer() -> None:
    async with ServerProcess(["--keepalive-time", "0.3", "--keepalive-timeout", "0.3"]) as server:
        peer = await RawPeer.connect(server.target)  # answers nothing from now on
        frames = await peer.frames_until_closed(timeout=20, answer_pings=False)
        assert any(isinstance(f, PingFrame) and "ACK" not in f.flags for f in frames)
        assert any("keepalive ping not acknowledged" in line for line in server.log_lines)


async def test_grpcio_client_answers_keepalive_pings_and_keeps_its_connection() -> None:
    async with (
        ServerProcess(["--keepalive-time", "0.2", "--keepalive-timeout", "1"]) as server,
        grpc.aio.insecure_channel(server.target) as channel,
    ):
        say_hello = grpcio_say_hello(channel)
        for _ in range(5):
            assert (await say_hello(NoParam(), timeout=10)).message == "Hello"
            await asyncio.sleep(0.3)  # quiet periods longer than the server's keepalive time
        assert not any("keepalive ping" in line for line in server.log_lines)


async def test_an_idle_connection_gets_a_graceful_goaway() -> None:
    async with ServerProcess(["--max-connection-idle", "0.3"]) as server:
        peer = await RawPeer.connect(server.target)
        frames = await peer.frames_until_closed(timeout=20)
        goaways = [frame for frame in frames if isinstance(frame, GoAwayFrame)]
        assert goaways
        assert {goaway.error_code for goaway in goaways} == {0}
        assert goaways[0].last_stream_id == 2**31 - 1  # first of the two-step drain
        assert goaways[0].additional_data == b"max_idle"
        assert goaways[-1].last_stream_id == 0  # the final one: no stream was ever opened


async def repeat_grpcio_calls(target: str, seconds: float) -> tuple[int, list[str]]:
    """SayHello over one grpcio channel, back to back for `seconds`: (ok, failures)."""
    ok, failures = 0, []
    async with grpc.aio.insecure_channel(target) as channel:
        say_hello = grpcio_say_hello(channel)
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            try:
                await say_hello(NoParam(), timeout=10)
                ok += 1
            except grpc.aio.AioRpcError as error:
                failures.append(f"{error.code()}: {error.details()}")
            await asyncio.sleep(0.02)
    return ok, failures


async def test_max_connection_age_moves_grpcio_clients_to_a_new_connection() -> None:
    async with ServerProcess(
        ["--max-connection-age", "0.5", "--max-connection-age-grace", "5"]
    ) as server:
        ok, failures = await repeat_grpcio_calls(server.target, 2.5)
        assert not failures
        assert ok > 10
        peer = await RawPeer.connect(server.target)
        goaway = await peer.wait_goaway(timeout=10)
        assert (goaway.error_code, goaway.additional_data) == (0, b"max_age")
        await peer.close()


async def test_max_connection_age_moves_grpc_go_clients_to_a_new_connection(
    go_client_binary: Path,
) -> None:
    async with ServerProcess(
        ["--max-connection-age", "0.5", "--max-connection-age-grace", "5"]
    ) as server:
        process = await asyncio.create_subprocess_exec(
            str(go_client_binary), "-addr", server.target, "-mode", "unary",
            "-repeat-for", "2500ms", "-repeat-every", "20ms",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 60)
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert process.returncode == 0, err.decode()
    assert len(lines) > 10
    assert all(line == {"call": "unary", "message": "Hello"} for line in lines)


async def test_grpc_go_client_answers_server_keepalive(go_client_binary: Path) -> None:
    async with ServerProcess(["--keepalive-time", "0.2", "--keepalive-timeout", "1"]) as server:
        process = await asyncio.create_subprocess_exec(
            str(go_client_binary), "-addr", server.target, "-mode", "unary",
            "-repeat-for", "1500ms", "-repeat-every", "400ms",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode()
        assert not any("keepalive ping" in line for line in server.log_lines)


async def test_a_client_pinging_too_often_gets_goaway_too_many_pings() -> None:
    async with ServerProcess(["--keepalive-min-time", "5"]) as server:
        peer = await RawPeer.connect(server.target)
        peer.read_in_background()
        for _ in range(5):  # five pings in a row, nothing sent in between by the server
            peer.write(PingFrame(0, opaque_data=b"12345678").serialize())
        await peer.drain()
        await peer.wait_closed()
        assert peer.goaway is not None
        assert (peer.goaway.error_code, peer.goaway.additional_data) == (
            ENHANCE_YOUR_CALM,
            b"too_many_pings",
        )


async def test_grpcio_client_with_aggressive_keepalive_is_told_too_many_pings() -> None:
    async with ServerProcess(["--keepalive-min-time", "5"]) as server:
        options = [
            ("grpc.keepalive_time_ms", 100),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ]
        async with grpc.aio.insecure_channel(server.target, options=options) as channel:
            say_hello = grpcio_say_hello(channel)
            assert (await say_hello(NoParam(), timeout=10)).message == "Hello"
            await server.wait_for_log(re.compile("too many pings"), timeout=20)
            # grpcio backs off (doubles its keepalive time) and calls still work
            assert (await say_hello(NoParam(), timeout=10)).message == "Hello"


async def test_permitted_pings_without_calls_are_fine() -> None:
    async with ServerProcess(
        ["--keepalive-min-time", "0", "--keepalive-permit-without-calls"]
    ) as server:
        peer = await RawPeer.connect(server.target)
        for _ in range(10):
            peer.write(PingFrame(0, opaque_data=b"12345678").serialize())
        peer.write(settings())
        stream_id = peer.request("SayHello")
        assert (await peer.response(stream_id)).grpc_status == 0
        assert peer.goaway is None
        await peer.close()


# -- the client side ---------------------------------------------------------------------------


@pytest.fixture
async def silent_http2_server() -> AsyncIterator[str]:
    """A TCP server that sends HTTP/2 SETTINGS, then ignores everything (PINGs included)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(settings())
        while await reader.read(65536):
            pass
        writer.close()

    sock = bound_socket()
    server = await asyncio.start_server(handle, sock=sock)
    host, port = sock.getsockname()[:2]
    try:
        yield f"{host}:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def test_greet_client_keepalive_fails_calls_on_a_dead_connection(
    silent_http2_server: str,
) -> None:
    transport = ChannelConfig(keepalive=ClientKeepalive(time=0.2, timeout=0.2))
    async with GreetClient(silent_http2_server, timeout=30, transport=transport) as client:
        with pytest.raises(RpcError) as raised:
            await client.say_hello()
    assert raised.value.status.name == "UNAVAILABLE"
    assert "keepalive" in raised.value.message


async def test_greet_client_gives_up_on_a_server_that_never_speaks_http2() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts TCP, says nothing

    sock = bound_socket()
    server = await asyncio.start_server(handle, sock=sock)
    host, port = sock.getsockname()[:2]
    transport = ChannelConfig(handshake_timeout=0.5)
    try:
        async with GreetClient(f"{host}:{port}", transport=transport) as client:  # no deadline
            with pytest.raises(RpcError) as raised:
                await client.say_hello()
    finally:
        server.close()
        await server.wait_closed()
    assert raised.value.status.name == "UNAVAILABLE"
    assert "no HTTP/2 settings within 0.5s" in raised.value.message


async def test_a_plaintext_client_against_tls_is_told_tls_is_the_likely_cause(
    tmp_path: Path,
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    args = ["--tls-cert", str(tmp_path / "server.pem"), "--tls-key", str(tmp_path / "server.pem")]
    async with (
        ServerProcess(args) as server,
        GreetClient(server.target, timeout=10) as client,
    ):
        with pytest.raises(RpcError) as raised:
            await client.say_hello()
    assert raised.value.status.name == "UNAVAILABLE"
    assert "TLS" in raised.value.message
