"""GreetClient: the typed client of greet_service.GreetService.

    async with GreetClient("127.0.0.1:8080") as client:
        reply = await client.say_hello()                     # HelloResponse
        async for reply in client.say_hello_server_streaming(["Alice", "Bob"]):
            print(reply.message)

Every call raises `greet.errors.RpcError` (with the gRPC status) when it fails.
"""

from greet.client.core import GreetClient, NameOrRequest, Requests
from greet.errors import RpcError

__all__ = ["GreetClient", "NameOrRequest", "Requests", "RpcError"]
