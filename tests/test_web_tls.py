"""TLS on the shared port: the server offers `h2` and `http/1.1` by ALPN and the choice routes
the connection (trustme certificates, real sockets). Run on both engines (GREET_HTTP2_ENGINE)."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import pytest
import trustme
from loopback import StartServer

from greet.client import GreetClient
from greet.server import GreetServer
from greet.tls import client_ssl_context


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    folder = tmp_path_factory.mktemp("web-pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    leaf.private_key_pem.write_to_path(str(folder / "server.key"))
    for index, blob in enumerate(leaf.cert_chain_pems):
        blob.write_to_path(str(folder / "server.pem"), append=index > 0)
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


async def https_post(server: GreetServer, ca: Path, alpn: list[str]) -> tuple[str | None, bytes]:
    """A Connect JSON call over HTTP/1.1 in TLS; the ALPN protocol chosen and the answer."""
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(alpn)
    host, port = server.address
    reader, writer = await asyncio.open_connection(host, port, ssl=context)
    chosen = writer.get_extra_info("ssl_object").selected_alpn_protocol()
    writer.write(
        b"POST /greet_service.GreetService/SayHello HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    )
    answer = await asyncio.wait_for(reader.read(), 20)
    writer.close()
    return chosen, answer


async def test_alpn_http11_and_h2_on_one_tls_port(
    start_server: StartServer, certificates: tuple[Path, Path, Path]
) -> None:
    ca, cert, key = certificates
    server = await start_server(tls_cert=cert, tls_key=key)
    chosen, answer = await https_post(server, ca, ["http/1.1"])
    assert chosen == "http/1.1"
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(body) == {"message": "Hello"}
    # without ALPN, the first bytes decide
    chosen, answer = await https_post(server, ca, [])
    assert chosen is None
    assert answer.startswith(b"HTTP/1.1 200")
    # and gRPC clients get h2
    async with GreetClient(server.target, timeout=10, ssl=client_ssl_context(ca)) as client:
        assert (await client.say_hello()).message == "Hello"
