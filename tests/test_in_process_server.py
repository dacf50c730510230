"""What a user's own test suite does to call a real greet server: no helpers from greet's tests."""

from __future__ import annotations

from greet.client import GreetClient
from greet.server import GreetServer, ServerConfig


async def test_a_server_on_port_0_serves_in_process_for_the_block() -> None:
    async with GreetServer(ServerConfig(port=0)) as server:
        assert server.address[1] != 0  # the port the kernel picked, read back from the socket
        async with GreetClient(server.target, timeout=10) as client:
            assert (await client.say_hello()).message == "Hello"
            assert (await client.say_hello_client_streaming(["Ann", "Bo"])).messages == [
                "Hello Ann",
                "Hello Bo",
            ]
