"""GreetClient: the typed client of greet_service.GreetService.

    async with GreetClient("127.0.0.1:8080") as client:
        reply = await client.say_hello()                     # HelloResponse
        async for reply in client.say_hello_server_streaming(["Alice", "Bob"]):
            print(reply.message)

Several targets (`GreetClient(["h1:p1", "h2:p2"])`, `"dns:///name:port"`), `backup=[...]`,
retries (`RetryPolicy`) and connection pools (`PoolOptions`): see greet.client.core.
Every call raises `greet.errors.RpcError` (with the gRPC status) when it fails.
"""

from greet.client.core import GreetClient
from greet.client.pool import PoolOptions
from greet.client.requests import NameOrRequest, Requests
from greet.client.retry import RetryPolicy, RetryThrottling
from greet.client.targets import DnsName, Endpoint
from greet.errors import RpcError

__all__ = [
    "DnsName",
    "Endpoint",
    "GreetClient",
    "NameOrRequest",
    "PoolOptions",
    "Requests",
    "RetryPolicy",
    "RetryThrottling",
    "RpcError",
]
