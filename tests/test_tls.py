"""TLS and mutual TLS (`--tls-cert`, `--tls-key`, `--tls-client-ca`), with certificates made by
trustme for each test module, and the warning for plaintext on all interfaces.

Clients: GreetClient with `greet.tls.client_ssl_context` and grpcio's `secure_channel`.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import trustme
from loopback import StartServer
from server_process import ServerProcess

from greet.client import GreetClient
from greet.errors import RpcError
from greet.server import GreetServer
from greet.tls import client_ssl_context
from greet_service import HelloResponse, NoParam

SAY_HELLO = "/greet_service.GreetService/SayHello"
WARNING = re.compile(r"WARNING .*listening on all interfaces without TLS")


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path  # issued the server's certificate and the good client's
    other_ca: Path  # a CA the server does not trust for clients
    server: KeyPair
    client: KeyPair
    stranger: KeyPair  # a client certificate from other_ca


def write_leaf(ca: trustme.CA, folder: Path, name: str, *identities: str) -> KeyPair:
    leaf = ca.issue_cert(*identities)
    pair = KeyPair(cert=folder / f"{name}.pem", key=folder / f"{name}.key")
    leaf.private_key_pem.write_to_path(str(pair.key))
    for index, blob in enumerate(leaf.cert_chain_pems):
        blob.write_to_path(str(pair.cert), append=index > 0)
    return pair


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, other_ca = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    other_ca.cert_pem.write_to_path(str(folder / "other-ca.pem"))
    return Pki(
        ca=folder / "ca.pem",
        other_ca=folder / "other-ca.pem",
        server=write_leaf(ca, folder, "server", "localhost", "127.0.0.1"),
        client=write_leaf(ca, folder, "client", "client.greet.test"),
        stranger=write_leaf(other_ca, folder, "stranger", "client.greet.test"),
    )


async def tls_server(start_server: StartServer, pki: Pki, *, mutual: bool) -> GreetServer:
    return await start_server(
        tls_cert=pki.server.cert,
        tls_key=pki.server.key,
        tls_client_ca=pki.ca if mutual else None,
    )


async def greet_client_hello(target: str, ssl: object) -> str:
    """SayHello with GreetClient; `ssl` is an SSLContext or None (plaintext)."""
    async with GreetClient(target, timeout=10, ssl=ssl) as client:  # type: ignore[arg-type]
        return (await client.say_hello()).message


def grpcio_hello(target: str, credentials: grpc.ChannelCredentials) -> str:
    """SayHello with grpcio over TLS; raises grpc.RpcError."""
    with grpc.secure_channel(target, credentials) as channel:
        say_hello = channel.unary_unary(
            SAY_HELLO,
            request_serializer=bytes,
            response_deserializer=lambda data: HelloResponse().parse(data),
        )
        reply: HelloResponse = say_hello(NoParam(), timeout=10)
        return reply.message


def grpcio_credentials(pki: Pki, client: KeyPair | None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )


def grpcio_status(target: str, credentials: grpc.ChannelCredentials) -> grpc.StatusCode:
    try:
        grpcio_hello(target, credentials)
    except grpc.RpcError as error:
        if isinstance(error, grpc.Call):
            return error.code()
        raise
    return grpc.StatusCode.OK


async def test_greet_client_makes_all_four_calls_over_tls(
    start_server: StartServer, pki: Pki
) -> None:
    server = await tls_server(start_server, pki, mutual=False)
    ssl = client_ssl_context(pki.ca)
    async with GreetClient(server.target, timeout=10, ssl=ssl) as client:
        assert (await client.say_hello()).message == "Hello"
        replies = client.say_hello_server_streaming(["Akhil", "Alice"])
        assert [reply.message async for reply in replies] == ["Hello Akhil", "Hello Alice"]
        summary = await client.say_hello_client_streaming(["Bob"])
        assert summary.messages == ["Hello Bob"]
        replies = client.say_hello_bidirectional_streaming(["Akhil", "Bob"])
        assert [reply.message async for reply in replies] == ["Hello Akhil", "Hello Bob"]


async def test_grpcio_calls_over_tls(start_server: StartServer, pki: Pki) -> None:
    server = await tls_server(start_server, pki, mutual=False)
    assert await asyncio.to_thread(grpcio_hello, server.target, grpcio_credentials(pki, None)) == (
        "Hello"
    )


async def test_plaintext_and_untrusting_clients_fail_and_others_are_served(
    start_server: StartServer, pki: Pki
) -> None:
    server = await tls_server(start_server, pki, mutual=False)
    with pytest.raises(RpcError) as plaintext:
        await greet_client_hello(server.target, None)
    assert plaintext.value.status.name == "UNAVAILABLE"
    with pytest.raises(RpcError) as untrusting:
        await greet_client_hello(server.target, client_ssl_context(pki.other_ca))
    assert untrusting.value.status.name == "UNAVAILABLE"
    assert await greet_client_hello(server.target, client_ssl_context(pki.ca)) == "Hello"


async def test_mutual_tls_serves_only_clients_with_a_certificate_from_the_ca(
    start_server: StartServer, pki: Pki
) -> None:
    server = await tls_server(start_server, pki, mutual=True)
    good = client_ssl_context(pki.ca, pki.client.cert, pki.client.key)
    assert await greet_client_hello(server.target, good) == "Hello"

    for refused in (
        client_ssl_context(pki.ca),  # no client certificate
        client_ssl_context(pki.ca, pki.stranger.cert, pki.stranger.key),  # another CA's
    ):
        with pytest.raises(RpcError) as raised:
            await greet_client_hello(server.target, refused)
        assert raised.value.status.name == "UNAVAILABLE"

    target = server.target
    assert await asyncio.to_thread(grpcio_status, target, grpcio_credentials(pki, None)) == (
        grpc.StatusCode.UNAVAILABLE
    )
    stranger = grpcio_credentials(pki, pki.stranger)
    assert await asyncio.to_thread(grpcio_status, target, stranger) == (grpc.StatusCode.UNAVAILABLE)
    # the refusals did not disturb anyone else
    assert await asyncio.to_thread(grpcio_hello, target, grpcio_credentials(pki, pki.client)) == (
        "Hello"
    )
    assert await greet_client_hello(server.target, good) == "Hello"


async def test_server_process_serves_mutual_tls_from_its_flags(pki: Pki) -> None:
    args = ["--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key)]
    async with ServerProcess([*args, "--tls-client-ca", str(pki.ca)]) as process:
        good = client_ssl_context(pki.ca, pki.client.cert, pki.client.key)
        assert await greet_client_hello(process.target, good) == "Hello"
        with pytest.raises(RpcError):
            await greet_client_hello(process.target, client_ssl_context(pki.ca))
        assert await greet_client_hello(process.target, good) == "Hello"
    assert not any(WARNING.search(line) for line in process.log_lines)


def test_client_ssl_context_offers_h2_and_refuses_old_tls(pki: Pki) -> None:
    context = client_ssl_context(pki.ca)
    assert context.minimum_version.name == "TLSv1_2"
    assert context.check_hostname
    with pytest.raises(ValueError, match="certificate"):
        client_ssl_context(pki.ca, key=pki.client.key)


async def test_all_interfaces_without_tls_logs_a_warning() -> None:
    async with ServerProcess(["--host", "0.0.0.0"]) as process:
        port = process.target.rsplit(":", 1)[1]
        assert await greet_client_hello(f"127.0.0.1:{port}", None) == "Hello"
        await process.wait_for_log(WARNING, timeout=10)


async def test_loopback_or_tls_logs_no_warning(pki: Pki) -> None:
    tls = ["--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key)]
    for args in ([], ["--host", "0.0.0.0", *tls]):
        async with ServerProcess(args) as process:
            pass
        assert process.log_lines
        assert not any(WARNING.search(line) for line in process.log_lines), process.log_lines
